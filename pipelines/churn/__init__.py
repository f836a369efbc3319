"""Pipeline definition for the customer-churn model (XGBoost, tuned, gated on AUC)."""

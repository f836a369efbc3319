"""MLflow experiment tracking of pipeline executions, logged from outside the jobs (docs/tracking.md)."""

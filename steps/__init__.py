"""Code that runs inside the step containers.

Each module is self-contained: it imports only packages present in the SageMaker XGBoost
framework image, so the container can run it as a single file, while the repository imports
it as ``steps.<name>`` for tests and for the constants the pipeline shares with it.
"""

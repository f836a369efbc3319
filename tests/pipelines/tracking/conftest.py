"""Tracking tests may point MLflow's process-wide tracking URI at a server ARN (the sagemaker-mlflow
plugin signs for that URI); each test leaves it as it found it."""

import pytest


@pytest.fixture(autouse=True)
def _process_tracking_uri():
    import mlflow
    from mlflow.tracking._tracking_service import utils

    before = utils._tracking_uri
    yield
    mlflow.set_tracking_uri(before)

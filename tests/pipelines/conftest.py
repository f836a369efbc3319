"""Fixtures for the pipeline package: arguments of a build and built definitions."""

import json

import pytest
from support import BUCKET, REGION, ROLE


@pytest.fixture
def pipeline_kwargs():
    return {"region": REGION, "role": ROLE, "default_bucket": BUCKET}


@pytest.fixture(scope="session")
def churn_definition_text():
    """One build of the churn definition, shared: building it takes seconds."""
    from pipelines.churn.pipeline import get_pipeline

    return get_pipeline(region=REGION, role=ROLE, default_bucket=BUCKET).definition()


@pytest.fixture
def churn_definition(churn_definition_text):
    return json.loads(churn_definition_text)

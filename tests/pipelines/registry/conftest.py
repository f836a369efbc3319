"""Fixtures for the registry tests: one SageMaker client for every moto-backed test."""

import boto3
import pytest
from moto import mock_aws
from support import REGION


@pytest.fixture(scope="session")
def _sagemaker_client():
    # Creating a client takes ~0.1 s; moto intercepts this one inside each test's own mock_aws,
    # which starts from empty state, so sharing it shares nothing else. The credentials are given
    # here because a session fixture is built before the per-test fake-credentials fixture.
    return boto3.client(
        "sagemaker", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture
def sagemaker(_sagemaker_client):
    """A SageMaker client talking to a fresh moto account in ``REGION``."""
    with mock_aws():
        yield _sagemaker_client

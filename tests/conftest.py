"""Fixtures shared by the whole suite: no test may reach a real AWS account."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _offline_aws(tmp_path_factory):
    """Fake credentials and an empty config: a call that escapes moto fails instead of reaching AWS.

    Session-scoped so that module-scoped fixtures (whole local pipeline runs) get it too: pytest
    makes those before any function-scoped fixture. A test that changes one of these variables does
    it with monkeypatch, which puts this value back after it.
    """
    empty = tmp_path_factory.getbasetemp() / "aws-empty-config"
    empty.touch()
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        patch.setenv(name, value)
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "SAGEMAKER_PROJECT_NAME",
        "SAGEMAKER_PROJECT_ID",
        # What deploy/ reads: a build machine's settings must not reach the tests.
        "MODEL_PACKAGE_GROUP_NAME",
        "DEV_ACCOUNT_ID",
        "STAGING_ACCOUNT_ID",
        "PROD_ACCOUNT_ID",
        "TARGET_REGION",
    ):
        patch.delenv(name, raising=False)
    # MLflow tracking is tested where it is named (tests/pipelines/tracking); elsewhere a local run
    # would create and migrate an MLflow store in every temporary home.
    patch.setenv("MLOPS_TRACKING_URI", "off")
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _own_local_home(monkeypatch, tmp_path_factory):
    """A local home of this test's own unless it sets one: tests run side by side on several
    workers, and none may share a home with another or write to the user's."""
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path_factory.mktemp("local-home")))


def pytest_collection_modifyitems(config, items):
    """Modules holding slow end-to-end tests first, in the random order they were given: spread over
    workers, the long runs start early and the short tests fill the gaps at the end, instead of one
    worker finishing a long run alone."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)

"""The Model Registry contract, run against both backends: local (SQLite) and AWS (moto).

Three behaviours moto gets wrong (moto 5.2.5) run here against the local backend only; for AWS,
test_aws.py checks them with botocore's Stubber against the answers SageMaker gives.
"""

from datetime import timezone

import pytest
from support import REGION

from pipelines.errors import ConfigError, NotFoundError
from pipelines.registry import APPROVED, PENDING, REJECTED, ModelPackage, RegistryConflict
from pipelines.registry.aws import AwsModelRegistry
from pipelines.registry.local import LocalModelRegistry

IMAGE = "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.2-0"
METRICS = {
    "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/evaluation.json"}}
}


@pytest.fixture(params=["local", "aws"])
def backend(request):
    return request.param


@pytest.fixture
def registry(backend, request, tmp_path):
    if backend == "local":
        return LocalModelRegistry(tmp_path / "registry.sqlite")
    return AwsModelRegistry(request.getfixturevalue("sagemaker"))


def register(registry, group, count=1, **overrides):
    """Register ``count`` versions of ``group`` (created if needed) and return them."""
    registry.ensure_group(group)
    return [
        registry.register(
            group,
            **{"model_data_url": f"s3://b/{group}/{i}/model.tar.gz", "image_uri": IMAGE, **overrides},
        )
        for i in range(count)
    ]


@pytest.fixture
def local_registry(tmp_path):
    return LocalModelRegistry(tmp_path / "registry.sqlite")


def one_line(err):
    text = str(err.value)
    assert "\n" not in text
    return text


def test_versions_count_from_one_in_each_group_independently(registry):
    churn = register(registry, "churn", 3)
    fraud = register(registry, "fraud", 2)
    assert [p.version for p in churn] == [1, 2, 3]
    assert [p.version for p in fraud] == [1, 2]
    assert [p.version for p in register(registry, "churn")] == [4]


def test_a_registration_keeps_what_deploying_needs(registry):
    (package,) = register(
        registry,
        "churn",
        environment={"SAGEMAKER_PROGRAM": "inference.py"},
        content_types=("text/csv", "application/json"),
        response_types=("application/json",),
        model_metrics=METRICS,
        customer_metadata={"git-commit": "abc123"},
        description="nightly build",
    )
    got = registry.get_version("churn", 1)
    assert got == package
    assert got.approval_status == PENDING
    assert got.model_data_url == "s3://b/churn/0/model.tar.gz"
    assert got.image_uri == IMAGE
    assert got.environment == {"SAGEMAKER_PROGRAM": "inference.py"}
    assert got.content_types == ("text/csv", "application/json")
    assert got.response_types == ("application/json",)
    assert got.model_metrics == METRICS
    assert got.customer_metadata == {"git-commit": "abc123"}
    assert got.description == "nightly build"
    assert got.created.tzinfo is not None and got.created.utcoffset() == timezone.utc.utcoffset(None)


def test_list_versions_is_ascending_and_filters_by_status(registry):
    register(registry, "churn", 4)
    registry.update_approval("churn", 3, APPROVED, by="alice")
    registry.update_approval("churn", 2, REJECTED, by="alice")
    assert [p.version for p in registry.list_versions("churn")] == [1, 2, 3, 4]
    assert [p.version for p in registry.list_versions("churn", approval_status=PENDING)] == [1, 4]
    assert [p.version for p in registry.list_versions("churn", approval_status=APPROVED)] == [3]
    assert [p.version for p in registry.list_versions("churn", approval_status=REJECTED)] == [2]


def test_latest_approved_is_the_highest_approved_version_skipping_rejected_and_pending(registry):
    register(registry, "churn", 5)
    registry.update_approval("churn", 2, APPROVED, by="alice")
    registry.update_approval("churn", 3, APPROVED, by="alice")
    registry.update_approval("churn", 4, REJECTED, by="alice")  # 5 stays pending
    assert registry.latest_approved("churn").version == 3
    registry.update_approval("churn", 3, REJECTED, by="alice", reason="drift found")
    assert registry.latest_approved("churn").version == 2


def test_latest_approved_is_none_when_nothing_is_approved(registry):
    register(registry, "churn", 2)
    registry.update_approval("churn", 1, REJECTED, by="alice")
    assert registry.latest_approved("churn") is None


def test_approve_and_reject_change_the_status_and_keep_the_reason(registry):
    register(registry, "churn", 1)
    approved = registry.update_approval("churn", 1, APPROVED, by="alice", reason="AUC 0.91")
    assert approved.approval_status == APPROVED
    assert registry.get_version("churn", 1).approval_status == APPROVED
    assert registry.approval_history("churn", 1)[-1].reason == "AUC 0.91"

    rejected = registry.update_approval("churn", 1, REJECTED, by="bob", reason="bias")
    assert rejected.approval_status == REJECTED
    last = registry.approval_history("churn", 1)[-1]
    assert (last.to_status, last.reason) == (REJECTED, "bias")
    assert last.by and last.time.tzinfo is not None


def test_an_invalid_status_is_refused_naming_the_allowed_ones(registry):
    register(registry, "churn", 1)
    with pytest.raises(ConfigError) as err:
        registry.update_approval("churn", 1, "approved", by="alice")
    message = one_line(err)
    assert "'approved'" in message
    assert "PendingManualApproval, Approved, Rejected" in message
    assert "Did you mean 'Approved'?" in message
    with pytest.raises(ConfigError, match="'Deployed'"):
        registry.list_versions("churn", approval_status="Deployed")
    with pytest.raises(ConfigError, match="approval_status 'Live'"):
        registry.register("churn", model_data_url="s3://b/m.tar.gz", image_uri=IMAGE, approval_status="Live")
    assert registry.get_version("churn", 1).approval_status == PENDING


def test_an_unknown_group_is_a_one_line_not_found_error_naming_the_groups_there(registry):
    register(registry, "churn", 1)
    calls = [
        lambda: registry.get_group("chrun"),
        lambda: registry.list_versions("chrun"),
        lambda: registry.latest_approved("chrun"),
        lambda: registry.get_version("chrun", 1),
        lambda: registry.update_approval("chrun", 1, APPROVED, by="alice"),
        lambda: registry.register("chrun", model_data_url="s3://b/m.tar.gz", image_uri=IMAGE),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as err:
            call()
        message = one_line(err)
        assert message.startswith("Model package group 'chrun' does not exist.")
        assert "Did you mean 'churn'?" in message
        assert "Existing groups: churn" in message


def test_an_unknown_version_is_a_one_line_not_found_error_naming_the_versions_there(registry):
    register(registry, "churn", 3)
    for call in (
        lambda: registry.get_version("churn", 7),
        lambda: registry.update_approval("churn", 7, APPROVED, by="alice"),
        lambda: registry.approval_history("churn", 7),
        lambda: registry.update_metadata("churn", 7, {"stage": "prod"}),
    ):
        with pytest.raises(NotFoundError) as err:
            call()
        assert one_line(err) == "Model package churn/7 does not exist; it has versions 1-3"


def test_an_unknown_arn_is_not_found_and_a_malformed_one_is_refused(registry):
    (package,) = register(registry, "churn", 1)
    with pytest.raises(NotFoundError, match="does not exist"):
        registry.get_by_arn(package.arn[: -len("/1")] + "/9")
    with pytest.raises(ConfigError, match="not a versioned model package ARN"):
        registry.get_by_arn("churn/1")


def test_versions_must_be_positive_integers(registry):
    register(registry, "churn", 1)
    for bad in (0, -1, "1", True):
        with pytest.raises(ConfigError, match="versions are integers from 1"):
            registry.get_version("churn", bad)


def test_metadata_updates_merge_into_the_existing_properties(registry):
    register(registry, "churn", 1, customer_metadata={"git-commit": "abc123", "stage": "none"})
    updated = registry.update_metadata(
        "churn", 1, {"stage": "staging", "promoted-at": "2026-11-05T10:00:00Z"}
    )
    expected = {"git-commit": "abc123", "stage": "staging", "promoted-at": "2026-11-05T10:00:00Z"}
    assert updated.customer_metadata == expected
    assert registry.get_version("churn", 1).customer_metadata == expected


def test_metadata_that_sagemaker_would_refuse_is_a_config_error(registry):
    register(registry, "churn", 1)
    with pytest.raises(ConfigError) as err:
        registry.update_metadata("churn", 1, {"stage": "", "bad key!": "x", "n": 3})
    message = one_line(err)
    assert "key 'stage' must be 1 to 256 characters" in message
    assert "'bad key!' has characters SageMaker refuses" in message
    assert "value 3 (of key 'n') must be a string" in message


def test_a_metadata_update_keeps_the_approval_status(local_registry):
    # AWS: test_aws.py::test_a_metadata_update_sends_the_merged_map_and_no_status (moto clears the status)
    registry = local_registry
    register(registry, "churn", 1)
    registry.update_approval("churn", 1, APPROVED, by="alice")
    assert registry.update_metadata("churn", 1, {"stage": "prod"}).approval_status == APPROVED


def test_an_approval_keeps_the_metadata(local_registry):
    # AWS: test_aws.py::test_an_approval_sends_only_the_status_and_its_reason (moto clears the metadata)
    registry = local_registry
    register(registry, "churn", 1, customer_metadata={"git-commit": "abc123"})
    assert registry.update_approval("churn", 1, APPROVED, by="a").customer_metadata == {
        "git-commit": "abc123"
    }


def test_arns_follow_sagemakers_format(registry, backend):
    region, account = ("local", "000000000000") if backend == "local" else (REGION, "123456789012")
    group = registry.create_group("ChurnModels", "churn classifier")
    assert group.arn == f"arn:aws:sagemaker:{region}:{account}:model-package-group/ChurnModels"
    (package,) = register(registry, "ChurnModels", 1)
    # SageMaker lower-cases the group name inside a package ARN.
    assert package.arn == f"arn:aws:sagemaker:{region}:{account}:model-package/churnmodels/1"
    assert registry.get_by_arn(package.arn) == package


def test_to_describe_is_shaped_like_describe_model_package(registry):
    (package,) = register(registry, "churn", 1, model_metrics=METRICS, customer_metadata={"k": "v"})
    described = package.to_describe()
    assert set(described) == {
        "ModelPackageGroupName",
        "ModelPackageVersion",
        "ModelPackageArn",
        "ModelPackageDescription",
        "ModelPackageStatus",
        "ModelApprovalStatus",
        "CreationTime",
        "InferenceSpecification",
        "ModelMetrics",
        "CustomerMetadataProperties",
    }
    assert described["InferenceSpecification"] == {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/churn/0/model.tar.gz", "Environment": {}}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    assert described["CreationTime"] == package.created.isoformat()
    assert ModelPackage.from_describe(described) == package


def test_groups_are_listed_by_name_and_described(registry):
    registry.create_group("fraud", "fraud model")
    registry.create_group("churn")
    assert [g.name for g in registry.list_groups()] == ["churn", "fraud"]
    fraud = registry.get_group("fraud")
    assert (fraud.name, fraud.description) == ("fraud", "fraud model")
    assert fraud.to_describe()["ModelPackageGroupArn"] == fraud.arn


def test_ensure_group_creates_a_missing_group_once_then_reuses_it(registry):
    first = registry.ensure_group("churn", "first")
    again = registry.ensure_group("churn", "second")
    assert again == first
    assert [g.name for g in registry.list_groups()] == ["churn"]


def test_creating_an_existing_group_is_a_conflict(local_registry):
    # AWS: test_aws.py::test_creating_an_existing_group_is_a_conflict_as_sagemaker_answers_it
    # (moto replaces the group instead)
    registry = local_registry
    registry.create_group("churn")
    with pytest.raises(RegistryConflict, match="already exists"):
        registry.create_group("churn")


def test_an_invalid_group_name_is_refused_before_any_call(registry):
    for bad in ("churn_model", "-churn", "churn-", "a" * 64):
        with pytest.raises(ConfigError, match="is invalid: use 1 to 63 letters, digits and hyphens"):
            registry.create_group(bad)
    assert registry.list_groups() == []


def test_an_invalid_registration_reports_every_problem_at_once(registry):
    registry.create_group("churn")
    with pytest.raises(ConfigError) as err:
        registry.register(
            "churn",
            model_data_url="/tmp/model.tar.gz",
            image_uri="",
            content_types="text/csv",
            response_types=None,
            model_metrics={"ModelQuality": {"Statistics": {"ContentType": "application/json"}}},
        )
    message = one_line(err)
    assert message.startswith("cannot register a version of 'churn': ")
    assert "model_data_url '/tmp/model.tar.gz' must be an s3:// or https:// URL" in message
    assert "image_uri '' must be a container image URI" in message
    assert "content_types must be a non-empty list of MIME types" in message
    assert "response_types must be a non-empty list of MIME types, e.g. ['text/csv'], got None" in message
    assert 'model_metrics: Missing required parameter in ModelQuality.Statistics: "S3Uri"' in message
    assert registry.list_versions("churn") == []

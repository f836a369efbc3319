"""The AWS backend's requests: shapes checked against botocore's SageMaker model, and, with
botocore's Stubber, what moto cannot show (conflicts, partial updates, paging, AWS failures)."""

import re
from datetime import datetime, timezone

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from support import ACCOUNT, REGION

from pipelines.errors import AwsError, NotFoundError
from pipelines.registry import APPROVED, PENDING, RegistryConflict
from pipelines.registry.aws import AwsModelRegistry

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
IMAGE = "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.2-0"
GROUP_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/Churn"
CREATED = datetime(2026, 11, 5, 10, 0, tzinfo=timezone.utc)
MODIFIED = datetime(2026, 11, 6, 9, 30, tzinfo=timezone.utc)
ALICE = f"arn:aws:sts::{ACCOUNT}:assumed-role/DataScientist/alice"


def package_arn(version):
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn/{version}"


def group_answer():
    return {
        "ModelPackageGroupName": "Churn",
        "ModelPackageGroupArn": GROUP_ARN,
        "CreationTime": CREATED,
        "CreatedBy": {},
        "ModelPackageGroupStatus": "Completed",
    }


def package_answer(version, **extra):
    return {
        "ModelPackageName": "Churn",
        "ModelPackageGroupName": "Churn",
        "ModelPackageVersion": version,
        "ModelPackageArn": package_arn(version),
        "CreationTime": CREATED,
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": PENDING,
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://b/{version}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        **extra,
    }


@pytest.fixture
def stubbed():
    """(registry, stubber) over a client that answers only what the test queued."""
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stubber:
        yield AwsModelRegistry(client), stubber
        stubber.assert_no_pending_responses()


# ---- request shapes, over a whole scenario against moto


def shape_problems(value, shape, where):
    """Everything botocore's model constrains: members, required ones, lengths, ranges, patterns."""
    problems = []
    meta = shape.metadata
    if shape.type_name == "structure":
        problems += [f"{where}.{name} is required" for name in shape.required_members if name not in value]
        for name, item in value.items():
            if name not in shape.members:
                problems.append(f"{where}.{name} is not a member of {shape.name}")
            else:
                problems += shape_problems(item, shape.members[name], f"{where}.{name}")
        return problems
    if shape.type_name in ("list", "map", "string"):
        if not meta.get("min", 0) <= len(value) <= meta.get("max", float("inf")):
            problems.append(f"{where}: length {len(value)} outside {meta.get('min')}..{meta.get('max')}")
    if shape.type_name == "list":
        for i, item in enumerate(value):
            problems += shape_problems(item, shape.member, f"{where}[{i}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            problems += shape_problems(key, shape.key, f"{where} key")
            problems += shape_problems(item, shape.value, f"{where}[{key!r}]")
    elif shape.type_name == "string":
        if "enum" in meta and value not in meta["enum"]:
            problems.append(f"{where}: {value!r} not in {meta['enum']}")
        # \p{...} classes are Java regex; Python's re cannot check those patterns.
        pattern = meta.get("pattern")
        if pattern and "\\p" not in pattern and not re.fullmatch(pattern, value):
            problems.append(f"{where}: {value!r} does not match {pattern}")
    return problems


def test_every_request_of_a_full_scenario_fits_botocores_sagemaker_model(sagemaker):
    sent = []
    sagemaker.meta.events.register(
        "before-parameter-build.sagemaker", lambda params, model, **_: sent.append((model, dict(params)))
    )
    try:
        registry = AwsModelRegistry(sagemaker)
        registry.create_group("Churn", "churn classifier")
        registry.ensure_group("Churn")
        metrics = {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/e.json"}}
        }
        for version in (1, 2):
            registry.register(
                "Churn",
                model_data_url=f"s3://b/{version}/model.tar.gz",
                image_uri=IMAGE,
                environment={"SAGEMAKER_PROGRAM": "inference.py"},
                model_metrics=metrics,
                customer_metadata={"git-commit": "abc123"},
                description="nightly",
            )
        registry.update_approval("Churn", 2, APPROVED, by="alice", reason="AUC 0.91")
        registry.update_approval("Churn", 1, "Rejected", by="alice")
        registry.update_metadata("Churn", 2, {"stage": "prod"})
        registry.list_versions("Churn", approval_status=APPROVED)
        registry.latest_approved("Churn")
        registry.get_by_arn(registry.get_version("Churn", 2).arn)
        registry.approval_history("Churn", 2)
        registry.list_groups()
        with pytest.raises(NotFoundError):
            registry.get_version("Churn", 9)
    finally:
        sagemaker.meta.events.unregister("before-parameter-build.sagemaker")

    operations = {model.name for model, _ in sent}
    assert operations == {
        "CreateModelPackageGroup",
        "DescribeModelPackageGroup",
        "CreateModelPackage",
        "DescribeModelPackage",
        "UpdateModelPackage",
        "ListModelPackages",
        "ListModelPackageGroups",
    }
    problems = [p for model, params in sent for p in shape_problems(params, model.input_shape, model.name)]
    assert problems == []


def test_the_shape_check_itself_catches_a_bad_request():
    shape = SAGEMAKER.operation_model("UpdateModelPackage").input_shape
    problems = shape_problems({"ModelApprovalStatus": "approved", "Bogus": 1}, shape, "UpdateModelPackage")
    assert problems == [
        "UpdateModelPackage.ModelPackageArn is required",
        "UpdateModelPackage.ModelApprovalStatus: 'approved' not in "
        "['Approved', 'Rejected', 'PendingManualApproval']",
        "UpdateModelPackage.Bogus is not a member of UpdateModelPackageInput",
    ]


# ---- what moto cannot show, checked with the Stubber


def test_creating_an_existing_group_is_a_conflict_as_sagemaker_answers_it(stubbed):
    # moto replaces an existing group silently; SageMaker refuses with a ValidationException.
    registry, stubber = stubbed
    stubber.add_client_error(
        "create_model_package_group",
        service_error_code="ValidationException",
        service_message=f"Model Package Group already exists: {GROUP_ARN}",
        expected_params={"ModelPackageGroupName": "Churn"},
    )
    with pytest.raises(RegistryConflict) as err:
        registry.create_group("Churn")
    assert str(err.value) == (
        f"Model Package Group already exists: {GROUP_ARN} (ValidationException); "
        "ensure_group reuses an existing group"
    )


def test_ensure_group_takes_the_group_another_process_created_meanwhile(stubbed):
    registry, stubber = stubbed
    stubber.add_client_error(
        "describe_model_package_group",
        service_error_code="ValidationException",
        service_message=f"ModelPackageGroup {GROUP_ARN} does not exist.",
    )
    stubber.add_response("list_model_package_groups", {"ModelPackageGroupSummaryList": []})
    stubber.add_client_error(
        "create_model_package_group",
        service_error_code="ValidationException",
        service_message=f"Model Package Group already exists: {GROUP_ARN}",
    )
    stubber.add_response("describe_model_package_group", group_answer())
    assert registry.ensure_group("Churn").arn == GROUP_ARN


def test_an_approval_sends_only_the_status_and_its_reason(stubbed):
    # moto clears the metadata of a package updated without it; SageMaker keeps fields not sent,
    # so the request must carry nothing but the status and the description.
    registry, stubber = stubbed
    stubber.add_response("describe_model_package_group", group_answer(), {"ModelPackageGroupName": "Churn"})
    stubber.add_response(
        "update_model_package",
        {"ModelPackageArn": package_arn(3)},
        {
            "ModelPackageArn": package_arn(3),
            "ModelApprovalStatus": APPROVED,
            "ApprovalDescription": "AUC 0.91",
        },
    )
    stubber.add_response(
        "describe_model_package",
        package_answer(3, ModelApprovalStatus=APPROVED, CustomerMetadataProperties={"git-commit": "abc"}),
        {"ModelPackageName": package_arn(3)},
    )
    package = registry.update_approval("Churn", 3, APPROVED, by="alice", reason="AUC 0.91")
    assert (package.approval_status, package.customer_metadata) == (APPROVED, {"git-commit": "abc"})


def test_a_metadata_update_sends_the_merged_map_and_no_status(stubbed):
    # No ModelApprovalStatus: resending it would fire a "Model Package State Change" event
    # (and moto clears the status of a package updated without it).
    registry, stubber = stubbed
    stubber.add_response("describe_model_package_group", group_answer())
    stubber.add_response(
        "describe_model_package",
        package_answer(3, ModelApprovalStatus=APPROVED, CustomerMetadataProperties={"git-commit": "abc"}),
    )
    merged = {"git-commit": "abc", "stage": "prod"}
    stubber.add_response(
        "update_model_package",
        {"ModelPackageArn": package_arn(3)},
        {"ModelPackageArn": package_arn(3), "CustomerMetadataProperties": merged},
    )
    stubber.add_response(
        "describe_model_package",
        package_answer(3, ModelApprovalStatus=APPROVED, CustomerMetadataProperties=merged),
    )
    assert registry.update_metadata("Churn", 3, {"stage": "prod"}).customer_metadata == merged


def test_versions_are_read_from_every_page_and_sorted_by_version(stubbed):
    registry, stubber = stubbed
    stubber.add_response("describe_model_package_group", group_answer())

    def summary(version):
        return {
            "ModelPackageArn": package_arn(version),
            "CreationTime": CREATED,
            "ModelPackageStatus": "Completed",
            "ModelPackageVersion": version,
        }

    expected = {"ModelPackageGroupName": "Churn", "ModelPackageType": "Versioned"}
    stubber.add_response(
        "list_model_packages",
        {"ModelPackageSummaryList": [summary(3), summary(1)], "NextToken": "page2"},
        expected,
    )
    stubber.add_response(
        "list_model_packages", {"ModelPackageSummaryList": [summary(2)]}, {**expected, "NextToken": "page2"}
    )
    for version in (1, 2, 3):
        stubber.add_response(
            "describe_model_package", package_answer(version), {"ModelPackageName": package_arn(version)}
        )
    assert [p.version for p in registry.list_versions("Churn")] == [1, 2, 3]


def test_approval_history_on_aws_is_the_last_change_sagemaker_keeps(stubbed):
    registry, stubber = stubbed
    stubber.add_response("describe_model_package_group", group_answer())
    stubber.add_response(
        "describe_model_package",
        package_answer(
            3,
            ModelApprovalStatus=APPROVED,
            LastModifiedTime=MODIFIED,
            LastModifiedBy={"IamIdentity": {"Arn": ALICE}},
            ApprovalDescription="AUC 0.91",
        ),
    )
    (change,) = registry.approval_history("Churn", 3)
    assert change.to_dict() == {
        "Time": "2026-11-06T09:30:00+00:00",
        "By": ALICE,
        "FromStatus": None,
        "ToStatus": APPROVED,
        "Reason": "AUC 0.91",
    }


def test_approval_history_of_a_never_changed_version_is_its_registration(stubbed):
    registry, stubber = stubbed
    stubber.add_response("describe_model_package_group", group_answer())
    stubber.add_response("describe_model_package", package_answer(1, CreatedBy={"UserProfileName": "ci"}))
    (change,) = registry.approval_history("Churn", 1)
    assert (change.time, change.by, change.to_status, change.reason) == (CREATED, "ci", PENDING, "")


def test_an_aws_failure_is_one_line_naming_the_operation_and_the_code(stubbed):
    registry, stubber = stubbed
    denied = f"User: {ALICE} is not authorized to perform: sagemaker:DescribeModelPackageGroup"
    stubber.add_client_error(
        "describe_model_package_group", service_error_code="AccessDeniedException", service_message=denied
    )
    with pytest.raises(AwsError) as err:
        registry.get_version("Churn", 1)
    assert str(err.value) == f"DescribeModelPackageGroup: AccessDeniedException: {denied}"
    assert err.value.exit_code == 3

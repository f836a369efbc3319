"""The target-account bootstrap: who may deploy into the account, what the endpoints run as, and the
names the stage configs expect."""

import fnmatch
from pathlib import Path

import pytest
from seed_support import (
    ACCOUNT,
    BUCKET,
    PROD,
    PROJECT_ID,
    REGION,
    STAGING,
    as_list,
    assert_least_privilege,
    role_statements,
    statements,
)

from pipelines.promotion import config as stage_config
from pipelines.promotion import policies
from pipelines.promotion.aws import STACK_PREFIX
from seed_code import templates

ROOT = Path(__file__).resolve().parents[2]


def by_sid(role: dict) -> dict:
    return {s["Sid"]: s for s in role_statements(role)}


def test_the_deploy_role_trusts_only_the_tooling_accounts_project_deploy_roles(bootstrap, project):
    role = bootstrap["ModelDeployRole"]["Properties"]
    assert role["RoleName"] == stage_config.DEPLOY_ROLE_NAME
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert trust["Action"] == "sts:AssumeRole"
    pattern = trust["Condition"]["ArnLike"]["aws:PrincipalArn"]
    # The project template's deploy CodeBuild role fits it; its other roles do not.
    for name, resource in project.items():
        if resource["Type"] == "AWS::IAM::Role":
            arn = f"arn:aws:iam::{ACCOUNT}:role/{resource['Properties']['RoleName']}"
            assert fnmatch.fnmatchcase(arn, pattern) == (name == "DeployRole"), name


def test_the_deploy_role_manages_only_endpoint_stacks_and_passes_only_the_execution_role(bootstrap):
    statement = by_sid(bootstrap["ModelDeployRole"])
    stacks = statement["EndpointStacks"]["Resource"]
    assert stacks == f"arn:aws:cloudformation:*:{STAGING}:stack/{STACK_PREFIX}*/*"
    assert fnmatch.fnmatchcase(
        f"arn:aws:cloudformation:{REGION}:{STAGING}:stack/{STACK_PREFIX}churn-staging/1", stacks
    )
    assert not fnmatch.fnmatchcase(f"arn:aws:cloudformation:{REGION}:{STAGING}:stack/network/1", stacks)
    passing = statement["PassTheExecutionRole"]
    assert passing["Resource"] == f"arn:aws:iam::{STAGING}:role/{stage_config.EXECUTION_ROLE_NAME}"
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    linked = statement["AutoscalingServiceLinkedRole"]
    assert linked["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }
    assert statement["EndpointAutoscaling"]["Condition"] == {
        "StringEquals": {"application-autoscaling:service-namespace": "sagemaker"}
    }
    for sid in ("Endpoints", "EndpointStacks"):
        for resource in as_list(statement[sid]["Resource"]):
            assert f":{STAGING}:" in resource, f"{sid} reaches beyond its account: {resource}"
    assert "sagemaker:InvokeEndpoint" in statement["Endpoints"]["Action"]  # the smoke tests
    # What the tooling account's group policy grants this account, its deploy role may use.
    versions = statement["CreateModelsFromToolingAccountVersions"]
    assert sorted(versions["Action"]) == sorted(policies.MODEL_PACKAGE_ACTIONS)
    assert versions["Resource"] == f"arn:aws:sagemaker:*:{ACCOUNT}:model-package/*"


def test_the_execution_role_reads_only_the_tooling_accounts_project_buckets_and_packages(bootstrap):
    role = bootstrap["ModelExecutionRole"]["Properties"]
    assert role["RoleName"] == stage_config.EXECUTION_ROLE_NAME
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    statement = by_sid(bootstrap["ModelExecutionRole"])
    read = statement["ReadModelsOfTheToolingAccount"]
    assert read["Action"] == "s3:GetObject"
    assert read["Condition"] == {"StringEquals": {"s3:ResourceAccount": ACCOUNT}}
    # The project template's bucket fits, for the model and serving-code prefixes only.
    model = f"arn:aws:s3:::{BUCKET}/churn-{PROJECT_ID}/tuning/job/output/model.tar.gz"
    code = f"arn:aws:s3:::{BUCKET}/churn-{PROJECT_ID}/code/0123abcd/sourcedir.tar.gz"
    data = f"arn:aws:s3:::{BUCKET}/churn-{PROJECT_ID}/input/churn.csv"
    allowed = read["Resource"]
    assert all(any(fnmatch.fnmatchcase(arn, pattern) for pattern in allowed) for arn in (model, code))
    assert not any(fnmatch.fnmatchcase(data, pattern) for pattern in allowed)
    decrypt = statement["DecryptModelsThroughS3"]
    assert decrypt["Resource"] == f"arn:aws:kms:*:{ACCOUNT}:key/*"
    assert decrypt["Condition"] == {
        "StringLike": {"kms:ViaService": "s3.*.amazonaws.com"},
        "ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/sagemaker-mlops-*"},
    }
    # The deploy role, not the endpoint, reads the model package.
    assert not any("sagemaker:" in str(s.get("Action")) for s in statement.values())
    assert (
        statement["EndpointLogs"]["Resource"]
        == f"arn:aws:logs:*:{STAGING}:log-group:/aws/sagemaker/Endpoints/*"
    )


def test_the_capture_bucket_and_key_have_the_names_the_stage_configs_default_to(bootstrap):
    bucket = bootstrap["CaptureBucket"]["Properties"]
    assert bucket["BucketName"] == stage_config.CAPTURE_BUCKET.format(account=STAGING, region=REGION)
    assert bootstrap["EndpointKeyAlias"]["Properties"]["AliasName"] == stage_config.ENDPOINT_KEY_ALIAS
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": f"arn:aws:kms:{REGION}:{STAGING}:key/EndpointKey-id",
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    (expire,) = bucket["LifecycleConfiguration"]["Rules"]
    assert expire["ExpirationInDays"] == "90"  # the CaptureRetentionDays default, as a parameter is
    (deny,) = statements(bootstrap["CaptureBucketPolicy"]["Properties"]["PolicyDocument"])
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    writes = by_sid(bootstrap["ModelExecutionRole"])["WriteCapturedData"]
    assert f"arn:aws:s3:::{bucket['BucketName']}/*" in writes["Resource"]


def test_the_key_is_used_only_by_the_two_roles(bootstrap):
    key = bootstrap["EndpointKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    for statement in statements(key["KeyPolicy"]):
        if statement["Sid"] == "AccountAdministersTheKey":
            continue
        if statement["Sid"] == "MonitoringNotificationsPublish":
            # The monitoring topics' publishers, from this account only, and no more than SNS needs.
            assert statement["Principal"] == {"Service": ["events.amazonaws.com", "cloudwatch.amazonaws.com"]}
            assert statement["Action"] == ["kms:GenerateDataKey*", "kms:Decrypt"]
            assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": STAGING}}
            continue
        assert set(statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]) == {
            f"arn:aws:iam::{STAGING}:role/{stage_config.DEPLOY_ROLE_NAME}",
            f"arn:aws:iam::{STAGING}:role/{stage_config.EXECUTION_ROLE_NAME}",
        }


def test_no_wildcard_actions_and_no_managed_policies(bootstrap):
    assert_least_privilege(bootstrap)


@pytest.mark.parametrize("stage", ["dev", "staging", "prod"])
def test_each_stage_config_names_what_the_project_and_its_bootstrap_create(project, bootstrap_source, stage):
    """deploy/ read with the deploy CodeBuild project's variables: every stage's roles, key and
    capture bucket are those the bootstrap creates in its account, and the deploy may assume its role."""
    variables = {
        v["Name"]: v["Value"]
        for v in project["DeployProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    }
    variables["AWS_REGION"] = REGION
    promotion = stage_config.load_promotion(ROOT / "deploy" / "promotion.json", environ=variables)
    assert promotion.model_package_group == variables["MODEL_PACKAGE_GROUP_NAME"]
    config = promotion.stage(stage)
    account = {"dev": ACCOUNT, "staging": STAGING, "prod": PROD}[stage]
    assert config.account_id == account
    rendered = templates.render(
        bootstrap_source, {"ToolingAccountId": ACCOUNT}, account=account, region=config.region
    )
    created = rendered["Resources"]
    (assume,) = [s for s in role_statements(project["DeployRole"]) if s["Action"] == "sts:AssumeRole"]
    assert config.deploy_role_arn in assume["Resource"]
    assert (
        config.deploy_role_arn
        == f"arn:aws:iam::{account}:role/{created['ModelDeployRole']['Properties']['RoleName']}"
    )
    assert config.aws.model_execution_role_arn == (
        f"arn:aws:iam::{account}:role/{created['ModelExecutionRole']['Properties']['RoleName']}"
    )
    alias = created["EndpointKeyAlias"]["Properties"]["AliasName"]
    assert config.aws.kms_key_arn == f"arn:aws:kms:{config.region}:{account}:{alias}"
    assert config.aws.data_capture_s3_uri.startswith(
        f"s3://{created['CaptureBucket']['Properties']['BucketName']}/"
    )

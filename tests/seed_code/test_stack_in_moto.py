"""The templates create a stack in moto's CloudFormation, for the resource types moto supports.

moto creates KMS keys and aliases, S3 buckets (with their encryption; not versioning or the public
access block), IAM roles, log groups, SQS queues and EventBridge rules from a template; it does not
know CodeCommit, CodeBuild, CodePipeline, SageMaker model
package groups and code repositories, bucket and queue policies, or schedules. The test drops those
resources and stands a placeholder in for every reference to them, then checks what moto made.
"""

import json
import re
import warnings

import boto3
import pytest
from moto import mock_aws
from seed_support import ACCOUNT, BUCKET, PROJECT, PROJECT_ID, REGION

#: The resource types of these templates that moto's CloudFormation creates.
SUPPORTED = {
    "AWS::KMS::Key",
    "AWS::KMS::Alias",
    "AWS::S3::Bucket",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::SQS::Queue",
    "AWS::Events::Rule",
}


def reduced(template: dict) -> dict:
    """``template`` with only the SUPPORTED resources; references to the others become placeholders."""
    dropped = {name for name, r in template["Resources"].items() if r["Type"] not in SUPPORTED}
    sub_reference = re.compile(r"\$\{(" + "|".join(map(re.escape, sorted(dropped))) + r")(\.[A-Za-z.]+)?\}")

    def placeholder(name: str, attribute: str | None = None) -> str:
        # A state machine's Ref is its ARN, which an EventBridge target must be.
        arn = attribute or template["Resources"][name]["Type"] == "AWS::StepFunctions::StateMachine"
        return f"arn:aws:placeholder:{REGION}:{ACCOUNT}:{name}" if arn else f"placeholder-{name.lower()}"

    def visit(node):
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"} and node["Ref"] in dropped:
            return placeholder(node["Ref"])
        if set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in dropped:
            return placeholder(*node["Fn::GetAtt"])
        if set(node) == {"Fn::Sub"}:
            args = node["Fn::Sub"]
            text = args if isinstance(args, str) else args[0]
            text = sub_reference.sub(lambda m: placeholder(m.group(1), m.group(2)), text)
            return {"Fn::Sub": text if isinstance(args, str) else [text, visit(args[1])]}
        return {key: visit(value) for key, value in node.items()}

    kept = visit({name: r for name, r in template["Resources"].items() if name not in dropped})
    # moto orders creation by DependsOn only; CloudFormation also follows Ref, GetAtt and Sub.
    for name, resource in kept.items():
        text = json.dumps(resource.get("Properties", {}))
        needs = {
            other for other in kept if other != name and re.search(rf'"{other}"|\$\{{{other}[.}}]', text)
        }
        if needs:
            resource["DependsOn"] = sorted(needs)
        if resource["Type"] == "AWS::KMS::Key" and "Tags" in resource["Properties"]:
            # moto 5 reads a key's CloudFormation tags in the KMS API's shape (TagKey, TagValue).
            tags = resource["Properties"]["Tags"]
            resource["Properties"]["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in tags]
    out = {key: value for key, value in template.items() if key not in ("Rules", "Resources", "Outputs")}
    out["Resources"] = kept
    return out


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)  # the tooling account of seed_support
    with mock_aws(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns about properties it does not model
        yield boto3.Session(region_name=REGION)


def create_stack(session, template: dict, parameters: dict) -> list[dict]:
    cfn = session.client("cloudformation")
    cfn.create_stack(
        StackName="project",
        TemplateBody=json.dumps(reduced(template)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    (stack,) = cfn.describe_stacks(StackName="project")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return cfn.list_stack_resources(StackName="project")["StackResourceSummaries"]


def test_the_project_stack_creates_its_key_bucket_roles_queue_and_rules(aws, project_source):
    created = create_stack(aws, project_source, PROJECT)
    # Without MlflowTrackingServerArn there is no tracker, its role or its rule.
    expected = {
        n
        for n, r in project_source["Resources"].items()
        if r["Type"] in SUPPORTED and r.get("Condition") != "HasTrackingServer"
    }
    # moto lists each resource whose condition is false as a blank summary.
    assert {r["LogicalResourceId"] for r in created if r["LogicalResourceId"]} == expected

    kms = aws.client("kms")
    key_id = next(r["PhysicalResourceId"] for r in created if r["LogicalResourceId"] == "ArtifactKey")
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    s3 = aws.client("s3")
    (encryption,) = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}",
    }
    aliases = {a["AliasName"] for a in kms.list_aliases(KeyId=key_id)["Aliases"]}
    assert aliases == {f"alias/sagemaker-mlops-{PROJECT_ID}"}

    iam = aws.client("iam")
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("sagemaker-mlops-")}
    assert roles == {
        f"sagemaker-mlops-{PROJECT_ID}-{suffix}"
        for suffix in (
            "pipeline",
            "build",
            "deploy",
            "test",
            "codepipeline",
            "events",
            "scheduler",
            "retraining",
        )
    }
    for role in roles:
        assert not iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        # One inline policy, named for what the role does (moto keeps its document as Python text).
        assert iam.list_role_policies(RoleName=role)["PolicyNames"] == [role.rsplit("-", 1)[1]]

    events = aws.client("events")
    rules = {r["Name"]: r for r in events.list_rules(NamePrefix=f"sagemaker-mlops-{PROJECT_ID}-")["Rules"]}
    assert set(rules) == {
        f"sagemaker-mlops-{PROJECT_ID}-{name}"
        for name in ("push-to-main", "push-to-branch", "model-approved", "data-arrived", "drift")
    }
    drift = json.loads(rules[f"sagemaker-mlops-{PROJECT_ID}-drift"]["EventPattern"])
    assert drift["detail-type"] == ["CloudWatch Alarm State Change"]
    approved = json.loads(rules[f"sagemaker-mlops-{PROJECT_ID}-model-approved"]["EventPattern"])
    assert approved["detail"]["ModelApprovalStatus"] == ["Approved"]
    queue = aws.client("sqs").get_queue_url(QueueName=f"sagemaker-mlops-{PROJECT_ID}-trigger-dlq")["QueueUrl"]
    queue_arn = aws.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    for name in rules:
        (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": queue_arn}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 10
    (data,) = events.list_targets_by_rule(Rule=f"sagemaker-mlops-{PROJECT_ID}-data-arrived")["Targets"]
    assert data["InputTransformer"] == {
        "InputPathsMap": {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
        "InputTemplate": '{"InputDataUrl": "s3://<bucket>/<key>"}',
    }

    logs = aws.client("logs")
    (group,) = logs.describe_log_groups(logGroupNamePrefix=f"/aws/codebuild/sagemaker-mlops-{PROJECT_ID}")[
        "logGroups"
    ]
    assert group["retentionInDays"] == 365


def test_the_bootstrap_stack_creates_the_fixed_names_the_stage_configs_use(aws, bootstrap_source):
    created = create_stack(aws, bootstrap_source, {"ToolingAccountId": "444455556666"})
    assert {r["LogicalResourceId"] for r in created} == {
        "EndpointKey",
        "EndpointKeyAlias",
        "CaptureBucket",
        "ModelExecutionRole",
        "ModelDeployRole",
        "MonitoringEventsRole",
    }
    iam = aws.client("iam")
    # The name pipelines/stage_monitor/aws.py gives the stage's drift rule to reach the tooling bus.
    from pipelines.stage_monitor.aws import EVENTS_ROLE_NAME

    events_trust = iam.get_role(RoleName=EVENTS_ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    assert events_trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    trust = iam.get_role(RoleName="MlopsModelDeployRole")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::444455556666:root"}
    assert iam.get_role(RoleName="MlopsModelExecutionRole")["Role"]["RoleName"] == "MlopsModelExecutionRole"
    aliases = {a["AliasName"] for a in aws.client("kms").list_aliases()["Aliases"]}
    assert "alias/sagemaker-mlops-endpoint" in aliases
    capture = f"sagemaker-mlops-capture-{ACCOUNT}-{REGION}"
    (encryption,) = aws.client("s3").get_bucket_encryption(Bucket=capture)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_the_reduction_keeps_every_supported_resource(project_source):
    kept = reduced(project_source)["Resources"]
    assert set(kept) == {n for n, r in project_source["Resources"].items() if r["Type"] in SUPPORTED}
    # A reference to a dropped resource (the CodePipelines) becomes a placeholder.
    events_role = json.dumps(kept["EventsRole"])
    assert "placeholder-buildpipeline" in events_role and "BuildPipeline" not in events_role


def test_with_a_tracking_server_the_tracker_role_names_it_and_the_build_role_does_not(aws, project_source):
    server = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/team"
    create_stack(aws, project_source, {**PROJECT, "MlflowTrackingServerArn": server})
    iam = aws.client("iam")
    document = iam.get_role_policy(RoleName=f"sagemaker-mlops-{PROJECT_ID}-tracker", PolicyName="tracker")
    text = json.dumps(document["PolicyDocument"], default=str)
    assert server in text and "sagemaker-mlflow:LogBatch" in text
    document = iam.get_role_policy(RoleName=f"sagemaker-mlops-{PROJECT_ID}-build", PolicyName="build")
    assert "sagemaker-mlflow" not in json.dumps(document["PolicyDocument"], default=str)
    rules = aws.client("events").list_rules(NamePrefix=f"sagemaker-mlops-{PROJECT_ID}-execution-ended")
    assert [r["Name"] for r in rules["Rules"]] == [f"sagemaker-mlops-{PROJECT_ID}-execution-ended"]

"""The AWS backend of promotion.

moto: the whole flow across three accounts (STS assume_role into each stage's deploy role), the
endpoint stacks created and updated through change sets, smoke tests through sagemaker-runtime, and
the records in the dev account's Model Registry. What moto cannot do (fail a stack, roll it back,
keep a stack in progress, refuse a role) is checked with a scripted CloudFormation double, and the
endpoint template itself by pure-function tests.
"""

import dataclasses
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import boto3
import botocore.session
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.errors import AwsError, NotFoundError
from pipelines.promotion import policies
from pipelines.promotion.aws import AwsDeployer, endpoint_template, stack_name, template_body
from pipelines.promotion.config import load_promotion, load_stage
from pipelines.promotion.flow import SAMPLE_FILENAME, Promotion, PromotionError, key
from pipelines.registry.aws import AwsModelRegistry
from pipelines.registry.base import ModelPackage

# moto's CloudFormation skips the autoscaling resources (with this warning); the template tests
# above check them.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..ApplicationAutoScaling:UserWarning")

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
TOOLING = "123456789012"  # moto's default account: the dev/tooling account
REGION = "us-east-1"
GROUP = "churn-p-abc123"
BUCKET = "sagemaker-mlops-artifacts"
ROWS = ["0.5,1.0,,2.0", "1.5,0.0,3.0,1.0", "2.5,1.0,1.0,0.0"]
PREDICTIONS = [0.125, 0.5, 0.875]
ENVIRON = {
    "DEV_ACCOUNT_ID": TOOLING,
    "STAGING_ACCOUNT_ID": "222222222222",
    "PROD_ACCOUNT_ID": "333333333333",
    "MODEL_PACKAGE_GROUP_NAME": GROUP,
    "SAGEMAKER_PROJECT_NAME": "churn",
    "AWS_REGION": REGION,
}


# A data-quality baseline as Preprocess writes it, for the stages whose monitoring is on.
BASELINE = {
    "statistics.json": {
        "version": 0.0,
        "dataset": {"item_count": 3},
        "features": [{"name": f"_c{i}", "inferred_type": "Fractional"} for i in range(4)],
    },
    "constraints.json": {
        "version": 0.0,
        "features": [
            {"name": f"_c{i}", "inferred_type": "Fractional", "completeness": 1.0} for i in range(4)
        ],
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "distribution_constraints": {"comparison_threshold": 0.1},
        },
    },
}


def package(version=1, account=TOOLING, group="churn") -> ModelPackage:
    return ModelPackage(
        group=group,
        version=version,
        arn=f"arn:aws:sagemaker:{REGION}:{account}:model-package/{group.lower()}/{version}",
        approval_status="Approved",
        created=datetime(2026, 1, 1, tzinfo=timezone.utc),
        model_data_url="s3://b/m/model.tar.gz",
        image_uri="image",
    )


def without_monitoring(config):
    """The stages without monitors: the endpoint's own tests; the monitors have theirs
    (tests/pipelines/stage_monitor/test_aws_template.py)."""
    return dataclasses.replace(
        config, stages=tuple(dataclasses.replace(s, monitoring=None) for s in config.stages)
    )


@pytest.fixture
def config():
    return without_monitoring(load_promotion(DEPLOY / "promotion.json", ENVIRON))


# ------------------------------------------------------------------------------------ the template


def test_a_serverless_stage_has_no_volume_key_and_no_autoscaling(config):
    template = endpoint_template(config.stage("dev"), package())
    resources = template["Resources"]
    assert set(resources) == {"Model", "EndpointConfig", "Endpoint"}
    (variant,) = resources["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "KmsKeyId" not in resources["EndpointConfig"]["Properties"]
    assert "DataCaptureConfig" not in resources["EndpointConfig"]["Properties"]  # dev captures 0 %


def test_the_model_is_made_from_the_dev_accounts_model_package(config):
    stage = config.stage("prod")
    model = endpoint_template(stage, package(7))["Resources"]["Model"]["Properties"]
    assert model["PrimaryContainer"] == {
        "ModelPackageName": f"arn:aws:sagemaker:{REGION}:{TOOLING}:model-package/churn/7"
    }
    assert model["ExecutionRoleArn"] == "arn:aws:iam::333333333333:role/MlopsModelExecutionRole"
    tags = {tag["Key"]: tag["Value"] for tag in model["Tags"]}
    assert tags["sagemaker-mlops:model-version"] == "7" and tags["sagemaker-mlops:stage"] == "prod"


def test_instances_get_the_stages_key_data_capture_and_autoscaling_per_variant(config):
    stage = config.stage("prod")
    resources = endpoint_template(stage, package())["Resources"]
    endpoint_config = resources["EndpointConfig"]["Properties"]
    key_arn = "arn:aws:kms:us-east-1:333333333333:alias/sagemaker-mlops-endpoint"
    assert endpoint_config["KmsKeyId"] == key_arn
    capture = endpoint_config["DataCaptureConfig"]
    assert capture["InitialSamplingPercentage"] == 20 and capture["KmsKeyId"] == key_arn
    assert capture["DestinationS3Uri"] == "s3://sagemaker-mlops-capture-333333333333-us-east-1/churn-prod/"
    (variant,) = endpoint_config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 2)
    target = resources["ScalableTargetAlltraffic"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)
    assert target["ResourceId"]["Fn::Join"][1][-1] == "/variant/AllTraffic"
    policy = resources["ScalingPolicyAlltraffic"]["Properties"]
    assert policy["ScalingTargetId"] == {"Ref": "ScalableTargetAlltraffic"}
    # Deploys keep the autoscaler's instance counts and take the weights and the data capture
    # (so a changed capture percentage is applied) from the config.
    endpoint = resources["Endpoint"]["Properties"]
    assert endpoint["RetainAllVariantProperties"] is True
    excluded = [p["VariantPropertyType"] for p in endpoint["ExcludeRetainedVariantProperties"]]
    assert sorted(excluded) == ["DataCaptureConfig", "DesiredWeight"]
    assert "DesiredInstanceCount" not in excluded
    # Each is a value the SageMaker API model accepts.
    model = botocore.session.get_session().get_service_model("sagemaker")
    assert set(excluded) <= set(model.shape_for("VariantPropertyType").enum)
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 700.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )


def test_ab_variants_keep_their_weights_and_each_scales(tmp_path):
    document = json.loads((DEPLOY / "stages" / "prod.json").read_text())
    document["endpoint"]["variants"] = [
        {"name": "Current", "instance_type": "ml.m5.large", "initial_weight": 0.9},
        {"name": "Challenger", "instance_type": "ml.c5.large", "initial_weight": 0.1},
    ]
    path = tmp_path / "prod.json"
    path.write_text(json.dumps(document))
    resources = endpoint_template(load_stage(path, "prod", environ={}), package())["Resources"]
    variants = resources["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in variants] == [
        ("Current", 0.9),
        ("Challenger", 0.1),
    ]
    # Logical ids follow the variant names, so reordering the variants replaces no scaling target.
    scaling = {
        "ScalableTargetCurrent",
        "ScalableTargetChallenger",
        "ScalingPolicyCurrent",
        "ScalingPolicyChallenger",
    }
    assert scaling <= set(resources)
    document["endpoint"]["variants"].reverse()
    path.write_text(json.dumps(document))
    reordered = endpoint_template(load_stage(path, "prod", environ={}), package())["Resources"]
    assert {k: v for k, v in reordered.items() if k in scaling} == {
        k: v for k, v in resources.items() if k in scaling
    }


def test_the_same_stage_and_version_give_the_same_template_bytes(config):
    stage = config.stage("staging")
    first = template_body(endpoint_template(stage, package(3)))
    assert first == template_body(endpoint_template(stage, package(3)))
    assert first != template_body(endpoint_template(stage, package(4)))


def test_endpoint_config_properties_are_names_sagemakers_api_knows(config):
    """AWS::SageMaker::EndpointConfig passes its properties to CreateEndpointConfig: every name is
    checked against botocore's model of that call."""
    shapes = boto3.client("sagemaker", region_name=REGION).meta.service_model
    endpoint_config = shapes.operation_model("CreateEndpointConfig").input_shape.members
    variant = endpoint_config["ProductionVariants"].member.members
    capture = endpoint_config["DataCaptureConfig"].members
    for stage in config.stages:
        properties = endpoint_template(stage, package())["Resources"]["EndpointConfig"]["Properties"]
        assert set(properties) <= set(endpoint_config)
        for item in properties["ProductionVariants"]:
            assert set(item) <= set(variant)
        assert set(properties.get("DataCaptureConfig", {})) <= set(capture)


# ------------------------------------------------------------------------------ the policies


def test_the_model_package_group_policy_lets_the_two_accounts_create_models_only():
    group_arn = f"arn:aws:sagemaker:{REGION}:{TOOLING}:model-package-group/Churn-p-abc"
    policy = policies.model_package_group_policy(group_arn, ["333333333333", "222222222222", "222222222222"])
    (statement,) = policy["Statement"]
    assert statement["Principal"]["AWS"] == [
        "arn:aws:iam::222222222222:root",
        "arn:aws:iam::333333333333:root",
    ]
    # What a Model made from a package in another account needs; no listing, no updating.
    assert statement["Action"] == ["sagemaker:CreateModel", "sagemaker:DescribeModelPackage"]
    # Package ARNs carry the group in lower case; IAM compares ARNs case-sensitively.
    assert statement["Resource"] == f"arn:aws:sagemaker:{REGION}:{TOOLING}:model-package/churn-p-abc/*"


def test_the_bucket_policy_reaches_the_models_and_serving_code_the_definition_writes():
    golden = (ROOT / "tests" / "pipelines" / "churn" / "golden" / "definition.json").read_text()
    definition = json.loads(golden)
    (tune,) = [step for step in definition["Steps"] if step["Type"] == "Tuning"]
    model_output = tune["Arguments"]["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"]
    serving_code = re.search(r'"SAGEMAKER_SUBMIT_DIRECTORY": "([^"]+)"', golden).group(1)
    (statement,) = policies.artifact_bucket_statements("<bucket>", "ChurnPipeline", ["222222222222"])
    allowed = [arn.removeprefix("arn:aws:s3:::").removesuffix("*") for arn in statement["Resource"]]
    for uri in (model_output + "/", serving_code):
        assert any(uri.removeprefix("s3://").startswith(prefix) for prefix in allowed), uri
    assert statement["Action"] == ["s3:GetObject"]  # no listing, no writing, no training data
    assert not any("/input" in arn or arn.endswith(":::<bucket>/*") for arn in statement["Resource"])


def test_the_key_policy_decrypts_only_through_s3():
    (statement,) = policies.kms_key_statements(REGION, ["222222222222", "333333333333"])
    assert statement["Action"] == ["kms:Decrypt"]
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    with pytest.raises(ValueError):
        policies.kms_key_statements(REGION, [])


# ------------------------------------------------------------------------------ moto, end to end


def queue_answers(account: str) -> None:
    """What the stage's endpoint answers, in the order the smoke test asks (moto's canned replies)."""
    results = [{"Body": str(p), "ContentType": "text/csv"} for p in PREDICTIONS]
    results.append({"Body": json.dumps({"predictions": [PREDICTIONS[0]]}), "ContentType": "application/json"})
    reply = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={"account_id": account, "region": REGION, "results": results},
        timeout=5,
    )
    assert reply.status_code == 201


@pytest.fixture
def _sagemaker_keeps_fields_not_sent(monkeypatch):
    """UpdateModelPackage changes only the fields it is sent; moto 5.2.5 clears the others (the
    status on a metadata update, the metadata on an approval), which would erase the records."""
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.update_model_package

    def update(self, model_package_arn, **fields):
        name = self.model_package_name_mapping.get(model_package_arn, model_package_arn)
        current = self.model_packages[name]
        if not fields.get("model_approval_status"):
            fields["model_approval_status"] = current.model_approval_status
            fields["approval_description"] = current.approval_description
        if fields.get("customer_metadata_properties") is None:
            fields["customer_metadata_properties"] = current.customer_metadata_properties
        return original(self, model_package_arn=model_package_arn, **fields)

    monkeypatch.setattr(SageMakerModelBackend, "update_model_package", update)


@pytest.fixture
def world(monkeypatch, _sagemaker_keeps_fields_not_sent):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        registry = AwsModelRegistry(session.client("sagemaker"))
        registry.ensure_group(GROUP)
        lines = []
        deployer = AwsDeployer(session, poll_seconds=0, sleep=lambda _: None, say=lines.append)
        # moto's CloudFormation has no Model Monitor, CloudWatch alarm or topic policy resources:
        # the stacks it creates go without monitors.
        config = without_monitoring(load_promotion(DEPLOY / "promotion.json", ENVIRON))
        promotion = Promotion(config, registry, deployer, say=lines.append)
        yield promotion, registry, deployer, s3, lines


def register(registry, s3, approve=True) -> int:
    prefix = f"{GROUP}/exec-{len(registry.list_versions(GROUP)) + 1}/evaluation"
    sample = {"content_type": "text/csv", "rows": ROWS, "predictions": PREDICTIONS}
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{SAMPLE_FILENAME}", Body=json.dumps(sample).encode())
    baseline = f"{GROUP}/exec-{len(registry.list_versions(GROUP)) + 1}/baseline"
    for name, document in BASELINE.items():
        s3.put_object(Bucket=BUCKET, Key=f"{baseline}/{name}", Body=json.dumps(document).encode())
    metrics = {
        "ModelQuality": {
            "Statistics": {
                "ContentType": "application/json",
                "S3Uri": f"s3://{BUCKET}/{prefix}/evaluation.json",
            }
        },
        "ModelDataQuality": {
            name.split(".")[0].capitalize(): {
                "ContentType": "application/json",
                "S3Uri": f"s3://{BUCKET}/{baseline}/{name}",
            }
            for name in BASELINE
        },
    }
    version = registry.register(
        GROUP,
        model_data_url=f"s3://{BUCKET}/{GROUP}/tuning/model.tar.gz",
        image_uri="image",
        model_metrics=metrics,
    ).version
    if approve:
        registry.update_approval(GROUP, version, "Approved", by="tester")
    return version


def stacks_in(deployer, stage):
    cfn = deployer.stage_session(stage).client("cloudformation")
    return {s["StackName"]: s for s in cfn.describe_stacks()["Stacks"]}


def test_a_version_goes_dev_staging_prod_each_in_its_own_account(world):
    promotion, registry, deployer, s3, lines = world
    version = register(registry, s3)
    for stage, account in (("dev", TOOLING), ("staging", "222222222222")):
        queue_answers(account)
        report = promotion.promote(stage)
        assert report.passed and report.rows == len(ROWS)
    with pytest.raises(PromotionError, match="needs a manual approval"):
        promotion.promote("prod")
    queue_answers("333333333333")
    promotion.promote("prod", approved_by="CodePipeline manual approval in execution 42")

    for stage in promotion.config.stages:
        assert (
            deployer.stage_session(stage).client("sts").get_caller_identity()["Account"] == stage.account_id
        )
        stacks = stacks_in(deployer, stage)
        assert list(stacks) == [stack_name(stage)], stage.name  # one stack, in its own account only
        assert stacks[stack_name(stage)]["StackStatus"] == "CREATE_COMPLETE"
        body = (
            deployer.stage_session(stage)
            .client("cloudformation")
            .get_template(StackName=stack_name(stage))["TemplateBody"]
        )
        body = body if isinstance(body, dict) else json.loads(body)
        arn = body["Resources"]["Model"]["Properties"]["PrimaryContainer"]["ModelPackageName"]
        assert arn == registry.get_version(GROUP, version).arn
    assert promotion.status() == {"dev": version, "staging": version, "prod": version}
    meta = registry.get_version(GROUP, version).customer_metadata
    assert meta[key("prod", "approved-by")] == "CodePipeline manual approval in execution 42"
    assert {key(s, "tests-passed-at") for s in ("dev", "staging", "prod")} <= set(meta)
    assert set(promotion.where(version)) == {"dev", "staging", "prod"}


def test_a_new_version_updates_the_stack_and_a_redeploy_changes_nothing(world):
    promotion, registry, deployer, s3, lines = world
    first = register(registry, s3)
    queue_answers(TOOLING)
    promotion.promote("dev")
    second = register(registry, s3)
    promotion.promote("dev")  # moto answers repeated requests with the replies it gave them
    stage = promotion.config.stage("dev")
    cfn = deployer.stage_session(stage).client("cloudformation")
    assert cfn.describe_stacks(StackName=stack_name(stage))["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    assert promotion.status()["dev"] == second
    assert key("dev", "retired-at") in registry.get_version(GROUP, first).customer_metadata
    # Promoting what already serves is a no-op: no deploy and no record, so a deploy pipeline
    # started twice for one version (or by its own records) changes nothing.
    before = registry.get_version(GROUP, second).customer_metadata
    lines.clear()
    assert promotion.promote("dev", second).rows == 0
    assert "already serves and passed its smoke tests" in lines[0] and len(lines) == 1
    assert registry.get_version(GROUP, second).customer_metadata == before
    # Forced, the stack is asked again and has no change to make.
    lines.clear()
    promotion.promote("dev", second, force=True)
    assert any("nothing to change" in line for line in lines)
    promotion.rollback("dev")
    assert promotion.status()["dev"] == first


def test_rejecting_the_version_in_prod_brings_the_previous_one_back(world):
    promotion, registry, deployer, s3, lines = world
    accounts = {s.name: s.account_id for s in promotion.config.stages}
    first = register(registry, s3)
    for name in ("dev", "staging", "prod"):
        queue_answers(accounts[name])
        promotion.promote(name, approved_by="approver")
    second = register(registry, s3)
    for name in ("dev", "staging", "prod"):
        promotion.promote(name, approved_by="approver")
    assert set(promotion.status().values()) == {second}
    assert promotion.reject(second, by="tester", reason="drift") == ["dev", "staging", "prod"]
    assert set(promotion.status().values()) == {first}
    with pytest.raises(PromotionError, match="is Rejected"):
        promotion.promote("dev", second)


def test_a_stage_that_never_served_is_undeployed_without_error(world):
    promotion, registry, deployer, s3, lines = world
    register(registry, s3)
    queue_answers(TOOLING)
    promotion.promote("dev")
    staging, dev = promotion.config.stage("staging"), promotion.config.stage("dev")

    deployer.undeploy(staging)
    deployer.undeploy(staging)

    assert stacks_in(deployer, staging) == {}
    # Only the stage named was touched: dev still serves from its stack.
    assert stacks_in(deployer, dev)[stack_name(dev)]["StackStatus"] == "CREATE_COMPLETE"
    assert promotion.status()["dev"] == 1


def test_the_sample_is_read_from_the_dev_accounts_bucket(world):
    promotion, registry, deployer, s3, lines = world
    s3.put_object(Bucket=BUCKET, Key=f"e/{SAMPLE_FILENAME}", Body=b'{"rows": []}')
    used = []
    reading = AwsDeployer(
        deployer.session,
        clients=lambda session, service, region: used.append((session, service)) or session.client(service),
    )
    reading.stage_session(promotion.config.stage("prod"))  # a stage session exists, and is not used
    used.clear()
    assert reading.read(f"s3://{BUCKET}/e/{SAMPLE_FILENAME}") == b'{"rows": []}'
    assert used == [(deployer.session, "s3")]  # moto shares S3 across accounts: the session tells
    with pytest.raises(NotFoundError, match="does not exist"):
        deployer.read(f"s3://{BUCKET}/missing/{SAMPLE_FILENAME}")
    with pytest.raises(PromotionError, match="not an s3://bucket/key URI"):
        deployer.read("https://example.com/x")


# ------------------------------------------------------------------ what moto cannot do: a double


class ScriptedCloudFormation:
    """A CloudFormation client whose stack goes through the statuses it is given."""

    def __init__(self, statuses, events=(), change_set_status="CREATE_COMPLETE", reason="", outputs=None):
        self.outputs = outputs
        self.statuses = list(statuses)
        self.events = list(events)
        self.change_set = {"Status": change_set_status, "StatusReason": reason}
        self.calls = []

    def describe_stacks(self, StackName):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationError",
                        "Message": f"Stack with id {StackName} does not exist",
                    }
                },
                "DescribeStacks",
            )
        stack = {"StackName": StackName, "StackStatus": status}
        if self.outputs:
            stack["Outputs"] = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]
        return {"Stacks": [stack]}

    def __getattr__(self, name):
        def call(**kwargs):
            self.calls.append(name)
            if name == "describe_change_set":
                return self.change_set
            if name == "describe_stack_events":
                return {"StackEvents": self.events}
            if name == "describe_stack_resource":
                arn = f"arn:aws:sagemaker:{REGION}:333333333333:endpoint/churn-prod"
                return {"StackResourceDetail": {"PhysicalResourceId": arn}}
            return {}

        return call


class FakeSts:
    """Answers assume_role with credentials valid for an hour, and counts the calls."""

    def __init__(self):
        self.assumed = []

    def assume_role(self, RoleArn, **kwargs):
        from datetime import timedelta

        self.assumed.append(RoleArn)
        return {
            "Credentials": {
                "AccessKeyId": "AKIA0000000000000000",
                "SecretAccessKey": "s" * 40,
                "SessionToken": "token",
                "Expiration": datetime.now(timezone.utc) + timedelta(hours=1),
            }
        }


def scripted_deployer(cfn, endpoint_status="InService", running_config="cfg-new", **kwargs):
    """An AwsDeployer whose clients are doubles: CloudFormation goes through ``cfn``'s statuses and
    the endpoint answers with ``endpoint_status`` on ``running_config``."""
    endpoint = {
        "EndpointStatus": endpoint_status,
        "EndpointArn": "arn:endpoint",
        "EndpointConfigName": running_config,
        "FailureReason": "OOM\n  in the container",
    }
    sagemaker = type("SageMaker", (), {"describe_endpoint": lambda _self, **kw: endpoint})()
    doubles = {"sts": FakeSts(), "cloudformation": cfn, "sagemaker": sagemaker}
    return AwsDeployer(
        boto3.Session(region_name=REGION),
        poll_seconds=0,
        sleep=lambda _: None,
        say=print,
        clients=lambda _session, service, _region: doubles[service],
        **kwargs,
    )


def failure(reason, logical="Endpoint", status="UPDATE_FAILED"):
    return {"LogicalResourceId": logical, "ResourceStatus": status, "ResourceStatusReason": reason}


def test_a_failed_update_rolls_back_and_names_cloudformations_reason(config):
    events = [
        failure("Resource update cancelled", "EndpointConfig"),
        failure("Endpoint churn-prod failed health checks: the container did not answer /ping"),
    ]
    cfn = ScriptedCloudFormation(
        ["UPDATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE"], events
    )
    with pytest.raises(PromotionError) as caught:
        scripted_deployer(cfn).deploy(config.stage("prod"), package())
    message = str(caught.value)
    assert "UPDATE_ROLLBACK_COMPLETE" in message and "did not answer /ping" in message
    assert "what served before still serves" in message and "cancelled" not in message
    assert cfn.calls.count("execute_change_set") == 1


def test_a_failed_first_create_is_deleted_before_the_next_deploy(config):
    cfn = ScriptedCloudFormation(["ROLLBACK_COMPLETE", None, "CREATE_IN_PROGRESS", "CREATE_COMPLETE"])
    scripted_deployer(cfn).deploy(config.stage("prod"), package())
    assert cfn.calls[:2] == ["delete_stack", "create_change_set"]


def test_a_stack_in_progress_is_left_alone(config):
    cfn = ScriptedCloudFormation(["UPDATE_IN_PROGRESS"])
    with pytest.raises(PromotionError, match="another deploy is running"):
        scripted_deployer(cfn).deploy(config.stage("prod"), package())
    assert cfn.calls == []


def test_a_failed_change_set_is_an_error_unless_it_has_no_changes(config):
    cfn = ScriptedCloudFormation(
        ["UPDATE_COMPLETE"], change_set_status="FAILED", reason="Template format error"
    )
    with pytest.raises(PromotionError, match="Template format error"):
        scripted_deployer(cfn).deploy(config.stage("prod"), package())


def test_an_endpoint_that_fails_is_reported(config):
    cfn = ScriptedCloudFormation([None, "CREATE_COMPLETE"])
    with pytest.raises(PromotionError, match="churn-prod is Failed: OOM in the container$"):
        scripted_deployer(cfn, endpoint_status="Failed").deploy(config.stage("prod"), package())


def test_waiting_gives_up_at_the_timeout(config):
    ticks = iter(range(0, 10_000, 600))
    cfn = ScriptedCloudFormation([None, "CREATE_IN_PROGRESS"])
    deployer = scripted_deployer(cfn, timeout_s=1800, clock=lambda: next(ticks))
    with pytest.raises(
        PromotionError, match="gave up waiting for stack sagemaker-mlops-churn-prod after 1800 s"
    ):
        deployer.deploy(config.stage("prod"), package())


def test_a_refused_deploy_role_is_an_aws_error_naming_the_role(config):
    session = boto3.Session(region_name=REGION)
    sts = session.client("sts")
    stub = Stubber(sts)
    stub.add_client_error("assume_role", "AccessDenied", "not authorized to perform: sts:AssumeRole")
    stub.activate()
    deployer = AwsDeployer(session, clients=lambda _session, service, region: sts)
    with pytest.raises(AwsError, match="assuming arn:aws:iam::222222222222:role/MlopsModelDeployRole"):
        deployer.stage_session(config.stage("staging"))


def test_a_model_error_answers_with_the_containers_status(config):
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    stub = Stubber(runtime)
    stub.add_client_error(
        "invoke_endpoint",
        "ModelError",
        "Received client error (415) from primary",
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": 415,
            "OriginalMessage": "unsupported",
            "LogStreamArn": "arn:log",
        },
    )
    stub.activate()

    sts = FakeSts()
    doubles = {"sts": sts, "sagemaker-runtime": runtime}
    deployer = AwsDeployer(
        boto3.Session(region_name=REGION), clients=lambda _session, service, _region: doubles[service]
    )
    status, body = deployer.invoke(config.stage("prod"), b"x", "text/plain", "text/csv")
    assert status == 415 and b"415" in body
    # Invoked as the prod deploy role, in prod's account.
    assert sts.assumed == ["arn:aws:iam::333333333333:role/MlopsModelDeployRole"]


# ------------------------------------------------------------- the CLI, as the buildspec calls it


def unmonitored_deploy(tmp_path) -> Path:
    """The shipped stage files without their monitoring: moto's CloudFormation cannot create monitors."""
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    for path in (target / "stages").glob("*.json"):
        document = json.loads(path.read_text())
        document.pop("monitoring", None)
        path.write_text(json.dumps(document))
    return target / "promotion.json"


def test_the_buildspec_calls_select_then_one_deploy_per_stage(world, monkeypatch, capsys, tmp_path):
    from pipelines.promotion import cli

    promotion, registry, deployer, s3, lines = world
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    version = register(registry, s3)
    register(registry, s3, approve=False)  # a newer Pending version is never selected
    config = str(unmonitored_deploy(tmp_path))
    assert cli.main(["--backend", "aws", "--config", config, "select"]) == 0
    arn = capsys.readouterr().out.strip()
    assert arn == registry.get_version(GROUP, version).arn
    assert cli.main(["--backend", "aws", "--config", config, "select", "--version", "latest"]) == 0
    assert capsys.readouterr().out.strip() == arn
    queue_answers(TOOLING)
    assert (
        cli.main(["--backend", "aws", "--config", config, "deploy", "--stage", "dev", "--version", arn]) == 0
    )
    assert "dev: smoke tests passed" in capsys.readouterr().out
    deploy = ["--backend", "aws", "--config", config, "deploy", "--version", arn, "--stage"]
    assert cli.main([*deploy, "prod"]) == 1
    assert "has not passed the smoke tests in staging" in capsys.readouterr().err
    queue_answers("222222222222")
    assert cli.main([*deploy, "staging"]) == 0
    capsys.readouterr()
    assert cli.main([*deploy, "prod"]) == 1
    assert "needs a manual approval" in capsys.readouterr().err


def test_selecting_a_pending_version_fails_in_one_line(world, monkeypatch, capsys):
    from pipelines.promotion import cli

    promotion, registry, deployer, s3, lines = world
    monkeypatch.setenv("MODEL_PACKAGE_GROUP_NAME", GROUP)
    pending = register(registry, s3, approve=False)
    config = str(DEPLOY / "promotion.json")
    assert cli.main(["--backend", "aws", "--config", config, "select", "--version", str(pending)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "PendingManualApproval, not Approved" in err


def test_the_deploy_roles_credentials_refresh_before_they_expire(config):
    from datetime import timedelta

    session = boto3.Session(region_name=REGION)
    sts = session.client("sts")
    stub = Stubber(sts)
    now = datetime.now(timezone.utc)
    for index, expiry in enumerate((now + timedelta(seconds=30), now + timedelta(hours=1))):
        credentials = {
            "AccessKeyId": f"AKIA{index:016d}",
            "SecretAccessKey": "s" * 40,
            "SessionToken": f"token-{index}",
            "Expiration": expiry,
        }
        stub.add_response("assume_role", {"Credentials": credentials})
    stub.activate()
    deployer = AwsDeployer(session, clients=lambda _session, service, region: sts)
    frozen = deployer.stage_session(config.stage("prod")).get_credentials().get_frozen_credentials()
    assert frozen.token == "token-1"  # the first expired within the refresh window: assumed again
    stub.assert_no_pending_responses()


def test_a_first_deploy_left_in_review_is_deleted_and_created_again(config):
    cfn = ScriptedCloudFormation(["REVIEW_IN_PROGRESS", None, "CREATE_COMPLETE"])
    scripted_deployer(cfn).deploy(config.stage("prod"), package())
    assert cfn.calls[:2] == ["delete_stack", "create_change_set"]


def test_a_failed_first_create_says_nothing_serves(config):
    cfn = ScriptedCloudFormation(
        [None, "CREATE_IN_PROGRESS", "ROLLBACK_COMPLETE"], [failure("bad role", "Model", "CREATE_FAILED")]
    )
    with pytest.raises(
        PromotionError, match="Model: bad role; nothing serves: the next deploy deletes the stack"
    ):
        scripted_deployer(cfn).deploy(config.stage("prod"), package())


def test_a_rollback_that_failed_asks_for_a_person(config):
    cfn = ScriptedCloudFormation(["UPDATE_COMPLETE", "UPDATE_ROLLBACK_FAILED"], [failure("throttled")])
    with pytest.raises(PromotionError, match="ContinueUpdateRollback"):
        scripted_deployer(cfn).deploy(config.stage("prod"), package())


def test_an_update_sagemaker_rolled_back_by_itself_is_a_failure(config):
    outputs = {"EndpointName": "churn-prod", "EndpointConfigName": "cfg-new"}
    cfn = ScriptedCloudFormation(["UPDATE_COMPLETE"], outputs=outputs)
    with pytest.raises(PromotionError, match="runs config cfg-old, not the deployed cfg-new"):
        scripted_deployer(cfn, running_config="cfg-old").deploy(config.stage("prod"), package())
    assert scripted_deployer(cfn).deploy(config.stage("prod"), package()) == "arn:endpoint"


def test_a_stage_in_another_region_than_the_model_is_refused_before_any_call(tmp_path):
    environ = {**ENVIRON, "TARGET_REGION": "eu-west-1"}
    stage = load_promotion(DEPLOY / "promotion.json", environ).stage("staging")
    cfn = ScriptedCloudFormation(["UPDATE_COMPLETE"])
    with pytest.raises(PromotionError, match="registered in us-east-1 but the stage is in eu-west-1"):
        scripted_deployer(cfn).deploy(stage, package())
    assert cfn.calls == []

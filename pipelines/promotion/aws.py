"""The AWS deployer: each stage is an AWS account, reached by assuming the stage's deploy role.

A stage's endpoint is one CloudFormation stack in the stage's account, ``sagemaker-mlops-<endpoint>``,
made by :func:`endpoint_template` from the stage config and the model package: a Model created from
the dev account's model package ARN, an EndpointConfig (instance variants with weights, or
serverless; data capture; the stage's KMS key), the Endpoint, and per variant an autoscaling target
and a target-tracking policy. Every deploy goes through a change set:

    create (or update) change set -> wait -> execute -> wait for the stack -> the endpoint InService

An update of a live endpoint is SageMaker's blue/green switch: the old fleet keeps serving until the
new one is healthy. A failed update rolls the stack back, so the previous endpoint keeps serving,
and the deploy fails with the reason CloudFormation recorded. A first create that failed leaves a
ROLLBACK_COMPLETE stack, which the next deploy deletes before it creates the stack again.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from pipelines.aws_calls import aws_error, client_config
from pipelines.errors import NotFoundError, TemplateError
from pipelines.promotion.config import StageConfig
from pipelines.promotion.flow import Deployer, PromotionError
from pipelines.registry.base import ModelPackage
from pipelines.stage_monitor.aws import baseline_prefix, monitoring_resources, record_preprocessor_uri
from pipelines.stage_monitor.baseline import baseline_uris, stage_constraints
from pipelines.stage_monitor.preprocessor import SCRIPT_NAME, render, schema_from_artifact

STACK_PREFIX = "sagemaker-mlops-"
INVOCATION_TIMEOUT_S = 60  # SageMaker's limit for one invocation
DEFAULT_TIMEOUT_S = 60 * 60  # an endpoint with a large fleet can take most of an hour
_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
_FAILED = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "DELETE_FAILED",
}
# What a failed stack status means for what serves.
_SERVES_BEFORE = "what served before still serves"
_NOTHING = "nothing serves: the next deploy deletes the stack and creates it again"
_STUCK = (
    "the stack needs a person: continue its rollback in the CloudFormation console "
    "(ContinueUpdateRollback), then deploy again"
)
_AFTER = {
    "CREATE_FAILED": _NOTHING,
    "ROLLBACK_COMPLETE": _NOTHING,
    "ROLLBACK_FAILED": "nothing serves; delete the stack in the CloudFormation console, then deploy again",
    "UPDATE_ROLLBACK_COMPLETE": _SERVES_BEFORE,
    "UPDATE_FAILED": _SERVES_BEFORE,
    "UPDATE_ROLLBACK_FAILED": _STUCK,
    "DELETE_FAILED": "the stack could not be deleted; see its events",
}
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


def stack_name(stage: StageConfig) -> str:
    return f"{STACK_PREFIX}{stage.endpoint.name}"


def endpoint_template(
    stage: StageConfig,
    package: ModelPackage,
    features: Sequence[str] = (),
    tooling_account: str | None = None,
    record_preprocessor: str | None = None,
) -> dict:
    """The CloudFormation template of ``stage``'s endpoint serving ``package``. Deterministic: the
    same stage and package give the same template, so a redeploy of what serves is a no-op.
    With the stage's monitoring on, its monitors too (``pipelines.stage_monitor.aws``): ``features``
    are the baseline's, ``tooling_account`` receives ``retrain`` violations, ``record_preprocessor``
    is the S3 URI of the version's record preprocessor (a version that serves raw records)."""
    endpoint = stage.endpoint
    aws = stage.aws
    tags = [
        {"Key": "sagemaker-mlops:stage", "Value": stage.name},
        {"Key": "sagemaker-mlops:model-package-arn", "Value": package.arn},
        {"Key": "sagemaker-mlops:model-version", "Value": str(package.version)},
    ]
    model = {
        "Type": "AWS::SageMaker::Model",
        "Properties": {
            "ExecutionRoleArn": aws.model_execution_role_arn,
            # Created from the registered version itself: image, artifact and environment as approved.
            "PrimaryContainer": {"ModelPackageName": package.arn},
            "Tags": tags,
        },
    }
    if endpoint.serverless is not None:
        variants = [
            {
                "VariantName": "AllTraffic",
                "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                "ServerlessConfig": {
                    "MemorySizeInMB": endpoint.serverless.memory_size_mb,
                    "MaxConcurrency": endpoint.serverless.max_concurrency,
                },
            }
        ]
    else:
        variants = [
            {
                "VariantName": variant.name,
                "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                "InstanceType": variant.instance_type,
                "InitialInstanceCount": variant.initial_instance_count,
                "InitialVariantWeight": variant.initial_weight,
            }
            for variant in endpoint.variants
        ]
    config: dict = {"ProductionVariants": variants, "Tags": tags}
    if endpoint.serverless is None:
        config["KmsKeyId"] = aws.kms_key_arn  # the instances' storage volumes (serverless has none)
    if endpoint.data_capture_percent:
        config["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": endpoint.data_capture_percent,
            "DestinationS3Uri": aws.data_capture_s3_uri,
            "KmsKeyId": aws.kms_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        }
    resources: dict = {
        "Model": model,
        "EndpointConfig": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": config},
        "Endpoint": {
            "Type": "AWS::SageMaker::Endpoint",
            "Properties": {
                "EndpointName": endpoint.name,
                "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]},
                "Tags": tags,
            },
        },
    }
    if endpoint.autoscaling is not None:
        # Deploys keep the instance counts the autoscaler chose (not InitialInstanceCount) and take
        # the weights and the data capture from the config: retained, a changed capture percentage
        # would never be applied. (botocore's VariantPropertyType offers DataCaptureConfig; the API
        # reference calls it "not currently supported", which only a deploy on an account can settle.)
        resources["Endpoint"]["Properties"]["RetainAllVariantProperties"] = True
        resources["Endpoint"]["Properties"]["ExcludeRetainedVariantProperties"] = [
            {"VariantPropertyType": "DesiredWeight"},
            {"VariantPropertyType": "DataCaptureConfig"},
        ]
        scaling = endpoint.autoscaling
        for variant in endpoint.variants:
            # Named after the variant, not its position: reordering variants must not replace (and
            # so deregister) a live scaling target.
            suffix = _logical(variant.name)
            target = f"ScalableTarget{suffix}"
            resources[target] = {
                "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
                "Properties": {
                    "ServiceNamespace": "sagemaker",
                    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                    "ResourceId": {
                        "Fn::Join": [
                            "",
                            [
                                "endpoint/",
                                {"Fn::GetAtt": ["Endpoint", "EndpointName"]},
                                f"/variant/{variant.name}",
                            ],
                        ]
                    },
                    "MinCapacity": scaling.min_capacity,
                    "MaxCapacity": scaling.max_capacity,
                },
            }
            resources[f"ScalingPolicy{suffix}"] = {
                "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
                "Properties": {
                    "PolicyName": f"{endpoint.name}-{variant.name}-invocations",
                    "PolicyType": "TargetTrackingScaling",
                    "ScalingTargetId": {"Ref": target},
                    "TargetTrackingScalingPolicyConfiguration": {
                        "TargetValue": float(scaling.target_invocations_per_instance),
                        "PredefinedMetricSpecification": {
                            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                        },
                        "ScaleInCooldown": 300,
                        "ScaleOutCooldown": 60,
                    },
                },
            }
    resources.update(
        monitoring_resources(stage, package, features, tooling_account, tags, record_preprocessor)
    )
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"SageMaker endpoint {endpoint.name} of stage {stage.name}, serving {package.group} "
            f"version {package.version} (written by `promote`; changes go through promote, not the console)"
        ),
        "Resources": resources,
        "Outputs": {
            "EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}},
            "EndpointConfigName": {"Value": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]}},
            "ModelPackageArn": {"Value": package.arn},
        },
    }


def _logical(name: str) -> str:
    """A variant name as part of a CloudFormation logical id (letters and digits only)."""
    return "".join(c for c in name.title() if c.isalnum())


def template_body(template: dict) -> str:
    return json.dumps(template, indent=1, sort_keys=True)


def default_client(session, service: str, region: str | None):
    """A client of ``session``'s account; reads wait out one invocation at most (SageMaker's own
    limit), then retry."""
    return session.client(
        service, region_name=region, config=client_config(read_timeout=INVOCATION_TIMEOUT_S + 5)
    )


class AwsDeployer(Deployer):
    """Deploys into each stage's account with the credentials of its deploy role.

    ``session`` is the caller's boto3 session (the dev/tooling account: the registry, the smoke-test
    sample); ``clients`` makes every AWS client, from (session, service, region), so tests can see
    which account each call uses; ``sleep`` and ``clock`` are injectable so the waiting can be tested."""

    def __init__(
        self,
        session=None,
        poll_seconds: float = 15.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = print,
        clients: Callable[[Any, str, str | None], Any] | None = None,
    ):
        import boto3

        self.session = session or boto3.Session()
        self._client = clients or default_client
        self.poll_seconds = poll_seconds
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.clock = clock
        self.say = say
        self._sessions: dict[str, object] = {}
        self._runtimes: dict[str, object] = {}

    # ---- credentials

    def stage_session(self, stage: StageConfig):
        """A session in the stage's account and region, as its deploy role (cached per stage).

        Its credentials refresh themselves before they expire, so a deploy that waits longer than
        one role session (a large fleet, a slow rollback) keeps its access."""
        import boto3
        import botocore.session
        from botocore.credentials import RefreshableCredentials

        if stage.name not in self._sessions:
            sts = self._client(self.session, "sts", stage.region)

            def assume() -> dict:
                credentials = self._call(
                    f"assuming {stage.deploy_role_arn} for stage {stage.name}",
                    sts.assume_role,
                    RoleArn=stage.deploy_role_arn,
                    RoleSessionName=f"promote-{stage.name}",
                    DurationSeconds=3600,
                )["Credentials"]
                expiry = credentials["Expiration"]
                return {
                    "access_key": credentials["AccessKeyId"],
                    "secret_key": credentials["SecretAccessKey"],
                    "token": credentials["SessionToken"],
                    "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
                }

            core = botocore.session.Session()
            core._credentials = RefreshableCredentials.create_from_metadata(  # noqa: SLF001
                metadata=assume(), refresh_using=assume, method="sts-assume-role"
            )  # boto3's own assume-role profiles are built the same way
            self._sessions[stage.name] = boto3.Session(botocore_session=core, region_name=stage.region)
        return self._sessions[stage.name]

    # ---- Deployer

    def deploy(self, stage: StageConfig, package: ModelPackage) -> str:
        package_region = package.arn.split(":")[3]
        if package_region != stage.region:
            raise PromotionError(
                f"{stage.name}: {package.name} is registered in {package_region} but the stage is in "
                f"{stage.region}; SageMaker reads a model's artifact only in the endpoint's region: "
                f"deploy the stage in {package_region} (its region in deploy/stages/{stage.name}.json)"
            )
        session = self.stage_session(stage)
        cfn = self._client(session, "cloudformation", stage.region)
        name = stack_name(stage)
        status = self._stack_status(cfn, name)
        if status is not None and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
            raise PromotionError(
                f"{stage.name}: stack {name} is {status}: another deploy is running; wait for it and retry"
            )
        if status in ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"):
            # A first create that failed, or whose change set was never executed: nothing serves.
            self.say(f"{stage.name}: deleting stack {name}, left by an unfinished first deploy")
            self._call(f"deleting stack {name}", cfn.delete_stack, StackName=name)
            self._wait_stack(cfn, name, stage, deleting=True)
            status = None
        features, tooling, preprocessor = self._publish_baseline(stage, package, session)
        change_type = "CREATE" if status is None else "UPDATE"
        change_set = f"promote-v{package.version}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
        self._call(
            f"creating change set {change_set} of stack {name}",
            cfn.create_change_set,
            StackName=name,
            ChangeSetName=change_set,
            ChangeSetType=change_type,
            TemplateBody=template_body(endpoint_template(stage, package, features, tooling, preprocessor)),
            Description=f"{package.group} version {package.version} to {stage.name}",
            Tags=[{"Key": "sagemaker-mlops:stage", "Value": stage.name}],
        )
        if self._wait_change_set(cfn, name, change_set, stage):
            self._call(
                f"executing change set {change_set}",
                cfn.execute_change_set,
                StackName=name,
                ChangeSetName=change_set,
            )
            self._wait_stack(cfn, name, stage)
        else:
            self.say(f"{stage.name}: stack {name} already serves {package.name}; nothing to change")
        return self._wait_in_service(session, stage, *self._endpoint_name(cfn, name, stage))

    def _publish_baseline(
        self, stage: StageConfig, package: ModelPackage, session
    ) -> tuple[list[str], str | None, str | None]:
        """Copy the version's data-quality baseline into the stage's capture bucket, with the stage's
        thresholds in constraints.json, and beside it the version's record preprocessor when it serves
        raw records; the baseline's feature names, the registry's account, the preprocessor's URI."""
        if stage.monitoring is None or not stage.monitoring.enabled:
            return [], None, None
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            statistics_uri, constraints_uri = baseline_uris(package)
            statistics = json.loads(self.read(statistics_uri))
            constraints = stage_constraints(json.loads(self.read(constraints_uri)), stage.monitoring)
        except ValueError as err:
            raise PromotionError(f"{stage.name}: the baseline of {package.name} is not JSON: {err}") from None
        except TemplateError as err:
            raise PromotionError(f"{stage.name}: monitoring {package.name}: {err}") from None
        script = self._record_preprocessor(stage, package)
        s3 = self._client(session, "s3", stage.region)
        prefix = baseline_prefix(stage, package)
        bucket, key = prefix[len("s3://") :].split("/", 1)
        files = [
            (name, json.dumps(document, indent=1, sort_keys=True).encode())
            for name, document in (("statistics.json", statistics), ("constraints.json", constraints))
        ]
        if script is not None:
            files.append((SCRIPT_NAME, script.encode("utf-8")))
        for name, body in files:
            try:
                s3.put_object(
                    Bucket=bucket,
                    Key=f"{key}/{name}",
                    Body=body,
                    ServerSideEncryption="aws:kms",
                    SSEKMSKeyId=stage.aws.kms_key_arn,
                )
            except (BotoCoreError, ClientError) as err:
                raise aws_error(err, f"writing {prefix}/{name} for stage {stage.name}") from None
        features = [f["name"] for f in constraints.get("features", []) if isinstance(f, dict) and "name" in f]
        uri = record_preprocessor_uri(stage, package) if script is not None else None
        return features, package.arn.split(":")[4], uri

    def _record_preprocessor(self, stage: StageConfig, package: ModelPackage) -> str | None:
        """The version's record preprocessor (its schema.json written into the script), or None for a
        version trained without schema.json, whose captured requests are encoded rows already."""
        try:
            archive = self.read(package.model_data_url)
        except TemplateError as err:
            raise PromotionError(f"{stage.name}: monitoring {package.name}: {err}") from None
        try:
            schema = schema_from_artifact(io.BytesIO(archive))
            return None if schema is None else render(schema)
        except (OSError, ValueError) as err:  # SchemaError is a ValueError
            raise PromotionError(
                f"{stage.name}: monitoring {package.name}: its model {package.model_data_url} "
                f"cannot be read: {err}"
            ) from None

    def undeploy(self, stage: StageConfig) -> None:
        cfn = self._client(self.stage_session(stage), "cloudformation", stage.region)
        name = stack_name(stage)
        if self._stack_status(cfn, name) is None:
            return
        self._call(f"deleting stack {name}", cfn.delete_stack, StackName=name)
        self._wait_stack(cfn, name, stage, deleting=True)

    def invoke(self, stage: StageConfig, body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        if stage.name not in self._runtimes:  # one client per stage: not built inside the timing
            self._runtimes[stage.name] = self._client(
                self.stage_session(stage), "sagemaker-runtime", stage.region
            )
        runtime = self._runtimes[stage.name]
        try:
            answer = runtime.invoke_endpoint(
                EndpointName=stage.endpoint.name, Body=body, ContentType=content_type, Accept=accept
            )
        except ClientError as err:
            response = err.response
            # A ModelError carries the container's own status; anything else is the service's.
            status = response.get("OriginalStatusCode") or response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", 0
            )
            return int(status), str(response.get("Error", {}).get("Message", err)).encode()
        except BotoCoreError as err:
            return 0, f"no answer from endpoint {stage.endpoint.name}: {err}".encode()
        return 200, answer["Body"].read()

    def read(self, uri: str) -> bytes:
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise PromotionError(f"{uri!r} is not an s3://bucket/key URI")
        bucket, key = uri[5:].split("/", 1)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client(self.session, "s3", None).get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
                raise NotFoundError(f"{uri} does not exist") from None
            raise aws_error(err, f"reading {uri}") from None
        except BotoCoreError as err:
            raise aws_error(err, f"reading {uri}") from None

    # ---- waiting

    def _stack_status(self, cfn, name: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            stacks = cfn.describe_stacks(StackName=name)["Stacks"]
        except ClientError as err:
            if "does not exist" in err.response.get("Error", {}).get("Message", ""):
                return None
            raise aws_error(err, f"describing stack {name}") from None
        return stacks[0]["StackStatus"] if stacks else None

    def _wait_change_set(self, cfn, name: str, change_set: str, stage: StageConfig) -> bool:
        """True when the change set is ready to execute, False when it holds no changes."""
        deadline = self.clock() + self.timeout_s
        while True:
            described = self._call(
                f"describing change set {change_set}",
                cfn.describe_change_set,
                StackName=name,
                ChangeSetName=change_set,
            )
            status = described["Status"]
            if status == "CREATE_COMPLETE":
                return True
            if status == "FAILED":
                reason = described.get("StatusReason", "")
                if any(text in reason for text in _NO_CHANGES):
                    self._call(
                        f"deleting the empty change set {change_set}",
                        cfn.delete_change_set,
                        StackName=name,
                        ChangeSetName=change_set,
                    )
                    return False
                raise PromotionError(
                    f"{stage.name}: change set {change_set} of stack {name} failed: {reason}"
                )
            self._tick(deadline, f"change set {change_set} of stack {name}", stage)

    def _wait_stack(self, cfn, name: str, stage: StageConfig, deleting: bool = False) -> None:
        deadline = self.clock() + self.timeout_s
        since = datetime.now(timezone.utc)
        while True:
            status = self._stack_status(cfn, name)
            if deleting and status in (None, "DELETE_COMPLETE"):
                return
            if not deleting and status in _DONE:
                return
            if deleting and status == "DELETE_FAILED":
                reason = self._failure_reason(cfn, name, since)
                raise PromotionError(f"{stage.name}: deleting stack {name} failed: {reason}")
            if not deleting and status in _FAILED:
                reason = self._failure_reason(cfn, name, since)
                raise PromotionError(f"{stage.name}: stack {name} ended {status}: {reason}; {_AFTER[status]}")
            self._tick(deadline, f"stack {name}", stage)

    def _failure_reason(self, cfn, name: str, since: datetime) -> str:
        """The first failure CloudFormation recorded for this deploy (events come newest first)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            events = cfn.describe_stack_events(StackName=name)["StackEvents"]
        except (BotoCoreError, ClientError) as err:  # the failure itself is reported all the same
            return f"its events could not be read ({err})"
        failed = [
            event
            for event in events
            if str(event.get("ResourceStatus", "")).endswith("_FAILED")
            and event.get("ResourceStatusReason")
            and "cancelled" not in event["ResourceStatusReason"]
            and (not isinstance(event.get("Timestamp"), datetime) or event["Timestamp"] >= since)
        ]
        if not failed:
            return "no reason recorded"
        first = failed[-1]
        return f"{first.get('LogicalResourceId', '?')}: {first['ResourceStatusReason']}"

    def _endpoint_name(self, cfn, name: str, stage: StageConfig) -> tuple[str, str | None]:
        """The endpoint the stack made and the config it should now run, from the stack's outputs:
        the stack, not the stage file, says what serves. A stack without outputs (moto makes them
        so) is asked for its Endpoint resource, whose physical id is the endpoint's ARN."""
        stack = self._call(f"describing stack {name}", cfn.describe_stacks, StackName=name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if "EndpointName" in outputs:
            return outputs["EndpointName"], outputs.get("EndpointConfigName")
        resource = self._call(
            f"describing the endpoint of stack {name}",
            cfn.describe_stack_resource,
            StackName=name,
            LogicalResourceId="Endpoint",
        )["StackResourceDetail"]
        return resource["PhysicalResourceId"].rsplit("/", 1)[-1], None

    def _wait_in_service(self, session, stage: StageConfig, endpoint: str, config: str | None) -> str:
        sagemaker = self._client(session, "sagemaker", stage.region)
        deadline = self.clock() + self.timeout_s
        while True:
            described = self._call(
                f"describing endpoint {endpoint}", sagemaker.describe_endpoint, EndpointName=endpoint
            )
            status = described["EndpointStatus"]
            reason = " ".join(str(described.get("FailureReason", "no reason given")).split())
            if status == "InService":
                running = described.get("EndpointConfigName")
                if config is not None and running != config:
                    # SageMaker can roll an update back on its own and return to InService.
                    raise PromotionError(
                        f"{stage.name}: endpoint {endpoint} runs config {running}, not the deployed "
                        f"{config}: SageMaker rolled the update back ({reason}); "
                        "what served before still serves"
                    )
                return described["EndpointArn"]
            if status in ("Failed", "OutOfService", "Deleting", "UpdateRollbackFailed"):
                raise PromotionError(f"{stage.name}: endpoint {endpoint} is {status}: {reason}")
            self._tick(deadline, f"endpoint {endpoint}", stage)

    def _tick(self, deadline: float, what: str, stage: StageConfig) -> None:
        if self.clock() >= deadline:
            raise PromotionError(
                f"{stage.name}: gave up waiting for {what} after {self.timeout_s:.0f} s; "
                "see its events in the stage's CloudFormation console"
            )
        self.sleep(self.poll_seconds)

    # ---- clients

    @staticmethod
    def _call(what: str, method, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except (BotoCoreError, ClientError) as err:
            raise aws_error(err, what) from None

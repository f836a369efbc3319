"""The monitors of a stage on AWS: resources added to the stage's endpoint stack
(``pipelines.promotion.aws.endpoint_template``) when the stage's monitoring is enabled.

    DataQualityJobDefinition + MonitoringSchedule   on the endpoint's captured data, against the
                                                    baseline of the version deployed (copied into
                                                    the stage's capture bucket by the deploy, with
                                                    the stage's thresholds in constraints.json)
    ModelQualityJobDefinition + MonitoringSchedule  when the stage names ground truth
    one CloudWatch alarm per feature                on Model Monitor's feature_baseline_drift_<f>
    SNS topic (stage's KMS key)                     the alarms' and the rule's notifications
    EventBridge rule                                an alarm going to ALARM -> the topic, and with
                                                    ``retrain`` the tooling account's event bus,
                                                    where the project's rule starts the pipeline

Metric names and namespace: "CloudWatch Metrics" in Model Monitor's guide
(docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-interpreting-cloudwatch.html): namespace
``aws/sagemaker/Endpoints/data-metrics``, dimensions ``Endpoint`` and ``MonitoringSchedule``,
``feature_baseline_drift_<feature>`` (Stat Sum). The image is Model Monitor's analyzer, whose account
per region the SageMaker SDK lists (``image_uri_config/model-monitor.json``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.promotion.config import StageConfig
from pipelines.registry.base import ModelPackage
from pipelines.stage_monitor.preprocessor import SCRIPT_NAME

NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
ANALYZER_REPOSITORY = "sagemaker-model-monitor-analyzer"
INSTANCE_TYPE = "ml.m5.xlarge"
VOLUME_GB = 20
#: The bootstrap template's role that lets the stage's EventBridge rule put events on the tooling bus.
EVENTS_ROLE_NAME = "MlopsMonitoringEventsRole"
#: Alarm names start with this; the project's rule in the tooling account matches on it.
ALARM_PREFIX = "sagemaker-mlops-drift-"
# Model Monitor names the job's local paths; these are the SDK's defaults.
_INPUT_PATH = "/opt/ml/processing/input/endpoint"
_OUTPUT_PATH = "/opt/ml/processing/output"
_PROBLEM_TYPES = {"binary_classification": "BinaryClassification", "regression": "Regression"}


def analyzer_image(region: str) -> str:
    """Model Monitor's analyzer image in ``region``, from the SDK's own table of accounts."""
    spec = importlib.util.find_spec("sagemaker")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "core" / "image_uri_config" / "model-monitor.json"
        if path.is_file():
            registries = json.loads(path.read_text())["versions"][""]["registries"]
            break
    else:
        raise ConfigError("the SageMaker SDK's model-monitor image table is not installed (pip install -e .)")
    account = registries.get(region)
    if account is None:
        raise ConfigError(
            f"Model Monitor has no analyzer image in region {region!r}; "
            f"regions: {', '.join(sorted(registries))}"
        )
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}/{ANALYZER_REPOSITORY}"


def bucket_of(uri: str) -> str:
    return uri[len("s3://") :].split("/", 1)[0]


def baseline_prefix(stage: StageConfig, package: ModelPackage) -> str:
    """Where the deploy copies the version's baseline in the stage's capture bucket: the monitoring
    job then reads only its own account's bucket, and the stage's thresholds are in the copy."""
    bucket = bucket_of(stage.aws.data_capture_s3_uri)
    return f"s3://{bucket}/monitoring/{stage.endpoint.name}/baselines/{package.group}/{package.version}"


def record_preprocessor_uri(stage: StageConfig, package: ModelPackage) -> str:
    """Where the deploy puts the version's record preprocessor: beside its baseline copy."""
    return f"{baseline_prefix(stage, package)}/{SCRIPT_NAME}"


def reports_uri(stage: StageConfig, kind: str) -> str:
    return f"s3://{bucket_of(stage.aws.data_capture_s3_uri)}/monitoring/{stage.endpoint.name}/reports/{kind}"


def schedule_name(stage: StageConfig, kind: str = "data-quality") -> str:
    return f"{stage.endpoint.name}-{kind}"[:63]


def tooling_event_bus(package: ModelPackage, tooling_account: str) -> str:
    """The default bus of the account and region whose registry holds the version (the project's)."""
    return f"arn:aws:events:{package.arn.split(':')[3]}:{tooling_account}:event-bus/default"


def monitoring_resources(
    stage: StageConfig,
    package: ModelPackage,
    features: Sequence[str],
    tooling_account: str | None = None,
    tags: Sequence[dict] = (),
    record_preprocessor_uri: str | None = None,
) -> dict:
    """The resources the stage's monitoring adds to its endpoint stack (empty when it is off).

    ``features`` are the baseline's feature names (one drift alarm each); ``tooling_account`` is
    where a ``retrain`` violation is sent (the account that runs the model-build pipeline);
    ``record_preprocessor_uri`` is the version's record preprocessor beside its baseline copy, for a
    version that serves raw records (None: captured requests are encoded rows already)."""
    settings = stage.monitoring
    if settings is None or not settings.enabled:
        return {}
    aws = stage.aws
    endpoint_name = {"Fn::GetAtt": ["Endpoint", "EndpointName"]}
    role = aws.model_execution_role_arn
    baseline = baseline_prefix(stage, package)
    resources_config = {
        "ClusterConfig": {
            "InstanceCount": 1,
            "InstanceType": INSTANCE_TYPE,
            "VolumeSizeInGB": VOLUME_GB,
            "VolumeKmsKeyId": aws.kms_key_arn,
        }
    }
    # A job must end before the next one starts; the shortest schedule is hourly.
    stopping = {"MaxRuntimeInSeconds": 3300}
    image = analyzer_image(stage.region)
    tags = list(tags)
    resources: dict = {}
    if "data_quality" in settings.checks:
        app = {"ImageUri": image}
        if record_preprocessor_uri:
            # Captures hold requests as sent (raw records); the baseline holds encoded features.
            app["RecordPreprocessorSourceUri"] = record_preprocessor_uri
        resources["DataQualityJobDefinition"] = {
            "Type": "AWS::SageMaker::DataQualityJobDefinition",
            "Properties": {
                "DataQualityAppSpecification": app,
                "DataQualityBaselineConfig": {
                    "ConstraintsResource": {"S3Uri": f"{baseline}/constraints.json"},
                    "StatisticsResource": {"S3Uri": f"{baseline}/statistics.json"},
                },
                "DataQualityJobInput": {
                    "EndpointInput": {
                        "EndpointName": endpoint_name,
                        "LocalPath": _INPUT_PATH,
                        "S3InputMode": "File",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "DataQualityJobOutputConfig": {
                    "KmsKeyId": aws.kms_key_arn,
                    "MonitoringOutputs": [
                        {
                            "S3Output": {
                                "S3Uri": reports_uri(stage, "data-quality"),
                                "LocalPath": _OUTPUT_PATH,
                                "S3UploadMode": "EndOfJob",
                            }
                        }
                    ],
                },
                "JobResources": resources_config,
                "RoleArn": role,
                "StoppingCondition": stopping,
                "Tags": tags,
            },
        }
        resources["DataQualitySchedule"] = _schedule(
            stage, "data-quality", "DataQuality", "DataQualityJobDefinition", tags
        )
    if "model_quality" in settings.checks and settings.ground_truth_s3_uri:
        problem = _PROBLEM_TYPES.get(package.customer_metadata.get("ProblemType", ""), "BinaryClassification")
        endpoint_input = {
            "EndpointName": endpoint_name,
            "LocalPath": _INPUT_PATH,
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
            # The handler answers one number per row in CSV: column 0.
            "InferenceAttribute": "0",
        }
        if problem == "BinaryClassification":
            endpoint_input.update(ProbabilityAttribute="0", ProbabilityThresholdAttribute=0.5)
        resources["ModelQualityJobDefinition"] = {
            "Type": "AWS::SageMaker::ModelQualityJobDefinition",
            "Properties": {
                "ModelQualityAppSpecification": {"ImageUri": image, "ProblemType": problem},
                "ModelQualityJobInput": {
                    "EndpointInput": endpoint_input,
                    "GroundTruthS3Input": {"S3Uri": settings.ground_truth_s3_uri},
                },
                "ModelQualityJobOutputConfig": {
                    "KmsKeyId": aws.kms_key_arn,
                    "MonitoringOutputs": [
                        {
                            "S3Output": {
                                "S3Uri": reports_uri(stage, "model-quality"),
                                "LocalPath": _OUTPUT_PATH,
                                "S3UploadMode": "EndOfJob",
                            }
                        }
                    ],
                },
                "JobResources": resources_config,
                "RoleArn": role,
                "StoppingCondition": stopping,
                "Tags": tags,
            },
        }
        resources["ModelQualitySchedule"] = _schedule(
            stage, "model-quality", "ModelQuality", "ModelQualityJobDefinition", tags
        )
    action = settings.on_violation.action
    if action == "nothing" or "DataQualitySchedule" not in resources:
        return resources
    resources["MonitoringTopic"] = {
        "Type": "AWS::SNS::Topic",
        "Properties": {
            "TopicName": f"{stage.endpoint.name}-monitoring",
            "KmsMasterKeyId": aws.kms_key_arn,
            "Tags": tags,
        },
    }
    resources["MonitoringTopicPolicy"] = {
        "Type": "AWS::SNS::TopicPolicy",
        "Properties": {
            "Topics": [{"Ref": "MonitoringTopic"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "EventsAndAlarmsPublish",
                        "Effect": "Allow",
                        "Principal": {"Service": ["events.amazonaws.com", "cloudwatch.amazonaws.com"]},
                        "Action": "sns:Publish",
                        "Resource": {"Ref": "MonitoringTopic"},
                        "Condition": {"StringEquals": {"aws:SourceAccount": stage.account_id}},
                    }
                ],
            },
        },
    }
    threshold = settings.drift.comparison_threshold
    for index, feature in enumerate(features):
        resources[f"DriftAlarm{index}"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "DependsOn": "DataQualitySchedule",
            "Properties": {
                "AlarmName": f"{ALARM_PREFIX}{stage.endpoint.name}-{feature}",
                "AlarmDescription": (
                    f"Model Monitor's baseline drift of {feature} on {stage.endpoint.name} is above the "
                    f"stage's comparison_threshold {threshold}"
                ),
                "Namespace": NAMESPACE,
                "MetricName": f"feature_baseline_drift_{feature}",
                "Dimensions": [
                    {"Name": "Endpoint", "Value": endpoint_name},
                    {"Name": "MonitoringSchedule", "Value": schedule_name(stage)},
                ],
                "Statistic": "Sum",
                "Period": 3600,
                "EvaluationPeriods": 1,
                "Threshold": threshold,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        }
    targets = [{"Id": "notify", "Arn": {"Ref": "MonitoringTopic"}}]
    if action == "retrain":
        # The registry's account runs the model-build pipeline: the version's ARN names it.
        tooling_account = tooling_account or package.arn.split(":")[4]
    if action == "retrain" and tooling_account != stage.account_id:
        # In the tooling account itself the project's rule sees the alarm on its own bus.
        targets.append(
            {
                "Id": "retrain",
                "Arn": tooling_event_bus(package, tooling_account),
                "RoleArn": f"arn:aws:iam::{stage.account_id}:role/{EVENTS_ROLE_NAME}",
            }
        )
    resources["ViolationRule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Description": f"Drift alarms of {stage.endpoint.name} -> notify"
            + (" and retrain in the tooling account" if action == "retrain" else ""),
            "State": "ENABLED",
            "EventPattern": {
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "detail": {
                    "alarmName": [{"prefix": f"{ALARM_PREFIX}{stage.endpoint.name}-"}],
                    "state": {"value": ["ALARM"]},
                },
            },
            "Targets": targets,
        },
    }
    return resources


def _schedule(stage: StageConfig, kind: str, monitoring_type: str, definition: str, tags: list) -> dict:
    return {
        "Type": "AWS::SageMaker::MonitoringSchedule",
        "Properties": {
            "MonitoringScheduleName": schedule_name(stage, kind),
            "EndpointName": {"Fn::GetAtt": ["Endpoint", "EndpointName"]},
            "MonitoringScheduleConfig": {
                "MonitoringJobDefinitionName": {"Fn::GetAtt": [definition, "JobDefinitionName"]},
                "MonitoringType": monitoring_type,
                "ScheduleConfig": {"ScheduleExpression": stage.monitoring.schedule_expression},
            },
            "Tags": tags,
        },
    }

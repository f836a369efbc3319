"""The monitors a stage's endpoint stack gains on AWS: Model Monitor's job definitions and schedules
against the deployed version's baseline, drift alarms, and the rule that notifies and, with
``retrain``, sends the violation to the tooling account's event bus. cfn-lint checks every
resource against CloudFormation's schema (moto's CloudFormation cannot create these)."""

import dataclasses
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from archives import tar_gz
from cfnlint.api import ManualArgs, lint
from moto import mock_aws
from raw_model import write_raw_model

from pipelines.promotion.aws import AwsDeployer, endpoint_template, template_body
from pipelines.promotion.config import load_promotion
from pipelines.registry.base import ModelPackage
from pipelines.stage_monitor.aws import ALARM_PREFIX, analyzer_image, baseline_prefix
from pipelines.stage_monitor.preprocessor import render

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
TOOLING = "111111111111"
FEATURES = ["_c0", "_c1", "_c2"]


def package(version=3, metadata=None, metrics=None) -> ModelPackage:
    return ModelPackage(
        group="ChurnModelPackageGroup",
        version=version,
        arn=f"arn:aws:sagemaker:us-east-1:{TOOLING}:model-package/churnmodelpackagegroup/{version}",
        approval_status="Approved",
        created=datetime(2026, 1, 1, tzinfo=timezone.utc),
        model_data_url="s3://model-bucket/m/model.tar.gz",
        image_uri="image",
        customer_metadata=metadata or {"ProblemType": "binary_classification"},
        model_metrics=metrics,
    )


@pytest.fixture
def config():
    return load_promotion(DEPLOY / "promotion.json", {})


def with_monitoring(stage, **changes):
    return dataclasses.replace(stage, monitoring=dataclasses.replace(stage.monitoring, **changes))


def lint_problems(template: dict) -> list[str]:
    return [str(m) for m in lint(template_body(template), config=ManualArgs(regions=["us-east-1"]))]


def test_prod_is_monitored_on_its_schedule_against_the_deployed_versions_baseline(config):
    stage = config.stage("prod")
    resources = endpoint_template(stage, package(), FEATURES)["Resources"]
    definition = resources["DataQualityJobDefinition"]["Properties"]
    baseline = "s3://sagemaker-mlops-capture-333333333333-us-east-1/monitoring/churn-prod/baselines/ChurnModelPackageGroup/3"
    assert baseline_prefix(stage, package()) == baseline
    assert definition["DataQualityBaselineConfig"] == {
        "ConstraintsResource": {"S3Uri": f"{baseline}/constraints.json"},
        "StatisticsResource": {"S3Uri": f"{baseline}/statistics.json"},
    }
    assert definition["DataQualityAppSpecification"]["ImageUri"] == (
        "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
    )
    assert definition["RoleArn"] == stage.aws.model_execution_role_arn
    assert definition["JobResources"]["ClusterConfig"]["VolumeKmsKeyId"] == stage.aws.kms_key_arn
    schedule = resources["DataQualitySchedule"]["Properties"]
    assert schedule["MonitoringScheduleConfig"]["ScheduleConfig"] == {
        "ScheduleExpression": "cron(0 0/6 ? * * *)"
    }
    assert schedule["MonitoringScheduleConfig"]["MonitoringType"] == "DataQuality"
    assert schedule["EndpointName"] == {"Fn::GetAtt": ["Endpoint", "EndpointName"]}
    assert "ModelQualityJobDefinition" not in resources  # no ground truth configured


def test_each_feature_has_a_drift_alarm_at_the_stages_threshold(config):
    stage = with_monitoring(
        config.stage("prod"),
        drift=dataclasses.replace(config.stage("prod").monitoring.drift, comparison_threshold=0.25),
    )
    resources = endpoint_template(stage, package(), FEATURES)["Resources"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert [a["MetricName"] for a in alarms] == [f"feature_baseline_drift_{f}" for f in FEATURES]
    assert {a["Threshold"] for a in alarms} == {0.25}
    assert {a["Namespace"] for a in alarms} == {"aws/sagemaker/Endpoints/data-metrics"}
    assert alarms[0]["Dimensions"][1] == {"Name": "MonitoringSchedule", "Value": "churn-prod-data-quality"}
    assert all(a["AlarmName"].startswith(f"{ALARM_PREFIX}churn-prod-") for a in alarms)


def test_retrain_sends_violations_to_the_tooling_bus_and_notify_only_to_the_topic(config):
    prod = endpoint_template(config.stage("prod"), package(), FEATURES)["Resources"]["ViolationRule"][
        "Properties"
    ]
    assert prod["EventPattern"]["detail"]["alarmName"] == [{"prefix": f"{ALARM_PREFIX}churn-prod-"}]
    targets = {t["Id"]: t for t in prod["Targets"]}
    assert targets["notify"]["Arn"] == {"Ref": "MonitoringTopic"}
    assert targets["retrain"]["Arn"] == f"arn:aws:events:us-east-1:{TOOLING}:event-bus/default"
    assert targets["retrain"]["RoleArn"] == "arn:aws:iam::333333333333:role/MlopsMonitoringEventsRole"
    staging = endpoint_template(config.stage("staging"), package(), FEATURES)["Resources"]
    assert [t["Id"] for t in staging["ViolationRule"]["Properties"]["Targets"]] == ["notify"]
    assert (
        staging["MonitoringTopic"]["Properties"]["KmsMasterKeyId"] == config.stage("staging").aws.kms_key_arn
    )


def test_model_quality_is_monitored_when_ground_truth_is_configured(config):
    stage = with_monitoring(
        config.stage("prod"),
        checks=("data_quality", "model_quality"),
        ground_truth_s3_uri="s3://labels-bucket/churn/",
    )
    resources = endpoint_template(stage, package(), FEATURES)["Resources"]
    definition = resources["ModelQualityJobDefinition"]["Properties"]
    assert definition["ModelQualityAppSpecification"]["ProblemType"] == "BinaryClassification"
    assert definition["ModelQualityJobInput"]["GroundTruthS3Input"] == {"S3Uri": "s3://labels-bucket/churn/"}
    assert (
        resources["ModelQualitySchedule"]["Properties"]["MonitoringScheduleConfig"]["MonitoringType"]
        == "ModelQuality"
    )
    assert lint_problems(endpoint_template(stage, package(), FEATURES)) == []


def test_a_stage_without_monitoring_gets_no_monitors(config):
    resources = endpoint_template(config.stage("dev"), package(), FEATURES)["Resources"]
    assert set(resources) == {"Model", "EndpointConfig", "Endpoint"}
    off = with_monitoring(config.stage("staging"), enabled=False)
    assert "DataQualitySchedule" not in endpoint_template(off, package(), FEATURES)["Resources"]


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_the_monitored_templates_pass_cfn_lint(config, stage):
    template = endpoint_template(config.stage(stage), package(), FEATURES)
    assert lint_problems(template) == []
    broken = json.loads(json.dumps(template))
    broken["Resources"]["DataQualitySchedule"]["Properties"]["MonitoringScheduleConfig"]["Schedule"] = "x"
    assert lint_problems(broken)  # the lint does look at these resources


def test_the_template_is_the_same_bytes_for_the_same_stage_and_version(config):
    first = template_body(endpoint_template(config.stage("prod"), package(), FEATURES))
    assert first == template_body(endpoint_template(config.stage("prod"), package(), FEATURES))


def test_a_region_without_model_monitor_is_named():
    with pytest.raises(Exception, match="no analyzer image in region 'xx-nowhere-1'"):
        analyzer_image("xx-nowhere-1")


CAPTURE_BUCKET = "sagemaker-mlops-capture-333333333333-us-east-1"
CONSTRAINTS = {
    "version": 0.0,
    "features": [{"name": f, "inferred_type": "Fractional"} for f in FEATURES],
    "monitoring_config": {"distribution_constraints": {"comparison_threshold": 0.5}},
}
BASELINE_METRICS = {
    "ModelDataQuality": {
        "Statistics": {"ContentType": "application/json", "S3Uri": "s3://tooling-bucket/b/statistics.json"},
        "Constraints": {"ContentType": "application/json", "S3Uri": "s3://tooling-bucket/b/constraints.json"},
    }
}


def publish(stage, model_members):
    """The deploy's copy of the baseline (and preprocessor) into the stage bucket, on moto; returns what
    _publish_baseline returned and the objects under the version's baseline prefix."""
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        s3.create_bucket(Bucket="tooling-bucket")
        s3.put_object(Bucket="tooling-bucket", Key="b/statistics.json", Body=b'{"features": []}')
        s3.put_object(
            Bucket="tooling-bucket", Key="b/constraints.json", Body=json.dumps(CONSTRAINTS).encode()
        )
        s3.create_bucket(Bucket="model-bucket")
        s3.put_object(Bucket="model-bucket", Key="m/model.tar.gz", Body=tar_gz(model_members))
        s3.create_bucket(Bucket=CAPTURE_BUCKET)
        deployer = AwsDeployer(session)
        returned = deployer._publish_baseline(stage, package(metrics=BASELINE_METRICS), session)  # noqa: SLF001
        prefix = baseline_prefix(stage, package())[len(f"s3://{CAPTURE_BUCKET}/") :]
        objects = {
            item["Key"][len(prefix) + 1 :]: s3.get_object(Bucket=CAPTURE_BUCKET, Key=item["Key"])[
                "Body"
            ].read()
            for item in s3.list_objects_v2(Bucket=CAPTURE_BUCKET, Prefix=prefix)["Contents"]
        }
    return returned, objects


def test_the_deploy_copies_the_baseline_with_the_stages_thresholds_into_the_stage_bucket(config, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    stage = config.stage("prod")
    (features, tooling, preprocessor_uri), objects = publish(stage, {"xgboost-model.json": b"{}"})
    assert (features, tooling, preprocessor_uri) == (FEATURES, TOOLING, None)
    assert sorted(objects) == ["constraints.json", "statistics.json"]
    copied = json.loads(objects["constraints.json"])
    distribution = copied["monitoring_config"]["distribution_constraints"]
    assert distribution["comparison_threshold"] == stage.monitoring.drift.comparison_threshold == 0.1
    assert distribution["comparison_method"] == "Robust"


def test_a_version_with_schema_json_gets_its_record_preprocessor_beside_the_baseline(config, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    stage = config.stage("prod")
    schema = json.loads((write_raw_model(Path(tempfile.mkdtemp())) / "schema.json").read_text())
    members = {"xgboost-model.json": b"{}", "schema.json": json.dumps(schema).encode()}
    (_, _, preprocessor_uri), objects = publish(stage, members)
    assert preprocessor_uri == f"{baseline_prefix(stage, package())}/record_preprocessor.py"
    assert objects["record_preprocessor.py"].decode() == render(schema)
    app = endpoint_template(stage, package(), FEATURES, None, preprocessor_uri)["Resources"][
        "DataQualityJobDefinition"
    ]["Properties"]["DataQualityAppSpecification"]
    assert app["RecordPreprocessorSourceUri"] == preprocessor_uri


def test_without_schema_json_the_job_definition_names_no_preprocessor(config):
    app = endpoint_template(config.stage("prod"), package(), FEATURES)["Resources"][
        "DataQualityJobDefinition"
    ]["Properties"]["DataQualityAppSpecification"]
    assert "RecordPreprocessorSourceUri" not in app


def test_the_app_specification_fields_are_sagemakers(config):
    # CloudFormation's DataQualityAppSpecification mirrors the API's shape: the field must exist there.
    import botocore.session

    shape = (
        botocore.session.get_session().get_service_model("sagemaker").shape_for("DataQualityAppSpecification")
    )
    app = endpoint_template(
        config.stage("prod"), package(), FEATURES, None, "s3://x/y/record_preprocessor.py"
    )["Resources"]["DataQualityJobDefinition"]["Properties"]["DataQualityAppSpecification"]
    assert set(app) <= set(shape.members)
    assert app["RecordPreprocessorSourceUri"] == "s3://x/y/record_preprocessor.py"
    template = endpoint_template(
        config.stage("prod"), package(), FEATURES, None, "s3://x/y/record_preprocessor.py"
    )
    assert lint_problems(template) == []


def test_an_unreadable_model_archive_is_a_one_line_deploy_error(config, monkeypatch):
    from pipelines.promotion.flow import PromotionError

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        s3.create_bucket(Bucket="model-bucket")
        s3.put_object(Bucket="model-bucket", Key="m/model.tar.gz", Body=b"not a tar archive")
        with pytest.raises(
            PromotionError, match=r"its model s3://model-bucket/m/model.tar.gz cannot be read"
        ) as caught:
            AwsDeployer(session)._record_preprocessor(config.stage("prod"), package())  # noqa: SLF001
    assert "\n" not in str(caught.value)


def test_a_monitored_stage_refuses_a_version_registered_without_a_baseline(config):
    from pipelines.promotion.flow import PromotionError

    with pytest.raises(PromotionError, match="has no ModelMetrics.ModelDataQuality.Statistics.S3Uri"):
        AwsDeployer(boto3.Session(region_name="us-east-1"))._publish_baseline(
            config.stage("prod"), package(), None
        )  # noqa: SLF001

"""The stages' monitoring settings: schedules SageMaker accepts, checks, thresholds, what a violation
does, and every problem named with the file and the field."""

import json
import shutil
from pathlib import Path

import pytest

from pipelines.errors import ConfigError
from pipelines.promotion.config import load_promotion, load_stage, schedule_expression

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def stage_file(tmp_path, name="staging", **monitoring):
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    path = target / "stages" / f"{name}.json"
    document = json.loads(path.read_text())
    document["monitoring"] = monitoring
    path.write_text(json.dumps(document))
    return path


def problems(path, name="staging"):
    with pytest.raises(ConfigError) as error:
        load_stage(path, name, environ={})
    message = str(error.value)
    assert message.startswith(f"invalid stage config {path}: ")
    assert "\n" not in message
    return message


def test_the_shipped_stages_monitor_staging_and_prod_and_not_dev():
    config = load_promotion(DEPLOY / "promotion.json", {})
    dev, staging, prod = config.stages
    assert dev.monitoring is None
    assert staging.monitoring.enabled and staging.monitoring.schedule_expression == "cron(0 * ? * * *)"
    assert staging.monitoring.on_violation.action == "notify"
    assert prod.monitoring.on_violation.action == "retrain"
    assert prod.monitoring.on_violation.retrain_input_data_url.startswith("s3://")
    assert prod.monitoring.drift.comparison_method == "Robust"


@pytest.mark.parametrize(
    ("given", "expression"),
    [
        ("hourly", "cron(0 * ? * * *)"),
        ("daily", "cron(0 0 ? * * *)"),
        ("cron(0 12 ? * * *)", "cron(0 12 ? * * *)"),
        ("cron(0 17/12 ? * * *)", "cron(0 17/12 ? * * *)"),
        ("cron(0 0/2 ? * * *)", "cron(0 0/2 ? * * *)"),
    ],
)
def test_the_schedules_sagemaker_documents_are_accepted(given, expression):
    assert schedule_expression(given) == expression


@pytest.mark.parametrize(
    "refused",
    [
        "NOW",  # one run, not a schedule
        "cron(*/5 * * * ? *)",  # minutes: Model Monitor runs at most hourly
        "cron(30 * ? * * *)",
        "cron(0 24 ? * * *)",
        "cron(0 1/25 ? * * *)",
        "cron(0 */6 ? * * *)",
        "rate(1 hour)",
        "weekly",
        12,
    ],
)
def test_schedules_sagemaker_refuses_are_refused(tmp_path, refused):
    assert schedule_expression(refused) is None
    path = stage_file(tmp_path, schedule=refused)
    assert "monitoring.schedule is " in problems(path)


def test_monitoring_on_with_capture_off_is_refused(tmp_path):
    path = stage_file(tmp_path, enabled=True)
    document = json.loads(path.read_text())
    document["endpoint"]["data_capture_percent"] = 0
    path.write_text(json.dumps(document))
    message = problems(path)
    assert "monitoring.enabled is true but endpoint.data_capture_percent is 0" in message


def test_monitoring_off_with_capture_off_is_fine(tmp_path):
    path = stage_file(tmp_path, enabled=False)
    document = json.loads(path.read_text())
    document["endpoint"]["data_capture_percent"] = 0
    path.write_text(json.dumps(document))
    assert load_stage(path, "staging", environ={}).monitoring.enabled is False


def test_every_monitoring_problem_is_named_with_its_field(tmp_path):
    path = stage_file(
        tmp_path,
        enabled="yes",
        checks=["data_quality", "model_qualty"],
        drift={"comparison_method": "KL", "comparison_threshold": 2, "treshold": 1},
        on_violation={"action": "retrian", "cooldown_hours": -1},
        colour="blue",
    )
    message = problems(path)
    for fragment in (
        "monitoring.enabled is 'yes'; expected true or false",
        "monitoring.checks 'model_qualty' is not one of data_quality, model_quality. "
        "Did you mean 'model_quality'?",
        "monitoring.drift.comparison_method is 'KL'",
        "monitoring.drift.comparison_threshold is 2; expected a number from 0.0 to 1.0",
        "monitoring.drift.treshold is not a known field",
        "monitoring.on_violation.action is 'retrian'; expected one of nothing, notify, retrain. "
        "Did you mean 'retrain'?",
        "monitoring.on_violation.cooldown_hours is -1",
        "monitoring.colour is not a known field",
    ):
        assert fragment in message


def test_model_quality_needs_ground_truth_and_retrain_needs_data(tmp_path):
    path = stage_file(tmp_path, checks=["model_quality"], on_violation={"action": "retrain"})
    message = problems(path)
    assert "monitoring.ground_truth_s3_uri is missing; the model_quality check needs ground truth" in message
    assert "monitoring.on_violation.retrain_input_data_url is missing" in message


def test_a_ground_truth_location_must_be_an_s3_uri(tmp_path):
    path = stage_file(tmp_path, checks=["model_quality"], ground_truth_s3_uri="/tmp/labels")
    assert "monitoring.ground_truth_s3_uri is '/tmp/labels'; expected an s3:// URI" in problems(path)


def test_a_serverless_stage_cannot_be_monitored(tmp_path):
    path = stage_file(tmp_path, name="dev", enabled=True)
    assert "serverless endpoints have no data capture" in problems(path, "dev")


def test_monitoring_must_be_an_object(tmp_path):
    path = stage_file(tmp_path)
    document = json.loads(path.read_text())
    document["monitoring"] = "hourly"
    path.write_text(json.dumps(document))
    assert "monitoring must be an object" in problems(path)

"""A stage's monitoring runs: the capture since the last run against the serving version's
baseline, Model Monitor's output files, the executions, and what a violation does."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from archives import tar_gz
from monitor_support import rows

from pipelines.errors import ConfigError, TemplateError
from pipelines.stage_monitor.monitor import COMPLETED, FAILED, WITH_VIOLATIONS
from steps.encoding import DatasetSpec, Encoding, schema_document


def outputs(world, execution):
    folder = world.monitor().folder(world.stage) / "executions" / execution["ExecutionId"]
    return {p.name: json.loads(p.read_text()) for p in folder.iterdir()}


def test_normal_traffic_completes_with_model_monitors_files_and_no_violation(world):
    world.register(rows(2000, seed=1))
    world.capture(rows(300, seed=2))
    result = world.monitor().run("dev")
    assert result.execution["MonitoringExecutionStatus"] == COMPLETED
    assert result.violations == [] and result.retraining is None
    files = outputs(world, result.execution)
    assert set(files) == {"statistics.json", "constraint_violations.json", "execution.json"}
    assert files["statistics.json"]["dataset"]["item_count"] == 300
    assert [f["name"] for f in files["statistics.json"]["features"]] == ["_c0", "_c1", "_c2", "_c3"]
    assert files["constraint_violations.json"] == {"violations": []}
    assert world.retrainings == []


def test_shifted_traffic_names_the_drifted_features_notifies_and_retrains(world):
    world.register(rows(2000, seed=1))
    world.capture(rows(300, seed=2, scale=1.6))
    result = world.monitor().run("dev")
    assert result.execution["MonitoringExecutionStatus"] == WITH_VIOLATIONS
    drifted = {
        v["feature_name"] for v in result.violations if v["constraint_check_type"] == "baseline_drift_check"
    }
    assert drifted == {"_c2", "_c3"}
    assert any("_c2: baseline_drift_check: Numerical distance" in line for line in world.lines)
    (command,) = world.retrainings
    assert command[-2:] == ["--parameters", "InputDataUrl=s3://sagemaker-local/churn/retrain/"]
    assert ["--local", "--module-name", "pipelines.churn.pipeline"] == command[3:6]
    recorded = outputs(world, result.execution)["execution.json"]
    assert recorded["Retraining"]["started"] is True and recorded["Violations"] == len(result.violations)
    notes = (world.monitor().folder(world.stage) / "notifications.jsonl").read_text().splitlines()
    assert json.loads(notes[0])["Subject"] == f"churn-monitored-dev: {WITH_VIOLATIONS}"


def test_a_second_violation_within_the_cool_down_does_not_retrain_again(world):
    world.register(rows(2000, seed=1))
    now = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    clock = {"now": now}
    monitor = world.monitor(clock=lambda: clock["now"])
    for hours in (0, 1, 7):  # cool-down 6 h: retrain, hold, retrain
        clock["now"] = now + timedelta(hours=hours)
        world.capture(rows(300, seed=hours, scale=1.6), when=clock["now"].timestamp())
        monitor.run("dev")
    assert len(world.retrainings) == 2
    assert any(
        "not retraining" in line and "cool-down until 2026-11-30T18:00:00+00:00" in line
        for line in world.lines
    )


def test_only_the_capture_since_the_last_run_is_read(world):
    world.register(rows(2000, seed=1))
    world.capture(rows(100, seed=2))
    first = world.monitor().run("dev")
    world.capture(rows(50, seed=3))
    second = world.monitor().run("dev")
    assert (first.execution["RecordCount"], second.execution["RecordCount"]) == (100, 50)


def test_a_run_without_new_capture_fails_and_leaves_the_previous_results(world):
    world.register(rows(2000, seed=1))
    world.capture(rows(100, seed=2))
    monitor = world.monitor()
    first = monitor.run("dev")
    before = outputs(world, first.execution)
    state = monitor.state(world.stage)
    with pytest.raises(
        TemplateError, match="no captured data under s3://.*/churn-monitored-dev/AllTraffic/ since"
    ):
        monitor.run("dev")
    assert outputs(world, first.execution) == before
    assert monitor.state(world.stage) == state
    assert [e["MonitoringExecutionStatus"] for e in monitor.history(world.stage)] == [COMPLETED, FAILED]


def test_a_truncated_capture_file_is_named_with_its_line_and_moves_nothing(world):
    world.register(rows(2000, seed=1))
    path = world.capture(rows(10, seed=2))
    path.write_text(path.read_text()[:-40])
    monitor = world.monitor()
    with pytest.raises(TemplateError) as error:
        monitor.run("dev")
    message = str(error.value)
    assert f"capture file {path}, line 10: the line is not JSON" in message and "\n" not in message
    assert monitor.state(world.stage) == {}
    (failed,) = monitor.history(world.stage)
    assert failed["MonitoringExecutionStatus"] == FAILED and str(path) in failed["FailureReason"]


def test_capture_of_another_models_schema_is_named(world):
    world.register(rows(2000, seed=1))
    path = world.capture(["1,2,3,4,5,6"])
    with pytest.raises(
        TemplateError,
        match=rf"{path}, line 1: captureData.endpointInput.data has 6 columns; "
        "the baseline has 4 features",
    ):
        world.monitor().run("dev")


def register_raw_version(world):
    """A version whose model.tar.gz carries schema.json: 'kind' (one category, 'x') then three numbers
    encode to the baseline's four columns, as the handler encodes them."""
    spec = DatasetSpec(
        "y", "regression", (("kind", "categorical"), ("a", "numeric"), ("b", "numeric"), ("c", "numeric"))
    )
    encoding = Encoding(spec, (("kind", ("x",)),))
    schema = schema_document(spec, encoding, {"train": 1}, {}, 0.7, 0.15, 42)
    model_uri = "s3://sagemaker-local/run-1/model/model.tar.gz"
    world.store.put_bytes(model_uri, tar_gz({"schema.json": json.dumps(schema).encode()}))
    world.register(rows(2000, seed=1), model_data_url=model_uri)


def raw_request(encoded_row):
    """The raw record (with its header row) that encodes to ``encoded_row``: flag 1 is kind 'x'."""
    flag, numbers = encoded_row.split(",", 1)
    return f"kind,a,b,c\n{'x' if flag == '1' else 'unseen'},{numbers}"


def test_captured_raw_records_are_checked_as_the_encoded_rows_the_model_scored(world):
    register_raw_version(world)
    encoded = rows(300, seed=2)
    world.capture([raw_request(row) for row in encoded])
    first = encoded[0].split(",")
    record = {
        "kind": "x" if first[0] == "1" else None,
        "a": float(first[1]),
        "b": float(first[2]),
        "c": float(first[3]),
    }
    world.capture([json.dumps({"instances": [record]})], content_type="application/json")
    result = world.monitor().run("dev")
    assert result.execution["MonitoringExecutionStatus"] == COMPLETED, result.violations
    statistics = outputs(world, result.execution)["statistics.json"]
    assert statistics["dataset"]["item_count"] == 301

    # The rows the model scored: the encoded rows, the JSON record being the first of them again.
    scored = np.array([[float(v) for v in row.split(",")] for row in [*encoded, encoded[0]]])
    means = [f["numerical_statistics"]["mean"] for f in statistics["features"]]
    assert means == pytest.approx(scored.mean(axis=0).tolist(), rel=1e-9)


def test_raw_capture_drifting_from_the_baseline_is_found_through_the_preprocessor(world):
    register_raw_version(world)
    world.capture([raw_request(row) for row in rows(300, seed=2, scale=4.0)])
    result = world.monitor().run("dev")
    assert result.execution["MonitoringExecutionStatus"] == WITH_VIOLATIONS
    assert {v["feature_name"] for v in result.violations} & {"_c1", "_c2", "_c3"}


def test_a_captured_request_the_preprocessor_cannot_read_is_skipped_and_counted(world):
    register_raw_version(world)
    good = [raw_request(row) for row in rows(300, seed=2)]
    world.capture([*good, "kind,a,b,c\nx,not-a-number,1,2", '"unterminated'])
    monitor = world.monitor()
    result = monitor.run("dev")
    assert result.execution["MonitoringExecutionStatus"] == COMPLETED, result.violations
    assert result.execution["RecordCount"] == 300
    assert result.execution["SkippedRecords"] == 2
    assert any("2 captured requests skipped" in line for line in world.lines)


def test_a_file_that_is_json_but_not_capture_is_named(world):
    world.register(rows(2000, seed=1))
    path = world.capture(["1,2,3,4"])
    path.write_text(json.dumps({"eventVersion": "0", "data": "1,2,3,4"}) + "\n")
    with pytest.raises(TemplateError, match=rf"{path}, line 1: captureData is missing"):
        world.monitor().run("dev")


def test_a_version_registered_without_a_baseline_is_refused(world):
    version = world.register(rows(100, seed=1))
    world.registry.register(world.config.model_package_group, model_data_url="s3://b/m.tar.gz", image_uri="i")
    world.registry.update_metadata(
        world.config.model_package_group, version + 1, {"stage.dev.deployed-at": "2026-11-30T11:00:00+00:00"}
    )
    world.capture(rows(10, seed=2))
    with pytest.raises(TemplateError, match=r"/2 has no ModelMetrics.ModelDataQuality.Statistics.S3Uri"):
        world.monitor().run("dev")


def test_a_baseline_in_the_wrong_format_is_named(world):
    world.register(rows(200, seed=1))
    uri = "s3://sagemaker-local/run-1/DataQualityBaseline/baseline/constraints.json"
    world.store.put_bytes(
        uri, json.dumps({"version": 0.0, "features": [], "regression_constraints": {}}).encode()
    )
    world.capture(rows(10, seed=2))
    with pytest.raises(TemplateError, match="features is missing or empty"):
        world.monitor().run("dev")
    world.store.put_bytes(uri, b'{"features": [')
    with pytest.raises(TemplateError, match=rf"the baseline constraints {uri} is not JSON"):
        world.monitor().run("dev")


def test_nothing_serving_is_a_clear_error(world):
    world.register(rows(100, seed=1), deployed=False)
    with pytest.raises(TemplateError, match="nothing serves in stage 'dev': deploy a version there first"):
        world.monitor().run("dev")


def test_a_stage_without_monitoring_is_refused(world):
    import dataclasses

    world.config = dataclasses.replace(
        world.config, stages=(dataclasses.replace(world.stage, monitoring=None),)
    )
    with pytest.raises(ConfigError, match="monitoring is not enabled for stage 'dev'"):
        world.monitor().run("dev")

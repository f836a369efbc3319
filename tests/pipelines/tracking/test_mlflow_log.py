"""MLflow tracking of an execution: nested runs with parameters, per-round and final metrics, the
evaluation and the model link; and a tracking server that is bad or down costs one warning."""

import io
import socket

import execution_fixture
import pytest
from mlflow.tracking import MlflowClient

from pipelines.local.progress import SilentReporter
from pipelines.report.execution import local_execution
from pipelines.report.insights import gather
from pipelines.report.objects import LocalObjects
from pipelines.tracking.hooks import tracked
from pipelines.tracking.mlflow_log import configured_uri, local_uri, log_execution


@pytest.fixture
def built(tmp_path):
    return execution_fixture.build(tmp_path)


def runs_by_name(uri: str) -> dict:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(execution_fixture.PIPELINE)
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id], max_results=100)}


def simulate_run(built, reporter) -> None:
    """The events the runner sends for the fixture's execution."""
    reporter.started(built.arn, execution_fixture.step_types(), set())
    for name in ("Preprocess", "Train", "Tune", "Evaluate", "CheckAuc", "RegisterModel"):
        reporter.step(name, "Executing")
        reporter.step(name, "Succeeded")
    reporter.finished(None, None)


def test_a_run_logs_one_parent_per_execution_with_a_nested_run_per_job_and_trial(built, monkeypatch):
    monkeypatch.delenv("MLOPS_TRACKING_URI")
    err = io.StringIO()
    simulate_run(built, tracked(SilentReporter(), built.home, err=err, out=io.StringIO()))
    assert err.getvalue() == ""
    runs = runs_by_name(local_uri(built.home))
    parent = runs[built.execution_id]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sagemaker.execution_id"] == built.execution_id
    assert parent.data.params == {"AucThreshold": "0.6"}
    assert 0.5 < parent.data.metrics["test_auc"] <= 1.0
    artifacts = [a.path for a in MlflowClient(local_uri(built.home)).list_artifacts(parent.info.run_id)]
    assert artifacts == ["evaluation.json"]

    train = runs["Train"]
    assert train.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert train.data.tags["sagemaker.step"] == "Train"
    assert train.data.tags["sagemaker.model_artifact"].endswith("-Train/output/model.tar.gz")
    assert train.data.params == {"eta": "0.1", "max_depth": "6"}  # sagemaker_* left out
    assert train.data.metrics["validation:auc"] == 0.84
    history = MlflowClient(local_uri(built.home)).get_metric_history(train.info.run_id, "validation:auc")
    assert [(m.step, m.value) for m in history] == [(0, 0.78), (1, 0.82), (2, 0.84), (3, 0.84)]

    tune = runs["Tune"]
    assert tune.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert tune.data.metrics["best_objective"] == 0.88
    trials = {name: run for name, run in runs.items() if "-Tune-" in name}
    assert len(trials) == 3
    for run in trials.values():
        assert run.data.tags["mlflow.parentRunId"] == tune.info.run_id
        assert run.data.tags["sagemaker.model_artifact"].endswith("/output/model.tar.gz")
    trial = trials[f"{built.execution_id}-Tune-002"]
    assert trial.data.params == {"eta": "0.2", "max_depth": "4", "num_round": "8"}
    assert trial.data.metrics["validation:auc"] == 0.88


def test_tracking_off_logs_nothing(built, monkeypatch):
    monkeypatch.setenv("MLOPS_TRACKING_URI", "off")
    assert configured_uri(built.home) is None
    simulate_run(built, tracked(SilentReporter(), built.home, err=io.StringIO(), out=io.StringIO()))
    assert not (built.home / "mlflow").exists()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("not a uri", "is not an MLflow tracking URI"),
        (
            "arn:aws:sagemaker:us-east-1:1:mlflow-tracking-server/x",
            "is not a SageMaker MLflow tracking server ARN",
        ),
    ],
)
def test_a_malformed_uri_is_one_warning(built, monkeypatch, uri, expected):
    monkeypatch.setenv("MLOPS_TRACKING_URI", uri)
    err = io.StringIO()
    simulate_run(built, tracked(SilentReporter(), built.home, err=err, out=io.StringIO()))
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("warning: ")


def test_a_server_that_is_down_is_one_warning_and_the_run_goes_on(built, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLOPS_TRACKING_URI", f"http://127.0.0.1:{port}")
    err, out = io.StringIO(), io.StringIO()
    reporter = tracked(SilentReporter(), built.home, report=True, err=err, out=out)
    simulate_run(built, reporter)
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"warning: MLflow tracking at http://127.0.0.1:{port} failed")
    assert out.getvalue().startswith("report: ")  # the rest of the run's end still happens


def test_an_aws_execution_with_a_refusing_server_is_one_warning(built):
    view = local_execution(built.records, built.arn)
    found = gather(view, LocalObjects(built.store), with_predictions=False)
    warnings = []
    arn = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/team"
    assert log_execution(arn, view, found, warn=warnings.append) is False
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: MLflow tracking at {arn} failed")


def test_a_retried_execution_reopens_its_parent_run_instead_of_a_second_one(built, monkeypatch):
    monkeypatch.delenv("MLOPS_TRACKING_URI")
    simulate_run(built, tracked(SilentReporter(), built.home, err=io.StringIO(), out=io.StringIO()))
    reporter = tracked(SilentReporter(), built.home, err=io.StringIO(), out=io.StringIO())
    reporter.started(built.arn, execution_fixture.step_types(), {"Preprocess", "Train"})
    reporter.step("Tune", "Succeeded")
    reporter.finished(None, None)
    client = MlflowClient(tracking_uri=local_uri(built.home))
    experiment = client.get_experiment_by_name(execution_fixture.PIPELINE)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    names = [run.info.run_name for run in runs]
    assert names.count(built.execution_id) == 1
    assert names.count("Train") == 1  # kept by the retry: not logged twice
    assert names.count("Tune") == 2  # ran again in the retry

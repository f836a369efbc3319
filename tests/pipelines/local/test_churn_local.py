"""The project's own pipeline run end to end by ``run-pipeline --local`` on the bundled churn table.

A first run registers version 1, once for the module; each later test runs again on its own copy of
that home, so each passes alone and in any order: an uncached run registers version 2, a cached run
skips the expensive steps, and a run with an unreachable threshold ends at the Fail step. Tuning is
cut to 2 trials to keep the module at about half a minute.
"""

import contextlib
import io
import json
import shutil
import tarfile

import pytest

from pipelines import run_pipeline
from pipelines.churn import pipeline as churn
from pipelines.local.engine import LocalRunner
from pipelines.registry.evidence import evidence_of
from pipelines.registry.local import FILE_NAME, LocalModelRegistry
from steps.evaluate import EVALUATION_FILENAME, GATE_METRIC
from steps.train import MODEL_FILENAME

pytestmark = pytest.mark.slow

GROUP = "ChurnModelPackageGroup"
EXPENSIVE = {"Profile", "Preprocess", "Train", "Tune", "Evaluate"}
SMALL_TUNING = ["MaxTuningJobs=2", "MaxParallelTuningJobs=2"]


def run_locally(*extra):
    """``run-pipeline --local`` on the churn pipeline in $MLOPS_LOCAL_HOME: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["--local", "--module-name", "pipelines.churn.pipeline", *extra]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run_pipeline.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """(home, exit code, stdout, stderr) of a first run in a fresh home."""
    home = tmp_path_factory.mktemp("first-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_LOCAL_HOME", str(home))
        return (home, *run_locally("--parameters", *SMALL_TUNING))


@pytest.fixture
def home(first_run, tmp_path, monkeypatch):
    """This test's own copy of the home the first run left."""
    home = tmp_path / "home"
    shutil.copytree(first_run[0], home)
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(home))
    return home


def newest(home):
    runner = LocalRunner(home)
    execution = runner.records.list_executions()[0]
    steps = runner.records.list_execution_steps(execution.arn)["PipelineExecutionSteps"]
    return runner, execution, {step["StepName"]: step for step in steps}


def test_a_first_local_run_executes_the_definition_and_registers_version_1(first_run):
    home, code, out, err = first_run

    assert code == 0, err
    runner, execution, steps = newest(home)
    assert execution.status == "Succeeded"
    # The very definition run-pipeline would upsert, built with the local defaults.
    upserted = churn.get_pipeline(**run_pipeline.LOCAL_DEFAULTS).definition()
    assert json.loads(execution.definition) == json.loads(upserted)
    assert set(steps) == EXPENSIVE | {"DataQualityBaseline", "CheckAuc", "RegisterModel"}
    assert all(step["StepStatus"] == "Succeeded" for step in steps.values())
    assert steps["CheckAuc"]["Metadata"] == {"Condition": {"Outcome": "true"}}

    package = LocalModelRegistry(home / FILE_NAME).get_version(GROUP, 1)
    assert package.approval_status == "PendingManualApproval"
    with tarfile.open(fileobj=io.BytesIO(runner.store.get_bytes(package.model_data_url))) as archive:
        assert MODEL_FILENAME in archive.getnames()
    tuned = runner.records.steps(execution.arn)["Tune"].properties
    assert len(tuned["TrainingJobSummaries"]) == 2
    assert package.model_data_url.endswith(
        f"/{tuned['BestTrainingJob']['TrainingJobName']}/output/model.tar.gz"
    )

    evaluation_uri = next(
        o["S3Output"]["S3Uri"]
        for o in runner.records.steps(execution.arn)["Evaluate"].properties["ProcessingOutputConfig"][
            "Outputs"
        ]
    )
    report = json.loads(runner.store.get_bytes(f"{evaluation_uri}/{EVALUATION_FILENAME}"))
    auc = report["binary_classification_metrics"][GATE_METRIC["binary_classification"]]["value"]
    assert 0.8 <= auc <= 1.0
    assert f"gate CheckAuc: {auc:.6g} >= 0.8 -> true, ran IfSteps" in out
    assert f"registered {GROUP} version 1 (PendingManualApproval)" in out
    # What a reviewer sees: the version names its gate, the threshold this run held it to, and
    # the evaluation whose value passed it.
    evidence = evidence_of(package, runner.store.get_bytes)
    assert (evidence.gate_metric, evidence.threshold, evidence.gate_value) == ("auc", "0.8", auc)


def test_an_uncached_second_run_does_all_the_work_again_and_registers_version_2(home):
    code, out, err = run_locally("--no-cache", "--parameters", *SMALL_TUNING)

    assert code == 0, err
    _, execution, steps = newest(home)
    assert not any("CacheHitResult" in step for step in steps.values())
    assert [p.version for p in LocalModelRegistry(home / FILE_NAME).list_versions(GROUP)] == [1, 2]
    assert f"registered {GROUP} version 2" in out


def test_a_cached_rerun_reuses_the_expensive_steps_of_an_earlier_execution(home):
    before = {e.arn for e in LocalRunner(home).records.list_executions()}

    code, out, err = run_locally("--parameters", *SMALL_TUNING)

    assert code == 0, err
    _, execution, steps = newest(home)
    for name in EXPENSIVE:
        assert steps[name]["CacheHitResult"]["SourcePipelineExecutionArn"] in before
    # The gate and the registration are not cached, as on SageMaker: a new version is registered.
    assert "CacheHitResult" not in steps["RegisterModel"]
    cached = out.split("from cache: ", 1)[1].splitlines()[0]
    assert set(cached.split(", ")) == EXPENSIVE


def test_a_run_whose_gate_fails_ends_failed_at_the_fail_step_with_its_message(home):
    versions_before = len(LocalModelRegistry(home / FILE_NAME).list_versions(GROUP))

    code, out, err = run_locally("--parameters", *SMALL_TUNING, "AucThreshold=0.9999")

    assert code == 1
    _, execution, steps = newest(home)
    assert execution.status == "Failed"
    assert "RegisterModel" not in steps
    failed = steps["MetricBelowThreshold"]
    assert failed["StepStatus"] == "Failed"
    assert failed["FailureReason"].startswith("Test AUC 0.")
    assert failed["FailureReason"].endswith("is below the threshold 0.9999 so the model was not registered.")
    assert err.startswith(f"Error: execution {execution.execution_id} Failed: step 'MetricBelowThreshold'")
    assert "-> false, ran ElseSteps" in out
    assert len(LocalModelRegistry(home / FILE_NAME).list_versions(GROUP)) == versions_before

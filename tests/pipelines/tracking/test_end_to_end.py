"""``run-pipeline --local`` on the churn table, tracked into the default SQLite store: the runs in
MLflow, the report's path at the end, and the README's ``mlflow ui`` command pointing at the store."""

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import invoke

from pipelines import run_pipeline
from pipelines.tracking.mlflow_log import local_uri

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[3] / "README.md"


def test_a_local_run_is_tracked_and_ends_with_its_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path))
    monkeypatch.delenv("MLOPS_TRACKING_URI")
    argv = ["--local", "--module-name", "pipelines.churn.pipeline", "--parameters", "MaxTuningJobs=2"]
    code, out, err = invoke(run_pipeline.main, argv, capsys)
    assert code == 0, err
    assert "warning" not in err
    last = out.strip().splitlines()[-1]
    assert last.startswith("report: ") and last.endswith(".html")
    page = Path(last[len("report: ") :])
    html = page.read_text()
    assert set(re.findall(r'data-step="([^"]+)"', html)) == {
        "Profile",
        "Preprocess",
        "DataQualityBaseline",
        "Train",
        "Tune",
        "Evaluate",
        "CheckAuc",
        "RegisterModel",
        "MetricBelowThreshold",
    }
    assert page.stat().st_size < 5 * 1024 * 1024

    client = MlflowClient(tracking_uri=local_uri(tmp_path))
    experiment = client.get_experiment_by_name("ChurnPipeline")
    runs = client.search_runs([experiment.experiment_id])
    execution_id = page.stem
    names = sorted(run.info.run_name for run in runs)
    assert execution_id in names and "Train" in names and "Tune" in names
    assert len([n for n in names if "-Tune-" in n]) == 2
    parent = next(run for run in runs if run.info.run_name == execution_id)
    assert parent.data.metrics["test_auc"] > 0.8


def test_the_readme_mlflow_ui_command_points_at_the_local_store(tmp_path):
    command = re.search(r"mlflow ui --backend-store-uri \"sqlite:///\$HOME/([^\"]+)\"", README.read_text())
    assert command, "README: no mlflow ui command"
    home = Path.home() / ".local/share/sagemaker-mlops-template"
    assert local_uri(home) == f"sqlite:///{Path.home() / command.group(1)}"

"""The direct writer of MLflow's SQLite store: what it writes reads back through MLflow exactly as
what MLflow's own client writes, and a local run into an existing store never imports MLflow."""

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import execution_fixture
import pytest
from mlflow.tracking import MlflowClient

from pipelines.report.execution import local_execution
from pipelines.report.insights import gather
from pipelines.report.objects import LocalObjects
from pipelines.tracking import mlflow_log, sqlite_store

ROOT = Path(__file__).resolve().parents[3]


def mlflow_store(path: Path) -> str:
    """A store created and migrated by MLflow itself, as the first tracked run of a home leaves it."""
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


def test_the_installed_mlflow_creates_a_store_the_writer_matches(tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision in sqlite_store.SCHEMA_REVISIONS, (
        f"MLflow's schema moved to {revision}: review the writer"
    )
    assert sqlite_store.usable(uri)


def test_a_store_at_another_revision_or_none_at_all_goes_through_mlflow(tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
    assert not sqlite_store.usable(uri)
    assert not mlflow_log.MlflowLogger(uri).direct
    assert not sqlite_store.usable(f"sqlite:///{tmp_path / 'none.db'}")
    assert not sqlite_store.usable("http://127.0.0.1:5000")


def dump(uri: str, experiment: str, root: str) -> dict:
    """Everything MLflow reads back of an experiment, with run ids replaced by run names and the
    artifact root by <root>."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=1000)
    names = {run.info.run_id: run.info.run_name for run in runs}
    dumped = {}
    for run in runs:
        tags = {k: names.get(v, v) if k == "mlflow.parentRunId" else v for k, v in run.data.tags.items()}
        dumped[run.info.run_name] = {
            "status": run.info.status,
            "lifecycle": run.info.lifecycle_stage,
            "user": run.info.user_id,
            "ended": run.info.end_time is not None and run.info.end_time >= run.info.start_time,
            "artifact_uri": run.info.artifact_uri.replace(run.info.run_id, "<id>").replace(root, "<root>"),
            "params": run.data.params,
            "tags": tags,
            "metrics": run.data.metrics,
            "history": {
                key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                for key in run.data.metrics
            },
            "artifacts": [a.path for a in client.list_artifacts(run.info.run_id)],
        }
    return dumped


def test_what_the_writer_logs_reads_back_as_what_mlflow_logs(tmp_path, monkeypatch):
    built = execution_fixture.build(tmp_path / "home")
    view = local_execution(built.records, built.arn)
    found = gather(view, LocalObjects(built.store), with_predictions=False)
    logged = {}
    for direct in (False, True):
        uri = mlflow_store(tmp_path / f"direct-{direct}.db")
        monkeypatch.setattr(sqlite_store, "usable", lambda _uri, direct=direct: direct)
        warnings = []
        # Logged twice: the second time reopens the parent run, as a retried execution does.
        for _ in range(2):
            assert mlflow_log.log_execution(
                uri, view, found, artifact_root=tmp_path / f"artifacts-{direct}", warn=warnings.append
            )
        assert warnings == []
        logged[direct] = dump(uri, view.pipeline_name, (tmp_path / f"artifacts-{direct}").resolve().as_uri())
    assert logged[True] == logged[False]
    assert {"Train", "Tune", built.execution_id} <= set(logged[True])


def test_a_local_run_into_an_existing_store_never_imports_mlflow(tmp_path):
    built = execution_fixture.build(tmp_path / "home")
    mlflow_store(built.home / "mlflow" / "mlflow.db")
    # The events the runner sends (test_mlflow_log.simulate_run, which imports MLflow itself).
    script = textwrap.dedent(
        f"""
        import io, sys
        from pipelines.local.progress import SilentReporter
        from pipelines.tracking.hooks import tracked

        err = io.StringIO()
        reporter = tracked(SilentReporter(), {str(built.home)!r}, err=err, out=io.StringIO())
        reporter.started({built.arn!r}, {execution_fixture.step_types()!r}, set())
        for name in ("Preprocess", "Train", "Tune", "Evaluate", "CheckAuc", "RegisterModel"):
            reporter.step(name, "Executing")
            reporter.step(name, "Succeeded")
        reporter.finished(None, None)
        assert err.getvalue() == "", err.getvalue()
        print(sorted(name for name in ("mlflow", "sqlalchemy", "alembic") if name in sys.modules))
        """
    )
    env = {"PATH": "/usr/bin:/bin", "MLOPS_TRACKING_URI": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    runs = {run.info.run_name for run in MlflowClient(mlflow_log.local_uri(built.home)).search_runs(["1"])}
    assert {"Train", "Tune", built.execution_id} <= runs


@pytest.mark.parametrize(
    ("value", "stored"), [(float("nan"), (0.0, True)), (float("inf"), (1.7976931348623157e308, False))]
)
def test_non_finite_metrics_are_kept_as_mlflows_store_keeps_them(value, stored):
    assert sqlite_store._stored(value) == stored

"""What only the local registry does: a full approval history, multi-process safety, persistence."""

import multiprocessing
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from pipelines.errors import ConfigError, TemplateError
from pipelines.registry import APPROVED, PENDING, REJECTED, RegistryConflict, local
from pipelines.registry.local import LocalModelRegistry

IMAGE = "xgboost:3.2-0"


@pytest.fixture
def registry(tmp_path):
    registry = LocalModelRegistry(tmp_path / "registry.sqlite")
    registry.create_group("churn")
    return registry


def register(registry, **overrides):
    return registry.register(
        "churn", **{"model_data_url": "s3://b/model.tar.gz", "image_uri": IMAGE, **overrides}
    )


def test_approval_history_records_who_when_and_why_in_order(registry):
    register(registry, by="ci-pipeline")
    registry.update_approval("churn", 1, APPROVED, by="alice", reason="AUC 0.91 beats 0.88")
    registry.update_approval("churn", 1, REJECTED, by="bob", reason="bias on segment B")
    registry.update_approval("churn", 1, APPROVED, by="alice", reason="retrained data fixed bias")

    history = registry.approval_history("churn", 1)
    assert [(c.by, c.from_status, c.to_status, c.reason) for c in history] == [
        ("ci-pipeline", None, PENDING, "registered"),
        ("alice", PENDING, APPROVED, "AUC 0.91 beats 0.88"),
        ("bob", APPROVED, REJECTED, "bias on segment B"),
        ("alice", REJECTED, APPROVED, "retrained data fixed bias"),
    ]
    times = [c.time for c in history]
    assert times == sorted(times)
    assert all(t.utcoffset().total_seconds() == 0 for t in times)
    assert history[0].to_dict()["Time"].endswith("+00:00")


def test_a_registration_with_an_initial_status_starts_its_history_there(registry):
    register(registry, approval_status=APPROVED)
    (first,) = registry.approval_history("churn", 1)
    assert (first.by, first.from_status, first.to_status) == ("pipeline", None, APPROVED)


def test_a_status_change_and_its_history_row_commit_together(registry, monkeypatch):
    register(registry)

    def broken(*args):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(local, "_record_change", broken)
    with pytest.raises(sqlite3.OperationalError):
        registry.update_approval("churn", 1, APPROVED, by="alice")
    monkeypatch.undo()
    assert registry.get_version("churn", 1).approval_status == PENDING
    assert len(registry.approval_history("churn", 1)) == 1


def test_versions_stay_gap_free_when_four_processes_register_at_once(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import registry_workers

    path = tmp_path / "shared.sqlite"
    context = multiprocessing.get_context("spawn")
    workers, per_worker = 4, 10
    start = context.Barrier(workers)
    processes = [
        context.Process(
            target=registry_workers.register_many, args=(str(path), "churn", per_worker, f"w{i}", start)
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * workers

    packages = LocalModelRegistry(path).list_versions("churn")
    assert [p.version for p in packages] == list(range(1, workers * per_worker + 1))
    assert Counter(p.customer_metadata["worker"] for p in packages) == {
        f"w{i}": per_worker for i in range(workers)
    }
    assert len({p.arn for p in packages}) == workers * per_worker


def test_the_registry_survives_reopening(tmp_path):
    path = tmp_path / "registry.sqlite"
    first = LocalModelRegistry(path)
    first.create_group("churn", "churn classifier")
    first.register("churn", model_data_url="s3://b/1.tar.gz", image_uri=IMAGE, customer_metadata={"k": "v"})
    first.update_approval("churn", 1, APPROVED, by="alice", reason="ok")

    reopened = LocalModelRegistry(path)
    assert reopened.get_group("churn") == first.get_group("churn")
    package = reopened.get_version("churn", 1)
    assert (package.approval_status, package.customer_metadata) == (APPROVED, {"k": "v"})
    assert [c.to_status for c in reopened.approval_history("churn", 1)] == [PENDING, APPROVED]
    assert reopened.register("churn", model_data_url="s3://b/2.tar.gz", image_uri=IMAGE).version == 2


def test_the_default_file_lives_in_the_local_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path / "home"))
    registry = LocalModelRegistry()
    assert registry.path == tmp_path / "home" / "registry.sqlite"
    assert registry.path.is_file()


def test_groups_differing_only_in_case_conflict_because_their_package_arns_would(registry):
    with pytest.raises(RegistryConflict, match="model-package-group/churn"):
        registry.create_group("Churn")


def test_a_file_that_is_not_a_registry_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "registry.sqlite"
    path.write_text("not a database, just some text that is long enough to have a header" * 20)
    with pytest.raises(ConfigError, match=f"{path} is not a registry database"):
        LocalModelRegistry(path)


def test_a_registry_written_by_newer_code_is_refused(tmp_path):
    path = tmp_path / "registry.sqlite"
    LocalModelRegistry(path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="schema version 99, newer than this code"):
        LocalModelRegistry(path)


def test_a_registry_locked_past_the_busy_timeout_is_reported_in_one_line(registry, monkeypatch):
    monkeypatch.setattr(local, "BUSY_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(registry.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TemplateError, match="is locked by another process"):
            register(registry)
    finally:
        holder.close()
    assert register(registry).version == 1

"""The few MLflow client calls the logger makes, written straight into an MLflow SQLite store.

Importing MLflow and opening its SQLAlchemy store costs a local run more CPU than all its logging
(benchmarks/report.py; docs/tracking.md). A store MLflow itself created, at a schema revision this
module is tested against, is written here with sqlite3 exactly as MLflow's SqlAlchemyStore writes
it; any other store goes through MLflow.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

#: Alembic revisions of MLflow's tracking schema that this writer matches (MLflow 3.17's head).
#: tests/pipelines/tracking/test_sqlite_store.py fails when the installed MLflow's head is not here.
SCHEMA_REVISIONS = frozenset({"dc11669786a5"})
#: What the writer touches, column by column, as MLflow 3.17 creates it.
_COLUMNS = {
    "experiments": {"experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                    "last_update_time", "workspace"},
    "runs": {"run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
             "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id",
             "deleted_time"},
    "params": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "run_uuid", "step", "is_nan"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "tags": {"key", "value", "run_uuid"},
}  # fmt: skip
_WORKSPACE = "default"  # MLflow's workspace for stores that do not use workspaces
_RUN_NAME_TAG = "mlflow.runName"
_TERMINAL = ("FINISHED", "FAILED", "KILLED")
_FILTER = re.compile(r"tags\.`([^`]+)` = '([^']*)'")
_MAX_FLOAT = 1.7976931348623157e308  # how MLflow's store keeps +-inf


class StoreSchemaError(Exception):
    """The store is not one this writer matches."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for any other URI."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def usable(uri: str) -> bool:
    """Whether ``uri`` is an existing MLflow SQLite store at a revision this writer matches."""
    path = sqlite_path(uri)
    if path is None or not path.is_file():
        return False
    try:
        with _connect(path) as db:
            _check_schema(db)
    except (sqlite3.Error, StoreSchemaError):
        return False
    return True


def _connect(path: Path) -> sqlite3.Connection:
    # MLflow's own writers may hold the file briefly (another run, `mlflow ui`): wait, as SQLAlchemy does.
    return sqlite3.connect(path, timeout=30)


def _check_schema(db: sqlite3.Connection) -> None:
    revisions = {row[0] for row in db.execute("SELECT version_num FROM alembic_version")}
    if not revisions <= SCHEMA_REVISIONS or not revisions:
        raise StoreSchemaError(f"schema revision {sorted(revisions)} is not {sorted(SCHEMA_REVISIONS)}")
    for table, columns in _COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not columns <= present:
            raise StoreSchemaError(f"table {table} lacks {sorted(columns - present)}")


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class _Info:
    run_id: str


@dataclass(frozen=True)
class _Run:
    info: _Info


@dataclass(frozen=True)
class _Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    tags: dict = field(default_factory=dict)


class SqliteTrackingClient:
    """The MlflowClient methods MlflowLogger calls, with their arguments and results' shapes."""

    def __init__(self, uri: str):
        self.path = sqlite_path(uri)
        with _connect(self.path) as db:
            _check_schema(db)

    def _now(self) -> int:
        return int(time.time() * 1000)

    def get_experiment_by_name(self, name: str) -> _Experiment | None:
        with _connect(self.path) as db:
            row = db.execute(
                "SELECT experiment_id, name, artifact_location FROM experiments "
                "WHERE name = ? AND workspace = ? AND lifecycle_stage = 'active'",
                (name, _WORKSPACE),
            ).fetchone()
        return _Experiment(str(row[0]), row[1], row[2]) if row else None

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
        if artifact_location is None:
            raise StoreSchemaError("an experiment needs an artifact location here")
        now = self._now()
        with _connect(self.path) as db:
            cursor = db.execute(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, "
                "last_update_time, workspace) VALUES (?, ?, 'active', ?, ?, ?)",
                (name, artifact_location, now, now, _WORKSPACE),
            )
        return str(cursor.lastrowid)

    def create_run(self, experiment_id: str, run_name: str | None = None, tags: dict | None = None) -> _Run:
        tags = dict(tags or {})
        if run_name:
            tags.setdefault(_RUN_NAME_TAG, run_name)
        run_id = uuid.uuid4().hex
        with _connect(self.path) as db:
            (location,) = db.execute(
                "SELECT artifact_location FROM experiments WHERE experiment_id = ?", (int(experiment_id),)
            ).fetchone()
            db.execute(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
                "VALUES (?, ?, 'UNKNOWN', '', '', ?, 'RUNNING', ?, NULL, '', 'active', ?, ?)",
                (
                    run_id,
                    tags.get(_RUN_NAME_TAG, ""),
                    tags.get("mlflow.user", "unknown"),
                    self._now(),
                    f"{location}/{run_id}/artifacts",
                    int(experiment_id),
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                [(key, str(value), run_id) for key, value in tags.items()],
            )
        return _Run(_Info(run_id))

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", max_results: int = 1000):
        """Runs whose tags equal the filter's ``tags.`key` = 'value'`` terms (joined by ``and``),
        newest first: the only filter the logger uses."""
        terms = _FILTER.findall(filter_string)
        if len(terms) != filter_string.count(" = "):
            raise StoreSchemaError(f"unsupported filter {filter_string!r}")
        # Only "?" placeholders are joined into the text; every value is bound.
        placeholders = ",".join("?" * len(experiment_ids))
        query = (
            "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active' "  # noqa: S608
            f"AND experiment_id IN ({placeholders})"
        )
        values: list = [int(e) for e in experiment_ids]
        for key, value in terms:
            query += " AND run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)"
            values += [key, value]
        query += " ORDER BY start_time DESC, run_uuid LIMIT ?"
        with _connect(self.path) as db:
            rows = db.execute(query, [*values, max_results]).fetchall()
        return [_Run(_Info(row[0])) for row in rows]

    def update_run(self, run_id: str, status: str | None = None) -> None:
        with _connect(self.path) as db:
            db.execute("UPDATE runs SET status = COALESCE(?, status) WHERE run_uuid = ?", (status, run_id))

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        if status not in _TERMINAL:
            raise StoreSchemaError(f"{status} is not a terminal run status")
        with _connect(self.path) as db:
            db.execute(
                "UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?", (status, self._now(), run_id)
            )

    def set_tag(self, run_id: str, key: str, value) -> None:
        with _connect(self.path) as db:
            db.execute(
                "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                (key, str(value), run_id),
            )
            if key == _RUN_NAME_TAG:
                db.execute("UPDATE runs SET name = ? WHERE run_uuid = ?", (str(value), run_id))

    def log_batch(self, run_id: str, metrics=(), params=()) -> None:
        with _connect(self.path) as db:
            for param in params:
                found = db.execute(
                    "SELECT value FROM params WHERE key = ? AND run_uuid = ?", (param.key, run_id)
                ).fetchone()
                if found is None:
                    db.execute(
                        "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                        (param.key, param.value, run_id),
                    )
                elif found[0] != param.value:
                    # MLflow refuses to change a logged parameter; so does this.
                    raise StoreSchemaError(f"param {param.key!r} of run {run_id} is already {found[0]!r}")
            latest: dict[str, tuple] = {}
            for metric in metrics:
                value, is_nan = _stored(metric.value)
                db.execute(
                    "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (metric.key, value, metric.timestamp, run_id, metric.step, int(is_nan)),
                )
                candidate = (metric.step, metric.timestamp, value, int(is_nan))
                if metric.key not in latest or candidate[:3] > latest[metric.key][:3]:
                    latest[metric.key] = candidate
            for key, (step, timestamp, value, is_nan) in latest.items():
                current = db.execute(
                    "SELECT step, timestamp, value FROM latest_metrics WHERE key = ? AND run_uuid = ?",
                    (key, run_id),
                ).fetchone()
                # MLflow keeps the greatest (step, timestamp, value) as the latest value.
                if current is None or (step, timestamp, value) > tuple(current):
                    db.execute(
                        "INSERT OR REPLACE INTO latest_metrics "
                        "(key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)",
                        (key, value, timestamp, step, is_nan, run_id),
                    )

    def log_dict(self, run_id: str, dictionary: dict, artifact_file: str) -> None:
        with _connect(self.path) as db:
            (artifact_uri,) = db.execute(
                "SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)
            ).fetchone()
        parsed = urlparse(artifact_uri)
        if parsed.scheme not in ("", "file"):
            raise StoreSchemaError(f"artifacts at {artifact_uri} are not local files")
        target = Path(unquote(parsed.path)) / artifact_file
        target.parent.mkdir(parents=True, exist_ok=True)
        # As MlflowClient.log_dict writes a .json artifact.
        target.write_text(json.dumps(dictionary, indent=2))


def _stored(value: float) -> tuple[float, bool]:
    """(value as MLflow's store keeps it, is_nan)."""
    value = float(value)
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (_MAX_FLOAT if value > 0 else -_MAX_FLOAT), False
    return value, False

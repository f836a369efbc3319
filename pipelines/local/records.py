"""Durable records of local pipeline executions and their steps (SQLite in the local home).

Kept apart from the control loop. Answers are shaped like SageMaker's DescribePipelineExecution,
ListPipelineExecutions and ListPipelineExecutionSteps. A runner holds an exclusive lock file for as
long as it drives an execution, so an execution left ``Executing`` by a runner that was killed
(even with SIGKILL, which releases the lock) is recognised as interrupted and can be retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipelines.errors import NotFoundError, UsageError
from pipelines.local_home import LOCAL_ACCOUNT, LOCAL_REGION, storage_error

EXECUTING, SUCCEEDED, FAILED, STOPPED = "Executing", "Succeeded", "Failed", "Stopped"
STEP_STARTING, STEP_EXECUTING = "Starting", "Executing"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_reason TEXT,
    definition TEXT NOT NULL,
    parameters TEXT NOT NULL,
    use_cache INTEGER NOT NULL,
    display_name TEXT,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    execution_arn TEXT NOT NULL REFERENCES executions(arn),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started TEXT,
    ended TEXT,
    failure_reason TEXT,
    properties TEXT,
    metadata TEXT,
    cache_key TEXT,
    cache_source TEXT,
    log_path TEXT,
    input_digests TEXT,
    changed_inputs TEXT,
    PRIMARY KEY (execution_arn, name)
);
CREATE INDEX IF NOT EXISTS steps_cache ON steps (type, cache_key, status);
"""
_INSERT_STEP = (
    "INSERT OR REPLACE INTO steps (execution_arn, name, type, status, attempts, started, ended, "
    "failure_reason, properties, metadata, cache_key, cache_source, log_path, input_digests, "
    "changed_inputs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def pipeline_arn(name: str) -> str:
    return f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT}:pipeline/{name.lower()}"


def execution_arn(pipeline_name: str, execution_id: str) -> str:
    return f"{pipeline_arn(pipeline_name)}/execution/{execution_id}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class Execution:
    arn: str
    pipeline_name: str
    execution_id: str
    status: str
    failure_reason: str | None
    definition: str
    parameters: dict[str, Any]
    use_cache: bool
    display_name: str | None
    created: str
    modified: str


@dataclass(frozen=True)
class StepRecord:
    name: str
    type: str
    status: str
    attempts: int
    started: str | None
    ended: str | None
    failure_reason: str | None
    properties: dict | None
    metadata: dict | None
    cache_key: str | None
    cache_source: str | None
    log_path: str | None
    #: The content (digest per input URI) the step's result was computed from.
    input_digests: dict | None = None
    #: For a cache hit: the inputs whose content differs from that of the reused run.
    changed_inputs: list | None = None


class ExecutionRecords:
    """The executions database at ``path``; each call opens its own connection (thread-safe)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.locks = self.path.parent / "locks"
        self.locks.mkdir(exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            # Records written before these columns existed gain them, empty.
            present = {row["name"] for row in db.execute("PRAGMA table_info(steps)")}
            for column in ("input_digests", "changed_inputs"):
                if column not in present:
                    db.execute(f"ALTER TABLE steps ADD COLUMN {column} TEXT")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.OperationalError as err:
            raise storage_error(self.path, err) or err from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            yield db
        except sqlite3.OperationalError as err:
            raise storage_error(self.path, err) or err from None
        finally:
            db.close()

    # ---- executions

    def create_execution(
        self,
        pipeline_name: str,
        execution_id: str,
        definition: str,
        parameters: dict[str, Any],
        use_cache: bool,
        display_name: str | None = None,
    ) -> Execution:
        arn = execution_arn(pipeline_name, execution_id)
        stamp = _now()
        with self._connect() as db:
            db.execute(
                "INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    arn,
                    pipeline_name,
                    execution_id,
                    EXECUTING,
                    None,
                    definition,
                    json.dumps(parameters),
                    int(use_cache),
                    display_name,
                    stamp,
                    stamp,
                ),
            )
        return self.get_execution(arn)

    def get_execution(self, reference: str) -> Execution:
        """An execution by ARN or by execution id; NotFoundError listing the newest ids if none."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM executions WHERE arn = ? OR execution_id = ?", (reference, reference)
            ).fetchone()
            if row is None:
                recent = [
                    r[0]
                    for r in db.execute("SELECT execution_id FROM executions ORDER BY created DESC LIMIT 5")
                ]
        if row is None:
            known = ", ".join(recent) or "none yet"
            raise NotFoundError(
                f"no local execution {reference!r} (newest: {known}); see local-pipeline list-executions"
            )
        return _execution(row)

    def set_execution_status(self, arn: str, status: str, failure_reason: str | None = None) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE executions SET status = ?, failure_reason = ?, modified = ? WHERE arn = ?",
                (status, failure_reason, _now(), arn),
            )

    def list_executions(self, pipeline_name: str | None = None) -> list[Execution]:
        """Newest first, like ListPipelineExecutions."""
        query, args = "SELECT * FROM executions", ()
        if pipeline_name:
            query, args = query + " WHERE pipeline_name = ?", (pipeline_name,)
        with self._connect() as db:
            return [_execution(row) for row in db.execute(query + " ORDER BY created DESC", args)]

    # ---- the runner's lock

    @contextlib.contextmanager
    def hold(self, execution_id: str) -> Iterator[None]:
        """Be the one runner of the execution while the block runs; UsageError if another live
        process already is."""
        path = self.locks / f"{execution_id}.lock"
        handle = open(path, "w")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(
                    f"execution {execution_id} is being run by another live process; wait for it"
                ) from None
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            handle.close()

    def runner_alive(self, execution: Execution) -> bool:
        """Whether a live process holds the execution's lock."""
        path = self.locks / f"{execution.execution_id}.lock"
        if not path.exists():
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # ---- steps

    def put_step(
        self,
        execution: str,
        name: str,
        type_: str,
        status: str,
        *,
        attempts: int = 0,
        started: str | None = None,
        ended: str | None = None,
        failure_reason: str | None = None,
        properties: dict | None = None,
        metadata: dict | None = None,
        cache_key: str | None = None,
        cache_source: str | None = None,
        log_path: str | None = None,
        input_digests: dict | None = None,
        changed_inputs: list | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                _INSERT_STEP,
                (
                    execution,
                    name,
                    type_,
                    status,
                    attempts,
                    started,
                    ended,
                    failure_reason,
                    _json(properties),
                    _json(metadata),
                    cache_key,
                    cache_source,
                    log_path,
                    _json(input_digests),
                    _json(changed_inputs),
                ),
            )
            db.execute("UPDATE executions SET modified = ? WHERE arn = ?", (_now(), execution))

    def steps(self, execution: str) -> dict[str, StepRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM steps WHERE execution_arn = ? ORDER BY started, name", (execution,)
            ).fetchall()
        return {row["name"]: _step(row) for row in rows}

    def delete_step(self, execution: str, name: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM steps WHERE execution_arn = ? AND name = ?", (execution, name))

    def cached(
        self, type_: str, cache_key: str, expire_after: timedelta | None
    ) -> tuple[str, StepRecord] | None:
        """The newest succeeded step of ``type_`` with ``cache_key`` within ``expire_after``, and its
        execution's ARN; cache hits point at the run that did the work, as on SageMaker."""
        query = (
            "SELECT * FROM steps WHERE type = ? AND cache_key = ? AND status = ? ORDER BY ended DESC LIMIT 20"
        )
        with self._connect() as db:
            rows = db.execute(query, (type_, cache_key, SUCCEEDED)).fetchall()
        for row in rows:
            if expire_after is not None and row["ended"]:
                ended = datetime.fromisoformat(row["ended"])
                if datetime.now(timezone.utc) - ended > expire_after:
                    continue
            return row["cache_source"] or row["execution_arn"], _step(row)
        return None

    # ---- AWS-shaped answers

    def describe_execution(self, reference: str) -> dict:
        execution = self.get_execution(reference)
        answer = {
            "PipelineArn": pipeline_arn(execution.pipeline_name),
            "PipelineExecutionArn": execution.arn,
            "PipelineExecutionDisplayName": execution.display_name or execution.execution_id,
            "PipelineExecutionStatus": self.effective_status(execution),
            "CreationTime": execution.created,
            "LastModifiedTime": execution.modified,
            "PipelineParameters": [
                {"Name": key, "Value": _render(value)} for key, value in execution.parameters.items()
            ],
        }
        reason = execution.failure_reason
        if answer["PipelineExecutionStatus"] == FAILED and not reason:
            reason = "interrupted: the runner stopped before the execution ended; retry it"
        if reason:
            answer["FailureReason"] = reason
        return answer

    def effective_status(self, execution: Execution) -> str:
        """Executing only while a runner is alive; a dead runner's execution counts as Failed."""
        if execution.status == EXECUTING and not self.runner_alive(execution):
            return FAILED
        return execution.status

    def list_execution_steps(self, reference: str) -> dict:
        execution = self.get_execution(reference)
        alive = self.runner_alive(execution)
        entries = []
        for record in sorted(self.steps(execution.arn).values(), key=lambda r: r.started or "", reverse=True):
            status = record.status
            reason = record.failure_reason
            if status in (STEP_STARTING, STEP_EXECUTING) and not alive:
                status, reason = FAILED, "interrupted: the runner stopped while this step ran"
            entry = {"StepName": record.name, "StepStatus": status, "AttemptCount": record.attempts}
            if record.started:
                entry["StartTime"] = record.started
            if record.ended:
                entry["EndTime"] = record.ended
            if reason:
                entry["FailureReason"] = reason
            if record.metadata:
                entry["Metadata"] = record.metadata
            if record.cache_source:
                entry["CacheHitResult"] = {"SourcePipelineExecutionArn": record.cache_source}
            if record.log_path:
                entry["LogPath"] = record.log_path  # local extension: where the job's output is
            entries.append(entry)
        return {"PipelineExecutionSteps": entries}

    def list_executions_answer(self, pipeline_name: str | None = None) -> dict:
        return {
            "PipelineExecutionSummaries": [
                {
                    "PipelineExecutionArn": e.arn,
                    "PipelineExecutionDisplayName": e.display_name or e.execution_id,
                    "PipelineExecutionStatus": self.effective_status(e),
                    "StartTime": e.created,
                    "PipelineName": e.pipeline_name,
                }
                for e in self.list_executions(pipeline_name)
            ]
        }


def _render(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _execution(row: sqlite3.Row) -> Execution:
    return Execution(
        arn=row["arn"],
        pipeline_name=row["pipeline_name"],
        execution_id=row["execution_id"],
        status=row["status"],
        failure_reason=row["failure_reason"],
        definition=row["definition"],
        parameters=json.loads(row["parameters"]),
        use_cache=bool(row["use_cache"]),
        display_name=row["display_name"],
        created=row["created"],
        modified=row["modified"],
    )


def _step(row: sqlite3.Row) -> StepRecord:
    return StepRecord(
        name=row["name"],
        type=row["type"],
        status=row["status"],
        attempts=row["attempts"],
        started=row["started"],
        ended=row["ended"],
        failure_reason=row["failure_reason"],
        properties=json.loads(row["properties"]) if row["properties"] else None,
        metadata=json.loads(row["metadata"]) if row["metadata"] else None,
        cache_key=row["cache_key"],
        cache_source=row["cache_source"],
        log_path=row["log_path"],
        input_digests=json.loads(row["input_digests"]) if row["input_digests"] else None,
        changed_inputs=json.loads(row["changed_inputs"]) if row["changed_inputs"] else None,
    )

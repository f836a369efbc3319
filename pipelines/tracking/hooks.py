"""What a local run does besides running: log each step to MLflow as it ends, and write the report.

``tracked(reporter)`` wraps the runner's progress reporter. MLflow is imported and the store opened
on a background thread while the first steps run, and each finished step is logged while the next
ones run, so tracking stays off the critical path; its only failure mode is one warning.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pipelines.local.progress import Reporter
from pipelines.local_home import EXECUTIONS_DB, MLFLOW, OBJECT_STORE

_DONE = ("Succeeded", "Cached", "Failed")
#: The step types MlflowLogger.log_step makes runs of.
TRACKED_TYPES = ("Training", "Tuning")
#: How long the end of a run waits for tracking still in flight (a slow server, a first migration).
FINISH_TIMEOUT_S = 120


class _Worker:
    """One thread running submitted calls in order; after the first failure the rest are skipped."""

    def __init__(self, warn: Callable[[str], None], uri: str, errors: Callable[[], tuple]):
        self.warn = warn
        self.uri = uri
        self.errors = errors
        self.calls: queue.Queue = queue.Queue()
        self.failed = False
        self.thread = threading.Thread(target=self._loop, name="mlflow-tracking", daemon=True)
        self.thread.start()

    def submit(self, call: Callable[[], None]) -> None:
        self.calls.put(call)

    def close(self, timeout: float) -> None:
        self.calls.put(None)
        self.thread.join(timeout)
        if self.thread.is_alive() and not self.failed:
            self.failed = True
            self.warn(
                f"warning: MLflow tracking at {self.uri} did not finish in {timeout:.0f} s; left running"
            )

    def _loop(self) -> None:
        # The lowest CPU priority for this thread alone (Linux schedules threads as tasks): MLflow's
        # import and calls then use what the jobs leave idle instead of slowing them down.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        from pipelines.tracking.mlflow_log import _one_line

        try:
            errors = self.errors()
        except ImportError as err:
            self.warn(f"warning: MLflow is not installed ({err}); the execution is not tracked")
            errors, self.failed = (), True
        while (call := self.calls.get()) is not None:
            if self.failed:
                continue
            try:
                call()
            except errors as err:
                self.failed = True
                self.warn(
                    f"warning: MLflow tracking at {self.uri} failed ({_one_line(err)}); "
                    "the execution ran on, untracked"
                )


class TrackedReporter(Reporter):
    def __init__(
        self,
        inner: Reporter,
        home: Path,
        *,
        uri: str | None,
        report: bool,
        out: IO[str],
        err: IO[str],
    ):
        self.inner, self.home, self.uri, self.report = inner, Path(home), uri, report
        self.out, self.err = out, err
        self.arn: str | None = None
        self.logger = None
        self.worker: _Worker | None = None
        self.types: dict[str, str] = {}

    def _warn(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def _records(self):
        from pipelines.local.records import ExecutionRecords

        return ExecutionRecords(self.home / EXECUTIONS_DB)

    def _view(self):
        from pipelines.report.execution import local_execution

        return local_execution(self._records(), self.arn)

    def started(self, execution_arn: str, steps: list[tuple[str, str]], kept: set[str]) -> None:
        self.inner.started(execution_arn, steps, kept)
        self.arn = execution_arn
        self.types = dict(steps)
        if self.uri is None:
            return
        from pipelines.tracking.mlflow_log import MlflowLogger, TrackingError

        try:
            self.logger = MlflowLogger(self.uri)
        except TrackingError as error:
            self._warn(f"warning: {error}; the execution is not tracked")
            return
        self.worker = _Worker(self._warn, self.uri, self.logger.errors)
        view = self._view()
        pipeline = view.pipeline_name
        self.worker.submit(lambda: self.logger.open(pipeline, self.home / MLFLOW / "artifacts"))
        reopened = []
        self.worker.submit(lambda: reopened.append(self.logger.log_start(view)))
        for name in sorted(kept & self._tracked_steps()):  # a retry's, logged then unless not tracked
            self.worker.submit(lambda name=name: None if reopened[0] else self._log_step(name))

    def _tracked_steps(self) -> set[str]:
        # Only these become runs (MlflowLogger.log_step): the others need no view rebuilt for them.
        return {name for name, type_ in self.types.items() if type_ in TRACKED_TYPES}

    def _log_step(self, name: str) -> None:
        view = self._view()
        if name in view.steps:
            self.logger.log_step(view, view.steps[name])

    def step(self, name: str, status: str, detail: str = "", log_path: Path | None = None) -> None:
        self.inner.step(name, status, detail, log_path)
        if self.worker is not None and status in _DONE and self.types.get(name) in TRACKED_TYPES:
            self.worker.submit(lambda: self._log_step(name))

    def finished(self, outcome: Any, definition: Any) -> None:
        self.inner.finished(outcome, definition)
        if self.worker is None and not self.report:
            return
        from pipelines.local.store import ObjectStore
        from pipelines.report.insights import gather
        from pipelines.report.objects import LocalObjects

        view = self._view()
        found = gather(
            view, LocalObjects(ObjectStore(self.home / OBJECT_STORE)), with_predictions=self.report
        )
        if self.worker is not None:
            self.worker.submit(lambda: self.logger.log_end(view, found))
            self.worker.close(FINISH_TIMEOUT_S)
        if self.report:
            from pipelines.report import page
            from pipelines.report.build import REPORTS_DIR

            path = page.write(self.home / REPORTS_DIR / f"{view.execution_id}.html", page.render(view, found))
            self.out.write(f"report: {path}\n")
            self.out.flush()


def tracked(
    inner: Reporter,
    home: Path | None = None,
    *,
    report: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> Reporter:
    """``inner`` plus MLflow tracking as configured (``$MLOPS_TRACKING_URI``, default the local
    SQLite store) and, with ``report``, the execution's report page, its path printed at the end."""
    from pipelines.local_home import local_home
    from pipelines.tracking.mlflow_log import configured_uri

    home = (Path(home) if home is not None else local_home()).resolve()
    return TrackedReporter(
        inner,
        home,
        uri=configured_uri(home),
        report=report,
        out=out or sys.stdout,
        err=err or sys.stderr,
    )

"""What a local run shows while it runs: a live per-step table on a terminal, plain lines otherwise.

``reporter_for(stream)`` picks: the live view when ``stream`` is a TTY and ``$CI`` is unset, plain
timestamped lines when not. Both end with the same summary: the status, each Condition's values and
decision, the registered model version, and for a failure the reason and the end of the job's log.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from pipelines._cli import silence_stdout

LOG_TAIL_LINES = 15


class Reporter:
    """Receives the runner's events; the base class ignores them."""

    def started(self, execution_arn: str, steps: list[tuple[str, str]], kept: set[str]) -> None:
        pass

    def step(self, name: str, status: str, detail: str = "", log_path: Path | None = None) -> None:
        pass

    def warning(self, name: str, text: str) -> None:
        pass

    def finished(self, outcome: Any, definition: Any) -> None:
        pass


class SilentReporter(Reporter):
    pass


class PlainReporter(Reporter):
    """One line per event: for logs, CI and pipes."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.lock = threading.Lock()
        self.reader_gone = False

    def write(self, text: str) -> None:
        with self.lock:
            self._emit(text + "\n")

    def _emit(self, text: str) -> None:
        """Write and flush (the lock held); once the reader of a pipe has gone (``| head``), the
        run goes on to its end without output, as its records must."""
        if self.reader_gone:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.reader_gone = True
            if self.stream is sys.stdout:
                silence_stdout()

    def started(self, execution_arn, steps, kept):
        self.write(f"execution {execution_arn.rsplit('/', 1)[-1]} started: {len(steps)} steps")
        for name in sorted(kept):
            self.write(f"{_clock()}  {name:<24} Succeeded (kept from the earlier attempt)")

    def step(self, name, status, detail="", log_path=None):
        self.write(f"{_clock()}  {name:<24} {status}{'  ' + detail if detail else ''}")
        if status == "Failed" and log_path is not None:
            for line in log_tail(log_path):
                self.write(f"    | {line}")

    def warning(self, name, text):
        self.write(f"{_clock()}  {name:<24} Warning  {text}")

    def finished(self, outcome, definition):
        for line in summary(outcome, definition):
            self.write(line)


class LiveReporter(PlainReporter):
    """A table of steps redrawn in place, with each running step's elapsed time."""

    def __init__(self, stream: IO[str]):
        super().__init__(stream)
        self.rows: dict[str, list] = {}
        self.drawn = 0
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None
        self.warnings: list[str] = []

    def started(self, execution_arn, steps, kept):
        self.write(f"execution {execution_arn.rsplit('/', 1)[-1]}")
        for name, kind in steps:
            self.rows[name] = [kind, "Succeeded" if name in kept else "Waiting", "", None]
        self._draw()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def step(self, name, status, detail="", log_path=None):
        with self.lock:
            row = self.rows.setdefault(name, ["", "", "", None])
            row[1], row[2] = status, detail
            row[3] = time.monotonic() if status == "Executing" else None
        self._draw()
        if status == "Failed" and log_path is not None:
            with self.lock:
                self.failure_tail = (name, log_tail(log_path))

    def finished(self, outcome, definition):
        self.stop.set()
        if self.ticker is not None:
            self.ticker.join()
        for row in self.rows.values():
            if row[1] == "Waiting":
                row[1] = "Not run"
        self._draw()
        self.drawn = 0
        for line in self.warnings:
            self.write(line)
        tail = getattr(self, "failure_tail", None)
        if tail:
            self.write(f"log of {tail[0]} (last lines):")
            for line in tail[1]:
                self.write(f"    | {line}")
        super().finished(outcome, definition)

    def warning(self, name, text):
        # Printed under the table at the end: a line now would break the redraw in place.
        with self.lock:
            self.warnings.append(f"warning: step {name}: {text}")

    def _tick(self):
        while not self.stop.wait(0.5):
            self._draw()

    def _draw(self):
        with self.lock:
            lines = []
            for name, (kind, status, detail, since) in self.rows.items():
                elapsed = f" {time.monotonic() - since:5.1f}s" if since else ""
                lines.append(
                    f"  {_MARK.get(status, ' ')} {name:<24} {kind:<14} {status}{elapsed}  {detail}".rstrip()
                )
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self._emit(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)


_MARK = {"Succeeded": "✓", "Cached": "✓", "Failed": "✗", "Executing": "▶", "Retrying": "↻"}


def reporter_for(stream: IO[str] | None = None) -> Reporter:
    stream = stream or sys.stdout
    if stream.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb":
        return LiveReporter(stream)
    return PlainReporter(stream)


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    path = Path(log_path)
    if path.is_dir():  # a tuning job: the newest trial log
        logs = sorted(path.glob("*/log.txt"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return []
        path = logs[-1]
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def summary(outcome: Any, definition: Any) -> list[str]:
    """The closing lines: status and time, each decision taken, what was registered, or why not."""
    lines = [f"execution {outcome.execution_id} {outcome.status} in {outcome.seconds:.1f} s"]
    from pipelines.local.executors import EXECUTORS  # the executors say what their steps did

    for name, step in definition.steps.items():
        properties = outcome.properties.get(name)
        if properties is not None:
            lines.extend(EXECUTORS[step.type].summary_lines(name, properties))
    cached = [name for name, record in outcome.steps.items() if record.cache_source]
    if cached:
        lines.append(f"  from cache: {', '.join(cached)}")
    for name, record in outcome.steps.items():
        if record.cache_source and record.changed_inputs:
            lines.append(
                f"  warning: {name} reused {record.cache_source.rsplit('/', 1)[-1]} although the data at "
                f"{', '.join(record.changed_inputs)} changed since; SageMaker would reuse it too (its "
                "cache key holds input URIs, not their content): give new data a new location, "
                "or run with --no-cache"
            )
    if outcome.failure_reason:
        lines.append(f"  failure: {outcome.failure_reason}")
    return lines


def _clock() -> str:
    return time.strftime("%H:%M:%S")

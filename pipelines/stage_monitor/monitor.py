"""The local monitor of a stage: run its checks on the capture since the last run against the
baseline of the version it serves, keep the executions, and act on violations as the stage says.

Per stage account and endpoint, under ``<home>/monitoring/<account>-<region>/<endpoint>/``:

    executions/<id>/execution.json           the execution, shaped like ListMonitoringExecutions'
                                             MonitoringExecutionSummary (plus what was read)
    executions/<id>/statistics.json          Model Monitor's output files, as a monitoring job
    executions/<id>/constraint_violations.json  writes them to its S3 output
    state.json                               the last capture file read, the last retraining

A run's files are written to a hidden folder and renamed into place whole; the cursor in
``state.json`` moves only after that. A failed run is recorded as a Failed execution and changes
nothing else: the previous results and the cursor stay.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipelines.errors import ConfigError, NotFoundError, TemplateError
from pipelines.local.store import ObjectStore
from pipelines.local_home import MONITORING, OBJECT_STORE
from pipelines.promotion.config import MonitoringSettings, PromotionConfig, StageConfig, capture_prefix
from pipelines.promotion.flow import History
from pipelines.registry.base import ModelPackage, ModelRegistry
from pipelines.stage_monitor.aws import schedule_name
from pipelines.stage_monitor.baseline import MonitorError, baseline_uris, stage_constraints
from pipelines.stage_monitor.captured import iter_capture
from pipelines.stage_monitor.preprocessor import LocalReader, render, schema_from_artifact
from steps.encoding import SchemaError

COMPLETED = "Completed"
WITH_VIOLATIONS = "CompletedWithViolations"
FAILED = "Failed"
STATISTICS = "statistics.json"
VIOLATIONS = "constraint_violations.json"
EXECUTION = "execution.json"
STATE = "state.json"
#: What runs the retraining: the same command a person types (README, "2. Run the pipeline locally").
DEFAULT_PIPELINE_MODULE = "pipelines.churn.pipeline"

# The analyzer: (captured rows, baseline statistics, baseline constraints) -> (statistics, violations).
Analyzer = Callable[..., tuple[dict, dict]]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def monitoring_of(stage: StageConfig) -> MonitoringSettings:
    settings = stage.monitoring
    if settings is None or not settings.enabled:
        raise ConfigError(
            f"{stage.source}: monitoring is not enabled for stage {stage.name!r}; add a monitoring object "
            'with "enabled": true'
        )
    return settings


@dataclass
class RunResult:
    execution: dict
    violations: list[dict]
    retraining: dict | None = None


class LocalMonitor:
    """Runs, records and acts for the monitored stages of ``config`` under ``home``."""

    def __init__(
        self,
        config: PromotionConfig,
        registry: ModelRegistry,
        home: Path,
        analyzer: Analyzer,
        *,
        pipeline_module: str = DEFAULT_PIPELINE_MODULE,
        pipeline_parameters: dict[str, str] | None = None,
        say: Callable[[str], None] = print,
        clock: Callable[[], datetime] = _now,
        start_retraining: Callable[[list[str], Path], int] | None = None,
    ):
        self.config = config
        self.registry = registry
        self.home = Path(home)
        self.store = ObjectStore(self.home / OBJECT_STORE)
        self.analyzer = analyzer
        self.pipeline_module = pipeline_module
        self.pipeline_parameters = dict(pipeline_parameters or {})
        self.say = say
        self.clock = clock
        self.start_retraining = start_retraining or _run_command

    # ------------------------------------------------------------------------------------------ where

    def folder(self, stage: StageConfig) -> Path:
        return self.home / MONITORING / f"{stage.account_id}-{stage.region}" / stage.endpoint.name

    def serving(self, stage: StageConfig) -> ModelPackage:
        """The version serving in ``stage``, from the promotion records on the packages."""
        packages = self.registry.list_versions(self.config.model_package_group)
        package = History(packages, [stage.name]).serving(stage.name)
        if package is None:
            raise NotFoundError(
                f"nothing serves in stage {stage.name!r}: deploy a version there first "
                f"(promote deploy --stage {stage.name})"
            )
        return package

    # ------------------------------------------------------------------------------------------ state

    def state(self, stage: StageConfig) -> dict:
        path = self.folder(stage) / STATE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as err:
            raise ConfigError(
                f"monitor state {path} is not valid JSON ({err}); delete it to start over"
            ) from None

    def _save_state(self, stage: StageConfig, state: dict) -> None:
        _write_json_atomically(self.folder(stage) / STATE, state)

    def history(self, stage: StageConfig) -> list[dict]:
        """Every execution of the stage's monitor, oldest first."""
        root = self.folder(stage) / "executions"
        if not root.is_dir():
            return []
        found = []
        for path in sorted(root.glob(f"*/{EXECUTION}")):
            if path.parent.name.startswith("."):
                continue  # a run being written (or one that crashed while writing)
            try:
                found.append(json.loads(path.read_text(encoding="utf-8")))
            except ValueError:
                continue  # never half-written (renamed whole); a hand-edited file is skipped
        return found

    # ------------------------------------------------------------------------------------------ a run

    def run(self, stage_name: str) -> RunResult:
        """One monitoring execution of the stage, then the stage's action on its violations."""
        stage = self.config.stage(stage_name)
        settings = monitoring_of(stage)
        started = self.clock()
        # Sorted by name is in run order, however coarse the clock: the time, then a sequence number.
        sequence = len(list((self.folder(stage) / "executions").glob("[!.]*"))) + 1
        execution_id = f"{started:%Y%m%dT%H%M%SZ}-{sequence:05d}-{secrets.token_hex(2)}"
        summary = {
            "MonitoringScheduleName": schedule_name(stage),
            "MonitoringType": "DataQuality",
            "EndpointName": stage.endpoint.name,
            "ScheduledTime": _iso(started),
            "CreationTime": _iso(started),
            "ExecutionId": execution_id,
        }
        state = self.state(stage)
        try:
            package = self.serving(stage)
            summary["ModelPackageArn"] = package.arn
            files, cursor = self._new_capture(stage, state.get("cursor"))
            summary["CaptureFiles"] = len(files)
            statistics, violations, skipped = self._check(package, settings, files)
        except TemplateError as err:
            summary.update(MonitoringExecutionStatus=FAILED, FailureReason=str(err))
            summary["LastModifiedTime"] = _iso(self.clock())
            self._record(stage, execution_id, summary, {})
            self.say(f"{stage.name}: monitoring execution {execution_id} Failed: {err}")
            raise MonitorError(f"{stage.name}: monitoring failed: {err}") from None
        found = violations.get("violations", [])
        status = WITH_VIOLATIONS if found else COMPLETED
        summary.update(
            MonitoringExecutionStatus=status,
            LastModifiedTime=_iso(self.clock()),
            RecordCount=statistics.get("dataset", {}).get("item_count"),
            Violations=len(found),
            SkippedRecords=skipped,
        )
        self._record(stage, execution_id, summary, {STATISTICS: statistics, VIOLATIONS: violations})
        self._save_state(stage, {**state, "cursor": cursor})
        self.say(
            f"{stage.name}: monitoring execution {execution_id} {status}: "
            f"{summary['RecordCount']} records from {len(files)} capture files against {package.name}"
            + (
                f"; {skipped} captured requests skipped (not readable as the model's input)"
                if skipped
                else ""
            )
        )
        for violation in found:
            self.say(
                f"  {violation.get('feature_name')}: {violation.get('constraint_check_type')}: "
                f"{violation.get('description')}"
            )
        result = RunResult(summary, found)
        if found:
            result.retraining = self._act(stage, settings, summary)
            if result.retraining is not None:
                summary["Retraining"] = result.retraining
                _write_json_atomically(self.folder(stage) / "executions" / execution_id / EXECUTION, summary)
        return result

    def _new_capture(self, stage: StageConfig, cursor: str | None) -> tuple[list[Path], str]:
        prefix = capture_prefix(stage)
        objects = [
            (k, p)
            for k, p in self.store.list(prefix)
            if k.endswith(".jsonl") and (cursor is None or k > cursor)
        ]
        if not objects:
            since = f" since {cursor}" if cursor else ""
            raise MonitorError(
                f"no captured data under {prefix}{since}: send the endpoint traffic (capture is "
                f"{stage.endpoint.data_capture_percent}%) before the next run"
            )
        return [p for _, p in objects], objects[-1][0]

    def _check(
        self, package: ModelPackage, settings: MonitoringSettings, files: list[Path]
    ) -> tuple[dict, dict, int]:
        """Statistics and violations of the captured rows, and how many records the version's record
        preprocessor skipped (requests the endpoint could not have scored)."""
        statistics_uri, constraints_uri = baseline_uris(package)
        statistics = self._baseline_json(statistics_uri, "statistics")
        constraints = self._baseline_json(constraints_uri, "constraints")
        features = constraints.get("features")
        if not isinstance(features, list) or not features:
            raise MonitorError(
                f"baseline constraints {constraints_uri}: features is missing or empty; "
                "not Model Monitor constraints"
            )
        reader = self._record_reader(package)
        chunks = iter_capture(files, len(features), preprocess=reader)
        statistics, violations = self.analyzer(
            chunks, statistics, stage_constraints(constraints, settings), statistics_uri, constraints_uri
        )
        return statistics, violations, (reader.skipped if reader else 0)

    def _record_reader(self, package: ModelPackage) -> LocalReader | None:
        """The version's record preprocessor, when its model.tar.gz carries schema.json: the script the
        deploy puts beside the baseline on AWS, applied here through the same contract. None for a
        version without it, whose requests are encoded rows already (no preprocessor on AWS either)."""
        try:
            artifact = self.store.path(package.model_data_url)
        except TemplateError:
            return None  # not a local object (a test double's URI): requests are taken as encoded rows
        if not artifact.is_file():
            return None  # nothing to read the encoding from: requests are taken as encoded rows
        try:
            with open(artifact, "rb") as handle:
                schema = schema_from_artifact(handle)
        except (OSError, ValueError) as err:
            raise MonitorError(
                f"{package.name}: its model {package.model_data_url} cannot be read: {err}"
            ) from None
        if schema is None:
            return None
        try:
            return LocalReader(render(schema))
        except SchemaError as err:
            raise MonitorError(f"{package.name}: {err}") from None

    def _baseline_json(self, uri: str, what: str) -> dict:
        try:
            text = self.store.get_bytes(uri)
        except NotFoundError:
            raise MonitorError(f"the baseline {what} {uri} is not in the local object store") from None
        try:
            document = json.loads(text)
        except ValueError as err:
            raise MonitorError(f"the baseline {what} {uri} is not JSON: {err}") from None
        if not isinstance(document, dict) or not isinstance(document.get("features"), list):
            raise MonitorError(
                f"the baseline {what} {uri}: features is missing; not Model Monitor {what}.json"
            )
        return document

    def _record(self, stage: StageConfig, execution_id: str, summary: dict, outputs: dict) -> None:
        root = self.folder(stage) / "executions"
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{execution_id}."))
        try:
            for name, document in {**outputs, EXECUTION: summary}.items():
                (staging / name).write_text(
                    json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8"
                )
            os.replace(staging, root / execution_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    # ------------------------------------------------------------------------------------------ acting

    def _act(self, stage: StageConfig, settings: MonitoringSettings, summary: dict) -> dict | None:
        action = settings.on_violation.action
        if action == "nothing":
            return None
        self._notify(stage, summary)
        if action != "retrain":
            return None
        state = self.state(stage)
        now = self.clock()
        last = state.get("last_retraining_at")
        cooldown = timedelta(hours=settings.on_violation.cooldown_hours)
        if last and now - datetime.fromisoformat(last) < cooldown:
            until = datetime.fromisoformat(last) + cooldown
            self.say(
                f"{stage.name}: not retraining: the last retraining started at {last}, "
                f"cool-down until {_iso(until)}"
            )
            return {"started": False, "cooldown_until": _iso(until)}
        data = settings.on_violation.retrain_input_data_url
        command = [
            sys.executable, "-m", "pipelines.run_pipeline", "--local", "--module-name", self.pipeline_module,
            "--parameters", *(f"{k}={v}" for k, v in self.pipeline_parameters.items()),
            f"InputDataUrl={data}",
        ]  # fmt: skip
        log = self.folder(stage) / f"retraining-{summary['ExecutionId']}.log"
        self._save_state(
            stage, {**state, "last_retraining_at": _iso(now)}
        )  # before: a crash must not retry at once
        self.say(f"{stage.name}: retraining on {data} (log {log})")
        code = self.start_retraining(command, log)
        outcome = {"started": True, "input_data_url": data, "exit_code": code, "log": str(log)}
        self.say(
            f"{stage.name}: retraining {'succeeded' if code == 0 else f'failed (exit {code})'}; "
            + ("approve the new version and promote it as usual" if code == 0 else f"see {log}")
        )
        return outcome

    def _notify(self, stage: StageConfig, summary: dict) -> None:
        """Locally, SNS is a JSON Lines file a person (or a test) reads: one message per execution."""
        message = {
            "Subject": f"{stage.endpoint.name}: {summary['MonitoringExecutionStatus']}",
            "Execution": summary,
        }
        path = self.folder(stage) / "notifications.jsonl"
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(message, sort_keys=True) + "\n")
        self.say(f"{stage.name}: notified ({path})")


def _run_command(command: list[str], log: Path) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as handle:
        return subprocess.run(
            command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        ).returncode  # noqa: S603


def _write_json_atomically(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

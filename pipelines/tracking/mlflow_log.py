"""Log an execution to MLflow: one parent run per execution, a nested run per training job and per
tuning trial, from the step records, the job logs and the step outputs.

Nothing here runs inside a job, so jobs keep network isolation and VPC-only subnets; and nothing here
can fail a step: every MLflow problem becomes one warning (docs/tracking.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pipelines import aws_names as names
from pipelines.report.execution import ExecutionView, StepView
from pipelines.report.insights import Insights, iteration_metrics, trial_text
from pipelines.report.logs import JobLogs, LocalJobLogs, LogMissing
from pipelines.tracking import sqlite_store

#: ``MLOPS_TRACKING_URI``: unset for the local SQLite store, ``off`` for no tracking, or any MLflow
#: tracking URI (a SageMaker managed tracking server's ARN goes through the sagemaker-mlflow plugin).
ENV_VAR = "MLOPS_TRACKING_URI"
OFF = "off"
_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks")
_APP_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-app/[A-Za-z0-9-]{1,256}")
_RESERVED_HP = re.compile(r"^sagemaker_")
_KEY = re.compile(r"[^\w\-. /:]")

TAG_PIPELINE = "sagemaker.pipeline"
TAG_EXECUTION = "sagemaker.execution_id"
TAG_EXECUTION_ARN = "sagemaker.execution_arn"
TAG_STEP = "sagemaker.step"
TAG_JOB = "sagemaker.job_name"
TAG_MODEL = "sagemaker.model_artifact"
TAG_CACHE = "sagemaker.cache_source"
TAG_PARENT = "mlflow.parentRunId"
TAG_KIND = "sagemaker.run_kind"


class TrackingError(Exception):
    """Tracking could not be done; the message is the one warning the user sees."""


def local_uri(home: Path) -> str:
    return f"sqlite:///{(Path(home) / 'mlflow' / 'mlflow.db').resolve()}"


def configured_uri(home: Path, environ: Mapping[str, str] = os.environ) -> str | None:
    """The tracking URI for a run under ``home``: ``$MLOPS_TRACKING_URI``, else the local SQLite
    store; None when tracking is off."""
    value = environ.get(ENV_VAR, "").strip()
    if value.lower() == OFF:
        return None
    return value or local_uri(home)


def check_uri(uri: str) -> None:
    """TrackingError for a URI MLflow cannot use, said before MLflow is even imported."""
    if uri.startswith("arn:"):
        if not (names.MLFLOW_TRACKING_SERVER_ARN.match(uri) or _APP_ARN.fullmatch(uri)):
            raise TrackingError(
                f"tracking URI {uri!r} is not a SageMaker MLflow tracking server ARN "
                "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)"
            )
        return
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in _SCHEMES:
        raise TrackingError(
            f"tracking URI {uri!r} is not an MLflow tracking URI (sqlite:///..., http(s)://..., a tracking "
            f"server ARN) ; set {ENV_VAR} to one, or to 'off'"
        )


def _errors() -> tuple[type[BaseException], ...]:
    """What MLflow, its stores and the SageMaker plugin raise when a server is down, refuses or the
    store cannot be opened. The plugin raises IndexError/KeyError (LookupError) when it cannot sign
    a request (no credentials or region); that is a refusal too."""
    import requests
    import sqlalchemy.exc
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    return (
        MlflowException,
        requests.RequestException,
        sqlalchemy.exc.SQLAlchemyError,
        BotoCoreError,
        ClientError,
        OSError,
        LookupError,
    )


class MlflowLogger:
    """Logs to one tracking URI. ``open()`` imports MLflow and connects (the slow part, done while
    the first steps run); the ``log_*`` methods each do one step's worth of calls."""

    def __init__(self, uri: str, logs: JobLogs | None = None):
        check_uri(uri)
        self.uri = uri
        self.logs = logs or LocalJobLogs()
        # An existing local store at a known schema is written without importing MLflow.
        self.direct = sqlite_store.usable(uri)
        self.client = None
        self.experiment_id = None
        self.parent_id = None
        self.trial_parents: dict[str, str] = {}

    def errors(self) -> tuple[type[BaseException], ...]:
        """What a tracking call may raise that makes tracking give up (one warning)."""
        if self.direct:
            return (sqlite3.Error, OSError, LookupError, sqlite_store.StoreSchemaError)
        return (*_errors(), sqlite_store.StoreSchemaError)

    def open(self, experiment: str, artifact_root: Path | None) -> None:
        if self.direct:
            self.client = sqlite_store.SqliteTrackingClient(self.uri)
            self._find_or_create(experiment, artifact_root)
            return
        # A dead server is one warning after one short try, not minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from mlflow.tracking import MlflowClient

        if self.uri.startswith("arn:"):
            import mlflow

            # The plugin signs each request for the process-wide tracking URI (sagemaker-mlflow
            # 0.5.0, auth_provider.py: AuthProvider.get_auth reads mlflow.get_tracking_uri()), not
            # for the client's: without this every call fails before it is sent.
            mlflow.set_tracking_uri(self.uri)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self._find_or_create(experiment, artifact_root)

    def _find_or_create(self, experiment: str, artifact_root: Path | None) -> None:
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = artifact_root.resolve().as_uri() if artifact_root is not None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    def _run(self, name: str, tags: dict[str, str], parent: str | None) -> str:
        if parent:
            tags = {**tags, TAG_PARENT: parent}
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def _batch(self, run_id: str, metrics=(), params: Mapping[str, str] | None = None) -> None:
        if self.direct:
            Metric, Param = sqlite_store.Metric, sqlite_store.Param  # noqa: N806
        else:
            from mlflow.entities import Metric, Param

        params = params or {}
        now = int(time.time() * 1000)
        metric_items = [Metric(_key(k), float(v), now, int(s)) for k, v, s in metrics]
        param_items = [Param(_key(k), str(v)[:6000]) for k, v in params.items()]
        # log_batch takes at most 1000 metrics and 100 params per call; one call in the usual case.
        for start in range(0, max(len(metric_items), len(param_items) * 10, 1), 1000):
            chunk_metrics = metric_items[start : start + 1000]
            chunk_params = param_items[start // 10 : start // 10 + 100]
            if chunk_metrics or chunk_params:
                self.client.log_batch(run_id, metrics=chunk_metrics, params=chunk_params)

    # ---- one call per event

    def log_start(self, view: ExecutionView) -> bool:
        """Open the execution's parent run; a retried execution reopens the one it has (True)."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{TAG_EXECUTION}` = '{view.execution_id}' and tags.`{TAG_KIND}` = 'execution'"
            ),
            max_results=1,
        )
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            return True
        self.parent_id = self._run(
            view.execution_id,
            {
                TAG_PIPELINE: view.pipeline_name,
                TAG_EXECUTION: view.execution_id,
                TAG_EXECUTION_ARN: view.arn,
                TAG_KIND: "execution",
            },
            None,
        )
        self._batch(self.parent_id, params={k: str(v) for k, v in view.parameters.items()})
        return False

    def log_step(self, view: ExecutionView, step: StepView) -> None:
        if step.type == "Training" and step.properties:
            self._log_training(view, step, step.properties, step.name, self.parent_id, self._log_text(step))
        elif step.type == "Tuning" and step.properties:
            self._log_tuning(view, step)

    def log_end(self, view: ExecutionView, found: Insights | None) -> None:
        metrics, tags = [], {"sagemaker.status": view.status}
        if found is not None and found.evaluation is not None:
            section = found.evaluation.get(f"{found.problem_type}_metrics") or {}
            metrics = [
                (f"test_{name}", value["value"], 0)
                for name, value in section.items()
                if isinstance(value, dict) and isinstance(value.get("value"), int | float)
            ]
            # A managed server keeps artifacts in its own S3 location, which the client would write
            # with its own credentials; the tag points to the evaluation in place instead, so the
            # role that logs needs the sagemaker-mlflow actions only.
            if not self.uri.startswith("arn:"):
                self.client.log_dict(self.parent_id, found.evaluation, "evaluation.json")
            tags["sagemaker.evaluation_report"] = found.evaluation_uri or ""
        for gate in found.gates if found is not None else []:
            tags[f"sagemaker.gate.{gate.step}"] = str(gate.outcome).lower()
        self._batch(self.parent_id, metrics)
        for key, value in tags.items():
            self.client.set_tag(self.parent_id, _key(key), value)
        self.client.set_terminated(self.parent_id, "FINISHED" if view.status == "Succeeded" else "FAILED")

    def _log_text(self, step: StepView) -> str:
        # A missing log is a gap the report shows; the run is logged without per-round metrics.
        try:
            return self.logs.training_log(
                str(step.properties.get("TrainingJobName", step.name)), step.log_path
            )
        except LogMissing:
            return ""

    # ---- the runs

    def _log_training(
        self, view: ExecutionView, step: StepView, job: Mapping, name: str, parent: str, log_text: str
    ) -> str:
        tags = {
            TAG_PIPELINE: view.pipeline_name,
            TAG_EXECUTION: view.execution_id,
            TAG_STEP: step.name,
            TAG_JOB: str(job.get("TrainingJobName", name)),
            TAG_MODEL: str((job.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "")),
        }
        if step.cache_source:
            tags[TAG_CACHE] = step.cache_source
        run_id = self._run(name, tags, parent)
        hyperparameters = {
            k: _plain(v) for k, v in (job.get("HyperParameters") or {}).items() if not _RESERVED_HP.match(k)
        }
        metrics = [
            (key, value, step_number)
            for key, points in iteration_metrics(log_text).items()
            for step_number, value in points
        ]
        # The job's final values (its [best] round) come last, so MLflow shows them as the run's.
        last = max((s for _, _, s in metrics), default=-1) + 1
        metrics += [
            (item["MetricName"], item["Value"], last)
            for item in job.get("FinalMetricDataList") or []
            if isinstance(item.get("Value"), int | float)
        ]
        self._batch(run_id, metrics, hyperparameters)
        self.client.set_terminated(run_id, "FINISHED" if step.status == "Succeeded" else "FAILED")
        return run_id

    def _log_tuning(self, view: ExecutionView, step: StepView) -> None:
        properties = step.properties
        config = properties.get("HyperParameterTuningJobConfig") or {}
        objective = config.get("HyperParameterTuningJobObjective") or {}
        tags = {
            TAG_PIPELINE: view.pipeline_name,
            TAG_EXECUTION: view.execution_id,
            TAG_STEP: step.name,
            TAG_JOB: str(properties.get("HyperParameterTuningJobName", step.name)),
        }
        if step.cache_source:
            tags[TAG_CACHE] = step.cache_source
        tuning_run = self._run(step.name, tags, self.parent_id)
        params = {
            "strategy": config.get("Strategy", ""),
            "objective": f"{objective.get('Type', '')} {objective.get('MetricName', '')}".strip(),
            "max_jobs": (config.get("ResourceLimits") or {}).get("MaxNumberOfTrainingJobs", ""),
        }
        for kind in (config.get("ParameterRanges") or {}).values():
            for item in kind if isinstance(kind, list) else []:
                params[f"range.{item.get('Name')}"] = json.dumps(
                    {k: v for k, v in item.items() if k != "Name"}, sort_keys=True
                )
        static = (properties.get("TrainingJobDefinition") or {}).get("StaticHyperParameters") or {}
        best = (properties.get("BestTrainingJob") or {}).get("TrainingJobName")
        best_value = (
            (properties.get("BestTrainingJob") or {}).get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        ).get("Value")
        self._batch(tuning_run, [("best_objective", best_value, 0)] if best_value is not None else [], params)
        if best:
            self.client.set_tag(tuning_run, "sagemaker.best_training_job", best)
        for summary in properties.get("TrainingJobSummaries") or []:
            trial_name = summary.get("TrainingJobName", "trial")
            job = {
                "TrainingJobName": trial_name,
                "HyperParameters": {**static, **(summary.get("TunedHyperParameters") or {})},
                "ModelArtifacts": {"S3ModelArtifacts": _trial_model(properties, trial_name)},
                "FinalMetricDataList": [
                    {"MetricName": objective.get("MetricName", "objective"), "Value": metric.get("Value")}
                    for metric in [summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}]
                    if metric.get("Value") is not None
                ],
            }
            self._log_training(
                view, step, job, trial_name, tuning_run, trial_text(self.logs, step, trial_name)
            )
        self.client.set_terminated(tuning_run, "FINISHED" if step.status == "Succeeded" else "FAILED")


def _trial_model(properties: Mapping, trial_name: str) -> str:
    output = ((properties.get("TrainingJobDefinition") or {}).get("OutputDataConfig") or {}).get(
        "S3OutputPath"
    )
    return f"{output.rstrip('/')}/{trial_name}/output/model.tar.gz" if isinstance(output, str) else ""


def _plain(value) -> str:
    # SDK v2 definitions JSON-encode string hyperparameters ('"0.1"'); MLflow shows them plain.
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _key(name: str) -> str:
    return _KEY.sub("_", name)[:250]


def log_execution(
    uri: str,
    view: ExecutionView,
    found: Insights | None,
    *,
    artifact_root: Path | None = None,
    logs: JobLogs | None = None,
    warn: Callable[[str], None],
) -> bool:
    """Log a whole execution at once (AWS executions, or a local one after the fact); True when
    logged, else one warning through ``warn``. ``logs`` defaults to the local job logs."""
    try:
        logger = MlflowLogger(uri, logs)
    except TrackingError as err:
        warn(f"warning: {err}; the execution is not tracked")
        return False
    try:
        errors = logger.errors()
    except ImportError as err:
        warn(f"warning: MLflow is not installed ({err}); the execution is not tracked")
        return False
    try:
        logger.open(view.pipeline_name, artifact_root)
        logger.log_start(view)
        for step in view.steps.values():
            logger.log_step(view, step)
        logger.log_end(view, found)
    except errors as err:
        warn(f"warning: MLflow tracking at {uri} failed ({_one_line(err)}); the execution is not tracked")
        return False
    return True


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"

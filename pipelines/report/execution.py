"""One pipeline execution as the report and the tracker see it, read from the local records or from AWS.

Both sources give the same shape: the execution, and each step of the definition with its status,
times, cache hit, failure reason, job description (the Describe*Job answer) and where its log is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.errors import NotFoundError
from pipelines.local.definition import DefinitionError, dependencies, parse_definition, topological_order

#: Step status of a step the execution has not reached (SageMaker lists no entry for it).
NOT_STARTED = "NotStarted"
RUNNING_STATUSES = ("Executing", "Starting", "Stopping")


@dataclass(frozen=True)
class StepView:
    name: str
    type: str
    status: str
    depends_on: tuple[str, ...] = ()
    started: datetime | None = None
    ended: datetime | None = None
    failure_reason: str | None = None
    cache_source: str | None = None
    log_path: str | None = None
    attempts: int = 0
    properties: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, (self.ended - self.started).total_seconds())


@dataclass(frozen=True)
class ExecutionView:
    pipeline_name: str
    execution_id: str
    arn: str
    status: str
    failure_reason: str | None
    created: datetime | None
    modified: datetime | None
    parameters: dict[str, Any]
    steps: dict[str, StepView]  # in a dependency order
    source: str  # "local" or "aws"
    definition: str | None = None  # the definition JSON the execution ran

    @property
    def seconds(self) -> float | None:
        starts = [s.started for s in self.steps.values() if s.started]
        ends = [s.ended for s in self.steps.values() if s.ended]
        first = self.created or (min(starts) if starts else None)
        if first is None or not ends:
            return None
        return max(0.0, (max(ends) - first).total_seconds())

    def of_type(self, type_: str) -> list[StepView]:
        return [step for step in self.steps.values() if step.type == type_]


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _definition_steps(definition_text: str | None, source: str) -> tuple[list[str], dict[str, tuple]]:
    """(step names in dependency order, name -> (type, depends-on)) from a definition JSON; empty
    when it cannot be read (the report then shows the steps the records know, without edges)."""
    if not definition_text:
        return [], {}
    try:
        definition = parse_definition(definition_text, source)
        order = topological_order(definition)
    except DefinitionError:
        return [], {}
    shapes = {
        name: (spec.type, tuple(sorted(d for d in dependencies(spec) if d in definition.steps)))
        for name, spec in definition.steps.items()
    }
    return order, shapes


def _assemble(
    order: list[str], shapes: Mapping[str, tuple], entries: Mapping[str, dict]
) -> dict[str, StepView]:
    steps: dict[str, StepView] = {}
    names = order + [name for name in entries if name not in order]
    for name in names:
        type_, depends_on = shapes.get(name, (entries.get(name, {}).get("type", "Unknown"), ()))
        entry = entries.get(name)
        if entry is None:
            steps[name] = StepView(name, type_, NOT_STARTED, depends_on)
            continue
        steps[name] = StepView(
            name=name,
            type=entry.get("type") or type_,
            status=entry["status"],
            depends_on=depends_on,
            started=parse_time(entry.get("started")),
            ended=parse_time(entry.get("ended")),
            failure_reason=entry.get("failure_reason"),
            cache_source=entry.get("cache_source"),
            log_path=entry.get("log_path"),
            attempts=entry.get("attempts") or 0,
            properties=entry.get("properties") or {},
        )
    return steps


# ------------------------------------------------------------------------------------------ local


def local_execution(records, reference: str) -> ExecutionView:
    """The view of a local execution (id or ARN); NotFoundError naming the newest ids if none."""
    execution = records.get_execution(reference)
    answer = records.list_execution_steps(execution.arn)["PipelineExecutionSteps"]
    stored = records.steps(execution.arn)
    entries = {}
    for item in answer:
        record = stored.get(item["StepName"])
        entries[item["StepName"]] = {
            "type": record.type if record else None,
            "status": item["StepStatus"],
            "started": item.get("StartTime"),
            "ended": item.get("EndTime"),
            "failure_reason": item.get("FailureReason"),
            "cache_source": (item.get("CacheHitResult") or {}).get("SourcePipelineExecutionArn"),
            "log_path": item.get("LogPath"),
            "attempts": item.get("AttemptCount"),
            "properties": (record.properties if record else None) or {},
        }
    order, shapes = _definition_steps(execution.definition, f"execution {execution.execution_id}")
    return ExecutionView(
        pipeline_name=execution.pipeline_name,
        execution_id=execution.execution_id,
        arn=execution.arn,
        status=records.effective_status(execution),
        failure_reason=records.describe_execution(execution.arn).get("FailureReason"),
        created=parse_time(execution.created),
        modified=parse_time(execution.modified),
        parameters=dict(execution.parameters),
        steps=_assemble(order, shapes, entries),
        source="local",
        definition=execution.definition,
    )


# -------------------------------------------------------------------------------------------- AWS


def _aws_error(err, what: str):
    from pipelines.aws_calls import aws_error

    return aws_error(err, what, "pass --region or set AWS_REGION")


def aws_execution(sm, execution_arn: str) -> ExecutionView:
    """The view of a SageMaker pipeline execution from DescribePipelineExecution, its definition,
    ListPipelineExecutionSteps and each job's Describe call."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        described = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            raise NotFoundError(
                f"no pipeline execution {execution_arn!r} in this account and region; "
                "see aws sagemaker list-pipeline-executions"
            ) from None
        raise _aws_error(err, f"describing {execution_arn}") from None
    except BotoCoreError as err:
        raise _aws_error(err, f"describing {execution_arn}") from None
    try:
        definition = sm.describe_pipeline_definition_for_execution(PipelineExecutionArn=execution_arn).get(
            "PipelineDefinition"
        )
        entries_raw = []
        token = None
        while True:
            page = sm.list_pipeline_execution_steps(
                PipelineExecutionArn=execution_arn, **({"NextToken": token} if token else {})
            )
            entries_raw += page.get("PipelineExecutionSteps", [])
            token = page.get("NextToken")
            if not token:
                break
        parameters = {
            p["Name"]: p["Value"]
            for p in sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution_arn).get(
                "PipelineParameters", []
            )
        }
    except ClientError as err:
        raise _aws_error(err, f"reading the steps of {execution_arn}") from None
    except BotoCoreError as err:
        raise _aws_error(err, f"reading the steps of {execution_arn}") from None
    order, shapes = _definition_steps(definition, f"execution {execution_arn}")
    entries = {}
    for item in entries_raw:
        name = item["StepName"]
        metadata = item.get("Metadata") or {}
        entries[name] = {
            "type": shapes.get(name, (None,))[0],
            "status": item.get("StepStatus", "Unknown"),
            "started": item.get("StartTime"),
            "ended": item.get("EndTime"),
            "failure_reason": item.get("FailureReason"),
            "cache_source": (item.get("CacheHitResult") or {}).get("SourcePipelineExecutionArn"),
            "attempts": item.get("AttemptCount"),
            "properties": _describe_job(sm, metadata),
        }
    pipeline_name = execution_arn.split(":pipeline/", 1)[-1].split("/", 1)[0]
    return ExecutionView(
        pipeline_name=described.get("PipelineArn", "").rsplit("/", 1)[-1] or pipeline_name,
        execution_id=execution_arn.rsplit("/", 1)[-1],
        arn=execution_arn,
        status=described.get("PipelineExecutionStatus", "Unknown"),
        failure_reason=described.get("FailureReason"),
        created=parse_time(described.get("CreationTime")),
        modified=parse_time(described.get("LastModifiedTime")),
        parameters=parameters,
        steps=_assemble(order, shapes, entries),
        source="aws",
        definition=definition,
    )


def _describe_job(sm, metadata: Mapping[str, Any]) -> dict:
    """The Describe*Job answer of the job a step ran, shaped as the local records keep it."""
    from botocore.exceptions import BotoCoreError, ClientError

    def name_of(arn: str) -> str:
        return arn.rsplit("/", 1)[-1]

    try:
        if "TrainingJob" in metadata:
            return _plain(sm.describe_training_job(TrainingJobName=name_of(metadata["TrainingJob"]["Arn"])))
        if "ProcessingJob" in metadata:
            return _plain(
                sm.describe_processing_job(ProcessingJobName=name_of(metadata["ProcessingJob"]["Arn"]))
            )
        if "TuningJob" in metadata:
            name = name_of(metadata["TuningJob"]["Arn"])
            described = _plain(sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))
            summaries, token = [], None
            while True:
                page = sm.list_training_jobs_for_hyper_parameter_tuning_job(
                    HyperParameterTuningJobName=name,
                    MaxResults=100,
                    **({"NextToken": token} if token else {}),
                )
                summaries += page.get("TrainingJobSummaries", [])
                token = page.get("NextToken")
                if not token:
                    break
            described["TrainingJobSummaries"] = [_plain(s) for s in summaries]
            return described
        if "RegisterModel" in metadata:
            return _plain(sm.describe_model_package(ModelPackageName=metadata["RegisterModel"]["Arn"]))
        if "Condition" in metadata:
            # ConditionStepMetadata holds only the outcome ('True'/'False'); the compared values are
            # recomputed from the definition and the step outputs (insights.gate_values).
            return {"Outcome": str(metadata["Condition"].get("Outcome", "")).lower() == "true"}
        if "Fail" in metadata:
            return {"ErrorMessage": metadata["Fail"].get("ErrorMessage")}
    except (ClientError, BotoCoreError) as err:
        return {"DescribeError": str(err)}
    return {}


def _plain(answer: Mapping[str, Any]) -> dict:
    """A boto3 answer without its ResponseMetadata, datetimes as ISO strings (as the records keep)."""
    return json.loads(json.dumps({k: v for k, v in answer.items() if k != "ResponseMetadata"}, default=_iso))


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def trial_log(step: StepView, trial_name: str) -> Path | None:
    """Where a local tuning trial's log is: the tuning step's LogPath is the trials' directory."""
    if not step.log_path:
        return None
    path = Path(step.log_path) / trial_name / "log.txt"
    return path if path.is_file() else None

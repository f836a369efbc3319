"""What the report shows beyond the steps: gate values, tuning trials, evaluation, importance, baseline.

Read from the step descriptions and the step outputs. Anything that cannot be read becomes a gap,
a line the page shows in place of the missing part, never an exception.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.report.execution import ExecutionView, StepView, trial_log
from pipelines.report.logs import JobLogs, LocalJobLogs, LogMissing
from pipelines.report.objects import ObjectMissing, Objects

EVALUATION_FILE = "evaluation.json"  # steps/evaluate.py EVALUATION_FILENAME
STATISTICS_FILE = "statistics.json"  # steps/preprocess.py STATISTICS_FILENAME
SCHEMA_FILE = "schema.json"  # steps/preprocess.py SCHEMA_FILENAME
#: ProcessingInputs of the evaluation step that carry the evaluated model and the test split.
MODEL_INPUT, TEST_INPUT = "model", "test"

# The container's own metric regexes start with ``.*\[[0-9]+\].*`` (sagemaker-xgboost-container
# algorithm_mode/metrics.py): a prefix such as a timestamp may come before the round.
_ROUND = re.compile(r"\[(\d+)\]((?:#011|\t).*)$")
_METRIC = re.compile(r"(?:#011|\t)(train|validation)-([\w@.-]+?):(-?[0-9.]+(?:[eE][-+]?\d+)?)")


def iteration_metrics(log_text: str) -> dict[str, list[tuple[int, float]]]:
    """Per-round metrics from a training log in the XGBoost container's format,
    ``[i]#011train-auc:v#011validation-auc:v`` (a tab where the log is read directly);
    ``{"train:auc": [(0, v), ...], ...}``. The ``[best]`` summary line is not a round."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in log_text.splitlines():
        match = _ROUND.search(line.strip())
        if not match:
            continue
        step = int(match.group(1))
        for channel, metric, value in _METRIC.findall(match.group(2)):
            series.setdefault(f"{channel}:{metric}", []).append((step, float(value)))
    return series


@dataclass
class Trial:
    name: str
    status: str
    objective: float | None
    hyperparameters: dict[str, str]


@dataclass
class Tuning:
    step: str
    metric: str
    direction: str  # Maximize / Minimize
    searched: list[str]
    trials: list[Trial]
    best: str | None


@dataclass
class Gate:
    step: str
    outcome: bool | None
    conditions: list[dict]  # {"Type", "LeftValue", "RightValue"}


@dataclass
class Insights:
    gates: list[Gate] = field(default_factory=list)
    tunings: list[Tuning] = field(default_factory=list)
    evaluation: dict | None = None
    evaluation_uri: str | None = None
    problem_type: str | None = None
    labels: np.ndarray | None = None
    predictions: np.ndarray | None = None
    importance: list[tuple[str, float]] = field(default_factory=list)
    baseline: list[dict] = field(default_factory=list)
    feature_names: list[str] | None = None
    #: Per-round metrics of each Training step, from its job's log: step name -> iteration_metrics.
    training_curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    gaps: list[str] = field(default_factory=list)


def _outputs(step: StepView) -> list[tuple[str, str]]:
    outputs = (step.properties.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    return [
        (o.get("OutputName", ""), o["S3Output"]["S3Uri"].rstrip("/"))
        for o in outputs
        if isinstance(o.get("S3Output", {}).get("S3Uri"), str)
    ]


def _inputs(step: StepView) -> dict[str, str]:
    return {
        i.get("InputName", ""): i["S3Input"]["S3Uri"]
        for i in step.properties.get("ProcessingInputs") or []
        if isinstance(i.get("S3Input", {}).get("S3Uri"), str)
    }


def _find_output_file(view: ExecutionView, objects: Objects, filename: str):
    """(step, uri, parsed JSON) of the first Processing step output holding ``filename``; a gap
    message instead when the step ran but the file is gone."""
    for step in view.of_type("Processing"):
        if step.status != "Succeeded":
            continue
        for _, prefix in _outputs(step):
            uri = f"{prefix}/{filename}"
            if uri not in objects.list(prefix + "/"):
                continue
            try:
                return step, uri, json.loads(objects.get(uri)), None
            except ObjectMissing as err:
                return step, uri, None, f"{step.name}: {err}"
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                return step, uri, None, f"{step.name}: {uri} is not JSON ({err})"
    return None, None, None, None


def _missing_outputs(view: ExecutionView, objects: Objects) -> list[str]:
    gaps = []
    for step in view.of_type("Processing"):
        if step.status != "Succeeded":
            continue
        for name, prefix in _outputs(step):
            if not objects.list(prefix + "/"):
                gaps.append(f"{step.name}: output {name!r} is missing at {prefix} (deleted?)")
    return gaps


def gather(
    view: ExecutionView, objects: Objects, *, logs: JobLogs | None = None, with_predictions: bool = True
) -> Insights:
    """``logs`` defaults to the local job logs (each step's LogPath)."""
    found = Insights()
    found.gaps += _missing_outputs(view, objects)
    for step in view.of_type("Condition"):
        if step.status == "Succeeded" or "Outcome" in step.properties:
            outcome = step.properties.get("Outcome")
            conditions = step.properties.get("EvaluatedConditions")
            if conditions is None:
                conditions, gap = gate_values(view, step, objects)
                if gap:
                    found.gaps.append(gap)
            found.gates.append(Gate(step.name, outcome, list(conditions)))
    logs = logs or LocalJobLogs()
    for step in view.of_type("Training"):
        job = step.properties.get("TrainingJobName")
        if step.status != "Succeeded" or not job:
            continue
        try:
            series = iteration_metrics(logs.training_log(job, step.log_path))
        except LogMissing as err:
            found.gaps.append(f"{step.name}: no per-round metrics: {err}")
            continue
        if series:
            found.training_curves[step.name] = series
    for step in view.of_type("Tuning"):
        if step.properties.get("TrainingJobSummaries"):
            found.tunings.append(tuning_of(step))

    _, uri, schema, gap = _find_output_file(view, objects, SCHEMA_FILE)
    if gap:
        found.gaps.append(gap)
    if isinstance(schema, dict):
        columns = schema.get("csv_columns")
        if isinstance(columns, list) and len(columns) > 1:
            found.feature_names = [str(c) for c in columns[1:]]
        found.problem_type = schema.get("problem_type")

    _, uri, statistics, gap = _find_output_file(view, objects, STATISTICS_FILE)
    if gap:
        found.gaps.append(gap)
    if isinstance(statistics, dict):
        found.baseline = baseline_rows(statistics, found.feature_names)

    evaluate_step, uri, evaluation, gap = _find_output_file(view, objects, EVALUATION_FILE)
    if gap:
        found.gaps.append(gap)
    if isinstance(evaluation, dict):
        found.evaluation, found.evaluation_uri = evaluation, uri
        for key in evaluation:
            if key.endswith("_metrics"):
                found.problem_type = key[: -len("_metrics")]
    if evaluate_step is not None and with_predictions:
        _predictions(found, evaluate_step, objects)
    return found


def trial_text(logs: JobLogs, step: StepView, trial_name: str) -> str:
    """A tuning trial's log text, empty when there is none (a trial's log is not worth a gap each)."""
    try:
        return logs.training_log(trial_name, trial_log(step, trial_name))
    except LogMissing:
        return ""


def gate_values(view: ExecutionView, step: StepView, objects: Objects) -> tuple[list[dict], str | None]:
    """The values a Condition step compared, recomputed from the definition, the execution's
    parameters and the property files in the step outputs: SageMaker records only the outcome
    (ListPipelineExecutionSteps ``Metadata.Condition.Outcome``). ([conditions], gap or None)."""
    from pipelines.local.definition import DefinitionError, parse_definition, resolve_parameters
    from pipelines.local.expressions import Context, ExpressionError, evaluate

    try:
        definition = parse_definition(view.definition or "", f"execution {view.execution_id}")
        spec = definition.steps[step.name]
        parameters = resolve_parameters(definition, view.parameters)
    except (DefinitionError, KeyError) as err:
        return [], f"{step.name}: the compared values cannot be recomputed: {err}"
    missing: list[str] = []

    def properties(name: str):
        other = view.steps.get(name)
        return other.properties if other is not None and other.status == "Succeeded" else None

    def property_file(name: str, file_name: str):
        other, producer = view.steps.get(name), definition.steps.get(name)
        files = [f for f in (producer.property_files if producer else ()) if f.name == file_name]
        prefixes = dict(_outputs(other)) if other is not None else {}
        if not files or files[0].output_name not in prefixes:
            return None
        uri = f"{prefixes[files[0].output_name]}/{files[0].file_path}"
        try:
            return json.loads(objects.get(uri))
        except ObjectMissing as err:
            missing.append(str(err))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            missing.append(f"{uri} is not JSON ({err})")
        return None

    context = Context(
        parameters=parameters,
        execution={
            "PipelineExecutionId": view.execution_id,
            "PipelineExecutionArn": view.arn,
            "PipelineName": view.pipeline_name,
        },
        step_properties=properties,
        property_file=property_file,
    )
    conditions = []
    for condition in spec.arguments.get("Conditions") or []:
        if not isinstance(condition, dict) or "LeftValue" not in condition:
            conditions.append({"Type": condition.get("Type") if isinstance(condition, dict) else "?"})
            continue
        try:
            conditions.append(
                {
                    "Type": condition.get("Type"),
                    "LeftValue": evaluate(condition["LeftValue"], context),
                    "RightValue": evaluate(condition.get("RightValue"), context),
                }
            )
        except ExpressionError as err:
            reason = missing[-1] if missing else str(err)
            return conditions, f"{step.name}: the compared values cannot be recomputed: {reason}"
    return conditions, None


def tuning_of(step: StepView) -> Tuning:
    config = step.properties.get("HyperParameterTuningJobConfig") or {}
    objective = config.get("HyperParameterTuningJobObjective") or {}
    ranges = config.get("ParameterRanges") or {}
    searched = sorted(r.get("Name", "") for kind in ranges.values() if isinstance(kind, list) for r in kind)
    trials = []
    for summary in step.properties.get("TrainingJobSummaries") or []:
        metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        trials.append(
            Trial(
                name=summary.get("TrainingJobName", "?"),
                status=summary.get("TrainingJobStatus", "?"),
                objective=metric.get("Value"),
                hyperparameters={k: str(v) for k, v in (summary.get("TunedHyperParameters") or {}).items()},
            )
        )
    trials.sort(key=lambda t: t.name)
    best = (step.properties.get("BestTrainingJob") or {}).get("TrainingJobName")
    return Tuning(
        step.name,
        objective.get("MetricName", "objective"),
        objective.get("Type", "Maximize"),
        searched,
        trials,
        best,
    )


def baseline_rows(statistics: dict, names: list[str] | None) -> list[dict]:
    """One row per feature of a Model Monitor statistics.json; ``_cN`` is named from the schema."""
    rows = []
    for feature in statistics.get("features") or []:
        name = str(feature.get("name", "?"))
        match = re.fullmatch(r"_c(\d+)", name)
        if match and names and int(match.group(1)) < len(names):
            name = names[int(match.group(1))]
        numeric = feature.get("numerical_statistics") or {}
        common = numeric.get("common") or (feature.get("string_statistics") or {}).get("common") or {}
        rows.append(
            {
                "name": name,
                "type": feature.get("inferred_type", ""),
                "present": common.get("num_present"),
                "missing": common.get("num_missing"),
                "mean": numeric.get("mean"),
                "std": numeric.get("std_dev"),
                "min": numeric.get("min"),
                "max": numeric.get("max"),
            }
        )
    return rows


def _predictions(found: Insights, step: StepView, objects: Objects) -> None:
    """The evaluated model's predictions on the test split, and its feature importance: what the
    evaluation file does not keep (precision-recall, calibration, residuals)."""
    from steps import evaluate as evaluate_step

    inputs = _inputs(step)
    model_uri, test_uri = inputs.get(MODEL_INPUT), inputs.get(TEST_INPUT)
    if not model_uri or not test_uri:
        found.gaps.append(f"{step.name}: no {MODEL_INPUT!r} / {TEST_INPUT!r} inputs; no predictions to plot")
        return
    try:
        archive = objects.get(model_uri)
    except ObjectMissing as err:
        found.gaps.append(
            f"{step.name}: the evaluated model is missing ({err}); its plots and importance are left out"
        )
        return
    test_files = [u for u in objects.list(test_uri) if u.endswith(".csv")]
    if not test_files:
        found.gaps.append(
            f"{step.name}: the test split is missing at {test_uri}; prediction plots are left out"
        )
    import pandas as pd

    try:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "model.tar.gz"
            path.write_bytes(archive)
            evaluate_step.extract_archive(path, Path(scratch) / "model")
            booster = evaluate_step.load_model(Path(scratch) / "model")
        found.importance = importance(booster, found.feature_names)
        if not test_files:
            return
        parts = []
        for uri in test_files:
            raw = pd.read_csv(
                io.BytesIO(objects.get(uri)), header=None, dtype=str, keep_default_na=False, na_values=[""]
            )
            parts.append(evaluate_step.parse_label_first(raw))
        labels = np.concatenate([p[0] for p in parts])
        features = np.concatenate([p[1] for p in parts])
        problem = found.problem_type or "binary_classification"
        found.labels = labels
        found.predictions = evaluate_step.predict(booster, features, problem)
    except (
        evaluate_step.EvaluationError,
        ObjectMissing,
        tarfile.TarError,
        pd.errors.ParserError,
        OSError,
    ) as err:
        found.gaps.append(f"{step.name}: cannot score the test split with the evaluated model: {err}")


def importance(booster, names: list[str] | None, top: int = 20) -> list[tuple[str, float]]:
    """Total gain per feature, largest first; ``f<i>`` is named from the schema's columns."""
    scores = booster.get_score(importance_type="total_gain")
    named = []
    for key, value in scores.items():
        index = int(key[1:]) if re.fullmatch(r"f\d+", key) else None
        label = names[index] if names and index is not None and index < len(names) else key
        named.append((label, float(value)))
    named.sort(key=lambda item: -item[1])
    return named[:top]


def curves(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC, precision-recall and calibration (10 equal-width bins) from labels and probabilities."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    bins = np.clip((scores * 10).astype(int), 0, 9)
    calibration = [
        (float(scores[bins == b].mean()), float(labels[bins == b].mean()), int((bins == b).sum()))
        for b in range(10)
        if (bins == b).any()
    ]
    return {
        "roc": list(zip(fpr.tolist(), tpr.tolist(), strict=True)),
        "pr": list(zip(recall.tolist(), precision.tolist(), strict=True)),
        "calibration": calibration,
    }

"""QualityCheck and ClarifyCheck steps run in-process with the analyzers of ``pipelines.monitoring``
and ``pipelines.local.clarify``, keeping SageMaker's step fields, properties and baseline rules.

The definition is what the SageMaker SDK writes (``QualityCheckStep`` / ``ClarifyCheckStep``): the
processing request in ``Arguments``, and beside it ``CheckType``, ``SkipCheck``, ``FailOnViolation``,
``RegisterNewBaseline``, ``ModelPackageGroupName`` and ``SuppliedBaseline*``. Baseline rules follow
AWS "Baseline calculation, drift detection and lifecycle with ClarifyCheck and QualityCheck steps":
the step always calculates a new baseline (``CalculatedBaseline*``); it checks against the supplied
baseline or, without one, the latest approved version's ``DriftCheckBaselines``, unless
``SkipCheck``; ``BaselineUsedForDriftCheck*`` is the new baseline with ``RegisterNewBaseline``, the
previous one otherwise, which must then exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from pipelines.errors import TemplateError
from pipelines.local.definition import StepSpec
from pipelines.local.executor_base import Executor, StepResult, StepRun
from pipelines.local.expressions import STEPS, ExpressionError, evaluate, parse_reference
from pipelines.local.jobs import StepFailure, arn
from pipelines.local.store import ObjectStore, StoreError
from pipelines.monitoring import (
    BaselineError,
    DataQualityProfile,
    check_data_quality,
    check_model_quality,
    clarify,
    headerless_names,
    load_json,
    model_quality_statistics,
    parse_constraints,
    parse_model_quality_constraints,
    parse_statistics,
    suggest_constraints,
    suggest_model_quality_constraints,
    to_json,
)

DATA_QUALITY, MODEL_QUALITY = "DATA_QUALITY", "MODEL_QUALITY"
DATA_BIAS, MODEL_BIAS, MODEL_EXPLAINABILITY = "DATA_BIAS", "MODEL_BIAS", "MODEL_EXPLAINABILITY"

STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
VIOLATIONS_FILE = "constraint_violations.json"
CHUNK_ROWS = 100_000

#: Where each check type's baselines sit in a model package's ``DriftCheckBaselines``
#: (CreateModelPackage ``DriftCheckBaselines``: ModelDataQuality, ModelQuality, Bias, Explainability).
DRIFT_CHECK_BASELINES = {
    DATA_QUALITY: ("ModelDataQuality", "Statistics", "Constraints"),
    MODEL_QUALITY: ("ModelQuality", "Statistics", "Constraints"),
    DATA_BIAS: ("Bias", None, "PreTrainingConstraints"),
    MODEL_BIAS: ("Bias", None, "PostTrainingConstraints"),
    MODEL_EXPLAINABILITY: ("Explainability", None, "Constraints"),
}

_BOOL_FIELDS = ("SkipCheck", "FailOnViolation", "RegisterNewBaseline")


@dataclass(frozen=True)
class CheckSettings:
    """The step-level fields of a check step, evaluated."""

    check_type: str
    skip_check: bool
    fail_on_violation: bool
    register_new_baseline: bool
    model_package_group: str | None
    supplied_statistics: str | None
    supplied_constraints: str | None


@dataclass(frozen=True)
class Baseline:
    statistics: str | None
    constraints: str


class CheckExecutor(Executor):
    """What QualityCheck and ClarifyCheck share: the step fields, the baseline lookup, the outputs.

    Not cacheable locally (Executor's default): the runner's cache key covers ``Arguments`` only,
    and a check's outcome also depends on ``SkipCheck`` and the baselines, which sit beside them.
    """

    check_types: ClassVar[tuple[str, ...]]
    image_marker: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    metadata_key: ClassVar[str]

    def problems(self, step: StepSpec) -> list[str]:
        raw = step.raw
        problems = []
        check_type = raw.get("CheckType")
        if check_type not in self.check_types:
            problems.append(
                f"unknown CheckType {check_type!r} for a {self.type} step; "
                f"supported: {', '.join(self.check_types)}"
            )
        for name in self.fields:
            value = raw.get(name)
            if name in _BOOL_FIELDS and not (isinstance(value, bool | dict) or value is None):
                problems.append(f"{name} must be true or false, got {value!r}")
        image = raw.get("Arguments", {}).get("AppSpecification", {}).get("ImageUri")
        if isinstance(image, str) and self.image_marker not in image:
            problems.append(
                f"AppSpecification.ImageUri {image!r} is not the {self.image_marker} image this step runs"
            )
        outputs = raw.get("Arguments", {}).get("ProcessingOutputConfig", {}).get("Outputs", [])
        if len(outputs) != 1 or "S3Output" not in outputs[0]:
            problems.append("ProcessingOutputConfig.Outputs must hold exactly one S3Output")
        return problems + self.check_problems(step, check_type)

    def check_problems(self, step: StepSpec, check_type: Any) -> list[str]:
        return []

    # ---- run

    def settings(self, run: StepRun) -> CheckSettings:
        values = {}
        for name in self.fields:
            try:
                values[name] = evaluate(run.step.raw.get(name), run.context)
            except ExpressionError as err:
                raise StepFailure(f"cannot evaluate {name}: {err}") from None
        for name in _BOOL_FIELDS:
            if not isinstance(values.get(name, False) or False, bool):
                raise StepFailure(f"{name} must be a Boolean, got {values[name]!r}")
        for name in ("ModelPackageGroupName", "SuppliedBaselineStatistics", "SuppliedBaselineConstraints"):
            if values.get(name) not in (None, "") and not isinstance(values[name], str):
                raise StepFailure(f"{name} must be a string, got {values[name]!r}")
        return CheckSettings(
            check_type=values["CheckType"],
            skip_check=bool(values.get("SkipCheck")),
            fail_on_violation=bool(values.get("FailOnViolation")),
            register_new_baseline=bool(values.get("RegisterNewBaseline")),
            model_package_group=values.get("ModelPackageGroupName") or None,
            supplied_statistics=values.get("SuppliedBaselineStatistics") or None,
            supplied_constraints=values.get("SuppliedBaselineConstraints") or None,
        )

    def previous_baseline(self, run: StepRun, settings: CheckSettings) -> Baseline | None:
        """The supplied baseline, else the latest approved version's drift check baseline."""
        store = run.env.store
        if settings.supplied_constraints:
            for name, uri in (
                ("SuppliedBaselineConstraints", settings.supplied_constraints),
                ("SuppliedBaselineStatistics", settings.supplied_statistics),
            ):
                if uri and not _is_object(store, uri):
                    raise StepFailure(f"{name} {uri} is not an object in the local object store")
            return Baseline(settings.supplied_statistics, settings.supplied_constraints)
        if settings.supplied_statistics:
            raise StepFailure(
                "SuppliedBaselineStatistics is given without SuppliedBaselineConstraints: a drift check "
                "needs the constraints"
            )
        if not settings.model_package_group:
            return None
        try:
            package = run.registry().latest_approved(settings.model_package_group)
        except TemplateError as err:
            raise StepFailure(f"cannot read the previous baseline: {err}") from None
        if package is None:
            return None
        section, statistics_key, constraints_key = DRIFT_CHECK_BASELINES[settings.check_type]
        baselines = (package.to_describe().get("DriftCheckBaselines") or {}).get(section) or {}
        constraints = (baselines.get(constraints_key) or {}).get("S3Uri")
        if not constraints:
            return None
        statistics = (baselines.get(statistics_key) or {}).get("S3Uri") if statistics_key else None
        return Baseline(statistics, constraints)

    def baseline_needed(self, run: StepRun, settings: CheckSettings) -> Baseline | None:
        previous = self.previous_baseline(run, settings)
        if previous is None and not (settings.skip_check and settings.register_new_baseline):
            why = "SkipCheck is false" if not settings.skip_check else "RegisterNewBaseline is false"
            where = (
                f"model package group {settings.model_package_group!r} has no approved version with "
                f"{DRIFT_CHECK_BASELINES[settings.check_type][0]} drift check baselines"
                if settings.model_package_group
                else "no ModelPackageGroupName is given"
            )
            raise StepFailure(
                f"{settings.check_type} needs a previous baseline ({why}), but no "
                f"SuppliedBaselineConstraints is given and {where}; supply a baseline, or set SkipCheck "
                "and RegisterNewBaseline to true for a first run"
            )
        return previous

    def output_uri(self, run: StepRun) -> str:
        output = run.arguments["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
        if not isinstance(output, str):
            raise StepFailure(f"ProcessingOutputConfig S3Uri must be a string, got {output!r}")
        return output.rstrip("/")

    def finish(
        self,
        run: StepRun,
        settings: CheckSettings,
        files: Mapping[str, str],
        calculated: Baseline,
        previous: Baseline | None,
        violations: list[dict] | None,
        log: list[str],
    ) -> StepResult:
        """Write the outputs (all computed before), then succeed or fail on violations."""
        output = self.output_uri(run)
        for name, text in files.items():
            run.env.store.put_bytes(f"{output}/{name}", text.encode())
        used = calculated if settings.register_new_baseline or previous is None else previous
        properties: dict[str, Any] = {
            "CalculatedBaselineConstraints": calculated.constraints,
            "BaselineUsedForDriftCheckConstraints": used.constraints,
        }
        if calculated.statistics is not None:
            properties["CalculatedBaselineStatistics"] = calculated.statistics
            properties["BaselineUsedForDriftCheckStatistics"] = used.statistics
        report = f"{output}/{VIOLATIONS_FILE}" if violations is not None else None
        metadata = {
            "CheckType": settings.check_type,
            **properties,
            "ModelPackageGroupName": settings.model_package_group,
            "CheckJobArn": arn("processing-job", run.job_name),
            "SkipCheck": settings.skip_check,
            "RegisterNewBaseline": settings.register_new_baseline,
        }
        if violations:
            metadata["ViolationReport"] = report
        metadata = {key: value for key, value in metadata.items() if value is not None}
        log_path = run.env.jobs_dir / run.job_name / "log.txt"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        summary = (
            "drift check skipped (SkipCheck)"
            if violations is None
            else f"{len(violations)} violation(s)" + (f", report {report}" if violations else "")
        )
        log_path.write_text("\n".join([*log, f"wrote {', '.join(files)} to {output}/", summary]) + "\n")
        if violations and settings.fail_on_violation:
            kinds = sorted({v["constraint_check_type"] for v in violations})
            names = [v.get("feature_name") or v.get("metric_name") or v.get("name") for v in violations]
            shown = ", ".join(dict.fromkeys(str(n) for n in names if n))
            raise StepFailure(
                f"{settings.check_type} check failed: {len(violations)} violation(s) of the baseline "
                f"constraints ({', '.join(kinds)}: {shown}); see {report}",
                log_path=log_path,
            )
        return StepResult(properties, {self.metadata_key: metadata}, log_path)


def _is_object(store: ObjectStore, uri: str) -> bool:
    try:
        return store.path(uri).is_file()
    except StoreError:
        return False


def read_baseline_file(store: ObjectStore, uri: str, what: str) -> Any:
    try:
        return load_json(store.get_bytes(uri), f"{what} {uri}")
    except (StoreError, TemplateError, OSError) as err:
        raise StepFailure(f"cannot read {what}: {err}") from None


# ------------------------------------------------------------------------------------------ datasets


def dataset_format(environment: Mapping[str, Any]) -> dict:
    """The ``dataset_format`` environment variable the SDK writes (``{"csv": {"header": true}}``)."""
    text = environment.get("dataset_format", '{"csv": {"header": true}}')
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as err:
        raise StepFailure(f"Environment dataset_format is not JSON: {err}") from None
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("csv", "json"):
        raise StepFailure(
            f"Environment dataset_format {text!r}: the runner reads csv or json (lines); parquet and "
            "sagemaker capture formats are not supported locally"
        )
    return value


def dataset_chunks(store: ObjectStore, uri: str, fmt: Mapping[str, Any]) -> Iterator[pd.DataFrame]:
    """Every object under ``uri`` as DataFrame chunks, columns named as Model Monitor names them."""
    try:
        files = store.list(uri)
    except StoreError as err:
        raise StepFailure(f"dataset {uri}: {err}") from None
    if not files:
        raise StepFailure(f"dataset {uri}: no objects at this location in the local object store")
    bucket = uri[len("s3://") :].split("/", 1)[0]
    for key, path in files:
        source = f"s3://{bucket}/{key}"
        yield from _file_chunks(path, source, fmt)


def _file_chunks(path: Path, source: str, fmt: Mapping[str, Any]) -> Iterator[pd.DataFrame]:
    kind, options = next(iter(fmt.items()))
    options = options or {}
    try:
        if kind == "csv":
            header = bool(options.get("header", True))
            # Only an empty cell is missing, as in Spark's CSV reader; "NA" or "null" stay text.
            reader = pd.read_csv(
                path,
                header=0 if header else None,
                chunksize=CHUNK_ROWS,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
            )
        else:
            if not options.get("lines", True):
                raise StepFailure(f'{source}: only JSON Lines ("lines": true) is read locally')
            reader = pd.read_json(path, lines=True, chunksize=CHUNK_ROWS, dtype=False)
        for chunk in reader:
            if kind == "csv" and not header:
                chunk.columns = headerless_names(chunk.shape[1])
            yield chunk
    except pd.errors.EmptyDataError:
        raise StepFailure(f"{source}: the file is empty") from None
    except (pd.errors.ParserError, ValueError) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise StepFailure(f"{source}: cannot parse {kind.upper()}: {lines[-1]}") from None
    except UnicodeDecodeError:
        raise StepFailure(f"{source}: not UTF-8 text") from None


def _input(run: StepRun, name: str) -> str:
    for item in run.arguments.get("ProcessingInputs", []):
        if item.get("InputName") == name:
            uri = (item.get("S3Input") or {}).get("S3Uri")
            if not isinstance(uri, str):
                raise StepFailure(f"ProcessingInputs {name!r} has no S3Uri")
            return uri
    raise StepFailure(f"ProcessingInputs has no input named {name!r}")


# --------------------------------------------------------------------------------------- QualityCheck

_MODEL_QUALITY_PROBLEMS = ("BinaryClassification", "Regression")


class QualityCheckExecutor(CheckExecutor):
    type = "QualityCheck"
    check_types = (DATA_QUALITY, MODEL_QUALITY)
    image_marker = "sagemaker-model-monitor-analyzer"
    fields = (
        "CheckType",
        "ModelPackageGroupName",
        "SkipCheck",
        "FailOnViolation",
        "RegisterNewBaseline",
        "SuppliedBaselineStatistics",
        "SuppliedBaselineConstraints",
    )
    metadata_key = "QualityCheck"

    def check_problems(self, step, check_type):
        arguments = step.raw.get("Arguments", {})
        problems = []
        names = [item.get("InputName") for item in arguments.get("ProcessingInputs", [])]
        if "baseline_dataset_input" not in names:
            problems.append("ProcessingInputs has no 'baseline_dataset_input' (the dataset to analyze)")
        environment = arguments.get("Environment", {})
        if isinstance(environment.get("dataset_format"), str):
            try:
                dataset_format(environment)
            except StepFailure as err:
                problems.append(str(err))
        for script in ("record_preprocessor_script", "post_analytics_processor_script"):
            if environment.get(script):
                problems.append(f"Environment {script}: custom scripts do not run locally")
        if check_type == MODEL_QUALITY:
            problem = environment.get("problem_type")
            if isinstance(problem, str) and problem not in _MODEL_QUALITY_PROBLEMS:
                problems.append(
                    f"Environment problem_type {problem!r} is not supported locally; "
                    f"use one of {', '.join(_MODEL_QUALITY_PROBLEMS)}"
                )
            if "ground_truth_attribute" not in environment:
                problems.append("Environment ground_truth_attribute is required for MODEL_QUALITY")
            if "inference_attribute" not in environment and "probability_attribute" not in environment:
                problems.append(
                    "Environment needs inference_attribute or probability_attribute for MODEL_QUALITY"
                )
        return problems

    def run(self, run: StepRun) -> StepResult:
        settings = self.settings(run)
        previous = self.baseline_needed(run, settings)
        store = run.env.store
        # Read and check the previous baseline before any work, so a bad one fails the step early.
        baseline_files = None
        if previous is not None and not settings.skip_check:
            constraints = read_baseline_file(store, previous.constraints, "baseline constraints")
            statistics = (
                read_baseline_file(store, previous.statistics, "baseline statistics")
                if previous.statistics
                else None
            )
            try:
                if settings.check_type == DATA_QUALITY:
                    constraints = parse_constraints(constraints, previous.constraints)
                    if statistics is not None:
                        statistics = parse_statistics(statistics, previous.statistics)
                else:
                    constraints = parse_model_quality_constraints(constraints, previous.constraints)
            except BaselineError as err:
                raise StepFailure(f"baseline in the wrong format: {err}") from None
            baseline_files = (statistics, constraints)

        environment = run.arguments.get("Environment", {})
        fmt = dataset_format(environment)
        dataset = _input(run, "baseline_dataset_input")
        chunks = dataset_chunks(store, dataset, fmt)
        try:
            if settings.check_type == DATA_QUALITY:
                profile = DataQualityProfile()
                for chunk in chunks:
                    profile.update(chunk)
                if profile.item_count == 0:
                    raise StepFailure(f"dataset {dataset}: no records to analyze")
                statistics = profile.statistics()
                constraints = suggest_constraints(statistics)
                violations = (
                    None
                    if baseline_files is None
                    else check_data_quality(profile, baseline_files[1], baseline_files[0])["violations"]
                )
            else:
                statistics = model_quality_statistics(*_model_quality_inputs(chunks, environment))
                constraints = suggest_model_quality_constraints(statistics)
                violations = (
                    None
                    if baseline_files is None
                    else check_model_quality(statistics, baseline_files[1])["violations"]
                )
        except BaselineError as err:
            raise StepFailure(f"{settings.check_type} analysis of {dataset}: {err}") from None
        files = {STATISTICS_FILE: to_json(statistics), CONSTRAINTS_FILE: to_json(constraints)}
        if violations is not None:
            files[VIOLATIONS_FILE] = to_json({"violations": violations})
        output = self.output_uri(run)
        calculated = Baseline(f"{output}/{STATISTICS_FILE}", f"{output}/{CONSTRAINTS_FILE}")
        log = [f"{settings.check_type} of {dataset}"]
        if previous is not None:
            log.append(f"previous baseline: {previous.constraints}")
        return self.finish(run, settings, files, calculated, previous, violations, log)


def _column(frame: pd.DataFrame, attribute: str, name: str) -> pd.Series:
    if attribute in frame.columns:
        return frame[attribute]
    if re.fullmatch(r"\d+", attribute) and int(attribute) < frame.shape[1]:
        return frame.iloc[:, int(attribute)]
    raise BaselineError(
        f"Environment {name} {attribute!r} names no column "
        f"(columns: {', '.join(map(str, frame.columns[:8]))})"
    )


def _model_quality_inputs(chunks: Iterator[pd.DataFrame], environment: Mapping[str, Any]):
    problem = environment.get("problem_type")
    truth_name = environment["ground_truth_attribute"]
    inference = environment.get("inference_attribute")
    probability = environment.get("probability_attribute")
    try:
        threshold = float(environment.get("probability_threshold_attribute", 0.5))
    except (TypeError, ValueError):
        raise BaselineError(
            f"Environment probability_threshold_attribute "
            f"{environment.get('probability_threshold_attribute')!r} is not a number"
        ) from None
    truth, predicted, scores = [], [], []
    for chunk in chunks:
        truth.append(pd.to_numeric(_column(chunk, truth_name, "ground_truth_attribute"), errors="coerce"))
        if probability is not None:
            scores.append(
                pd.to_numeric(_column(chunk, probability, "probability_attribute"), errors="coerce")
            )
        if inference is not None:
            predicted.append(pd.to_numeric(_column(chunk, inference, "inference_attribute"), errors="coerce"))
    y = pd.concat(truth).to_numpy(dtype="float64")
    p = pd.concat(scores).to_numpy(dtype="float64") if scores else None
    if predicted:
        labels = pd.concat(predicted).to_numpy(dtype="float64")
    elif problem == "BinaryClassification" and p is not None:
        labels = (p >= threshold).astype("float64")
    else:
        labels = p
    return problem, y, labels, p if problem == "BinaryClassification" else None


# --------------------------------------------------------------------------------------- ClarifyCheck

ANALYSIS_FILE = "analysis.json"
#: The analysis config's ``methods`` entry and the analysis.json section of each check type.
_CLARIFY = {
    DATA_BIAS: ("pre_training_bias", clarify.PRE_TRAINING),
    MODEL_BIAS: ("post_training_bias", clarify.POST_TRAINING),
    MODEL_EXPLAINABILITY: ("shap", "explanations"),
}


class ClarifyCheckExecutor(CheckExecutor):
    type = "ClarifyCheck"
    check_types = (DATA_BIAS, MODEL_BIAS, MODEL_EXPLAINABILITY)
    image_marker = "sagemaker-clarify-processing"
    fields = (
        "CheckType",
        "ModelPackageGroupName",
        "SkipCheck",
        "FailOnViolation",
        "RegisterNewBaseline",
        "SuppliedBaselineConstraints",
        "ModelName",
    )
    metadata_key = "ClarifyCheck"

    def check_problems(self, step, check_type):
        arguments = step.raw.get("Arguments", {})
        names = [item.get("InputName") for item in arguments.get("ProcessingInputs", [])]
        problems = [
            f"ProcessingInputs has no {name!r} input"
            for name in ("analysis_config", "dataset")
            if name not in names
        ]
        if (
            check_type in (MODEL_BIAS, MODEL_EXPLAINABILITY)
            and _model_step(step.raw.get("ModelName")) is None
        ):
            problems.append(
                f"{check_type} needs ModelName read from a Model step of this pipeline "
                "(Get Steps.<step>.ModelName): the runner scores with that step's model artifact"
            )
        return problems

    def run(self, run: StepRun) -> StepResult:
        settings = self.settings(run)
        previous = self.baseline_needed(run, settings)
        store = run.env.store
        method, section = _CLARIFY[settings.check_type]
        baseline = None
        if previous is not None and not settings.skip_check:
            document = read_baseline_file(store, previous.constraints, "baseline constraints")
            try:
                baseline = clarify.parse_analysis(document, previous.constraints, section)
            except BaselineError as err:
                raise StepFailure(f"baseline in the wrong format: {err}") from None

        config_uri = _input(run, "analysis_config")
        config = _analysis_config(store, config_uri, method)
        frame = _clarify_dataset(store, _input(run, "dataset"), config)
        label = _label_name(config, frame, config_uri)
        try:
            if settings.check_type == DATA_BIAS:
                body = self._bias(config, frame, label, None)
            else:
                booster = self._model(run)
                features = frame.drop(columns=[label, *config.get("excluded_columns", [])], errors="ignore")
                if settings.check_type == MODEL_BIAS:
                    threshold = float(config.get("probability_threshold", 0.5))
                    scores = clarify.predict(booster, features)
                    predicted = pd.Series((scores >= threshold).astype("int64"))
                    body = self._bias(config, frame, label, predicted)
                else:
                    shap = config["methods"]["shap"]
                    body = clarify.shap_explanations(booster, features, shap.get("agg_method", "mean_abs"))
        except BaselineError as err:
            raise StepFailure(f"{settings.check_type} analysis: {err}") from None
        analysis = {"version": clarify.ANALYSIS_VERSION, section: body}
        files = {ANALYSIS_FILE: to_json(analysis)}
        violations = None
        if baseline is not None:
            report = (
                clarify.check_explainability(analysis, baseline)
                if section == "explanations"
                else clarify.check_bias(analysis, baseline, section)
            )
            violations = report["violations"]
            files[VIOLATIONS_FILE] = to_json(report)
        output = self.output_uri(run)
        calculated = Baseline(None, f"{output}/{ANALYSIS_FILE}")
        log = [f"{settings.check_type} of {len(frame)} rows with {config_uri}"]
        return self.finish(run, settings, files, calculated, previous, violations, log)

    @staticmethod
    def _bias(config: Mapping[str, Any], frame: pd.DataFrame, label: str, predicted) -> dict:
        positive = config.get("label_values_or_threshold")
        facets = config.get("facet")
        if not isinstance(positive, list) or not positive:
            raise BaselineError("analysis config label_values_or_threshold must be a non-empty list")
        if not isinstance(facets, list) or not facets:
            raise BaselineError("analysis config facet must be a non-empty list of {name_or_index, ...}")
        method = "post_training_bias" if predicted is not None else "pre_training_bias"
        methods = config["methods"][method].get("methods", "all")
        return clarify.bias_metrics(
            frame,
            label=label,
            positive_label_values=positive,
            facets=facets,
            predicted_label=predicted,
            methods=methods,
            group_variable=config.get("group_variable"),
        )

    @staticmethod
    def _model(run: StepRun):
        step_name = _model_step(run.step.raw.get("ModelName"))
        properties = run.context.step_properties(step_name) or {}
        containers = properties.get("Containers") or [properties.get("PrimaryContainer") or {}]
        url = containers[0].get("ModelDataUrl")
        if not isinstance(url, str):
            raise StepFailure(f"model of step {step_name!r} has no ModelDataUrl to score with")
        try:
            archive = run.env.store.get_bytes(url)
        except (StoreError, TemplateError) as err:
            raise StepFailure(f"cannot read the model of step {step_name!r}: {err}") from None
        try:
            return clarify.load_xgboost(archive, url)
        except BaselineError as err:
            raise StepFailure(str(err)) from None


def _model_step(expression: Any) -> str | None:
    if not (isinstance(expression, dict) and isinstance(expression.get("Get"), str)):
        return None
    try:
        reference = parse_reference(expression["Get"])
    except ExpressionError:
        return None
    return reference.name if reference.root == STEPS else None


def _analysis_config(store: ObjectStore, uri: str, method: str) -> dict:
    config = read_baseline_file(store, uri, "analysis config")
    if not isinstance(config, dict):
        raise StepFailure(f"analysis config {uri}: expected a JSON object")
    problems = []
    if config.get("dataset_type", "text/csv") != "text/csv":
        problems.append(f"dataset_type {config.get('dataset_type')!r} is not supported locally; use text/csv")
    if "label" not in config:
        problems.append("label is required")
    methods = config.get("methods")
    if not isinstance(methods, dict) or not isinstance(methods.get(method), dict):
        problems.append(f"methods.{method} is required for this check type")
    headers = config.get("headers")
    if headers is not None and not (isinstance(headers, list) and all(isinstance(h, str) for h in headers)):
        problems.append("headers must be a list of column names")
    facets = config.get("facet", [])
    if not (
        isinstance(facets, list)
        and all(
            isinstance(f, dict)
            and isinstance(f.get("name_or_index"), str | int)
            and isinstance(f.get("value_or_threshold", []), list)
            for f in facets
        )
    ):
        problems.append("facet must be a list of {name_or_index, value_or_threshold (a list)}")
    for key in ("group_variable",):
        if config.get(key) is not None and not isinstance(config[key], str):
            problems.append(f"{key} must be a column name")
    excluded = config.get("excluded_columns", [])
    if not (isinstance(excluded, list) and all(isinstance(c, str) for c in excluded)):
        problems.append("excluded_columns must be a list of column names")
    threshold = config.get("probability_threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        problems.append("probability_threshold must be a number")
    if problems:
        raise StepFailure(f"analysis config {uri}: {'; '.join(problems)}")
    return config


def _clarify_dataset(store: ObjectStore, uri: str, config: Mapping[str, Any]) -> pd.DataFrame:
    headers = config.get("headers")
    # With headers in the config the CSV has none of its own (what the SDK's DataConfig writes).
    fmt = {"csv": {"header": headers is None}}
    frames = list(dataset_chunks(store, uri, fmt))
    frame = pd.concat(frames, ignore_index=True)
    if headers is not None:
        if len(headers) != frame.shape[1]:
            raise StepFailure(
                f"dataset {uri}: {frame.shape[1]} columns, but the analysis config names "
                f"{len(headers)} headers"
            )
        frame.columns = headers
    if frame.empty:
        raise StepFailure(f"dataset {uri}: no records to analyze")
    return frame


def _label_name(config: Mapping[str, Any], frame: pd.DataFrame, source: str) -> str:
    label = config["label"]
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < frame.shape[1]:
        return str(frame.columns[label])
    if label in frame.columns:
        return label
    raise StepFailure(f"analysis config {source}: label {label!r} is not a column of the dataset")


#: Registered in ``executors.EXECUTORS``.
CHECK_EXECUTORS = (QualityCheckExecutor(), ClarifyCheckExecutor())

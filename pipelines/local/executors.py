"""One executor per step type, in a table keyed by the definition's ``Type``.

An executor checks what it can of its step before anything runs (``problems``), says which inputs
its cache key must cover, and runs the step on arguments the engine has already resolved. Status,
timing, caching, retries and records are the engine's; an executor only does its step's work and
fails with ``StepFailure``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.errors import ConfigError, NotFoundError
from pipelines.local.checks import CHECK_EXECUTORS
from pipelines.local.definition import StepSpec
from pipelines.local.executor_base import Executor, StepResult, StepRun
from pipelines.local.expressions import ExpressionError, evaluate_condition
from pipelines.local.jobs import (
    JobEnvironment,
    StepFailure,
    arn,
    instance_count_problem,
    processing_job,
    training_job,
)
from pipelines.local.metrics import override_refused
from pipelines.local.runtimes import Runtime, runtime_for, unknown_image
from pipelines.local.sandbox import support
from pipelines.local.transform import TransformExecutor
from pipelines.local.tuning import run_tuning, tuning_problems


def _image_problem(image: Any) -> list[str]:
    if isinstance(image, str) and runtime_for(image) is None:
        return [unknown_image(image)]
    return []


def _builtin_runtime(algorithm: Mapping[str, Any]) -> Runtime | None:
    """The runtime of a built-in algorithm's image named in the definition, else None."""
    image = algorithm.get("TrainingImage")
    runtime = runtime_for(image) if isinstance(image, str) else None
    return runtime if runtime is not None and runtime.is_builtin_algorithm else None


def warn_if_paths_are_rewritten(run: StepRun) -> None:
    """Once per step: without a mount namespace, a job finds its files only through the paths in
    its entry point, arguments and environment."""
    isolation = support()
    if not isolation.namespaced:
        run.warn(
            f"no private mount namespace for its jobs ({isolation.reason}): code that hard-codes "
            "/opt/ml will not see its files; only /opt/ml paths in the entry point, arguments and "
            "environment point into the job's sandbox"
        )


def warn_if_instances_repeat_the_work(run: StepRun) -> None:
    """SageMaker downloads a FullyReplicated input whole to every processing instance, and only
    ShardedByS3Key gives each a share (botocore's ProcessingS3Input.S3DataDistributionType): without a
    sharded input, N instances run the same code on the same data. The runner does the same, and says so."""
    count = run.arguments.get("ProcessingResources", {}).get("ClusterConfig", {}).get("InstanceCount", 1)
    inputs = run.arguments.get("ProcessingInputs", [])
    if count > 1 and not any(
        item.get("S3Input", {}).get("S3DataDistributionType") == "ShardedByS3Key" for item in inputs
    ):
        run.warn(
            f"InstanceCount {count} with no ShardedByS3Key input: every instance gets every input whole and "
            f"runs the same code, here as on SageMaker ({count} times the work and the cost); shard an input "
            "by S3 key or use one instance"
        )


class ProcessingExecutor(Executor):
    type = "Processing"
    cacheable = True
    cache_key_attributes = ("AppSpecification", "Environment", "ProcessingInputs")
    job_variable = "ProcessingJobName"

    def problems(self, step: StepSpec) -> list[str]:
        args = step.arguments
        problems = _image_problem(args.get("AppSpecification", {}).get("ImageUri"))
        for index, item in enumerate(args.get("ProcessingInputs", [])):
            where = f"ProcessingInputs[{index}]"
            source = item.get("S3Input")
            if source is None:
                problems.append(f"{where}: only S3Input inputs run locally (DatasetDefinition does not)")
                continue
            if "LocalPath" not in source:
                problems.append(f"{where}.S3Input.LocalPath is missing: the local runner needs it")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                problems.append(
                    f"{where}: S3DataType {source.get('S3DataType')!r} is not supported locally; use S3Prefix"
                )
            if source.get("S3InputMode", "File") == "Pipe":
                problems.append(f"{where}: S3InputMode Pipe is not supported locally; use File")
            if source.get("S3CompressionType", "None") != "None":
                problems.append(
                    f"{where}: S3CompressionType {source.get('S3CompressionType')!r} is not supported locally"
                )
        for index, output in enumerate(args.get("ProcessingOutputConfig", {}).get("Outputs", [])):
            if "S3Output" not in output:
                problems.append(f"ProcessingOutputConfig.Outputs[{index}]: only S3Output outputs run locally")
            elif "LocalPath" not in output["S3Output"]:
                problems.append(
                    f"ProcessingOutputConfig.Outputs[{index}].S3Output.LocalPath is missing: "
                    "the local runner needs it"
                )
        return problems

    def cache_inputs(self, arguments):
        return [item["S3Input"]["S3Uri"] for item in arguments.get("ProcessingInputs", [])]

    def outputs(self, properties):
        return [
            o["S3Output"]["S3Uri"] for o in properties.get("ProcessingOutputConfig", {}).get("Outputs", [])
        ]

    def run(self, run: StepRun) -> StepResult:
        warn_if_paths_are_rewritten(run)
        warn_if_instances_repeat_the_work(run)
        description = processing_job(run.job_name, run.arguments, run.env, run.warn)
        return StepResult(
            description,
            {"ProcessingJob": {"Arn": description["ProcessingJobArn"]}},
            run.env.jobs_dir / run.job_name / "log.txt",
        )


def _training_problems(args: Mapping[str, Any]) -> list[str]:
    algorithm = args.get("AlgorithmSpecification", {})
    problems = _image_problem(algorithm.get("TrainingImage"))
    if "TrainingImage" not in algorithm and not algorithm.get("AlgorithmName"):
        # The API takes a request without it; the runner needs the image to know what to run.
        problems.append("AlgorithmSpecification.TrainingImage is missing: the local runner runs an image")
    if algorithm.get("AlgorithmName"):
        problems.append(
            "AlgorithmName (a marketplace or custom algorithm) cannot run locally; give TrainingImage"
        )
    if _builtin_runtime(algorithm) is not None and algorithm.get("MetricDefinitions"):
        problems.append(override_refused(algorithm["TrainingImage"]))
    if algorithm.get("TrainingInputMode", "File") == "Pipe":
        problems.append("TrainingInputMode Pipe is not supported locally; use File")
    for index, channel in enumerate(args.get("InputDataConfig", [])):
        source = channel.get("DataSource", {}).get("S3DataSource")
        if source is None:
            problems.append(f"InputDataConfig[{index}]: only S3DataSource channels run locally")
        elif source.get("S3DataType", "S3Prefix") != "S3Prefix":
            problems.append(
                f"InputDataConfig[{index}]: S3DataType {source.get('S3DataType')!r} is not supported locally"
            )
    resources = args.get("ResourceConfig", {})
    problem = instance_count_problem(resources.get("InstanceCount", 1), resources.get("InstanceType"))
    if problem is not None:
        problems.append(problem)
    return problems


def instance_count_problems(step: StepSpec, values: Mapping[str, Any]) -> list[str]:
    """The training instance count of a Training or Tuning step with this run's parameter values,
    checked before the run: SageMaker refuses it only once the step starts its job."""
    if step.type == "Training":
        resources = step.arguments.get("ResourceConfig", {})
    elif step.type == "Tuning":
        resources = (step.arguments.get("TrainingJobDefinition") or {}).get("ResourceConfig", {})
    else:
        return []

    def known(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Get"} and isinstance(value["Get"], str):
            root, _, name = value["Get"].partition(".")
            if root == "Parameters" and name in values:
                return values[name]
        return value

    count = resources.get("InstanceCount", 1)
    if not isinstance(count, dict):
        return []  # a literal, checked with the definition (problems)
    problem = instance_count_problem(known(count), known(resources.get("InstanceType")))
    return [problem] if problem else []


def _training_inputs(arguments: Mapping[str, Any]) -> list[str]:
    return [c["DataSource"]["S3DataSource"]["S3Uri"] for c in arguments.get("InputDataConfig", [])]


class TrainingExecutor(Executor):
    type = "Training"
    cacheable = True
    cache_key_attributes = (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    )
    job_variable = "TrainingJobName"

    def problems(self, step):
        return _training_problems(step.arguments)

    def cache_inputs(self, arguments):
        return _training_inputs(arguments)

    def outputs(self, properties):
        return [properties["ModelArtifacts"]["S3ModelArtifacts"]]

    def run(self, run: StepRun) -> StepResult:
        warn_if_paths_are_rewritten(run)
        description = training_job(run.job_name, run.arguments, run.env)
        return StepResult(
            description,
            {"TrainingJob": {"Arn": description["TrainingJobArn"]}},
            run.env.jobs_dir / run.job_name / "log.txt",
        )


def objective_value(description: Mapping[str, Any], metric: str) -> float | None:
    for item in description.get("FinalMetricDataList", []):
        if item["MetricName"] == metric:
            return item["Value"]
    return None


class TuningExecutor(Executor):
    type = "Tuning"

    def detail(self, result):
        best = result.properties["BestTrainingJob"]
        metric = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        count = len(result.properties["TrainingJobSummaries"])
        return f"{count} trials; best {metric.get('MetricName')} = {metric.get('Value')}"

    cacheable = True
    cache_key_attributes = (
        "HyperParameterTuningJobConfig",
        "TrainingJobDefinition",
        "TrainingJobDefinitions",
    )
    #: The parts of TrainingJobDefinition that count (the same AWS doc).
    definition_attributes = (
        "AlgorithmSpecification",
        "HyperParameterRanges",
        "InputDataConfig",
        "StaticHyperParameters",
        "TuningObjective",
    )

    def cache_key_arguments(self, arguments):
        keyed = super().cache_key_arguments(arguments)
        definition = keyed.get("TrainingJobDefinition")
        if isinstance(definition, dict):
            keyed["TrainingJobDefinition"] = {
                key: definition[key] for key in self.definition_attributes if key in definition
            }
        return keyed

    def problems(self, step):
        args = step.arguments
        problems = tuning_problems(args.get("HyperParameterTuningJobConfig"))
        if "TrainingJobDefinitions" in args:
            problems.append("TrainingJobDefinitions (several algorithms) is not supported locally")
        definition = args.get("TrainingJobDefinition")
        if not isinstance(definition, dict):
            return [*problems, "TrainingJobDefinition is missing"]
        problems += _training_problems(definition)
        config = args.get("HyperParameterTuningJobConfig") or {}
        metric = (config.get("HyperParameterTuningJobObjective") or {}).get("MetricName")
        algorithm = definition.get("AlgorithmSpecification", {})
        builtin = _builtin_runtime(algorithm)
        if builtin is not None:
            names = [pattern.name for pattern in builtin.algorithm_metrics]
            if isinstance(metric, str) and metric not in names:
                problems.append(
                    f"objective metric {metric!r} is not a metric of the built-in algorithm's image "
                    f"{algorithm['TrainingImage']}; use one of {', '.join(names)}"
                )
            return problems
        defined = [m.get("Name") for m in algorithm.get("MetricDefinitions", [])]
        static = definition.get("StaticHyperParameters", {})
        script_mode = "sagemaker_program" in static
        if metric and script_mode and metric not in defined:
            problems.append(
                f"objective metric {metric!r} is not among the MetricDefinitions "
                f"({', '.join(defined) or 'none'})"
            )
        return problems

    def cache_inputs(self, arguments):
        return _training_inputs(arguments["TrainingJobDefinition"])

    def outputs(self, properties):
        output = properties["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        return [f"{output}/{properties['BestTrainingJob']['TrainingJobName']}/output/model.tar.gz"]

    def run(self, run: StepRun) -> StepResult:
        warn_if_paths_are_rewritten(run)
        name = run.job_name[:32].rstrip("-")
        trials_dir = run.env.jobs_dir / name
        # Each trial wants its part of the CPUs; the budget it shares with every other running job
        # decides what it gets.
        limits = run.arguments["HyperParameterTuningJobConfig"].get("ResourceLimits", {})
        parallel = max(1, int(limits.get("MaxParallelTrainingJobs", 1)))
        cpus = max(1, run.env.cpus // parallel)
        budget = run.env.cpu_budget()
        trial_env = JobEnvironment(run.env.store, trials_dir, cpus, run.env.stop, budget)

        def train(job_name: str, arguments: dict) -> dict:
            return training_job(job_name, arguments, trial_env)

        description = run_tuning(name, run.arguments, train, objective_value)
        return StepResult(
            description,
            {"TuningJob": {"Arn": description["HyperParameterTuningJobArn"]}},
            trials_dir,
        )


_SYMBOLS = {
    "GreaterThan": ">",
    "GreaterThanOrEqualTo": ">=",
    "LessThan": "<",
    "LessThanOrEqualTo": "<=",
    "Equals": "==",
}


def _condition_text(condition: Mapping[str, Any]) -> str:
    kind = condition.get("Type")
    symbol = _SYMBOLS.get(kind)
    if symbol:
        return f"{_value(condition.get('LeftValue'))} {symbol} {_value(condition.get('RightValue'))}"
    return kind or "?"


def _value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class ConditionExecutor(Executor):
    type = "Condition"

    def detail(self, result):
        branch = "IfSteps" if result.branch == "if" else "ElseSteps"
        return f"outcome {str(result.properties['Outcome']).lower()}: {branch}"

    def summary_lines(self, name, properties):
        parts = [_condition_text(c) for c in properties.get("EvaluatedConditions", [])]
        branch = "IfSteps" if properties.get("Outcome") else "ElseSteps"
        return [
            f"  gate {name}: {' and '.join(parts)} -> {str(properties.get('Outcome')).lower()}, ran {branch}"
        ]

    def run(self, run: StepRun) -> StepResult:
        conditions = run.arguments["Conditions"]
        try:
            outcome = all(
                evaluate_condition(condition, run.context, where=f"Conditions[{index}]")
                for index, condition in enumerate(conditions)
            )
        except ExpressionError as err:
            raise StepFailure(f"cannot evaluate the condition: {err}") from None
        return StepResult(
            {"Outcome": outcome, "EvaluatedConditions": conditions},
            {"Condition": {"Outcome": str(outcome).lower()}},
            branch="if" if outcome else "else",
        )


class FailExecutor(Executor):
    type = "Fail"

    def run(self, run: StepRun) -> StepResult:
        message = run.arguments.get("ErrorMessage", "")
        raise StepFailure(str(message) if message != "" else "the pipeline reached a Fail step")


class RegisterModelExecutor(Executor):
    type = "RegisterModel"

    def detail(self, result):
        properties = result.properties
        return f"{properties['ModelPackageGroupName']} version {properties['ModelPackageVersion']}"

    def summary_lines(self, name, properties):
        return [
            f"  registered {properties['ModelPackageGroupName']} "
            f"version {properties['ModelPackageVersion']} "
            f"({properties['ModelApprovalStatus']}): {properties['ModelPackageArn']}"
        ]

    def problems(self, step):
        spec = step.arguments.get("InferenceSpecification")
        problems = []
        if not step.arguments.get("ModelPackageGroupName"):
            problems.append(
                "ModelPackageGroupName is required (unversioned packages are not supported locally)"
            )
        if not isinstance(spec, dict) or not spec.get("Containers"):
            problems.append("InferenceSpecification.Containers is required")
        elif len(spec["Containers"]) != 1:
            problems.append(
                f"{len(spec['Containers'])} inference containers: the local registry takes exactly one"
            )
        return problems

    def run(self, run: StepRun) -> StepResult:
        args = run.arguments
        spec = args["InferenceSpecification"]
        container = spec["Containers"][0]
        model_url = container.get("ModelDataUrl")
        if (
            isinstance(model_url, str)
            and model_url.startswith("s3://")
            and not run.env.store.exists(model_url)
        ):
            raise StepFailure(f"ModelDataUrl {model_url} is not in the local object store")
        registry = run.registry()
        group = args["ModelPackageGroupName"]
        registrant = (
            f"pipeline execution {run.context.execution.get('PipelineExecutionId')} step {run.step.name}"
        )
        try:
            registry.ensure_group(group, args.get("ModelPackageGroupDescription", ""))
            # A runner killed after registering but before recording the step registers again on
            # retry; one version per execution and step, as SageMaker keeps for a retried step.
            package = _registered_by(registry, group, registrant) or registry.register(
                group,
                model_data_url=model_url,
                image_uri=container.get("Image"),
                environment=container.get("Environment"),
                content_types=spec.get("SupportedContentTypes") or ["text/csv"],
                response_types=spec.get("SupportedResponseMIMETypes") or ["text/csv"],
                approval_status=args.get("ModelApprovalStatus", "PendingManualApproval"),
                model_metrics=_metrics(args.get("ModelMetrics")),
                customer_metadata=args.get("CustomerMetadataProperties"),
                description=args.get("ModelPackageDescription", ""),
                by=registrant,
            )
        except (ConfigError, NotFoundError) as err:
            raise StepFailure(f"cannot register the model: {err}") from None
        described = package.to_describe()
        return StepResult(described, {"RegisterModel": {"Arn": described["ModelPackageArn"]}})


def _registered_by(registry, group: str, registrant: str):
    """The version of ``group`` that ``registrant`` registered, or None (newest versions first)."""
    for package in reversed(registry.list_versions(group)):
        history = registry.approval_history(group, package.version)
        if history and history[0].by == registrant:
            return package
    return None


def _metrics(metrics: Any) -> Any:
    # The SDK writes empty sections ("Bias": {}); CreateModelPackage takes them, the shape check
    # does not, and they say nothing, so they are dropped.
    if not isinstance(metrics, dict):
        return metrics
    kept = {key: value for key, value in metrics.items() if value not in ({}, None)}
    return kept or None


class CreateModelExecutor(Executor):
    type = "Model"

    def problems(self, step):
        containers = step.arguments.get("Containers") or [step.arguments.get("PrimaryContainer") or {}]
        return [p for c in containers for p in _image_problem(c.get("Image"))]

    def run(self, run: StepRun) -> StepResult:
        containers = run.arguments.get("Containers") or [run.arguments.get("PrimaryContainer") or {}]
        for container in containers:
            url = container.get("ModelDataUrl")
            if isinstance(url, str) and url.startswith("s3://") and not run.env.store.exists(url):
                raise StepFailure(f"ModelDataUrl {url} is not in the local object store")
        name = run.job_name
        return StepResult(
            {"ModelName": name, "ModelArn": arn("model", name), **run.arguments},
            {"Model": {"Arn": arn("model", name)}},
        )


#: The step types the local runner executes; a definition with another type fails validation.
EXECUTORS: dict[str, Executor] = {
    executor.type: executor
    for executor in (
        ProcessingExecutor(),
        TrainingExecutor(),
        TuningExecutor(),
        ConditionExecutor(),
        FailExecutor(),
        RegisterModelExecutor(),
        CreateModelExecutor(),
        TransformExecutor(),
        *CHECK_EXECUTORS,
    )
}

"""The churn model-build pipeline: preprocess, baseline training, tuning, evaluation, gate, registration.

``get_pipeline(**kwargs)`` is the only entry point and has no side effects: it needs no AWS account,
credentials or network, and the same code and arguments give a byte-identical definition. Every
SageMaker SDK call of the project lives in this module, so an SDK upgrade touches one file.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from pipelines import aws_names as names
from pipelines.code_bundles import SOURCEDIR_ARCHIVE, STEPS_DIR, CodeBundle, CodeUpload
from pipelines.errors import ConfigError, join_problems
from steps import evaluate as evaluate_step
from steps import inference as inference_step
from steps import preprocess as preprocess_step
from steps import train as train_step

#: The dataset spec that ships with this pipeline: label, problem type and feature types.
DEFAULT_DATASET_SPEC = Path(__file__).resolve().parent / "dataset.json"

#: The bundled sample table a local run stages at the input URL (source and licence: data/README.md).
SAMPLE_DATA = Path(__file__).resolve().parents[2] / "data" / "churn" / "churn.csv"

#: SageMaker XGBoost framework image version; the local ``xgboost`` pin in setup.py matches it.
XGBOOST_FRAMEWORK_VERSION = "3.2-0"

# Container paths of the processing jobs. The step scripts default to the same paths; the
# pipeline passes them explicitly so the definition documents where everything goes.
PROCESSING_ROOT = "/opt/ml/processing"
CODE_DIR = f"{PROCESSING_ROOT}/input/code"
# Training code arrives as the ``code`` channel and the toolkit is pointed at that directory:
# no S3 download from inside the container, so it works with network isolation, and a plain
# directory (not a tar.gz) is what every version of the training toolkit knows how to take.
TRAINING_CODE_CHANNEL = "code"
TRAINING_SUBMIT_DIRECTORY = f"/opt/ml/input/data/{TRAINING_CODE_CHANNEL}"

PROPERTY_FILE_NAME = "EvaluationReport"

# The XGBoost objective for each problem type; the gate metric and its direction come from the
# evaluate step, so the JsonGet path, the comparison and the report are defined in one place.
_OBJECTIVES = {"binary_classification": "binary:logistic", "regression": "reg:squarederror"}

# What each name-like argument must look like, and how to say so when it does not.
_NAME_RULES = {
    "region": (names.REGION, "an AWS region such as 'us-east-1'"),
    "role": (names.ROLE_ARN, "an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
    "default_bucket": (names.BUCKET, "a valid S3 bucket name"),
    "pipeline_name": (names.PIPELINE_NAME, "a valid pipeline name (letters, digits, '-')"),
    "model_package_group_name": (
        names.MODEL_PACKAGE_GROUP,
        "a valid model package group name (letters, digits, '-', at most 63 characters)",
    ),
    "base_job_prefix": (names.JOB_PREFIX, "a job name prefix (letters, digits, '-', at most 48 characters)"),
    "kms_key_id": (names.KMS_KEY, "a KMS key id, key ARN or alias"),
    "cache_expire_after": (names.ISO_DURATION, "an ISO 8601 duration such as 'P30D'"),
    "sagemaker_project_arn": (names.PROJECT_ARN, "a SageMaker project ARN"),
}

_STEP_RETRIES = {"interval_seconds": 10, "backoff_rate": 2.0, "max_attempts": 5}


@dataclass(frozen=True)
class Settings:
    """The validated arguments of one pipeline build."""

    region: str
    role: str
    default_bucket: str
    pipeline_name: str
    model_package_group_name: str
    base_job_prefix: str
    dataset_spec: Path
    input_data_url: str
    kms_key_id: str | None
    subnets: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    enable_network_isolation: bool
    encrypt_inter_container_traffic: bool
    cache_expire_after: str
    sagemaker_project_arn: str | None


def get_pipeline(
    region: str | None = None,
    role: str | None = None,
    default_bucket: str | None = None,
    pipeline_name: str = "ChurnPipeline",
    model_package_group_name: str = "ChurnModelPackageGroup",
    base_job_prefix: str = "churn",
    dataset_spec: str | None = None,
    input_data_url: str | None = None,
    kms_key_id: str | None = None,
    subnets: list[str] | None = None,
    security_group_ids: list[str] | None = None,
    enable_network_isolation: bool = False,
    encrypt_inter_container_traffic: bool = False,
    cache_expire_after: str = "P30D",
    sagemaker_project_arn: str | None = None,
):
    """Build the SageMaker Pipeline object (``sagemaker.mlops.workflow.pipeline.Pipeline``).

    Args:
        region: AWS region of the pipeline; defaults to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
        role: ARN of the IAM role the pipeline's jobs run as (required).
        default_bucket: bucket for code, step outputs and models (required: looking one up would
            need AWS credentials).
        pipeline_name: the pipeline's name; also the S3 key prefix of its code and outputs.
        model_package_group_name: Model Registry group the gated model is registered in.
        base_job_prefix: prefix of job names and of the default input location.
        dataset_spec: path of a dataset spec JSON (label, problem type, feature types); defaults
            to the churn spec next to this module. Another table needs only another spec.
        input_data_url: default of the ``InputDataUrl`` parameter (an S3 object or prefix of CSVs);
            defaults to ``s3://<default_bucket>/<base_job_prefix>/input/``.
        kms_key_id: customer KMS key for job volumes, step outputs, models and uploaded code.
        subnets, security_group_ids: run every job in this VPC (both or neither).
        enable_network_isolation: run training and processing containers without network access.
        encrypt_inter_container_traffic: encrypt traffic between instances of one job.
        cache_expire_after: ISO 8601 duration for which a step's earlier result is reused.
        sagemaker_project_arn: the SageMaker project that owns the pipeline; recorded on each
            registered model version.
    """
    settings = _validate(**locals())
    spec = _load_spec(settings.dataset_spec)
    bundles = _bundles(settings)
    with warnings.catch_warnings(), _offline_sdk_environment(settings.region):
        # The SDK warns on every job built under a PipelineSession that nothing is started:
        # that is the point of building a definition, so the warning is noise here.
        warnings.filterwarnings("ignore", message="Running within a PipelineSession")
        return _build(settings, spec, bundles)


def get_code_upload(**kwargs) -> CodeUpload:
    """The code the definition refers to, which ``run-pipeline`` uploads before the upsert.

    Takes the same arguments as ``get_pipeline`` and validates them the same way.
    """
    settings = _validate(**kwargs)
    return CodeUpload(
        bucket=settings.default_bucket,
        key_prefix=settings.pipeline_name,
        bundles=tuple(_bundles(settings).values()),
        kms_key_id=settings.kms_key_id,
    )


def get_local_inputs(**kwargs) -> dict[str, Path]:
    """What ``run-pipeline --local`` puts in the local object store before it runs: the sample
    table of the dataset spec at the input URL. The default spec's sample is the bundled churn
    table; another spec's is the one CSV file beside it, if there is exactly one."""
    settings = _validate(**kwargs)
    if settings.dataset_spec == DEFAULT_DATASET_SPEC:
        samples = [SAMPLE_DATA] if SAMPLE_DATA.is_file() else []
    else:
        samples = sorted(settings.dataset_spec.parent.glob("*.csv"))
    if len(samples) != 1:
        return {}
    return {f"{settings.input_data_url.rstrip('/')}/{samples[0].name}": samples[0]}


# --------------------------------------------------------------------------------------------
# validation


def _validate(**kw) -> Settings:
    """Check every argument, report all problems at once, and resolve the defaults."""
    # A JSON null in --kwargs means "not given": the default applies, never a literal None.
    defaults = {name: p.default for name, p in inspect.signature(get_pipeline).parameters.items()}
    kw = {**defaults, **{name: value for name, value in kw.items() if value is not None}}
    problems: list[str] = []

    kw["region"] = kw["region"] or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if kw["region"] is None:
        problems.append("region is required (pass it in --kwargs or set AWS_REGION)")
    for name in ("role", "default_bucket"):
        if kw[name] is None:
            problems.append(f"{name} is required ({_NAME_RULES[name][1]})")
    for name, (pattern, what) in _NAME_RULES.items():
        value = kw[name]
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            problems.append(f"{name}={value!r} is not {what}")

    input_data_url = kw["input_data_url"]
    if input_data_url is not None and not (
        isinstance(input_data_url, str) and input_data_url.startswith("s3://")
    ):
        problems.append(f"input_data_url={input_data_url!r} is not an s3:// URI")

    vpc = {}
    for name in ("subnets", "security_group_ids"):
        value = kw[name]
        if value is None:
            vpc[name] = ()
        elif isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            vpc[name] = tuple(value)
        else:
            problems.append(f"{name}={value!r} is not a non-empty list of ids")
            vpc[name] = ()
    if bool(vpc["subnets"]) != bool(vpc["security_group_ids"]):
        problems.append("subnets and security_group_ids go together: give both to run in a VPC, or neither")

    for name in ("enable_network_isolation", "encrypt_inter_container_traffic"):
        if not isinstance(kw[name], bool):
            problems.append(f"{name}={kw[name]!r} is not true or false")

    spec_path = DEFAULT_DATASET_SPEC
    if kw["dataset_spec"] is not None and not isinstance(kw["dataset_spec"], str):
        problems.append(f"dataset_spec={kw['dataset_spec']!r} is not a file path")
    elif kw["dataset_spec"]:
        spec_path = Path(kw["dataset_spec"])
    if not spec_path.is_file():
        problems.append(f"dataset_spec={str(spec_path)!r} is not a file")

    if problems:
        raise ConfigError(f"invalid pipeline arguments: {join_problems(problems)}")

    bucket, prefix = kw["default_bucket"], kw["base_job_prefix"]
    return Settings(
        region=kw["region"],
        role=kw["role"],
        default_bucket=bucket,
        pipeline_name=kw["pipeline_name"],
        model_package_group_name=kw["model_package_group_name"],
        base_job_prefix=prefix,
        dataset_spec=spec_path,
        input_data_url=input_data_url or f"s3://{bucket}/{prefix}/input/",
        kms_key_id=kw["kms_key_id"],
        subnets=vpc["subnets"],
        security_group_ids=vpc["security_group_ids"],
        enable_network_isolation=kw["enable_network_isolation"],
        encrypt_inter_container_traffic=kw["encrypt_inter_container_traffic"],
        cache_expire_after=kw["cache_expire_after"],
        sagemaker_project_arn=kw["sagemaker_project_arn"],
    )


@contextlib.contextmanager
def _offline_sdk_environment(region: str):
    """Keep the SDK offline while it builds, leaving the process environment as it was.

    SDK 3.27.0 creates boto3 clients while it is imported (``sagemaker.ai_registry.air_hub``)
    and while it builds, which fail without a region in the environment; and ``ModelTrainer``
    checks the role with ``iam:SimulatePrincipalPolicy`` unless ``SAGEMAKER_VALIDATE_ROLE`` is
    false. SageMaker checks the role when the pipeline is upserted, so a build need not.
    """
    # boto3 reads AWS_DEFAULT_REGION (not AWS_REGION) for the sessions the SDK makes itself.
    wanted = {"SAGEMAKER_VALIDATE_ROLE": "false", "AWS_DEFAULT_REGION": region}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _load_spec(path: Path):
    try:
        return preprocess_step.load_spec(path)
    except preprocess_step.SpecError as err:
        raise ConfigError(str(err)) from None


def _bundles(settings: Settings) -> dict[str, CodeBundle]:
    """Each step's code; the key of each bundle is what the definition refers to."""
    spec_path = settings.dataset_spec
    return {
        "preprocess": CodeBundle("preprocess", {"preprocess.py": STEPS_DIR / "preprocess.py"}),
        "dataset-spec": CodeBundle("dataset-spec", {"dataset.json": spec_path}),
        "train": CodeBundle("train", {"train.py": STEPS_DIR / "train.py"}),
        "evaluate": CodeBundle("evaluate", {"evaluate.py": STEPS_DIR / "evaluate.py"}),
        "inference": CodeBundle(
            "inference", {"inference.py": STEPS_DIR / "inference.py"}, archive=SOURCEDIR_ARCHIVE
        ),
    }


# --------------------------------------------------------------------------------------------
# the definition


def _build(settings: Settings, spec, bundles: dict[str, CodeBundle]):
    import boto3
    from sagemaker.core import image_uris
    from sagemaker.core.drift_check_baselines import DriftCheckBaselines
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.model_monitor.dataset_format import DatasetFormat
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.parameter import ContinuousParameter, IntegerParameter
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        Channel,
        DataSource,
        MetricDefinition,
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
        S3DataSource,
    )
    from sagemaker.core.training.configs import Compute, Networking, OutputDataConfig, StoppingCondition
    from sagemaker.core.workflow.conditions import (
        ConditionGreaterThanOrEqualTo,
        ConditionLessThanOrEqualTo,
    )
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.check_job_config import CheckJobConfig
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.quality_check_step import DataQualityCheckConfig, QualityCheckStep
    from sagemaker.mlops.workflow.retry import (
        SageMakerJobExceptionTypeEnum,
        SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum,
        StepRetryPolicy,
    )
    from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep, TuningStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.model_trainer import ModelTrainer
    from sagemaker.train.tuner import HyperparameterTuner

    s = settings
    problem = spec.problem_type
    gate_metric = evaluate_step.GATE_METRIC[problem]
    objective = _OBJECTIVES[problem]
    higher_is_better = evaluate_step.HIGHER_IS_BETTER[gate_metric]

    # An explicit bucket keeps the SDK from calling STS / S3 to find or create one.
    # No SDK defaults config: otherwise a config file on the machine (Studio ships them) or a
    # SAGEMAKER_*_CONFIG_OVERRIDE variable would change the definition. A non-empty config stops
    # the session loading the files; emptying it then spares the SDK re-validating it on every
    # lookup (seconds per build).
    session = PipelineSession(
        boto_session=boto3.Session(region_name=s.region),
        default_bucket=s.default_bucket,
        sagemaker_config={"SchemaVersion": "1.0", "SageMaker": {}},
    )
    session.sagemaker_config = {}
    image = image_uris.retrieve("xgboost", s.region, version=XGBOOST_FRAMEWORK_VERSION)

    # ---- parameters (what a data scientist may change per execution, e.g. from Studio)
    input_data = ParameterString("InputDataUrl", default_value=s.input_data_url)
    processing_type = ParameterString("ProcessingInstanceType", default_value="ml.m5.xlarge")
    processing_count = ParameterInteger("ProcessingInstanceCount", default_value=1)
    training_type = ParameterString("TrainingInstanceType", default_value="ml.m5.xlarge")
    max_jobs = ParameterInteger("MaxTuningJobs", default_value=8)
    max_parallel = ParameterInteger("MaxParallelTuningJobs", default_value=2)
    threshold = ParameterFloat(
        f"{gate_metric.capitalize()}Threshold", default_value=0.80 if higher_is_better else 10.0
    )
    approval = ParameterString("ModelApprovalStatus", default_value="PendingManualApproval")
    inference_type = ParameterString("InferenceInstanceType", default_value="ml.m5.large")
    parameters = [
        input_data,
        processing_type,
        processing_count,
        training_type,
        max_jobs,
        max_parallel,
        threshold,
        approval,
        inference_type,
    ]

    # ---- shared job settings
    cache = CacheConfig(enable_caching=True, expire_after=s.cache_expire_after)
    job_retries = [
        SageMakerJobStepRetryPolicy(
            exception_types=[
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
                SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
            ],
            **_STEP_RETRIES,
        ),
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
            **_STEP_RETRIES,
        ),
    ]
    service_retries = [job_retries[1]]
    vpc = bool(s.subnets)

    def s3_path(*parts) -> Join:
        # Step outputs are per execution; SageMaker's step cache does not look at output
        # locations, so a cached step still hands the earlier execution's URIs downstream.
        return Join(
            on="/",
            values=[
                "s3:/",
                s.default_bucket,
                s.pipeline_name,
                ExecutionVariables.PIPELINE_EXECUTION_ID,
                *parts,
            ],
        )

    def processor(name: str, bundle: CodeBundle) -> Processor:
        return Processor(
            role=s.role,
            image_uri=image,
            instance_count=processing_count,
            instance_type=processing_type,
            entrypoint=["python3", f"{CODE_DIR}/{bundle.entry}"],
            volume_kms_key=s.kms_key_id,
            output_kms_key=s.kms_key_id,
            base_job_name=f"{s.base_job_prefix}-{name}",
            sagemaker_session=session,
            network_config=NetworkConfig(
                enable_network_isolation=s.enable_network_isolation,
                encrypt_inter_container_traffic=s.encrypt_inter_container_traffic,
                security_group_ids=list(s.security_group_ids) if vpc else None,
                subnets=list(s.subnets) if vpc else None,
            ),
        )

    def p_input(name: str, source, local_path: str) -> ProcessingInput:
        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(
                s3_uri=source, local_path=local_path, s3_data_type="S3Prefix", s3_input_mode="File"
            ),
        )

    def p_output(name: str, local_path: str, step_name: str) -> ProcessingOutput:
        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=s3_path(step_name, name), local_path=local_path, s3_upload_mode="EndOfJob"
            ),
        )

    # ---- Preprocess: validate and encode the raw table, split it, write schema and baseline
    out = f"{PROCESSING_ROOT}/output"
    preprocess_outputs = {
        **{split: f"{out}/{split}" for split in preprocess_step.SPLITS},
        preprocess_step.SCHEMA_DIR: f"{out}/{preprocess_step.SCHEMA_DIR}",
        preprocess_step.BASELINE_DIR: f"{out}/{preprocess_step.BASELINE_DIR}",
    }
    preprocess = ProcessingStep(
        name="Preprocess",
        step_args=processor("preprocess", bundles["preprocess"]).run(
            inputs=[
                p_input("raw", input_data, f"{PROCESSING_ROOT}/input/raw"),
                p_input(
                    "spec",
                    bundles["dataset-spec"].uri(s.default_bucket, s.pipeline_name),
                    f"{PROCESSING_ROOT}/input/spec",
                ),
                p_input("code", bundles["preprocess"].uri(s.default_bucket, s.pipeline_name), CODE_DIR),
            ],
            outputs=[p_output(name, path, "Preprocess") for name, path in preprocess_outputs.items()],
            arguments=[
                "--input",
                f"{PROCESSING_ROOT}/input/raw",
                "--spec",
                f"{PROCESSING_ROOT}/input/spec/{bundles['dataset-spec'].entry}",
                "--output-dir",
                out,
            ],
        ),
        cache_config=cache,
        retry_policies=job_retries,
        description="Validate and encode the raw table; write the three splits, schema and baseline.",
    )

    def split_uri(split: str):
        return preprocess.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri

    # ---- Training (baseline) and Tuning over the same script-mode training code
    metric_definitions = train_step.metric_definitions(gate_metric)
    code_uri = bundles["train"].uri(s.default_bucket, s.pipeline_name)

    def channel(name: str, uri, content_type: str | None = "text/csv") -> Channel:
        return Channel(
            channel_name=name,
            data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type="FullyReplicated"
                )
            ),
            content_type=content_type,
        )

    channels = [
        channel("train", split_uri("train")),
        channel("validation", split_uri("validation")),
        channel(TRAINING_CODE_CHANNEL, code_uri, content_type=None),
    ]
    # Tuning searches these; the baseline trains with the training script's own defaults for them.
    ranges = {
        "eta": ContinuousParameter(0.01, 0.3, scaling_type="Logarithmic"),
        "max_depth": IntegerParameter(3, 10),
        "min_child_weight": ContinuousParameter(1, 10),
        "subsample": ContinuousParameter(0.5, 1.0),
    }
    defaults = train_step.DEFAULT_HYPERPARAMETERS
    static_hyperparameters = {
        "sagemaker_program": bundles["train"].entry,
        "sagemaker_submit_directory": TRAINING_SUBMIT_DIRECTORY,
        "objective": objective,
        "eval_metric": gate_metric,
        **{name: defaults[name] for name in ("num_round", "early_stopping_rounds", "seed")},
    }
    baseline_hyperparameters = {name: defaults[name] for name in ranges}

    def trainer(name: str, hyperparameters: dict, output: str) -> ModelTrainer:
        return ModelTrainer(
            training_image=image,
            role=s.role,
            sagemaker_session=session,
            base_job_name=f"{s.base_job_prefix}-{name}",
            compute=Compute(
                instance_type=training_type,
                instance_count=1,
                volume_size_in_gb=30,
                volume_kms_key_id=s.kms_key_id,
            ),
            networking=Networking(
                enable_network_isolation=s.enable_network_isolation,
                enable_inter_container_traffic_encryption=s.encrypt_inter_container_traffic,
                security_group_ids=list(s.security_group_ids) if vpc else None,
                subnets=list(s.subnets) if vpc else None,
            ),
            output_data_config=OutputDataConfig(
                s3_output_path=f"s3://{s.default_bucket}/{s.pipeline_name}/{output}", kms_key_id=s.kms_key_id
            ),
            stopping_condition=StoppingCondition(max_runtime_in_seconds=3600),
            hyperparameters=hyperparameters,
        ).with_metric_definitions(
            [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions]
        )

    train = TrainingStep(
        name="Train",
        step_args=trainer("train", {**static_hyperparameters, **baseline_hyperparameters}, "training").train(
            input_data_config=channels
        ),
        cache_config=cache,
        retry_policies=job_retries,
        description="Baseline with the training script's default hyperparameters, to compare with tuning.",
    )

    tuning_prefix = f"{s.pipeline_name}/tuning"
    tuner = HyperparameterTuner(
        model_trainer=trainer("tune", static_hyperparameters, "tuning"),
        objective_metric_name=f"validation:{gate_metric}",
        objective_type="Maximize" if higher_is_better else "Minimize",
        metric_definitions=metric_definitions,
        hyperparameter_ranges=ranges,
        strategy="Bayesian",
        # Placeholders: the limits are the MaxTuningJobs / MaxParallelTuningJobs parameters,
        # set on the step below (the 3.27.0 tuner only accepts plain integers here).
        max_jobs=max_jobs.default_value,
        max_parallel_jobs=max_parallel.default_value,
        random_seed=42,
        base_tuning_job_name=f"{s.base_job_prefix}-tune",
    )

    class CompleteTuningStep(TuningStep):
        """A TuningStep with what SDK 3.27.0's tuner leaves out of its request.

        The tuner validates ``max_jobs`` / ``max_parallel_jobs`` as plain integers, so they are
        built from the defaults and replaced by the parameters' expressions here; and it drops
        the trainer's volume KMS key, network isolation and inter-container encryption from the
        training job definition, which are security settings and must not be lost.
        """

        @property
        def arguments(self):
            request = super().arguments
            limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
            limits["MaxNumberOfTrainingJobs"] = max_jobs.expr
            limits["MaxParallelTrainingJobs"] = max_parallel.expr
            job = request["TrainingJobDefinition"]
            if s.kms_key_id:
                job["ResourceConfig"]["VolumeKmsKeyId"] = s.kms_key_id
            job["EnableNetworkIsolation"] = s.enable_network_isolation
            job["EnableInterContainerTrafficEncryption"] = s.encrypt_inter_container_traffic
            return request

    tune = CompleteTuningStep(
        name="Tune",
        step_args=tuner.tune(inputs=channels),
        cache_config=cache,
        retry_policies=job_retries,
        description=f"Bayesian search over {', '.join(ranges)} on validation:{gate_metric}.",
    )
    best_model_uri = tune.get_top_model_s3_uri(top_k=0, s3_bucket=s.default_bucket, prefix=tuning_prefix)

    # ---- Evaluate the best trial's model on the held-out test split
    report = PropertyFile(
        name=PROPERTY_FILE_NAME, output_name="evaluation", path=evaluate_step.EVALUATION_FILENAME
    )
    evaluate = ProcessingStep(
        name="Evaluate",
        step_args=processor("evaluate", bundles["evaluate"]).run(
            inputs=[
                p_input("model", best_model_uri, f"{PROCESSING_ROOT}/input/model"),
                p_input("test", split_uri("test"), f"{PROCESSING_ROOT}/input/test"),
                p_input("code", bundles["evaluate"].uri(s.default_bucket, s.pipeline_name), CODE_DIR),
            ],
            outputs=[p_output("evaluation", f"{out}/evaluation", "Evaluate")],
            arguments=[
                "--model",
                f"{PROCESSING_ROOT}/input/model",
                "--test",
                f"{PROCESSING_ROOT}/input/test",
                "--problem-type",
                problem,
                "--output-dir",
                f"{out}/evaluation",
            ],
        ),
        property_files=[report],
        cache_config=cache,
        retry_policies=job_retries,
        description=f"Score the best trial's model on the test split: {evaluate_step.EVALUATION_FILENAME}.",
    )

    def output_file(step, output: str, filename: str) -> Join:
        return Join(
            on="/", values=[step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri, filename]
        )

    # ---- Data-quality baseline by Model Monitor itself: its statistics carry the KLL sketches the
    # monitors' drift check compares with, which Preprocess's own summary does not.
    data_baseline = QualityCheckStep(
        name="DataQualityBaseline",
        quality_check_config=DataQualityCheckConfig(
            baseline_dataset=output_file(
                preprocess, preprocess_step.BASELINE_DIR, preprocess_step.BASELINE_DATASET_FILENAME
            ),
            dataset_format=DatasetFormat.csv(header=False),
            output_s3_uri=s3_path("DataQualityBaseline", "baseline"),
        ),
        check_job_config=CheckJobConfig(
            role=s.role,
            instance_count=1,
            instance_type=processing_type,
            volume_kms_key=s.kms_key_id,
            output_kms_key=s.kms_key_id,
            sagemaker_session=session,
        ),
        # Baseline only: drift is the monitors' job, on the traffic the deployed version sees.
        skip_check=True,
        register_new_baseline=True,
        cache_config=cache,
    )
    quality = data_baseline.properties

    # ---- Register the model package (reached only when the gate passes)
    builder = ModelBuilder(
        image_uri=image,
        s3_model_data_url=best_model_uri,
        role_arn=s.role,
        sagemaker_session=session,
        env_vars={
            "SAGEMAKER_PROGRAM": bundles["inference"].entry,
            # The serving toolkit answers JSON to a request without Accept unless told otherwise.
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": inference_step.DEFAULT_ACCEPT,
            "SAGEMAKER_SUBMIT_DIRECTORY": bundles["inference"].uri(
                s.default_bucket, s.pipeline_name, SOURCEDIR_ARCHIVE
            ),
        },
    )
    # Without a bucket of its own, the builder asks S3 for the session's default bucket.
    builder.bucket = s.default_bucket
    register = ModelStep(
        name="RegisterModel",
        step_args=builder.register(
            model_package_group_name=s.model_package_group_name,
            content_types=["text/csv", "application/json"],
            response_types=["text/csv", "application/json"],
            inference_instances=[inference_type],
            transform_instances=[inference_type],
            approval_status=approval,
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    s3_uri=output_file(evaluate, "evaluation", evaluate_step.EVALUATION_FILENAME),
                    content_type="application/json",
                ),
                model_data_statistics=MetricsSource(
                    s3_uri=quality.CalculatedBaselineStatistics, content_type="application/json"
                ),
                model_data_constraints=MetricsSource(
                    s3_uri=quality.CalculatedBaselineConstraints, content_type="application/json"
                ),
            ),
            # What a deploy monitors this version against (pipelines/stage_monitor).
            drift_check_baselines=DriftCheckBaselines(
                model_data_statistics=MetricsSource(
                    s3_uri=quality.BaselineUsedForDriftCheckStatistics, content_type="application/json"
                ),
                model_data_constraints=MetricsSource(
                    s3_uri=quality.BaselineUsedForDriftCheckConstraints, content_type="application/json"
                ),
            ),
            customer_metadata_properties={
                "ProblemType": problem,
                "GateMetric": gate_metric,
                "DatasetSpecSha256": bundles["dataset-spec"].digest,
                **({"SageMakerProjectArn": s.sagemaker_project_arn} if s.sagemaker_project_arn else {}),
            },
        ),
        retry_policies=service_retries,
    )

    # ---- Gate on the evaluation, Fail with the numbers otherwise
    metric_value = JsonGet(
        step_name=evaluate.name,
        property_file=report,
        json_path=evaluate_step.metric_json_path(problem, gate_metric),
    )
    comparison = ConditionGreaterThanOrEqualTo if higher_is_better else ConditionLessThanOrEqualTo
    fail = FailStep(
        name="MetricBelowThreshold" if higher_is_better else "MetricAboveThreshold",
        error_message=Join(
            on=" ",
            values=[
                f"Test {gate_metric.upper()}",
                metric_value,
                "is below" if higher_is_better else "is above",
                "the threshold",
                threshold,
                "so the model was not registered.",
            ],
        ),
    )
    gate = ConditionStep(
        name=f"Check{gate_metric.capitalize()}",
        conditions=[comparison(left=metric_value, right=threshold)],
        if_steps=[register],
        else_steps=[fail],
    )

    return Pipeline(
        name=s.pipeline_name,
        parameters=parameters,
        steps=[preprocess, data_baseline, train, tune, evaluate, gate],
        sagemaker_session=session,
    )

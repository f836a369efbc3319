"""The SageMaker SDK objects of the churn pipeline: one builder per step over a frozen BuildContext.

Importing this module imports the SDK (seconds, and boto3 clients): only ``pipeline.get_pipeline``
imports it, inside the environment that keeps the SDK offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    S3DataSource,
)
from sagemaker.core.training.configs import Compute, Networking, OutputDataConfig, StoppingCondition
from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
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

from pipelines.churn import pipeline as churn
from pipelines.code_bundles import SOURCEDIR_ARCHIVE, CodeBundle
from steps import evaluate as evaluate_step
from steps import inference as inference_step
from steps import preprocess as preprocess_step
from steps import train as train_step

_STEP_RETRIES = {"interval_seconds": 10, "backoff_rate": 2.0, "max_attempts": 5}

# Tuning searches these; the baseline trains with the training script's own defaults for them.
_TUNED_RANGES = {
    "eta": ContinuousParameter(0.01, 0.3, scaling_type="Logarithmic"),
    "max_depth": IntegerParameter(3, 10),
    "min_child_weight": ContinuousParameter(1, 10),
    "subsample": ContinuousParameter(0.5, 1.0),
}

OUTPUT_ROOT = f"{churn.PROCESSING_ROOT}/output"


@dataclass(frozen=True)
class Parameters:
    """What a data scientist may change per execution (e.g. from Studio), in definition order."""

    input_data: ParameterString
    processing_type: ParameterString
    processing_count: ParameterInteger
    training_type: ParameterString
    training_count: ParameterInteger
    max_jobs: ParameterInteger
    max_parallel: ParameterInteger
    threshold: ParameterFloat
    approval: ParameterString
    inference_type: ParameterString

    def as_list(self) -> list:
        return [getattr(self, name) for name in self.__dataclass_fields__]


@dataclass(frozen=True)
class BuildContext:
    """Everything the step builders share: the validated settings and what is derived from them once."""

    settings: churn.Settings
    bundles: Mapping[str, CodeBundle]
    session: PipelineSession
    image: str
    problem: str
    gate_metric: str
    objective: str
    higher_is_better: bool
    parameters: Parameters
    cache: CacheConfig
    job_retries: tuple
    service_retries: tuple

    def code_uri(self, bundle: str, filename: str | None = None) -> str:
        s = self.settings
        if filename is None:
            return self.bundles[bundle].uri(s.default_bucket, s.pipeline_name)
        return self.bundles[bundle].uri(s.default_bucket, s.pipeline_name, filename)

    def s3_path(self, *parts) -> Join:
        # Step outputs are per execution; SageMaker's step cache does not look at output
        # locations, so a cached step still hands the earlier execution's URIs downstream.
        s = self.settings
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


def build(settings: churn.Settings, spec, bundles: Mapping[str, CodeBundle]) -> Pipeline:
    ctx = _context(settings, spec, bundles)
    profile = profile_step_of(ctx)
    preprocess = preprocess_step_of(ctx, profile)
    data_baseline = data_baseline_step_of(ctx, preprocess)
    train = train_step_of(ctx, preprocess)
    tune = tune_step_of(ctx, preprocess)
    best_model_uri = tune.get_top_model_s3_uri(
        top_k=0, s3_bucket=settings.default_bucket, prefix=f"{settings.pipeline_name}/tuning"
    )
    evaluate = evaluate_step_of(ctx, preprocess, best_model_uri)
    register = register_step_of(ctx, data_baseline, evaluate, best_model_uri)
    gate = gate_step_of(ctx, evaluate, register)
    return Pipeline(
        name=settings.pipeline_name,
        parameters=ctx.parameters.as_list(),
        steps=[profile, preprocess, data_baseline, train, tune, evaluate, gate],
        sagemaker_session=ctx.session,
    )


def _context(settings: churn.Settings, spec, bundles: Mapping[str, CodeBundle]) -> BuildContext:
    problem = spec.problem_type
    gate_metric = evaluate_step.GATE_METRIC[problem]
    higher_is_better = evaluate_step.HIGHER_IS_BETTER[gate_metric]
    # An explicit bucket keeps the SDK from calling STS / S3 to find or create one.
    # No SDK defaults config: otherwise a config file on the machine (Studio ships them) or a
    # SAGEMAKER_*_CONFIG_OVERRIDE variable would change the definition. A non-empty config stops
    # the session loading the files; emptying it then spares the SDK re-validating it on every
    # lookup (seconds per build).
    session = PipelineSession(
        boto_session=boto3.Session(region_name=settings.region),
        default_bucket=settings.default_bucket,
        sagemaker_config={"SchemaVersion": "1.0", "SageMaker": {}},
    )
    session.sagemaker_config = {}
    service_retry = StepRetryPolicy(
        exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
        **_STEP_RETRIES,
    )
    job_retry = SageMakerJobStepRetryPolicy(
        exception_types=[
            SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
            SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
            SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
        ],
        **_STEP_RETRIES,
    )
    return BuildContext(
        settings=settings,
        bundles=bundles,
        session=session,
        image=image_uris.retrieve("xgboost", settings.region, version=churn.XGBOOST_FRAMEWORK_VERSION),
        problem=problem,
        gate_metric=gate_metric,
        objective=churn.OBJECTIVES[problem],
        higher_is_better=higher_is_better,
        parameters=_parameters(settings, gate_metric, higher_is_better),
        cache=CacheConfig(enable_caching=True, expire_after=settings.cache_expire_after),
        job_retries=(job_retry, service_retry),
        service_retries=(service_retry,),
    )


def _parameters(settings: churn.Settings, gate_metric: str, higher_is_better: bool) -> Parameters:
    return Parameters(
        input_data=ParameterString(churn.INPUT_PARAMETER, default_value=settings.input_data_url),
        processing_type=ParameterString("ProcessingInstanceType", default_value="ml.m5.xlarge"),
        processing_count=ParameterInteger("ProcessingInstanceCount", default_value=1),
        training_type=ParameterString("TrainingInstanceType", default_value="ml.m5.xlarge"),
        training_count=ParameterInteger("TrainingInstanceCount", default_value=1),
        max_jobs=ParameterInteger("MaxTuningJobs", default_value=8),
        max_parallel=ParameterInteger("MaxParallelTuningJobs", default_value=2),
        threshold=ParameterFloat(
            f"{gate_metric.capitalize()}Threshold", default_value=0.80 if higher_is_better else 10.0
        ),
        approval=ParameterString("ModelApprovalStatus", default_value="PendingManualApproval"),
        inference_type=ParameterString("InferenceInstanceType", default_value="ml.m5.large"),
    )


# --------------------------------------------------------------------------------------------
# processing


def _processor(ctx: BuildContext, name: str, bundle: CodeBundle, instance_count=None) -> Processor:
    """A processing job of ``instance_count`` instances (by default the ProcessingInstanceCount
    parameter: only for jobs whose work divides over a ShardedByS3Key input)."""
    s, vpc = ctx.settings, bool(ctx.settings.subnets)
    return Processor(
        role=s.role,
        image_uri=ctx.image,
        instance_count=ctx.parameters.processing_count if instance_count is None else instance_count,
        instance_type=ctx.parameters.processing_type,
        entrypoint=["python3", f"{churn.CODE_DIR}/{bundle.entry}"],
        volume_kms_key=s.kms_key_id,
        output_kms_key=s.kms_key_id,
        base_job_name=f"{s.base_job_prefix}-{name}",
        sagemaker_session=ctx.session,
        network_config=NetworkConfig(
            enable_network_isolation=s.enable_network_isolation,
            encrypt_inter_container_traffic=s.encrypt_inter_container_traffic,
            security_group_ids=list(s.security_group_ids) if vpc else None,
            subnets=list(s.subnets) if vpc else None,
        ),
    )


def _processing_input(
    name: str, source, local_path: str, distribution: str = "FullyReplicated"
) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=source,
            local_path=local_path,
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type=distribution,
        ),
    )


def _processing_output(ctx: BuildContext, name: str, local_path: str, step_name: str) -> ProcessingOutput:
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=ctx.s3_path(step_name, name), local_path=local_path, s3_upload_mode="EndOfJob"
        ),
    )


def _output_uri(step: ProcessingStep, output: str):
    return step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri


def _output_file(step: ProcessingStep, output: str, filename: str) -> Join:
    return Join(
        on="/", values=[step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri, filename]
    )


# Preprocess runs as two jobs of ProcessingInstanceCount instances, each instance on its share of the
# raw input: SageMaker hands a ShardedByS3Key input out by whole objects and a FullyReplicated one
# whole to every instance, so without a sharded input N instances repeat the same work (botocore's
# ProcessingS3Input.S3DataDistributionType). Category levels must be fixed before any row is one-hot
# encoded, and the instances of one job share nothing while they run: the small per-instance
# profiles (counts, levels, moments) are written by one job and merged at the start of the next,
# rather than the encoded outputs merged after.


def _raw_input(ctx: BuildContext) -> ProcessingInput:
    return _processing_input(
        "raw", ctx.parameters.input_data, f"{churn.PROCESSING_ROOT}/input/raw", "ShardedByS3Key"
    )


def _preprocess_arguments(ctx: BuildContext, stage: str, *extra) -> list:
    root = churn.PROCESSING_ROOT
    return [
        "--stage",
        stage,
        "--input",
        f"{root}/input/raw",
        "--spec",
        f"{root}/input/spec/{ctx.bundles['dataset-spec'].entry}",
        "--output-dir",
        OUTPUT_ROOT,
        # Where SageMaker Processing tells each instance its host and the job's others.
        "--resource-config",
        "/opt/ml/config/resourceconfig.json",
        # Train parts per instance, one per training instance: the train channel is ShardedByS3Key,
        # which hands out whole objects, so a single file would go to one training instance alone.
        # Profile takes it too, though it writes no split: a Processing step's cache key is its
        # AppSpecification, Environment and ProcessingInputs (AWS guide, "Default cache key
        # attributes by pipeline step type"), so with the same arguments the two steps are reused
        # or rerun together, and Preprocess never merges profiles of older data at the same URL.
        "--train-parts",
        ctx.parameters.training_count.to_string(),
        *extra,
    ]


def profile_step_of(ctx: BuildContext) -> ProcessingStep:
    """The first pass: each instance profiles its share of the raw table."""
    root = churn.PROCESSING_ROOT
    profiles = preprocess_step.PROFILE_DIR
    return ProcessingStep(
        name="Profile",
        step_args=_processor(ctx, "profile", ctx.bundles["preprocess"]).run(
            inputs=[
                _raw_input(ctx),
                _processing_input("spec", ctx.code_uri("dataset-spec"), f"{root}/input/spec"),
                _processing_input("code", ctx.code_uri("preprocess"), churn.CODE_DIR),
            ],
            outputs=[_processing_output(ctx, profiles, f"{OUTPUT_ROOT}/{profiles}", "Profile")],
            arguments=_preprocess_arguments(ctx, "profile"),
        ),
        cache_config=ctx.cache,
        retry_policies=list(ctx.job_retries),
        description="Check the raw table and count what encoding needs: levels, moments, rows per split.",
    )


def preprocess_step_of(ctx: BuildContext, profile: ProcessingStep) -> ProcessingStep:
    """The second pass: each instance encodes and splits its share with the merged profiles."""
    root, out = churn.PROCESSING_ROOT, OUTPUT_ROOT
    outputs = {folder: f"{out}/{folder}" for folder in preprocess_step.OUTPUT_DIRS}
    return ProcessingStep(
        name="Preprocess",
        step_args=_processor(ctx, "preprocess", ctx.bundles["preprocess"]).run(
            inputs=[
                _raw_input(ctx),
                _processing_input(
                    "profiles", _output_uri(profile, preprocess_step.PROFILE_DIR), f"{root}/input/profiles"
                ),
                _processing_input("spec", ctx.code_uri("dataset-spec"), f"{root}/input/spec"),
                _processing_input("code", ctx.code_uri("preprocess"), churn.CODE_DIR),
            ],
            outputs=[_processing_output(ctx, name, path, "Preprocess") for name, path in outputs.items()],
            arguments=_preprocess_arguments(ctx, "encode", "--profiles", f"{root}/input/profiles"),
        ),
        cache_config=ctx.cache,
        retry_policies=list(ctx.job_retries),
        description="Encode and split the raw table with the merged profiles; write schema and baseline.",
    )


# --------------------------------------------------------------------------------------------
# training and tuning over the same script-mode training code


def _channels(ctx: BuildContext, preprocess: ProcessingStep) -> list[Channel]:
    def channel(
        name: str, uri, content_type: str | None = "text/csv", distribution: str = "FullyReplicated"
    ) -> Channel:
        return Channel(
            channel_name=name,
            data_source=DataSource(
                s3_data_source=S3DataSource(
                    s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type=distribution
                )
            ),
            content_type=content_type,
        )

    # Each training instance trains on its share of the train files (with one instance, all of
    # them); every instance validates on the whole validation split. The schema channel: train.py
    # puts schema.json inside every model.tar.gz, tuning trials' included, so the registered model
    # carries the encoding of raw records (steps/inference.py says why).
    return [
        channel("train", _output_uri(preprocess, "train"), distribution="ShardedByS3Key"),
        channel("validation", _output_uri(preprocess, "validation")),
        channel(
            train_step.SCHEMA_CHANNEL,
            _output_uri(preprocess, preprocess_step.SCHEMA_DIR),
            content_type="application/json",
        ),
        channel(churn.TRAINING_CODE_CHANNEL, ctx.code_uri("train"), content_type=None),
    ]


def _static_hyperparameters(ctx: BuildContext) -> dict:
    defaults = train_step.DEFAULT_HYPERPARAMETERS
    return {
        "sagemaker_program": ctx.bundles["train"].entry,
        "sagemaker_submit_directory": churn.TRAINING_SUBMIT_DIRECTORY,
        "objective": ctx.objective,
        "eval_metric": ctx.gate_metric,
        **{name: defaults[name] for name in ("num_round", "early_stopping_rounds", "seed")},
    }


def _trainer(ctx: BuildContext, name: str, hyperparameters: dict, output: str) -> ModelTrainer:
    # No MetricDefinitions: SageMaker treats the XGBoost image as a built-in algorithm, refuses
    # custom ones ("You can't override the metric definitions for Amazon SageMaker algorithms",
    # aws/sagemaker-xgboost-container issue 121) and reads its own validation:<metric> from the log
    # (that repository's algorithm_mode/metrics.py), which steps/train.py writes in that form.
    s, vpc = ctx.settings, bool(ctx.settings.subnets)
    return ModelTrainer(
        training_image=ctx.image,
        role=s.role,
        sagemaker_session=ctx.session,
        base_job_name=f"{s.base_job_prefix}-{name}",
        compute=Compute(
            instance_type=ctx.parameters.training_type,
            instance_count=ctx.parameters.training_count,
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
    )


def train_step_of(ctx: BuildContext, preprocess: ProcessingStep) -> TrainingStep:
    """The baseline: the training script's default hyperparameters, to compare with tuning."""
    defaults = train_step.DEFAULT_HYPERPARAMETERS
    hyperparameters = {**_static_hyperparameters(ctx), **{name: defaults[name] for name in _TUNED_RANGES}}
    return TrainingStep(
        name="Train",
        step_args=_trainer(ctx, "train", hyperparameters, "training").train(
            input_data_config=_channels(ctx, preprocess)
        ),
        cache_config=ctx.cache,
        retry_policies=list(ctx.job_retries),
        description="Baseline with the training script's default hyperparameters, to compare with tuning.",
    )


class CompleteTuningStep(TuningStep):
    """A TuningStep with what SDK 3.27.0's tuner leaves out of its request.

    The tuner validates ``max_jobs`` / ``max_parallel_jobs`` as plain integers, so they are built
    from the defaults and replaced by the parameters' expressions here; and it drops the trainer's
    volume KMS key, network isolation and inter-container encryption from the training job
    definition, which are security settings and must not be lost.
    """

    def __init__(self, *, ctx: BuildContext, **kwargs):
        super().__init__(**kwargs)
        self._ctx = ctx

    @property
    def arguments(self):
        request = super().arguments
        s, parameters = self._ctx.settings, self._ctx.parameters
        limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
        limits["MaxNumberOfTrainingJobs"] = parameters.max_jobs.expr
        limits["MaxParallelTrainingJobs"] = parameters.max_parallel.expr
        job = request["TrainingJobDefinition"]
        if s.kms_key_id:
            job["ResourceConfig"]["VolumeKmsKeyId"] = s.kms_key_id
        job["EnableNetworkIsolation"] = s.enable_network_isolation
        job["EnableInterContainerTrafficEncryption"] = s.encrypt_inter_container_traffic
        return request


def tune_step_of(ctx: BuildContext, preprocess: ProcessingStep) -> CompleteTuningStep:
    """Bayesian search over the tuned ranges on the validation gate metric."""
    s, parameters = ctx.settings, ctx.parameters
    tuner = HyperparameterTuner(
        model_trainer=_trainer(ctx, "tune", _static_hyperparameters(ctx), "tuning"),
        objective_metric_name=f"validation:{ctx.gate_metric}",
        objective_type="Maximize" if ctx.higher_is_better else "Minimize",
        hyperparameter_ranges=dict(_TUNED_RANGES),
        strategy="Bayesian",
        # Placeholders: the limits are the MaxTuningJobs / MaxParallelTuningJobs parameters,
        # set by CompleteTuningStep (the 3.27.0 tuner only accepts plain integers here).
        max_jobs=parameters.max_jobs.default_value,
        max_parallel_jobs=parameters.max_parallel.default_value,
        random_seed=42,
        base_tuning_job_name=f"{s.base_job_prefix}-tune",
    )
    return CompleteTuningStep(
        ctx=ctx,
        name="Tune",
        step_args=tuner.tune(inputs=_channels(ctx, preprocess)),
        cache_config=ctx.cache,
        retry_policies=list(ctx.job_retries),
        description=f"Bayesian search over {', '.join(_TUNED_RANGES)} on validation:{ctx.gate_metric}.",
    )


# --------------------------------------------------------------------------------------------
# evaluation, registration and the gate


def evaluate_step_of(ctx: BuildContext, preprocess: ProcessingStep, best_model_uri) -> ProcessingStep:
    """Score the best trial's model on the held-out test split."""
    root, out = churn.PROCESSING_ROOT, OUTPUT_ROOT
    report = PropertyFile(
        name=churn.PROPERTY_FILE_NAME, output_name="evaluation", path=evaluate_step.EVALUATION_FILENAME
    )
    return ProcessingStep(
        name="Evaluate",
        # One instance: the test metric is computed over every test row at once, so more instances
        # would each score the whole split again.
        step_args=_processor(ctx, "evaluate", ctx.bundles["evaluate"], instance_count=1).run(
            inputs=[
                _processing_input("model", best_model_uri, f"{root}/input/model"),
                _processing_input("test", _output_uri(preprocess, "test"), f"{root}/input/test"),
                _processing_input("code", ctx.code_uri("evaluate"), churn.CODE_DIR),
            ],
            outputs=[_processing_output(ctx, "evaluation", f"{out}/evaluation", "Evaluate")],
            arguments=[
                "--model",
                f"{root}/input/model",
                "--test",
                f"{root}/input/test",
                "--problem-type",
                ctx.problem,
                "--output-dir",
                f"{out}/evaluation",
            ],
        ),
        property_files=[report],
        cache_config=ctx.cache,
        retry_policies=list(ctx.job_retries),
        description=f"Score the best trial's model on the test split: {evaluate_step.EVALUATION_FILENAME}.",
    )


def data_baseline_step_of(ctx: BuildContext, preprocess: ProcessingStep) -> QualityCheckStep:
    """The data-quality baseline by Model Monitor itself: its statistics carry the KLL sketches the
    monitors' drift check compares with, which Preprocess's own summary does not."""
    s = ctx.settings
    return QualityCheckStep(
        name="DataQualityBaseline",
        quality_check_config=DataQualityCheckConfig(
            # The folder: one features file per Preprocess instance, all of them the dataset.
            baseline_dataset=_output_uri(preprocess, preprocess_step.FEATURES_DIR),
            dataset_format=DatasetFormat.csv(header=False),
            output_s3_uri=ctx.s3_path("DataQualityBaseline", "baseline"),
        ),
        check_job_config=CheckJobConfig(
            role=s.role,
            instance_count=1,
            instance_type=ctx.parameters.processing_type,
            volume_kms_key=s.kms_key_id,
            output_kms_key=s.kms_key_id,
            sagemaker_session=ctx.session,
        ),
        # Baseline only: drift is the monitors' job, on the traffic the deployed version sees.
        skip_check=True,
        register_new_baseline=True,
        cache_config=ctx.cache,
    )


def register_step_of(
    ctx: BuildContext, data_baseline: QualityCheckStep, evaluate: ProcessingStep, best_model_uri
) -> ModelStep:
    """Register the model package (reached only when the gate passes)."""
    s, parameters = ctx.settings, ctx.parameters
    builder = ModelBuilder(
        image_uri=ctx.image,
        s3_model_data_url=best_model_uri,
        role_arn=s.role,
        sagemaker_session=ctx.session,
        env_vars={
            "SAGEMAKER_PROGRAM": ctx.bundles["inference"].entry,
            # The serving toolkit answers JSON to a request without Accept unless told otherwise.
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": inference_step.DEFAULT_ACCEPT,
            "SAGEMAKER_SUBMIT_DIRECTORY": ctx.code_uri("inference", SOURCEDIR_ARCHIVE),
        },
    )
    # Without a bucket of its own, the builder asks S3 for the session's default bucket.
    builder.bucket = s.default_bucket

    def baseline(uri) -> MetricsSource:
        return MetricsSource(s3_uri=uri, content_type="application/json")

    quality = data_baseline.properties

    return ModelStep(
        name="RegisterModel",
        step_args=builder.register(
            model_package_group_name=s.model_package_group_name,
            content_types=["text/csv", "application/json"],
            response_types=["text/csv", "application/json"],
            inference_instances=[parameters.inference_type],
            transform_instances=[parameters.inference_type],
            approval_status=parameters.approval,
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    s3_uri=_output_file(evaluate, "evaluation", evaluate_step.EVALUATION_FILENAME),
                    content_type="application/json",
                ),
                model_data_statistics=baseline(quality.CalculatedBaselineStatistics),
                model_data_constraints=baseline(quality.CalculatedBaselineConstraints),
            ),
            # What a deploy monitors this version against (pipelines/stage_monitor).
            drift_check_baselines=DriftCheckBaselines(
                model_data_statistics=baseline(quality.BaselineUsedForDriftCheckStatistics),
                model_data_constraints=baseline(quality.BaselineUsedForDriftCheckConstraints),
            ),
            customer_metadata_properties={
                "ProblemType": ctx.problem,
                "GateMetric": ctx.gate_metric,
                # The threshold this run's gate held the metric to (a parameter, so per execution);
                # Std:Join makes it a string, the only value type CustomerMetadataProperties takes.
                "GateThreshold": parameters.threshold.to_string(),
                "DatasetSpecSha256": ctx.bundles["dataset-spec"].digest,
                **({"SageMakerProjectArn": s.sagemaker_project_arn} if s.sagemaker_project_arn else {}),
            },
        ),
        retry_policies=list(ctx.service_retries),
    )


def gate_step_of(ctx: BuildContext, evaluate: ProcessingStep, register: ModelStep) -> ConditionStep:
    """Register when the test metric meets the threshold; otherwise Fail with the numbers."""
    (report,) = evaluate.property_files
    metric_value = JsonGet(
        step_name=evaluate.name,
        property_file=report,
        json_path=evaluate_step.metric_json_path(ctx.problem, ctx.gate_metric),
    )
    threshold, higher = ctx.parameters.threshold, ctx.higher_is_better
    comparison = ConditionGreaterThanOrEqualTo if higher else ConditionLessThanOrEqualTo
    fail = FailStep(
        name="MetricBelowThreshold" if higher else "MetricAboveThreshold",
        error_message=Join(
            on=" ",
            values=[
                f"Test {ctx.gate_metric.upper()}",
                metric_value,
                "is below" if higher else "is above",
                "the threshold",
                threshold,
                "so the model was not registered.",
            ],
        ),
    )
    return ConditionStep(
        name=f"Check{ctx.gate_metric.capitalize()}",
        conditions=[comparison(left=metric_value, right=threshold)],
        if_steps=[register],
        else_steps=[fail],
    )

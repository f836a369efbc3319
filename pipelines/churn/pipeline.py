"""The churn model-build pipeline: preprocess, baseline training, tuning, evaluation, gate, registration.

``get_pipeline(**kwargs)`` is the only entry point and has no side effects: it needs no AWS account,
credentials or network, and the same code and arguments give a byte-identical definition. Every
SageMaker SDK call of the project lives in ``builders.py`` beside it, so an SDK upgrade touches one file.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from pipelines import aws_names as names
from pipelines.code_bundles import SOURCEDIR_ARCHIVE, STEPS_DIR, CodeBundle, CodeUpload, script_bundle
from pipelines.errors import ConfigError, join_problems
from steps import preprocess as preprocess_step

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
OBJECTIVES = {"binary_classification": "binary:logistic", "regression": "reg:squarederror"}

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
    "mlflow_tracking_server_arn": (
        names.MLFLOW_TRACKING_SERVER_ARN,
        "a SageMaker MLflow tracking server ARN "
        "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)",
    ),
}


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
    mlflow_tracking_server_arn: str | None


def get_pipeline(
    region: str | None = None,
    role: str | None = None,
    default_bucket: str | None = None,
    pipeline_name: str | None = None,
    model_package_group_name: str | None = None,
    base_job_prefix: str | None = None,
    dataset_spec: str | None = None,
    input_data_url: str | None = None,
    kms_key_id: str | None = None,
    subnets: list[str] | None = None,
    security_group_ids: list[str] | None = None,
    enable_network_isolation: bool = False,
    encrypt_inter_container_traffic: bool = False,
    cache_expire_after: str = "P30D",
    sagemaker_project_arn: str | None = None,
    mlflow_tracking_server_arn: str | None = None,
):
    """Build the SageMaker Pipeline object (``sagemaker.mlops.workflow.pipeline.Pipeline``).

    Args:
        region: AWS region of the pipeline; defaults to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
        role: ARN of the IAM role the pipeline's jobs run as (required).
        default_bucket: bucket for code, step outputs and models (required: looking one up would
            need AWS credentials).
        pipeline_name: the pipeline's name; also the S3 key prefix of its code and outputs.
            Defaults to the table's name (``names_from_spec``) + ``Pipeline``: ``ChurnPipeline``.
        model_package_group_name: Model Registry group the gated model is registered in.
            Defaults to the table's name + ``ModelPackageGroup``: ``ChurnModelPackageGroup``.
        base_job_prefix: prefix of job names and of the default input location. Defaults to
            the table's name in lower case, words joined by '-': ``churn``.
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
        mlflow_tracking_server_arn: the SageMaker managed MLflow tracking server the executions
            are logged to, from outside the jobs (``get_tracking_server_arn``; docs/tracking.md).
            It is not written into the definition: the same definition runs with any server or
            none, and changing servers neither updates the pipeline nor invalidates its step cache.
    """
    settings = _validate(**locals())
    spec = _load_spec(settings.dataset_spec)
    bundles = _bundles(settings)
    with warnings.catch_warnings(), _offline_sdk_environment(settings.region):
        # The SDK warns on every job built under a PipelineSession that nothing is started:
        # that is the point of building a definition, so the warning is noise here.
        warnings.filterwarnings("ignore", message="Running within a PipelineSession")
        from pipelines.churn import builders

        return builders.build(settings, spec, bundles)


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


def get_tracking_server_arn(**kwargs) -> str | None:
    """The MLflow tracking server ``run-pipeline --wait`` logs the execution to, None for none.

    Takes the same arguments as ``get_pipeline`` and validates them the same way.
    """
    return _validate(**kwargs).mlflow_tracking_server_arn


#: The pipeline parameter that names the input table (an S3 object or prefix of CSVs).
INPUT_PARAMETER = "InputDataUrl"


def get_sample_input(**kwargs) -> Path | None:
    """The sample table of the dataset spec: for the default spec the bundled churn table, for
    another spec the one CSV file beside it (None when there is not exactly one)."""
    samples = _samples(_validate(**kwargs))
    return samples[0] if len(samples) == 1 else None


def get_local_inputs(**kwargs) -> dict[str, Path]:
    """What ``run-pipeline --local`` puts in the local object store before it runs: the sample
    table (``get_sample_input``) at the input URL. ConfigError when there is none, or more than
    one to choose from."""
    settings = _validate(**kwargs)
    samples = _samples(settings)
    target = f"{settings.input_data_url.rstrip('/')}/"
    if len(samples) != 1:
        found = f"{len(samples)} ({', '.join(p.name for p in samples)})" if samples else "no"
        raise ConfigError(
            f"dataset spec {settings.dataset_spec}: {found} CSV file(s) beside it, so no sample table "
            f"to stage at {target}; keep exactly one CSV in {settings.dataset_spec.parent}, or stage "
            f"the table with --upload PATH={target}"
        )
    return {f"{target}{samples[0].name}": samples[0]}


def _samples(settings: Settings) -> list[Path]:
    if settings.dataset_spec == DEFAULT_DATASET_SPEC:
        return [SAMPLE_DATA] if SAMPLE_DATA.is_file() else []
    return sorted(settings.dataset_spec.parent.glob("*.csv"))


# --------------------------------------------------------------------------------------------
# validation


#: The arguments whose defaults come from the table's name, and how.
_NAMED_AFTER_TABLE = {
    "pipeline_name": lambda words: "".join(w[:1].upper() + w[1:] for w in words) + "Pipeline",
    "model_package_group_name": lambda words: (
        "".join(w[:1].upper() + w[1:] for w in words) + "ModelPackageGroup"
    ),
    "base_job_prefix": lambda words: "-".join(w.lower() for w in words),
}


def names_from_spec(spec_path: Path) -> dict[str, str]:
    """The pipeline, model package group and job prefix named after a table: its name is the
    folder that holds its dataset spec, so pipelines/churn/dataset.json gives ChurnPipeline,
    ChurnModelPackageGroup and churn, and data/concrete/dataset.json ConcretePipeline, ... Two
    tables get two pipelines and two groups, and a model of one is never registered among the
    other's versions."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", Path(spec_path).resolve().parent.name) if w]
    return {name: derive(words) for name, derive in _NAMED_AFTER_TABLE.items()}


def _validate(**kw) -> Settings:
    """Check every argument, report all problems at once, and resolve the defaults."""
    # A JSON null in --kwargs means "not given": the default applies, never a literal None.
    defaults = {name: p.default for name, p in inspect.signature(get_pipeline).parameters.items()}
    kw = {**defaults, **{name: value for name, value in kw.items() if value is not None}}
    problems: list[str] = []

    spec_path = DEFAULT_DATASET_SPEC
    if kw["dataset_spec"] is not None and not isinstance(kw["dataset_spec"], str):
        problems.append(f"dataset_spec={kw['dataset_spec']!r} is not a file path")
    elif kw["dataset_spec"]:
        spec_path = Path(kw["dataset_spec"])
    if not spec_path.is_file():
        problems.append(f"dataset_spec={str(spec_path)!r} is not a file")
    derived = set()
    for name, value in names_from_spec(spec_path).items():
        if kw[name] is None:
            kw[name] = value
            derived.add(name)

    kw["region"] = kw["region"] or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if kw["region"] is None:
        problems.append("region is required (pass it in --kwargs or set AWS_REGION)")
    for name in ("role", "default_bucket"):
        if kw[name] is None:
            problems.append(f"{name} is required ({_NAME_RULES[name][1]})")
    for name, (pattern, what) in _NAME_RULES.items():
        value = kw[name]
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            origin = (
                f" (named after the folder of dataset_spec {str(spec_path)!r}; pass {name} to choose one)"
                if name in derived
                else ""
            )
            problems.append(f"{name}={value!r} is not {what}{origin}")

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
        mlflow_tracking_server_arn=kw["mlflow_tracking_server_arn"],
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
        "evaluate": script_bundle("evaluate", STEPS_DIR / "evaluate.py"),
        "inference": CodeBundle(
            "inference", {"inference.py": STEPS_DIR / "inference.py"}, archive=SOURCEDIR_ARCHIVE
        ),
    }

"""Stage configuration: one JSON file per stage, in the order ``promotion.json`` lists them.

    deploy/promotion.json      {"model_package_group": "...", "stages": ["dev", "staging", "prod"]}
    deploy/stages/<stage>.json account, region, deploy role, gate, endpoint, smoke tests

Every file is checked against the schema below and every problem is reported at once, naming the
file and the field. A missing or malformed stage file is an error, never a fallback to another stage.

String values may name environment variables, ``${NAME}`` or ``${NAME:-default}``, so one set of
files serves a laptop (the defaults) and a project's deploy build (which sets the account ids):
``"account_id": "${STAGING_ACCOUNT_ID:-222222222222}"``. A variable that is unset and has no default
is an error naming the file, the field and the variable.

The optional ``aws`` object of a stage names what its AWS account provides; each field defaults to
what the target-account bootstrap template creates (``seed_code/``):

    model_execution_role_arn   arn:aws:iam::<account>:role/MlopsModelExecutionRole
    kms_key_arn                arn:aws:kms:<region>:<account>:alias/sagemaker-mlops-endpoint
    data_capture_s3_uri        s3://sagemaker-mlops-capture-<account>-<region>/<endpoint name>/

The optional ``monitoring`` object says what watches the stage's endpoint (``pipelines.monitoring``):
schedule, checks, drift thresholds, ground truth for model quality, and what a violation does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import aws_names as names
from pipelines.errors import ConfigError, did_you_mean, join_problems

GATES = ("automatic", "tests-passed", "manual-approval")
_ACCOUNT = re.compile(r"\d{12}")
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9-]{0,23}")
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?")
# Monitoring: SageMaker's accepted ScheduleExpression forms (see schedule_expression).
SCHEDULE_WORDS = {"hourly": "cron(0 * ? * * *)", "daily": "cron(0 0 ? * * *)"}
CRON_FORM = re.compile(r"cron\(0 (\*|\d{1,2})(?:/(\d{1,2}))? \? \* \* \*\)")
CHECKS = ("data_quality", "model_quality")
COMPARISON_METHODS = ("Robust", "Simple")  # distribution_constraints.comparison_method
VIOLATION_ACTIONS = ("nothing", "notify", "retrain")

# What the target-account bootstrap template (seed_code/) creates in every stage account.
EXECUTION_ROLE_NAME = "MlopsModelExecutionRole"
DEPLOY_ROLE_NAME = "MlopsModelDeployRole"
ENDPOINT_KEY_ALIAS = "alias/sagemaker-mlops-endpoint"
CAPTURE_BUCKET = "sagemaker-mlops-capture-{account}-{region}"


@dataclass(frozen=True)
class Variant:
    name: str
    instance_type: str
    initial_instance_count: int
    initial_weight: float


@dataclass(frozen=True)
class Serverless:
    memory_size_mb: int
    max_concurrency: int


@dataclass(frozen=True)
class Autoscaling:
    min_capacity: int
    max_capacity: int
    target_invocations_per_instance: int


@dataclass(frozen=True)
class EndpointSettings:
    name: str
    variants: tuple[Variant, ...]
    serverless: Serverless | None
    data_capture_percent: int
    autoscaling: Autoscaling | None
    local_port: int


@dataclass(frozen=True)
class AwsSettings:
    model_execution_role_arn: str
    kms_key_arn: str
    data_capture_s3_uri: str


@dataclass(frozen=True)
class SmokeTests:
    rows: int
    max_latency_ms: float
    tolerance: float


@dataclass(frozen=True)
class DriftThresholds:
    """Model Monitor's ``monitoring_config`` in constraints.json, which the stage overrides."""

    comparison_method: str
    comparison_threshold: float
    datatype_check_threshold: float
    domain_content_threshold: float


@dataclass(frozen=True)
class OnViolation:
    action: str  # one of VIOLATION_ACTIONS
    cooldown_hours: float
    retrain_input_data_url: str | None


@dataclass(frozen=True)
class MonitoringSettings:
    enabled: bool
    schedule: str  # as the stage file gives it: hourly, daily or cron(...)
    schedule_expression: str  # what CreateMonitoringSchedule's ScheduleExpression receives
    checks: tuple[str, ...]
    drift: DriftThresholds
    ground_truth_s3_uri: str | None
    on_violation: OnViolation


@dataclass(frozen=True)
class StageConfig:
    name: str
    source: Path
    account_id: str
    region: str
    deploy_role_arn: str
    gate: str
    endpoint: EndpointSettings
    smoke_tests: SmokeTests
    aws: AwsSettings
    monitoring: MonitoringSettings | None = None


@dataclass(frozen=True)
class PromotionConfig:
    source: Path
    model_package_group: str
    stages: tuple[StageConfig, ...]

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = [s.name for s in self.stages]
        raise ConfigError(
            f"no stage {name!r} in {self.source}; stages: {', '.join(known)}.{did_you_mean(name, known)}"
        )

    def previous(self, stage: StageConfig) -> StageConfig | None:
        index = self.stages.index(stage)
        return self.stages[index - 1] if index else None


def load_promotion(path: Path, environ: Mapping[str, str] | None = None) -> PromotionConfig:
    """``promotion.json`` and the stage files it names (``stages/<name>.json`` beside it);
    ``${NAME}`` references are read from ``environ`` (default: the process environment)."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    document = _expand(_read_json(path, "promotion config"), environ, problems)
    check = _Checker(path, problems)
    group = check.text(
        document, "model_package_group", names.MODEL_PACKAGE_GROUP, "a model package group name"
    )
    stage_names = document.get("stages")
    if not (isinstance(stage_names, list) and stage_names and all(isinstance(n, str) for n in stage_names)):
        problems.append('stages must be a non-empty list of stage names, e.g. ["dev", "prod"]')
        stage_names = []
    for name in stage_names:
        if not _STAGE_NAME.fullmatch(name):
            problems.append(f"stage name {name!r} must be lower-case letters, digits and '-'")
    if len(set(stage_names)) != len(stage_names):
        problems.append(f"a stage is listed twice in {stage_names}")
    check.unknown(document, {"model_package_group", "stages"}, "")
    if problems:
        raise ConfigError(f"invalid promotion config {path}: {join_problems(problems)}")
    stages = []
    for index, name in enumerate(stage_names):
        stages.append(
            load_stage(path.parent / "stages" / f"{name}.json", name, first=index == 0, environ=environ)
        )
    return PromotionConfig(path, group, tuple(stages))


def load_stage(
    path: Path, name: str, first: bool = False, environ: Mapping[str, str] | None = None
) -> StageConfig:
    """One stage file, checked whole; ConfigError listing every problem with file and field."""
    problems: list[str] = []
    document = _expand(_read_json(path), os.environ if environ is None else environ, problems)
    check = _Checker(path, problems)
    account = check.text(document, "account_id", _ACCOUNT, "a 12-digit AWS account id")
    region = check.text(document, "region", names.REGION, "an AWS region such as 'us-east-1'")
    role = check.text(document, "deploy_role_arn", names.ROLE_ARN, "an IAM role ARN")
    if account and role and f":{account}:" not in role:
        problems.append(f"deploy_role_arn {role!r} is not in the stage's account {account}")
    gate = document.get("gate")
    if gate not in GATES:
        problems.append(f"gate {gate!r} is not one of {', '.join(GATES)}.{did_you_mean(str(gate), GATES)}")
    elif first and gate == "tests-passed":
        problems.append("gate tests-passed needs an earlier stage; the first stage has none")
    endpoint = _endpoint(check, document.get("endpoint"))
    smoke = _smoke(check, document.get("smoke_tests", {}))
    aws = _aws(check, document.get("aws", {}), account, region, endpoint)
    monitoring = _monitoring(check, document.get("monitoring"), endpoint)
    check.unknown(
        document,
        {"account_id", "region", "deploy_role_arn", "gate", "endpoint", "smoke_tests", "aws", "monitoring"},
        "",
    )
    if problems:
        raise ConfigError(f"invalid stage config {path}: {join_problems(problems)}")
    return StageConfig(name, path, account, region, role, gate, endpoint, smoke, aws, monitoring)


def _aws(check: _Checker, document: Any, account, region, endpoint) -> AwsSettings | None:
    if not isinstance(document, dict):
        check.problem("aws", "must be an object")
        return None
    check.unknown(document, {"model_execution_role_arn", "kms_key_arn", "data_capture_s3_uri"}, "aws.")
    if not (account and region and endpoint and endpoint.name):
        return None  # reported already; the defaults need them
    capture_bucket = CAPTURE_BUCKET.format(account=account, region=region)
    defaults = {
        "model_execution_role_arn": f"arn:aws:iam::{account}:role/{EXECUTION_ROLE_NAME}",
        "kms_key_arn": f"arn:aws:kms:{region}:{account}:{ENDPOINT_KEY_ALIAS}",
        "data_capture_s3_uri": f"s3://{capture_bucket}/{endpoint.name}/",
    }
    values = {**defaults, **document}
    role = check.text(values, "model_execution_role_arn", names.ROLE_ARN, "an IAM role ARN", "aws.")
    key = check.text(values, "kms_key_arn", names.KMS_KEY, "a KMS key or alias ARN", "aws.")
    capture = check.text(values, "data_capture_s3_uri", _S3_URI, "an s3:// URI", "aws.")
    return AwsSettings(role, key, capture)


def schedule_expression(text: Any) -> str | None:
    """The ScheduleExpression for a stage's ``schedule``, or None when SageMaker would refuse it.

    CreateMonitoringSchedule's ScheduleConfig.ScheduleExpression accepts only ``cron(0 * ? * * *)``
    (hourly), ``cron(0 H ? * * *)`` (daily at hour H, UTC) and ``cron(0 H/N ? * * *)`` (every N hours
    from H), plus ``NOW`` for a single run (botocore's sagemaker service model, ScheduleConfig; the
    API reference's ScheduleConfig page). ``NOW`` is no schedule and is refused here.
    """
    if not isinstance(text, str):
        return None
    if text in SCHEDULE_WORDS:
        return SCHEDULE_WORDS[text]
    match = CRON_FORM.fullmatch(text)
    if match is None:
        return None
    hour, step = match.group(1), match.group(2)
    if hour != "*" and not 0 <= int(hour) <= 23:
        return None
    if step is not None and (hour == "*" or not 1 <= int(step) <= 24):
        return None
    return text


def _monitoring(
    check: _Checker, document: Any, endpoint: EndpointSettings | None
) -> MonitoringSettings | None:
    if document is None:
        return None
    where = "monitoring."
    if not isinstance(document, dict):
        check.problem("monitoring", "must be an object with enabled, schedule, checks and on_violation")
        return None
    enabled = document.get("enabled", True)
    if not isinstance(enabled, bool):
        check.problem(f"{where}enabled", f"is {enabled!r}; expected true or false")
    schedule = document.get("schedule", "hourly")
    expression = schedule_expression(schedule)
    if expression is None:
        check.problem(
            f"{where}schedule",
            f"is {schedule!r}; SageMaker accepts hourly, daily, 'cron(0 * ? * * *)', 'cron(0 H ? * * *)' "
            "or 'cron(0 H/N ? * * *)' (H 0-23, N 1-24)",
        )
    checks = document.get("checks", ["data_quality"])
    if not (isinstance(checks, list) and checks and all(isinstance(c, str) for c in checks)):
        check.problem(f"{where}checks", f"is {checks!r}; expected a non-empty list of {', '.join(CHECKS)}")
        checks = []
    for name in checks:
        if name not in CHECKS:
            check.problem(
                f"{where}checks", f"{name!r} is not one of {', '.join(CHECKS)}.{did_you_mean(name, CHECKS)}"
            )
    if len(set(checks)) != len(checks):
        check.problem(f"{where}checks", "lists a check twice")
    ground_truth = document.get("ground_truth_s3_uri")
    if ground_truth is not None and not (isinstance(ground_truth, str) and _S3_URI.fullmatch(ground_truth)):
        check.problem(f"{where}ground_truth_s3_uri", f"is {ground_truth!r}; expected an s3:// URI")
        ground_truth = None
    if "model_quality" in checks and "ground_truth_s3_uri" not in document:
        check.problem(f"{where}ground_truth_s3_uri", "is missing; the model_quality check needs ground truth")
    drift = _drift(check, document.get("drift", {}))
    on_violation = _on_violation(check, document.get("on_violation", {}))
    if enabled is True and endpoint is not None:
        if endpoint.serverless is not None:
            check.problem(
                "monitoring.enabled", "is true but serverless endpoints have no data capture to monitor"
            )
        elif endpoint.data_capture_percent == 0:
            check.problem(
                "monitoring.enabled",
                "is true but endpoint.data_capture_percent is 0: the monitors would have no data; "
                "capture some traffic or set monitoring.enabled to false",
            )
    check.unknown(
        document, {"enabled", "schedule", "checks", "drift", "ground_truth_s3_uri", "on_violation"}, where
    )
    if drift is None or on_violation is None or expression is None:
        return None
    return MonitoringSettings(
        enabled is True, schedule, expression, tuple(checks), drift, ground_truth, on_violation
    )


def _drift(check: _Checker, document: Any) -> DriftThresholds | None:
    where = "monitoring.drift."
    if not isinstance(document, dict):
        check.problem("monitoring.drift", "must be an object")
        return None
    method = document.get("comparison_method", "Robust")
    if method not in COMPARISON_METHODS:
        check.problem(
            f"{where}comparison_method", f"is {method!r}; expected one of {', '.join(COMPARISON_METHODS)}"
        )
    thresholds = [
        check.number(document, key, 0.0, 1.0, where, default=0.1)
        for key in ("comparison_threshold", "datatype_check_threshold", "domain_content_threshold")
    ]
    check.unknown(
        document,
        {"comparison_method", "comparison_threshold", "datatype_check_threshold", "domain_content_threshold"},
        where,
    )
    if method not in COMPARISON_METHODS or None in thresholds:
        return None
    return DriftThresholds(method, *thresholds)


def _on_violation(check: _Checker, document: Any) -> OnViolation | None:
    where = "monitoring.on_violation."
    if not isinstance(document, dict):
        check.problem("monitoring.on_violation", "must be an object with action and cooldown_hours")
        return None
    action = document.get("action", "notify")
    if action not in VIOLATION_ACTIONS:
        check.problem(
            f"{where}action",
            f"is {action!r}; expected one of {', '.join(VIOLATION_ACTIONS)}."
            + did_you_mean(str(action), VIOLATION_ACTIONS),
        )
    cooldown = check.number(document, "cooldown_hours", 0, 24 * 30, where, default=6)
    data = document.get("retrain_input_data_url")
    if data is not None and not (isinstance(data, str) and _S3_URI.fullmatch(data)):
        check.problem(f"{where}retrain_input_data_url", f"is {data!r}; expected an s3:// URI")
        data = None
    if action == "retrain" and "retrain_input_data_url" not in document:
        check.problem(
            f"{where}retrain_input_data_url",
            "is missing; action retrain needs the s3:// URI of the data to train on "
            "(the pipeline's InputDataUrl)",
        )
    check.unknown(document, {"action", "cooldown_hours", "retrain_input_data_url"}, where)
    if action not in VIOLATION_ACTIONS or cooldown is None:
        return None
    return OnViolation(action, cooldown, data)


def _expand(document: Any, environ: Mapping[str, str], problems: list[str], where: str = "") -> Any:
    """``document`` with ``${NAME}`` / ``${NAME:-default}`` in its strings replaced from ``environ``."""
    if isinstance(document, dict):
        return {k: _expand(v, environ, problems, f"{where}{k}.") for k, v in document.items()}
    if isinstance(document, list):
        return [_expand(v, environ, problems, f"{where}[{i}].") for i, v in enumerate(document)]
    if not isinstance(document, str):
        return document

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name) or default  # set-but-empty counts as unset, as in ${NAME:-...}
        if found is None:
            problems.append(f"{where.rstrip('.')} reads ${{{name}}}, which is not set and has no default")
            return ""
        return found

    return _VARIABLE.sub(value, document)


def _endpoint(check: _Checker, document: Any) -> EndpointSettings | None:
    if not isinstance(document, dict):
        check.problem("endpoint", "must be an object with name, variants or serverless, and local_port")
        return None
    name = check.text(
        document, "name", _ENDPOINT_NAME, "an endpoint name (letters, digits, '-', <= 63)", "endpoint."
    )
    variants: list[Variant] = []
    serverless = None
    if ("variants" in document) == ("serverless" in document):
        check.problem("endpoint", "give either variants (instances) or serverless, not both or neither")
    if "variants" in document:
        items = document["variants"]
        if not (isinstance(items, list) and items):
            check.problem("endpoint.variants", "must be a non-empty list of production variants")
            items = []
        for index, item in enumerate(items):
            where = f"endpoint.variants[{index}]"
            if not isinstance(item, dict):
                check.problem(where, "must be an object")
                continue
            variant_name = check.text(item, "name", _ENDPOINT_NAME, "a variant name", f"{where}.")
            instance_type = check.text(
                item, "instance_type", _INSTANCE_TYPE, "an instance type like ml.m5.large", f"{where}."
            )
            count = check.integer(item, "initial_instance_count", 1, 100, f"{where}.", default=1)
            weight = check.number(item, "initial_weight", 0.0, 1.0e6, f"{where}.", default=1.0)
            check.unknown(
                item, {"name", "instance_type", "initial_instance_count", "initial_weight"}, f"{where}."
            )
            variants.append(Variant(variant_name, instance_type, count, weight))
        if variants and sum(v.initial_weight for v in variants) <= 0:
            check.problem("endpoint.variants", "the weights add up to 0: no variant would get traffic")
        if len({v.name for v in variants}) != len(variants):
            check.problem("endpoint.variants", "variant names must be unique")
    if "serverless" in document:
        item = document["serverless"]
        if not isinstance(item, dict):
            check.problem("endpoint.serverless", "must be an object with memory_size_mb and max_concurrency")
        else:
            memory = item.get("memory_size_mb")
            if memory not in SERVERLESS_MEMORY_MB:
                check.problem(
                    "endpoint.serverless.memory_size_mb", f"{memory!r} is not one of {SERVERLESS_MEMORY_MB}"
                )
            concurrency = check.integer(item, "max_concurrency", 1, 200, "endpoint.serverless.")
            check.unknown(item, {"memory_size_mb", "max_concurrency"}, "endpoint.serverless.")
            serverless = Serverless(memory, concurrency)
    capture = check.integer(document, "data_capture_percent", 0, 100, "endpoint.", default=0)
    if capture and "serverless" in document:
        check.problem("endpoint.data_capture_percent", "must be 0 for serverless: it has no data capture")
    autoscaling = None
    if "autoscaling" in document:
        item = document["autoscaling"]
        if serverless is not None or "serverless" in document:
            check.problem("endpoint.autoscaling", "applies to instance variants only, not serverless")
        elif not isinstance(item, dict):
            check.problem("endpoint.autoscaling", "must be an object with min_capacity, max_capacity, target")
        else:
            low = check.integer(item, "min_capacity", 1, 100, "endpoint.autoscaling.")
            high = check.integer(item, "max_capacity", 1, 100, "endpoint.autoscaling.")
            target = check.integer(
                item, "target_invocations_per_instance", 1, 100000, "endpoint.autoscaling."
            )
            if isinstance(low, int) and isinstance(high, int) and low > high:
                check.problem("endpoint.autoscaling", f"min_capacity {low} is above max_capacity {high}")
            check.unknown(
                item,
                {"min_capacity", "max_capacity", "target_invocations_per_instance"},
                "endpoint.autoscaling.",
            )
            autoscaling = Autoscaling(low, high, target)
    port = check.integer(document, "local_port", 1024, 65535, "endpoint.")
    check.unknown(
        document,
        {"name", "variants", "serverless", "data_capture_percent", "autoscaling", "local_port"},
        "endpoint.",
    )
    return EndpointSettings(name, tuple(variants), serverless, capture, autoscaling, port)


def _smoke(check: _Checker, document: Any) -> SmokeTests | None:
    if not isinstance(document, dict):
        check.problem("smoke_tests", "must be an object")
        return None
    rows = check.integer(document, "rows", 1, 100, "smoke_tests.", default=10)
    latency = check.number(document, "max_latency_ms", 1, 60000, "smoke_tests.", default=1000)
    tolerance = check.number(document, "tolerance", 0, 1, "smoke_tests.", default=1e-4)
    check.unknown(document, {"rows", "max_latency_ms", "tolerance"}, "smoke_tests.")
    return SmokeTests(rows, latency, tolerance)


def _read_json(path: Path, what: str = "stage config") -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "every stage needs its own file" if what == "stage config" else "pass --config"
        raise ConfigError(f"{what} {path} does not exist; {hint}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top")
    return document


class _Checker:
    """Field checks that append '<file>: <field>: <problem>' and return the value (None if bad)."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems

    def problem(self, field: str, text: str) -> None:
        # The file is named once, by the error that lists these.
        self.problems.append(f"{field} {text}")

    def text(self, document: dict, key: str, pattern: re.Pattern, what: str, prefix: str = "") -> str | None:
        value = document.get(key)
        if not (isinstance(value, str) and pattern.fullmatch(value)):
            self.problem(
                f"{prefix}{key}", f"is {'missing' if value is None else repr(value)}; expected {what}"
            )
            return None
        return value

    def integer(self, document, key, low, high, prefix="", default=None):
        value = document.get(key, default)
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            self.problem(
                f"{prefix}{key}",
                f"is {'missing' if value is None else repr(value)}; "
                f"expected a whole number from {low} to {high}",
            )
            return None
        return value

    def number(self, document, key, low, high, prefix="", default=None):
        value = document.get(key, default)
        if not (isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high):
            self.problem(
                f"{prefix}{key}",
                f"is {'missing' if value is None else repr(value)}; expected a number from {low} to {high}",
            )
            return None
        return float(value)

    def unknown(self, document: dict, known: set[str], prefix: str) -> None:
        for key in document:
            if key not in known:
                self.problem(
                    f"{prefix}{key}",
                    "is not a known field."
                    + (did_you_mean(key, known) or f" Known: {', '.join(sorted(known))}"),
                )


def capture_variant(stage: StageConfig) -> str:
    """The variant whose capture the local endpoint writes and the monitors read: the first one (a
    serverless endpoint's only variant is AllTraffic, as aws.py names it)."""
    return stage.endpoint.variants[0].name if stage.endpoint.variants else "AllTraffic"


def capture_prefix(stage: StageConfig) -> str:
    """Where SageMaker writes the stage's capture: ``<DestinationS3Uri>/<endpoint>/<variant>/``."""
    return f"{stage.aws.data_capture_s3_uri.rstrip('/')}/{stage.endpoint.name}/{capture_variant(stage)}/"

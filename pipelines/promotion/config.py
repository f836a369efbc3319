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
    check.unknown(
        document,
        {"account_id", "region", "deploy_role_arn", "gate", "endpoint", "smoke_tests", "aws"},
        "",
    )
    if problems:
        raise ConfigError(f"invalid stage config {path}: {join_problems(problems)}")
    return StageConfig(name, path, account, region, role, gate, endpoint, smoke, aws)


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

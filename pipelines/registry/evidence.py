"""What a model version was registered on: its gate metric and threshold, and the headline metrics
of the evaluation.json its ModelMetrics point to, read from the local object store or S3."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipelines.errors import AwsError, NotFoundError, TemplateError
from pipelines.local_home import OBJECT_STORE
from pipelines.registry.base import ModelPackage

#: CustomerMetadataProperties keys the pipeline's RegisterModel step writes (pipelines/churn/builders.py).
GATE_METRIC = "GateMetric"
GATE_THRESHOLD = "GateThreshold"
PROBLEM_TYPE = "ProblemType"

Reader = Callable[[str], bytes]


@dataclass(frozen=True)
class Evidence:
    """A version's gate and evaluation; ``problem`` says why the evaluation could not be read."""

    gate_metric: str | None
    threshold: str | None
    evaluation_uri: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    problem: str | None = None

    @property
    def gate_value(self) -> float | None:
        return self.metrics.get(self.gate_metric) if self.gate_metric else None

    def gate_text(self) -> str:
        """``auc 0.91 (threshold 0.75)``; ``?`` for what is unknown."""
        if not self.gate_metric:
            return "-"
        value = _number(self.gate_value) if self.gate_value is not None else "?"
        threshold = self.threshold if self.threshold is not None else "not recorded"
        return f"{self.gate_metric} {value} (threshold {threshold})"

    def metrics_text(self) -> str:
        """The other headline metrics, ``name value`` pairs; or why there are none."""
        if self.problem:
            return f"evaluation unreadable: {self.problem}"
        others = [
            f"{name} {_number(value)}" for name, value in self.metrics.items() if name != self.gate_metric
        ]
        return ", ".join(others) or "-"

    def to_dict(self) -> dict:
        return {
            "GateMetric": self.gate_metric,
            "GateThreshold": self.threshold,
            "GateValue": self.gate_value,
            "EvaluationUri": self.evaluation_uri,
            "Metrics": dict(self.metrics),
            **({"Problem": self.problem} if self.problem else {}),
        }


def evaluation_uri(package: ModelPackage) -> str | None:
    """Where the version's evaluation.json is: ModelMetrics.ModelQuality.Statistics.S3Uri."""
    statistics = ((package.model_metrics or {}).get("ModelQuality") or {}).get("Statistics") or {}
    return statistics.get("S3Uri")


def evidence_of(package: ModelPackage, read: Reader) -> Evidence:
    """The version's gate and evaluation; a missing or malformed evaluation is reported in
    ``problem`` rather than raised, so that a listing still shows every version."""
    meta = package.customer_metadata
    uri = evaluation_uri(package)
    gate = meta.get(GATE_METRIC)
    threshold = meta.get(GATE_THRESHOLD)
    if uri is None:
        return Evidence(gate, threshold, None, problem="the version records no ModelQuality statistics")
    try:
        document = json.loads(read(uri))
    except (NotFoundError, AwsError) as err:
        return Evidence(gate, threshold, uri, problem=str(err))
    except TemplateError as err:  # a URI the local store refuses
        return Evidence(gate, threshold, uri, problem=str(err))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return Evidence(gate, threshold, uri, problem=f"{uri} is not JSON")
    return Evidence(gate, threshold, uri, metrics=headline_metrics(document, meta.get(PROBLEM_TYPE)))


def headline_metrics(document, problem_type: str | None) -> dict[str, float]:
    """``{name: value}`` of each metric with a numeric ``value`` in ``<problem>_metrics`` (the
    confusion matrix and the ROC curve have none); the first ``*_metrics`` section without a type."""
    if not isinstance(document, Mapping):
        return {}
    key = (
        f"{problem_type}_metrics"
        if problem_type
        else next((k for k in document if k.endswith("_metrics")), "")
    )
    section = document.get(key)
    if not isinstance(section, Mapping):
        return {}
    found = {}
    for name, entry in section.items():
        value = entry.get("value") if isinstance(entry, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    return found


def object_reader(backend: str, region: str | None = None) -> Reader:
    """``uri -> bytes`` for the backend: the local object store under the local home, or S3."""
    if backend == "local":
        from pipelines.local.store import ObjectStore
        from pipelines.local_home import local_home

        return ObjectStore(local_home() / OBJECT_STORE).get_bytes
    return _s3_reader(region)


def _s3_reader(region: str | None) -> Reader:
    clients = []  # made on the first read: commands that read no evaluation need no S3 client

    def read(uri: str) -> bytes:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        from pipelines.aws_calls import aws_error, client_config

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise NotFoundError(f"{uri!r} is not an s3://bucket/key URI")
        if not clients:
            clients.append(boto3.Session(region_name=region).client("s3", config=client_config()))
        try:
            return clients[0].get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
                raise NotFoundError(f"{uri} does not exist") from None
            raise aws_error(err, f"reading {uri}") from None
        except BotoCoreError as err:
            raise aws_error(err, f"reading {uri}") from None

    return read


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"

"""Model Monitor's data-quality analyzer as pure functions: statistics.json from a table (whole or
in chunks), a suggested constraints.json, and constraint_violations.json against a baseline.

Formats, field by field, from AWS's "Schema for Statistics", "Schema for Constraints" and "Schema
for Violations" pages (docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html,
model-monitor-byoc-constraints.html, model-monitor-interpreting-violations.html). The analyzer
behind them is Deequ (awslabs/deequ): type inference, KLL sketches and L-infinity distances follow
it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.monitoring.common import BaselineError, is_number, kind, percent, stat
from pipelines.monitoring.sketch import (
    DEFAULT_C,
    DEFAULT_K,
    KllSketch,
    categorical_distance,
    numerical_distance,
)
from steps.monitoring_config import DEFAULT_MONITORING_CONFIG, default_monitoring_config

INTEGRAL, FRACTIONAL, STRING, UNKNOWN = "Integral", "Fractional", "String", "Unknown"
INFERRED_TYPES = (INTEGRAL, FRACTIONAL, STRING, UNKNOWN)
NUMERIC_TYPES = (INTEGRAL, FRACTIONAL)

CHECK_TYPES = (
    "data_type_check",
    "completeness_check",
    "baseline_drift_check",
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
)

#: The schema writes "Simple" | "Robust"; its table names them linf_simple | linf_robust.
COMPARISON_METHODS = {
    "Simple": "simple",
    "linf_simple": "simple",
    "Robust": "robust",
    "linf_robust": "robust",
}
SWITCHES = ("Enabled", "Disabled")

#: A String column gets ``string_constraints.domains`` ("observed values for small cardinality")
#: up to this many distinct values: Deequ's column profiler keeps a histogram, which its
#: categorical-range suggestion reads, only below this cardinality.
MAX_DOMAIN_VALUES = 120

# Deequ's DataType patterns: "12" is Integral, "1.0" and "1e3" are Fractional, anything else String.
_INTEGRAL = r"[-+]?\d+"
_FRACTIONAL = r"[-+]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][-+]?\d+|\.\d+[eE][-+]?\d+)"


# ------------------------------------------------------------------------------------------ profile


@dataclass
class _Column:
    missing: int = 0
    integral: int = 0
    fractional: int = 0
    string: int = 0
    count: int = 0  # numeric values, for the moments below
    mean: float = 0.0
    m2: float = 0.0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    sketch: KllSketch = field(default_factory=KllSketch)
    values: dict[str, int] = field(default_factory=dict)  # every present cell as text

    @property
    def present(self) -> int:
        return self.integral + self.fractional + self.string

    @property
    def inferred_type(self) -> str:
        # Deequ's DataTypeHistogram.determineType, without Boolean (not a Model Monitor type).
        if self.present == 0:
            return UNKNOWN
        if self.string:
            return STRING
        return FRACTIONAL if self.fractional else INTEGRAL

    def add_numbers(self, numbers: np.ndarray) -> None:
        if numbers.size == 0:
            return
        # Chan et al.'s merge of two (count, mean, M2) triples: chunk order does not change the result.
        n, mean, m2 = numbers.size, float(numbers.mean()), float(((numbers - numbers.mean()) ** 2).sum())
        both = self.count + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * n / both
        self.mean += delta * n / both
        self.count = both
        self.total += float(numbers.sum())
        self.low = min(self.low, float(numbers.min()))
        self.high = max(self.high, float(numbers.max()))
        self.sketch.update(numbers)

    def add_text(self, text: pd.Series) -> None:
        for value, n in text.value_counts(sort=False).items():
            self.values[str(value)] = self.values.get(str(value), 0) + int(n)


class DataQualityProfile:
    """Statistics of a table fed in chunks; ``statistics()`` is Model Monitor's statistics.json.

    Memory is bounded by the sketches (a few thousand numbers per numeric column) and the distinct
    values of text columns, not by the row count.
    """

    def __init__(self) -> None:
        self.item_count = 0
        self._columns: dict[str, _Column] = {}

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def update(self, chunk: pd.DataFrame) -> DataQualityProfile:
        names = [str(c) for c in chunk.columns]
        if len(set(names)) != len(names):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            raise BaselineError(f"duplicate column name(s) {', '.join(map(repr, duplicates))}")
        if self._columns and names != list(self._columns):
            raise BaselineError(
                f"chunk columns {names[:5]} differ from the first chunk's {list(self._columns)[:5]}"
            )
        self.item_count += len(chunk)
        for name, (_, series) in zip(names, chunk.items(), strict=True):
            column = self._columns.setdefault(name, _Column())
            _add_series(column, series)
        return self

    def type_share(self, name: str, inferred_type: str) -> float:
        """Share of the present values of ``name`` that are of ``inferred_type``."""
        column = self._columns[name]
        if column.present == 0:
            return 1.0
        matching = {
            INTEGRAL: column.integral,
            FRACTIONAL: column.integral + column.fractional,
        }.get(inferred_type, column.present)
        return matching / column.present

    def completeness(self, name: str) -> float:
        column = self._columns[name]
        total = column.present + column.missing
        return column.present / total if total else 0.0

    def value_counts(self, name: str) -> dict[str, int]:
        return dict(self._columns[name].values)

    def sketch(self, name: str) -> KllSketch | None:
        column = self._columns[name]
        return column.sketch if column.count else None

    def statistics(self) -> dict:
        return {
            "version": 0.0,
            "dataset": {"item_count": int(self.item_count)},
            "features": [_feature_statistics(name, column) for name, column in self._columns.items()],
        }


def _add_series(column: _Column, series: pd.Series) -> None:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        present = values[~np.isnan(values)]
        whole = np.count_nonzero(present == np.round(present))
        column.missing += int(values.size - present.size)
        column.integral += int(whole)
        column.fractional += int(present.size - whole)
        column.add_numbers(present)
        # Numbers keep no text: a numeric column's values are only needed if it turns String.
        return
    cells = series.astype(object)
    text = cells[cells.notna()].astype(str).str.strip()
    text = text[text != ""]
    column.missing += int(len(series) - len(text))
    integral = text.str.fullmatch(_INTEGRAL)
    fractional = ~integral & text.str.fullmatch(_FRACTIONAL)
    column.integral += int(integral.sum())
    column.fractional += int(fractional.sum())
    column.string += int(len(text) - integral.sum() - fractional.sum())
    column.add_numbers(pd.to_numeric(text[integral | fractional]).to_numpy(dtype="float64"))
    column.add_text(text)


def _feature_statistics(name: str, column: _Column) -> dict:
    common = {"num_present": int(column.present), "num_missing": int(column.missing)}
    inferred = column.inferred_type
    if inferred == STRING:
        buckets = sorted(column.values.items(), key=lambda item: (-item[1], item[0]))
        return {
            "name": name,
            "inferred_type": STRING,
            "string_statistics": {
                "common": common,
                "distinct_count": float(len(column.values)),
                "distribution": {
                    "categorical": {"buckets": [{"value": v, "count": int(n)} for v, n in buckets]}
                },
            },
        }
    numerical: dict[str, Any] = {"common": common}
    if column.count:
        numerical.update(
            mean=stat(column.mean),
            sum=stat(column.total),
            std_dev=stat(math.sqrt(max(column.m2, 0.0) / column.count)),
            min=stat(column.low),
            max=stat(column.high),
            distribution={
                "kll": {
                    "buckets": column.sketch.buckets(column.low, column.high),
                    "sketch": column.sketch.to_json(),
                }
            },
        )
    return {"name": name, "inferred_type": inferred, "numerical_statistics": numerical}


def profile(data: pd.DataFrame | Iterable[pd.DataFrame]) -> DataQualityProfile:
    """A profile of one DataFrame or of an iterable of chunks (``pd.read_csv(..., chunksize=N)``)."""
    result = DataQualityProfile()
    for chunk in [data] if isinstance(data, pd.DataFrame) else data:
        result.update(chunk)
    return result


def headerless_names(count: int) -> list[str]:
    """How Model Monitor names the columns of CSV without a header: ``_c0``, ``_c1``, ..."""
    return [f"_c{i}" for i in range(count)]


# ------------------------------------------------------------------------------------- constraints


def suggest_constraints(statistics: Mapping[str, Any]) -> dict:
    """constraints.json suggested from statistics.json, with the default monitoring config."""
    features = []
    for feature in statistics["features"]:
        inferred = feature["inferred_type"]
        block = feature.get("string_statistics") or feature.get("numerical_statistics") or {}
        common = block.get("common", {})
        total = common.get("num_present", 0) + common.get("num_missing", 0)
        entry: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": inferred,
            "completeness": stat(common.get("num_present", 0) / total) if total else 0.0,
        }
        if inferred in NUMERIC_TYPES and "min" in block:
            entry["num_constraints"] = {"is_non_negative": bool(block["min"] >= 0)}
        if inferred == STRING:
            buckets = block.get("distribution", {}).get("categorical", {}).get("buckets", [])
            if len(buckets) <= MAX_DOMAIN_VALUES:
                entry["string_constraints"] = {"domains": sorted(b["value"] for b in buckets)}
        features.append(entry)
    return {"version": 0.0, "features": features, "monitoring_config": default_monitoring_config()}


def _copy(config: Mapping[str, Any]) -> dict:
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}


# ----------------------------------------------------------------------------------- baseline files


def parse_constraints(document: Any, source: str) -> dict:
    """A data-quality constraints.json checked field by field; BaselineError listing every problem."""
    if isinstance(document, dict) and any(k.endswith("_constraints") for k in document if k != "features"):
        found = next(k for k in document if k.endswith("_constraints"))
        raise BaselineError(
            f"{source}: holds {found!r}: a model-quality constraints file, not a data-quality one"
        )
    problems = []
    if not isinstance(document, dict):
        raise BaselineError(f"{source}: expected a constraints object, got {kind(document)}")
    features = document.get("features")
    if not isinstance(features, list):
        problems.append(f"'features' must be a list, got {kind(features)}")
        features = []
    for index, feature in enumerate(features):
        where = f"features[{index}]"
        if not isinstance(feature, dict):
            problems.append(f"{where} must be an object, got {kind(feature)}")
            continue
        if not isinstance(feature.get("name"), str) or not feature["name"]:
            problems.append(f"{where}.name must be a non-empty string")
        if feature.get("inferred_type") not in INFERRED_TYPES:
            problems.append(
                f"{where}.inferred_type {feature.get('inferred_type')!r} is not one of "
                f"{', '.join(INFERRED_TYPES)}"
            )
        completeness = feature.get("completeness", 1.0)
        if not (is_number(completeness) and 0 <= completeness <= 1):
            problems.append(f"{where}.completeness must be a number from 0 to 1, got {completeness!r}")
        string_constraints = feature.get("string_constraints", {})
        domains = string_constraints.get("domains", []) if isinstance(string_constraints, dict) else None
        if not (isinstance(domains, list) and all(isinstance(d, str) for d in domains)):
            problems.append(f"{where}.string_constraints.domains must be a list of strings")
        overrides = feature.get("monitoringConfigOverrides", {})
        problems += [f"{where}.monitoringConfigOverrides.{p}" for p in _config_problems(overrides)]
    config = document.get("monitoring_config", {})
    problems += [f"monitoring_config.{p}" for p in _config_problems(config)]
    if problems:
        raise BaselineError(f"{source}: not a Model Monitor constraints file: {'; '.join(problems)}")
    return document


def _config_problems(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return [f"expected an object, got {kind(config)}"]
    problems = []
    for key in ("evaluate_constraints", "emit_metrics"):
        if key in config and config[key] not in SWITCHES:
            problems.append(f"{key} {config[key]!r} is not Enabled or Disabled")
    for key in ("datatype_check_threshold", "domain_content_threshold"):
        if key in config and not is_number(config[key]):
            problems.append(f"{key} must be a number, got {config[key]!r}")
    distribution = config.get("distribution_constraints", {})
    if not isinstance(distribution, dict):
        return [*problems, f"distribution_constraints must be an object, got {kind(distribution)}"]
    if distribution.get("perform_comparison", "Enabled") not in SWITCHES:
        problems.append("distribution_constraints.perform_comparison is not Enabled or Disabled")
    for key in ("comparison_threshold", "categorical_comparison_threshold"):
        if key in distribution and not is_number(distribution[key]):
            problems.append(f"distribution_constraints.{key} must be a number, got {distribution[key]!r}")
    method = distribution.get("comparison_method", "Robust")
    if not isinstance(method, str) or method not in COMPARISON_METHODS:
        problems.append(
            f"distribution_constraints.comparison_method {method!r} is not one of "
            f"{', '.join(COMPARISON_METHODS)}"
        )
    drift = distribution.get("categorical_drift_method", "LInfinity")
    if drift == "ChiSquared":
        problems.append(
            "distribution_constraints.categorical_drift_method ChiSquared does not run locally; use LInfinity"
        )
    elif drift != "LInfinity":
        problems.append(
            f"distribution_constraints.categorical_drift_method {drift!r} is not LInfinity or ChiSquared"
        )
    return problems


def parse_statistics(document: Any, source: str) -> dict:
    """A data-quality statistics.json checked field by field; BaselineError listing every problem."""
    if not isinstance(document, dict):
        raise BaselineError(f"{source}: expected a statistics object, got {kind(document)}")
    if any(k.endswith("_metrics") for k in document):
        raise BaselineError(f"{source}: holds model-quality metrics, not data-quality statistics")
    problems = []
    if not is_number(
        document.get("dataset", {}).get("item_count") if isinstance(document.get("dataset"), dict) else None
    ):
        problems.append("dataset.item_count must be a number")
    features = document.get("features")
    if not isinstance(features, list):
        problems.append(f"'features' must be a list, got {kind(features)}")
        features = []
    for index, feature in enumerate(features):
        where = f"features[{index}]"
        if not isinstance(feature, dict) or not isinstance(feature.get("name"), str):
            problems.append(f"{where} must be an object with a string name")
            continue
        block = feature.get("numerical_statistics", feature.get("string_statistics"))
        if not isinstance(block, dict) or not isinstance(block.get("common"), dict):
            problems.append(f"{where} needs numerical_statistics or string_statistics with common counts")
            continue
        problems += [f"{where}.{p}" for p in _distribution_problems(block.get("distribution", {}))]
    if problems:
        raise BaselineError(f"{source}: not a Model Monitor statistics file: {'; '.join(problems)}")
    return document


def _distribution_problems(distribution: Any) -> list[str]:
    if not isinstance(distribution, dict):
        return [f"distribution must be an object, got {kind(distribution)}"]
    problems = []
    kll = distribution.get("kll", {})
    sketch = kll.get("sketch") if isinstance(kll, dict) else None
    if not isinstance(kll, dict):
        problems.append("distribution.kll must be an object")
    elif sketch is not None:
        parameters = sketch.get("parameters") if isinstance(sketch, dict) else None
        data = sketch.get("data") if isinstance(sketch, dict) else None
        if not (
            isinstance(parameters, dict)
            and is_number(parameters.get("k"))
            and parameters["k"] >= 2
            and is_number(parameters.get("c"))
            and 0 < parameters["c"] <= 1
        ):
            problems.append("distribution.kll.sketch.parameters needs k >= 2 and c in (0, 1]")
        if not (
            isinstance(data, list)
            and all(isinstance(level, list) and all(is_number(v) for v in level) for level in data)
        ):
            problems.append("distribution.kll.sketch.data must be a list of lists of numbers")
    categorical = distribution.get("categorical", {})
    buckets = categorical.get("buckets", []) if isinstance(categorical, dict) else None
    if not (
        isinstance(buckets, list)
        and all(isinstance(b, dict) and "value" in b and is_number(b.get("count")) for b in buckets)
    ):
        problems.append("distribution.categorical.buckets must be a list of {value, count}")
    return problems


# ------------------------------------------------------------------------------------------- checks


def _violation(name: str, check: str, description: str) -> dict:
    return {"feature_name": name, "constraint_check_type": check, "description": description}


def _feature_config(global_config: Mapping[str, Any], feature: Mapping[str, Any]) -> dict:
    config = _copy({**DEFAULT_MONITORING_CONFIG, **global_config})
    config["distribution_constraints"] = {
        **DEFAULT_MONITORING_CONFIG["distribution_constraints"],
        **global_config.get("distribution_constraints", {}),
    }
    overrides = feature.get("monitoringConfigOverrides") or {}
    for key, value in overrides.items():
        if key == "distribution_constraints":
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def check_data_quality(
    current: DataQualityProfile,
    constraints: Mapping[str, Any],
    baseline_statistics: Mapping[str, Any] | None = None,
) -> dict:
    """constraint_violations.json for ``current`` against a baseline's constraints (and statistics,
    which the distribution comparison needs). Parse the files first with ``parse_constraints`` /
    ``parse_statistics``.

    Descriptions: data_type_check and baseline_drift_check reproduce published Model Monitor output
    ("Data type match requirement is not met. Expected data type: Integral, Expected match: 100.0%.
    Observed: Only 50.0% of data is Integral."; "Numerical distance: 0.27 exceeds numerical
    threshold: 0"); the other four have no published example and are worded after those.
    """
    global_config = constraints.get("monitoring_config") or {}
    if global_config.get("evaluate_constraints", "Enabled") == "Disabled":
        return {"violations": []}
    baseline_features = {
        f["name"]: f for f in (baseline_statistics or {}).get("features", []) if isinstance(f, dict)
    }
    expected = [f["name"] for f in constraints["features"]]
    present = current.columns
    violations = []
    for feature in constraints["features"]:
        name, inferred = feature["name"], feature["inferred_type"]
        config = _feature_config(global_config, feature)
        if name not in present:
            violations.append(
                _violation(
                    name,
                    "missing_column_check",
                    f"There are missing columns in current dataset. Number of columns in current dataset: "
                    f"{len(present)}, Number of columns in baseline constraints: {len(expected)}",
                )
            )
            continue
        if inferred in NUMERIC_TYPES:
            share = current.type_share(name, inferred)
            if share < 1.0:
                violations.append(
                    _violation(
                        name,
                        "data_type_check",
                        f"Data type match requirement is not met. Expected data type: {inferred}, "
                        f"Expected match: 100.0%. Observed: Only {percent(share)} of data is {inferred}.",
                    )
                )
        completeness = current.completeness(name)
        wanted = float(feature.get("completeness", 1.0))
        if completeness < wanted:
            violations.append(
                _violation(
                    name,
                    "completeness_check",
                    f"Data completeness requirement is not met. Expected: {percent(wanted)}. "
                    f"Observed: Only {percent(completeness)} of data is present.",
                )
            )
        drift = _drift(name, inferred, current, baseline_features.get(name), config)
        if drift is not None:
            violations.append(_violation(name, "baseline_drift_check", drift))
        domains = (feature.get("string_constraints") or {}).get("domains")
        if inferred == STRING and domains:
            counts = current.value_counts(name)
            total = sum(counts.values())
            inside = sum(n for value, n in counts.items() if value in set(domains))
            threshold = float(config["domain_content_threshold"])
            if total and (total - inside) / total > threshold:
                violations.append(
                    _violation(
                        name,
                        "categorical_values_check",
                        f"Data does not meet the domain content constraint requirement. Expected: at most "
                        f"{percent(threshold)} of values outside the baseline domain. Observed: "
                        f"{percent((total - inside) / total)} of values are outside it.",
                    )
                )
    for name in present:
        if name not in expected:
            violations.append(
                _violation(
                    name,
                    "extra_column_check",
                    f"There are extra columns in current dataset. Number of columns in current dataset: "
                    f"{len(present)}, Number of columns in baseline constraints: {len(expected)}",
                )
            )
    return {"violations": violations}


def _drift(
    name: str,
    inferred: str,
    current: DataQualityProfile,
    baseline: Mapping[str, Any] | None,
    config: Mapping[str, Any],
) -> str | None:
    distribution = config["distribution_constraints"]
    if baseline is None or distribution.get("perform_comparison", "Enabled") == "Disabled":
        return None
    method = COMPARISON_METHODS[distribution.get("comparison_method", "Robust")]
    threshold = float(distribution.get("comparison_threshold", 0.1))
    if inferred in NUMERIC_TYPES:
        kll = baseline.get("numerical_statistics", {}).get("distribution", {}).get("kll", {}).get("sketch")
        sketch = current.sketch(name)
        if kll is None or sketch is None:
            return None
        parameters = kll["parameters"]
        reference = KllSketch.from_data(
            kll["data"], parameters.get("k", DEFAULT_K), parameters.get("c", DEFAULT_C)
        )
        distance = numerical_distance(reference, sketch, method)
        if distance > threshold:
            return f"Numerical distance: {distance!r} exceeds numerical threshold: {threshold!r}"
        return None
    if inferred == STRING:
        buckets = baseline.get("string_statistics", {}).get("distribution", {}).get("categorical", {})
        reference = {str(b["value"]): float(b["count"]) for b in buckets.get("buckets", [])}
        threshold = float(distribution.get("categorical_comparison_threshold", threshold))
        counts = {k: float(v) for k, v in current.value_counts(name).items()}
        if not reference or not counts:
            return None
        distance = categorical_distance(reference, counts, method)
        if distance > threshold:
            return f"Categorical distance: {distance!r} exceeds categorical threshold: {threshold!r}"
    return None

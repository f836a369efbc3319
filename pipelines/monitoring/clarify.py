"""SageMaker Clarify's analysis as pure functions: bias metrics (computed by ``smclarify``, the
library Clarify runs), SHAP explanations of XGBoost models, ``analysis.json`` and the bias and
feature-attribution drift violations.

Formats from the AWS developer guide: "Analysis results" (``analysis.json``: ``version``,
``pre_training_bias_metrics`` / ``post_training_bias_metrics`` with ``label``,
``label_value_or_threshold`` and ``facets``; ``explanations.kernel_shap.label0`` with
``global_shap_values`` and ``expected_value``), "Bias drift violations" and "Model feature
attribution drift violations".
"""

from __future__ import annotations

import io
import math
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.monitoring.common import BaselineError, kind

ANALYSIS_VERSION = "1.0"
PRE_TRAINING, POST_TRAINING = "pre_training_bias_metrics", "post_training_bias_metrics"
#: Metrics whose fair value is 1, not 0 (a ratio); the drift rule measures distance from it.
_RATIO_METRICS = {"DI"}
#: "If the score is less than 0.9, then a violation is logged" (feature attribution drift).
NDCG_THRESHOLD = 0.9
AGGREGATIONS = ("mean_abs", "median", "mean_sq")
MODEL_FILES = ("xgboost-model", "xgboost-model.json", "xgboost-model.ubj")
MAX_MODEL_BYTES = 1 << 30


def _smclarify():
    try:
        from smclarify.bias import metrics, report
    except ImportError:  # pragma: no cover - a dependency of the package
        raise BaselineError("smclarify is not installed: pip install -e . installs it") from None
    return report, metrics


def _objects(series: pd.Series) -> pd.Series:
    # smclarify 0.5 cannot read pandas' string dtype; object columns it can.
    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
        return series.astype(object)
    return series


def bias_metrics(
    frame: pd.DataFrame,
    *,
    label: str,
    positive_label_values: Sequence[Any],
    facets: Sequence[Mapping[str, Any]],
    predicted_label: pd.Series | None = None,
    methods: Sequence[str] | str = "all",
    group_variable: str | None = None,
) -> dict:
    """One ``*_bias_metrics`` section of analysis.json: pre-training without ``predicted_label``,
    post-training with it. ``facets`` are the analysis config's ``facet`` entries
    (``name_or_index`` and optional ``value_or_threshold``)."""
    report, registry = _smclarify()
    frame = frame.reset_index(drop=True).apply(_objects)
    if label not in frame.columns:
        raise BaselineError(f"label {label!r} is not a column of the dataset")
    label_column = report.LabelColumn(label, frame[label], list(positive_label_values))
    stage = report.StageType.POST_TRAINING if predicted_label is not None else report.StageType.PRE_TRAINING
    predicted = (
        report.LabelColumn(
            "predicted_label", predicted_label.reset_index(drop=True), [positive_label_values[0]]
        )
        if predicted_label is not None
        else None
    )
    group = frame[group_variable] if group_variable else None
    wanted = ["all"] if methods == "all" else list(methods)
    if group is None and wanted == ["all"]:
        # CDDL and CDDPL need a group variable; "all" without one means the others.
        pool = registry.POSTTRAINING_METRICS if predicted is not None else registry.PRETRAINING_METRICS
        wanted = [m.__name__ for m in pool if m.__name__ not in ("CDDL", "CDDPL")]
    sections: dict[str, list] = {}
    for facet in facets:
        name = facet.get("name_or_index")
        if name not in frame.columns:
            raise BaselineError(f"facet {name!r} is not a column of the dataset")
        values = facet.get("value_or_threshold")
        column = report.FacetColumn(name, list(values) if values is not None else None)
        data = frame.drop(columns=[c for c in (group_variable,) if c])
        result = report.bias_report(data, column, label_column, stage, predicted, wanted, group)
        sections[str(name)] = [_clean(entry) for entry in result]
    return {
        "label": label,
        "label_value_or_threshold": report.label_value_or_threshold(
            frame[label], list(positive_label_values)
        ),
        "facets": sections,
    }


def _clean(entry: Mapping[str, Any]) -> dict:
    metrics = []
    for metric in entry["metrics"]:
        value = metric.get("value")
        item = {"name": metric["name"], "description": metric["description"], "value": _finite(value)}
        if metric.get("error"):
            item["error"] = metric["error"]
        metrics.append(item)
    return {"value_or_threshold": str(entry["value_or_threshold"]), "metrics": metrics}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value) if isinstance(value, int | float | np.floating) else value


# -------------------------------------------------------------------------------------------- SHAP


def load_xgboost(archive: bytes, source: str):
    """The booster inside a model.tar.gz, read from memory: nothing is extracted to disk."""
    import xgboost as xgb

    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            name = next((n for n in MODEL_FILES if n in members), None)
            if name is None:
                raise BaselineError(f"{source}: no {' or '.join(MODEL_FILES)} in the model archive")
            member = members[name]
            if not member.isfile() or member.size > MAX_MODEL_BYTES:
                raise BaselineError(f"{source}: {name} is not a regular file under 1 GiB")
            data = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BaselineError(f"{source}: not a readable model.tar.gz ({err})") from None
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise BaselineError(f"{source}: {name} is not an XGBoost model ({first})") from None
    return booster


def predict(booster, features: pd.DataFrame) -> np.ndarray:
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(features.to_numpy(dtype="float64")))


def shap_explanations(booster, features: pd.DataFrame, agg_method: str = "mean_abs") -> dict:
    """``explanations.kernel_shap`` of analysis.json from XGBoost's exact tree SHAP
    (``pred_contribs``). The values explain the model's margin (log-odds for a logistic
    objective), which is what Clarify's ``use_logit`` explains; Clarify's default kernel SHAP
    explains the probability, so magnitudes differ while the feature ranking is what drift checks."""
    import xgboost as xgb

    if agg_method not in AGGREGATIONS:
        raise BaselineError(f"shap agg_method {agg_method!r} is not one of {', '.join(AGGREGATIONS)}")
    contributions = booster.predict(xgb.DMatrix(features.to_numpy(dtype="float64")), pred_contribs=True)
    values, bias = contributions[:, :-1], contributions[:, -1]
    if agg_method == "mean_abs":
        summary = np.abs(values).mean(axis=0)
    elif agg_method == "median":
        summary = np.median(values, axis=0)
    else:
        summary = (values**2).mean(axis=0)
    return {
        "kernel_shap": {
            "label0": {
                "global_shap_values": {
                    str(c): float(v) for c, v in zip(features.columns, summary, strict=True)
                },
                "expected_value": float(bias.mean()),
            }
        }
    }


# -------------------------------------------------------------------------------------- violations


def parse_analysis(document: Any, source: str, section: str) -> dict:
    """A Clarify analysis.json used as a baseline; BaselineError naming the file and the field."""
    if not isinstance(document, dict):
        raise BaselineError(f"{source}: expected an analysis object, got {kind(document)}")
    if section not in document:
        found = [k for k in document if k in (PRE_TRAINING, POST_TRAINING, "explanations")]
        raise BaselineError(
            f"{source}: not a Clarify analysis with {section!r} "
            f"(found {', '.join(found) or 'none of its sections'})"
        )
    body = document[section]
    if section == "explanations":
        labels = (body or {}).get("kernel_shap") if isinstance(body, dict) else None
        if not isinstance(labels, dict) or not all(
            isinstance(v, dict)
            and isinstance(v.get("global_shap_values"), dict)
            and all(_number(x) for x in v["global_shap_values"].values())
            for v in labels.values()
        ):
            raise BaselineError(f"{source}: explanations.kernel_shap.<label>.global_shap_values is missing")
    elif not isinstance(body, dict) or not isinstance(body.get("facets"), dict):
        raise BaselineError(f"{source}: {section}.facets must be an object")
    else:
        for facet, entries in body["facets"].items():
            if not (
                isinstance(entries, list)
                and all(
                    isinstance(e, dict)
                    and isinstance(e.get("metrics"), list)
                    and all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in e["metrics"])
                    for e in entries
                )
            ):
                raise BaselineError(
                    f"{source}: {section}.facets.{facet} must be a list of {{value_or_threshold, metrics}}"
                )
    return document


def check_bias(current: Mapping[str, Any], baseline: Mapping[str, Any], section: str) -> dict:
    """Bias drift: a metric farther from fair than its baseline value is a violation ("if the
    baseline constraint for DPPL is 0.2 and the analysis result is -0.3, a violation is logged")."""
    violations = []
    now = current.get(section, {}).get("facets", {})
    for facet, entries in baseline[section]["facets"].items():
        for entry in entries:
            value_or_threshold = entry.get("value_or_threshold")
            peer = next(
                (e for e in now.get(facet, []) if e.get("value_or_threshold") == value_or_threshold), None
            )
            values = {m["name"]: m.get("value") for m in (peer or {}).get("metrics", [])}
            for metric in entry.get("metrics", []):
                limit, value = metric.get("value"), values.get(metric["name"])
                if not (_number(limit) and _number(value)):
                    continue
                fair = 1.0 if metric["name"] in _RATIO_METRICS else 0.0
                if abs(value - fair) > abs(limit - fair):
                    violations.append(
                        {
                            "facet": facet,
                            "facet_value": value_or_threshold,
                            "metric_name": metric["name"],
                            "constraint_check_type": "bias_drift_check",
                            "description": f"Value {value!r} does not meet the constraint requirement",
                        }
                    )
    return {"version": ANALYSIS_VERSION, "violations": violations}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def ndcg(baseline: Mapping[str, float], current: Mapping[str, float]) -> float:
    """nDCG of the current global SHAP ranking against the baseline's relevance."""
    from sklearn.metrics import ndcg_score

    features = sorted(baseline)
    if len(features) < 2:
        return 1.0
    relevance = np.array([[abs(baseline[f]) for f in features]])
    scores = np.array([[abs(current.get(f, 0.0)) for f in features]])
    return float(ndcg_score(relevance, scores))


def check_explainability(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict:
    violations = []
    now = current.get("explanations", {}).get("kernel_shap", {})
    for label, body in baseline["explanations"]["kernel_shap"].items():
        score = ndcg(body["global_shap_values"], now.get(label, {}).get("global_shap_values", {}))
        if score < NDCG_THRESHOLD:
            violations.append(
                {
                    "label": label,
                    "metric_name": "shap",
                    "constraint_check_type": "feature_attribution_drift_check",
                    "description": f"Feature attribution drift {score!r} exceeds threshold {NDCG_THRESHOLD}",
                }
            )
    return {"version": ANALYSIS_VERSION, "violations": violations}

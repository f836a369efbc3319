"""Model Monitor's model-quality analyzer as pure functions: metrics of predictions against ground
truth (statistics.json), suggested constraints with comparison operators, and their violations.

Metric names and layout: AWS "Model quality metrics" (docs.aws.amazon.com/sagemaker/latest/dg/
model-monitor-model-quality-metrics.html): ``binary_classification_metrics`` /
``regression_metrics``, each metric ``{"value", "standard_deviation"}``, the standard deviation
"provided only when at least 200 samples are available ... by randomly sampling 80% of the data
5 times".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipelines.monitoring.common import BaselineError, is_number, kind

BINARY = "BinaryClassification"
REGRESSION = "Regression"
#: Model Monitor's problem types (ModelQualityJobDefinition ``ProblemType``) and the section each writes.
SECTIONS = {BINARY: "binary_classification", REGRESSION: "regression"}
COMPARISON_OPERATORS = (
    "GreaterThanThreshold",
    "LessThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanOrEqualToThreshold",
)
STD_MIN_SAMPLES = 200
STD_ROUNDS = 5
STD_FRACTION = 0.8
STD_SEED = 0
NAN = "NaN"  # how the files write a standard deviation there was too little data for

#: The operator a suggested constraint uses: a violation when the new value is worse than the baseline.
_HIGHER_IS_BETTER = {
    "recall", "precision", "accuracy", "true_positive_rate", "true_negative_rate", "auc",
    "f0_5", "f1", "f2", "r2",
}  # fmt: skip
_CURVES = ("receiver_operating_characteristic_curve", "precision_recall_curve", "confusion_matrix")


def _binary_values(truth: np.ndarray, predicted: np.ndarray, probability: np.ndarray | None) -> dict:
    actual = truth == 1
    guess = predicted == 1
    tp = float(np.sum(guess & actual))
    fp = float(np.sum(guess & ~actual))
    fn = float(np.sum(~guess & actual))
    tn = float(np.sum(~guess & ~actual))
    n = tp + fp + fn + tn

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    def f_beta(precision: float, recall: float, beta: float) -> float:
        b2 = beta * beta
        denominator = b2 * precision + recall
        return (1 + b2) * precision * recall / denominator if denominator else float("nan")

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    # The documented example's "best constant classifier" predicts the positive class for every row
    # (its recall is 1.0 and its precision and accuracy the positive share).
    positives = ratio(tp + fn, n)
    values = {
        "recall": recall,
        "precision": precision,
        "accuracy": ratio(tp + tn, n),
        "recall_best_constant_classifier": 1.0 if tp + fn else float("nan"),
        "precision_best_constant_classifier": positives,
        "accuracy_best_constant_classifier": positives,
        "true_positive_rate": recall,
        # Complements, as the documented example computes them (its 0.33333333333333337 is 1 - 2/3).
        "true_negative_rate": 1.0 - ratio(fp, fp + tn),
        "false_positive_rate": ratio(fp, fp + tn),
        "false_negative_rate": 1.0 - recall,
    }
    if probability is not None:
        values["auc"] = _auc(actual, probability)
    for beta, key in ((0.5, "f0_5"), (1.0, "f1"), (2.0, "f2")):
        values[key] = f_beta(precision, recall, beta)
    for beta, key in ((0.5, "f0_5"), (1.0, "f1"), (2.0, "f2")):
        values[f"{key}_best_constant_classifier"] = f_beta(positives, 1.0, beta)
    return values


def _auc(actual: np.ndarray, probability: np.ndarray) -> float:
    positives, negatives = int(actual.sum()), int((~actual).sum())
    if not positives or not negatives:
        return float("nan")
    # Mann-Whitney U with average ranks for ties: the area under the ROC curve.
    order = np.argsort(probability, kind="mergesort")
    ranks = np.empty(len(probability))
    sorted_p = probability[order]
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[actual].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _curves(actual: np.ndarray, probability: np.ndarray) -> dict:
    order = np.argsort(-probability, kind="mergesort")
    p, a = probability[order], actual[order]
    distinct = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    tps = np.cumsum(a)[distinct].astype(float)
    fps = (distinct + 1 - tps).astype(float)
    pos, neg = float(actual.sum()), float((~actual).sum())
    tpr = np.r_[0.0, tps / pos] if pos else np.zeros(len(tps) + 1)
    fpr = np.r_[0.0, fps / neg] if neg else np.zeros(len(fps) + 1)
    precisions = np.r_[1.0, tps / (tps + fps)]
    return {
        "receiver_operating_characteristic_curve": {
            "false_positive_rates": [float(v) for v in fpr],
            "true_positive_rates": [float(v) for v in tpr],
        },
        "precision_recall_curve": {
            "precisions": [float(v) for v in precisions],
            "recalls": [float(v) for v in tpr],
        },
    }


def _regression_values(truth: np.ndarray, predicted: np.ndarray, _probability: Any) -> dict:
    errors = predicted - truth
    mse = float(np.mean(errors**2))
    total = float(np.sum((truth - truth.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": 1.0 - float(np.sum(errors**2)) / total if total else float("nan"),
    }


def _spread(score: Callable, truth, predicted, probability) -> dict[str, float]:
    if len(truth) < STD_MIN_SAMPLES:
        return {}
    rng = np.random.RandomState(STD_SEED)
    size = int(len(truth) * STD_FRACTION)
    rounds: dict[str, list[float]] = {}
    for _ in range(STD_ROUNDS):
        rows = rng.choice(len(truth), size, replace=False)
        sample = score(truth[rows], predicted[rows], None if probability is None else probability[rows])
        for key, value in sample.items():
            rounds.setdefault(key, []).append(value)
    return {key: float(np.std(values)) for key, values in rounds.items() if np.all(np.isfinite(values))}


def _metric(value: float, spread: float | None) -> dict:
    return {
        "value": float(value) if np.isfinite(value) else NAN,
        "standard_deviation": NAN if spread is None else spread,
    }


def model_quality_statistics(
    problem_type: str,
    ground_truth: np.ndarray,
    predictions: np.ndarray,
    probabilities: np.ndarray | None = None,
) -> dict:
    """statistics.json of a model-quality job. For binary classification ``predictions`` are the
    predicted labels (0/1) and ``probabilities`` the scores the curves and AUC need (optional)."""
    if problem_type not in SECTIONS:
        raise BaselineError(
            f"problem type {problem_type!r} is not supported locally; use one of {', '.join(SECTIONS)}"
        )
    truth = np.asarray(ground_truth, dtype="float64")
    predicted = np.asarray(predictions, dtype="float64")
    probability = None if probabilities is None else np.asarray(probabilities, dtype="float64")
    if truth.shape != predicted.shape or (probability is not None and probability.shape != truth.shape):
        raise BaselineError(
            f"ground truth ({truth.size}) and predictions ({predicted.size}) differ in length"
        )
    if truth.size == 0:
        raise BaselineError("no rows with both a prediction and a ground-truth label")
    bad = ~np.isfinite(truth) | ~np.isfinite(predicted)
    if bad.any():
        raise BaselineError(f"{int(bad.sum())} row(s) have a missing or non-numeric label or prediction")
    if problem_type == BINARY:
        labels = sorted(set(np.unique(truth).tolist()) | set(np.unique(predicted).tolist()))
        if set(labels) - {0.0, 1.0}:
            raise BaselineError(f"binary classification labels must be 0 or 1; found {labels[:5]}")
        score = _binary_values
    else:
        score = _regression_values
    values = score(truth, predicted, probability)
    spread = _spread(score, truth, predicted, probability)
    metrics: dict[str, Any] = {}
    if problem_type == BINARY:
        # actual label -> predicted label -> count, as in the documented example
        metrics["confusion_matrix"] = {
            str(a): {str(p): int(np.sum((truth == a) & (predicted == p))) for p in (0, 1)} for a in (0, 1)
        }
    for key, value in values.items():
        metrics[key] = _metric(value, spread.get(key))
        if key == "false_negative_rate" and probability is not None:
            metrics.update(_curves(truth == 1, probability))
    return {
        "version": 0.0,
        "dataset": {"item_count": int(truth.size)},
        f"{SECTIONS[problem_type]}_metrics": metrics,
    }


def suggest_model_quality_constraints(statistics: Mapping[str, Any]) -> dict:
    """constraints.json: every scalar metric at its baseline value, violated when it gets worse."""
    section = _section(statistics, "statistics")
    suggested = {}
    for key, metric in statistics[section].items():
        if key in _CURVES or not isinstance(metric, dict) or not is_number(metric.get("value")):
            continue
        better = key.removesuffix("_best_constant_classifier") in _HIGHER_IS_BETTER
        if key.endswith("_best_constant_classifier"):
            continue  # a reference point, not a property of the model
        suggested[key] = {
            "threshold": metric["value"],
            "comparison_operator": "LessThanThreshold" if better else "GreaterThanThreshold",
        }
    name = section.replace("_metrics", "_constraints")
    return {"version": 0.0, name: suggested}


def _section(document: Any, what: str) -> str:
    suffix = "_metrics" if what == "statistics" else "_constraints"
    if not isinstance(document, Mapping):
        raise BaselineError(f"model-quality {what}: expected an object, got {kind(document)}")
    found = [k for k in document if k.endswith(suffix)]
    if len(found) != 1 or found[0].removesuffix(suffix) not in SECTIONS.values():
        wanted = " or ".join(f"{s}{suffix}" for s in SECTIONS.values())
        if "features" in document:
            raise BaselineError(
                f"model-quality {what}: this is a data-quality file (it has 'features'), not {wanted}"
            )
        raise BaselineError(
            f"model-quality {what}: expected exactly one of {wanted}, found {found or 'none'}"
        )
    return found[0]


def parse_model_quality_constraints(document: Any, source: str) -> dict:
    try:
        section = _section(document, "constraints")
    except BaselineError as err:
        raise BaselineError(f"{source}: {err}") from None
    problems = []
    if not isinstance(document[section], dict):
        raise BaselineError(f"{source}: {section} must be an object, got {kind(document[section])}")
    for key, constraint in document[section].items():
        if not isinstance(constraint, dict):
            problems.append(f"{section}.{key} must be an object")
            continue
        if not is_number(constraint.get("threshold")):
            problems.append(f"{section}.{key}.threshold must be a number")
        operator = constraint.get("comparison_operator")
        if not isinstance(operator, str) or operator not in COMPARISON_OPERATORS:
            problems.append(
                f"{section}.{key}.comparison_operator {constraint.get('comparison_operator')!r} "
                f"is not one of "
                f"{', '.join(COMPARISON_OPERATORS)}"
            )
    if problems:
        raise BaselineError(
            f"{source}: not a Model Monitor model-quality constraints file: {'; '.join(problems)}"
        )
    return document


_HOLDS = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def check_model_quality(statistics: Mapping[str, Any], constraints: Mapping[str, Any]) -> dict:
    """constraint_violations.json: a metric whose value meets its constraint's comparison is a
    violation, worded as AWS's custom-metric samples word Model Monitor's: "Metric auc with 0.61
    was LessThanThreshold 0.66"."""
    metrics = statistics[_section(statistics, "statistics")]
    section = _section(constraints, "constraints")
    if section.removesuffix("_constraints") != _section(statistics, "statistics").removesuffix("_metrics"):
        raise BaselineError(
            f"the baseline constraints are {section}, but the metrics are not of that problem type"
        )
    violations = []
    for key, constraint in constraints[section].items():
        value = metrics.get(key, {}).get("value")
        if not is_number(value):
            continue
        operator, threshold = constraint["comparison_operator"], constraint["threshold"]
        if _HOLDS[operator](value, threshold):
            violations.append(
                {
                    "constraint_check_type": operator,
                    "description": f"Metric {key} with {value!r} was {operator} {threshold!r}",
                    "metric_name": key,
                }
            )
    return {"violations": violations}

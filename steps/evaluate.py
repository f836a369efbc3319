"""Processing step: scores the trained model on the test split and writes ``evaluation.json`` in the
model-quality format the SageMaker Model Registry shows (``binary_classification_metrics`` or
``regression_metrics``, each metric as ``{"value", "standard_deviation"}``).

The standard deviations come from a fixed-seed bootstrap of the test rows, so the file is reproducible.
The pipeline's quality gate reads one value through :func:`metric_json_path`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score, roc_curve

from steps import label_csv
from steps.encoding import SCHEMA_FILENAME, Encoding, csv_line, decode_rows, encoding_from_schema
from steps.tar_guard import UnsafeArchiveError, extract_tar

EVALUATION_FILENAME = "evaluation.json"
#: Test rows without their labels and the model's predictions for them, written beside the
#: evaluation: what a deployment's smoke test sends to the endpoint and expects back.
SAMPLE_FILENAME = "sample-requests.json"
SAMPLE_ROWS = 20
MODEL_ARCHIVE = "model.tar.gz"
MODEL_FILENAME = "xgboost-model.json"
PROBLEM_TYPES = ("binary_classification", "regression")
METRICS = {
    "binary_classification": ("auc", "accuracy", "precision", "recall", "f1"),
    "regression": ("mse", "rmse", "mae", "r2"),
}
HIGHER_IS_BETTER = {
    "auc": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "mse": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}
GATE_METRIC = {"binary_classification": "auc", "regression": "rmse"}

THRESHOLD = 0.5
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
ROC_POINTS = 100
DECIMALS = 6


class EvaluationError(ValueError):
    """Bad model archive or test data; a one-line message, and ``source`` naming the file."""

    def __init__(self, message: str, source: str | None = None):
        super().__init__(message)
        self.source = source


def metric_json_path(problem_type: str, metric: str) -> str:
    """Dotted path of a metric's value in evaluation.json: ``binary_classification_metrics.auc.value``."""
    if problem_type not in METRICS:
        raise ValueError(f"unknown problem type {problem_type!r} (allowed: {', '.join(METRICS)})")
    if metric not in METRICS[problem_type]:
        raise ValueError(
            f"unknown {problem_type} metric {metric!r} (allowed: {', '.join(METRICS[problem_type])})"
        )
    return f"{problem_type}_metrics.{metric}.value"


# -------------------------------------------------------------------------------------------- metrics


def binary_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    predicted = probabilities >= THRESHOLD
    actual = labels == 1
    tp = float(np.sum(predicted & actual))
    fp = float(np.sum(predicted & ~actual))
    fn = float(np.sum(~predicted & actual))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "auc": float(roc_auc_score(labels, probabilities))
        if 0 < actual.sum() < len(actual)
        else float("nan"),
        "accuracy": float(np.mean(predicted == actual)),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }


def regression_scores(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    errors = predictions - labels
    mse = float(np.mean(errors**2))
    total = float(np.sum((labels - labels.mean()) ** 2))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(errors))),
        "r2": 1.0 - float(np.sum(errors**2)) / total if total else float("nan"),
    }


def bootstrap_std(score, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Standard deviation of each score over fixed-seed resamples of the rows; undefined values skipped."""
    rng = np.random.RandomState(BOOTSTRAP_SEED)
    samples: dict[str, list[float]] = {}
    for _ in range(BOOTSTRAP_RESAMPLES):
        rows = rng.randint(0, len(labels), len(labels))
        for name, value in score(labels[rows], predictions[rows]).items():
            if np.isfinite(value):
                samples.setdefault(name, []).append(value)
    return {name: float(np.std(values)) if len(values) > 1 else 0.0 for name, values in samples.items()}


def evaluate(problem_type: str, labels: np.ndarray, predictions: np.ndarray) -> dict:
    """The evaluation.json document for the test labels and the model's predictions."""
    if len(labels) < 2:
        raise EvaluationError(f"the test data has {len(labels)} row; at least 2 are needed")
    if problem_type == "binary_classification":
        unexpected = sorted(set(np.unique(labels).tolist()) - {0.0, 1.0})
        if unexpected:
            raise EvaluationError(
                f"labels must be 0 or 1; found {', '.join(f'{v:g}' for v in unexpected[:5])}"
            )
        if len(np.unique(labels)) < 2:
            raise EvaluationError(f"all test labels are {labels[0]:g}: AUC needs both classes")
        score = binary_scores
    else:
        if np.all(labels == labels[0]):
            raise EvaluationError(f"all test labels are {labels[0]:g}: r2 is undefined")
        score = regression_scores
    values = score(labels, predictions)
    spread = bootstrap_std(score, labels, predictions)
    metrics = {
        name: {"value": _round(values[name]), "standard_deviation": _round(spread.get(name, 0.0))}
        for name in METRICS[problem_type]
    }
    if problem_type == "binary_classification":
        predicted = (predictions >= THRESHOLD).astype(int)
        metrics["confusion_matrix"] = {  # actual label -> predicted label -> count
            str(a): {str(p): int(np.sum((labels == a) & (predicted == p))) for p in (0, 1)} for a in (0, 1)
        }
        metrics["receiver_operating_characteristic_curve"] = roc_points(labels, predictions)
    return {f"{problem_type}_metrics": metrics}


def roc_points(labels: np.ndarray, probabilities: np.ndarray, limit: int = ROC_POINTS) -> dict:
    fpr, tpr, _ = roc_curve(labels, probabilities)
    if len(fpr) > limit:
        keep = np.unique(np.linspace(0, len(fpr) - 1, limit).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {
        "false_positive_rates": [_round(v) for v in fpr],
        "true_positive_rates": [_round(v) for v in tpr],
    }


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


# ---------------------------------------------------------------------------------------- test data


def parse_label_first(raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Headerless label-first CSV cells (text, missing = NaN) -> (labels, features) as float64."""
    try:
        return label_csv.parse_label_first(raw, "test")
    except label_csv.LabelFirstError as err:
        raise EvaluationError(str(err)) from None


# ------------------------------------------------------------------------------------------- model


def extract_archive(archive_path: Path, target: Path) -> None:
    """Extract a model.tar.gz into ``target`` under the shared archive rules (steps/tar_guard.py)."""
    try:
        extract_tar(archive_path, target, "model archive")
    except UnsafeArchiveError as err:
        raise EvaluationError(str(err)) from None


def load_model(model_dir: Path) -> xgb.Booster:
    path = model_dir / MODEL_FILENAME
    if not path.is_file():
        found = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
        raise EvaluationError(
            f"no {MODEL_FILENAME} in the archive (found: {', '.join(found[:5]) or 'nothing'})"
        )
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as err:
        raise EvaluationError(
            f"{MODEL_FILENAME} is not a loadable XGBoost model: {str(err).splitlines()[0]}"
        ) from None
    return booster


def model_objective(booster: xgb.Booster) -> str:
    return json.loads(booster.save_config())["learner"]["objective"]["name"]


def predict(booster: xgb.Booster, features: np.ndarray, problem_type: str) -> np.ndarray:
    """Predictions on the scale the metrics expect: probabilities for binary classification."""
    expected = booster.num_features()
    if features.shape[1] != expected:
        raise EvaluationError(
            f"the test data has {features.shape[1]} feature columns but the model expects {expected}"
        )
    objective = model_objective(booster)
    family = objective.split(":")[0]
    if (problem_type == "binary_classification") != (family == "binary"):
        raise EvaluationError(
            f"the model's objective {objective!r} does not fit problem type {problem_type!r}"
        )
    predictions = booster.predict(xgb.DMatrix(features)).astype("float64")
    if objective == "binary:logitraw":
        predictions = 1.0 / (1.0 + np.exp(-predictions))
    return predictions


def sample_requests(
    features: np.ndarray, predictions: np.ndarray, encoding: Encoding | None = None, rows: int = SAMPLE_ROWS
) -> dict:
    """The first ``rows`` test rows as request bodies, without their labels, and the predictions the
    evaluated model gave them. With the model's ``encoding`` (its schema.json) they are raw records:
    ``columns`` names the features, ``rows`` are CSV lines (no header; an empty cell is missing) and
    ``records`` the same as JSON objects; they encode back to the test rows exactly. Without it they
    are the encoded rows, as a model version without schema.json takes them."""
    count = min(rows, len(features))
    sample: dict = {"content_type": "text/csv"}
    if encoding is None:
        sample["rows"] = [
            ",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in features[:count]
        ]
    else:
        names = list(encoding.spec.feature_names)
        records = decode_rows(features[:count], encoding)
        sample["columns"] = names
        sample["rows"] = [csv_line(record) for record in records]
        sample["records"] = [dict(zip(names, record, strict=True)) for record in records]
    sample["predictions"] = [float(p) for p in predictions[:count]]
    return sample


def load_encoding(model_dir: Path) -> Encoding | None:
    """The encoding in the model archive's schema.json (train.py copies it there), or None."""
    path = model_dir / SCHEMA_FILENAME
    if not path.is_file():
        return None
    try:
        return encoding_from_schema(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise EvaluationError(f"{SCHEMA_FILENAME} in the archive cannot be read: {err}") from None


# ---------------------------------------------------------------------------------------------- main


def _read_test(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        return label_csv.read_label_first(path, "test")
    except label_csv.LabelFirstError as err:
        raise EvaluationError(str(err), source=err.source) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # reported as one line by main, like every other error of this step
        raise EvaluationError(message)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("/opt/ml/processing/input/model"))
    parser.add_argument("--test", type=Path, default=Path("/opt/ml/processing/input/test"))
    parser.add_argument("--problem-type", choices=PROBLEM_TYPES, default="binary_classification")
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/output/evaluation"))
    source = "arguments"
    try:
        args = parser.parse_args(argv)
        source = str(args.test)
        labels, features = _read_test(args.test)
        source = str(args.model / MODEL_ARCHIVE)
        with tempfile.TemporaryDirectory() as model_dir:
            extract_archive(args.model / MODEL_ARCHIVE, Path(model_dir))
            booster = load_model(Path(model_dir))
            encoding = load_encoding(Path(model_dir))
        source = str(args.test)
        predictions = predict(booster, features, args.problem_type)
        if encoding is not None and len(encoding.columns) != features.shape[1]:
            source = str(args.model / MODEL_ARCHIVE)
            raise EvaluationError(
                f"{SCHEMA_FILENAME} describes {len(encoding.columns)} encoded features, "
                f"the test data has {features.shape[1]}"
            )
        report = evaluate(args.problem_type, labels, predictions)
        text = json.dumps(report, indent=2, allow_nan=False) + "\n"
        sample = (
            json.dumps(sample_requests(features, predictions, encoding), indent=1, allow_nan=False) + "\n"
        )
    except EvaluationError as err:
        print(f"error: {err.source or source}: {err}", file=sys.stderr)
        return 2

    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, content in ((SAMPLE_FILENAME, sample), (EVALUATION_FILENAME, text)):
        partial = args.output_dir / f".partial-{name}"
        partial.write_text(content, encoding="utf-8")
        os.replace(partial, args.output_dir / name)
    gate = GATE_METRIC[args.problem_type]
    print(f"{gate}: {report[f'{args.problem_type}_metrics'][gate]['value']} on {len(labels)} test rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training metrics read from a job's log as SageMaker reads them: a name and a regex per metric,
the regexes applied to each line as CloudWatch records it, the last match of each the final value.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: SageMaker's refusal of MetricDefinitions on a built-in algorithm's image (CreateTrainingJob and
#: CreateHyperParameterTuningJob, script mode included): aws/sagemaker-xgboost-container issue 121;
#: the full message as tools that retry without the definitions match it: awslabs/mlspace's
#: training-job lambda tests.
OVERRIDE_REFUSED = (
    "ValidationException: You can't override the metric definitions for Amazon SageMaker algorithms. "
    "Please retry the request without specifying metric definitions."
)


def override_refused(image: Any) -> str:
    """The failure of a job that sends MetricDefinitions with a built-in algorithm's image."""
    return (
        f"AlgorithmSpecification.MetricDefinitions with {image}, a built-in algorithm's image: SageMaker "
        f"refuses the job ({OVERRIDE_REFUSED}); remove MetricDefinitions and use the image's own "
        "metric names (validation:auc, validation:rmse, ...)"
    )


@dataclass(frozen=True)
class MetricPattern:
    """One metric: its name and the regex whose first group is its value in a log line."""

    name: str
    regex: re.Pattern

    @classmethod
    def of(cls, name: str, regex: str) -> MetricPattern:
        return cls(name, re.compile(regex))


# The XGBoost container's own metrics, the only ones SageMaker reads from its jobs:
# aws/sagemaker-xgboost-container src/sagemaker_xgboost_container/algorithm_mode/metrics.py builds
# "validation:<m>" with the regex below for each metric of XGB_MAXIMIZE_METRICS and
# XGB_MINIMIZE_METRICS (src/sagemaker_xgboost_container/constants/xgb_constants.py). There are no
# "train:<m>" metrics.
_XGBOOST_MAXIMIZE = (
    "accuracy",
    "auc",
    "aucpr",
    "balanced_accuracy",
    "f1",
    "f1_binary",
    "f1_macro",
    "map",
    "ndcg",
    "precision",
    "r2",
    "recall",
    "precision_macro",
    "precision_micro",
    "recall_macro",
    "recall_micro",
)
_XGBOOST_MINIMIZE = (
    "aft-nloglik",
    "cox-nloglik",
    "error",
    "gamma-deviance",
    "gamma-nloglik",
    "interval-regression-accuracy",
    "logloss",
    "mae",
    "mape",
    "merror",
    "mlogloss",
    "mphe",
    "mse",
    "poisson-nloglik",
    "rmse",
    "rmsle",
    "tweedie-nloglik",
)
XGBOOST_METRICS: tuple[MetricPattern, ...] = tuple(
    MetricPattern.of(f"validation:{metric}", rf".*\[[0-9]+\].*#011validation-{metric}:(\S+)")
    for metric in _XGBOOST_MAXIMIZE + _XGBOOST_MINIMIZE
)


def custom_metrics(definitions: Iterable[Mapping[str, Any]]) -> tuple[MetricPattern, ...]:
    """A training job's own MetricDefinitions (resolved), as patterns."""
    return tuple(MetricPattern.of(d["Name"], d["Regex"]) for d in definitions)


def cloudwatch_line(line: str) -> str:
    """A log line as CloudWatch Logs stores it, which is what SageMaker's metric regexes see: control
    characters written as ``#`` and three octal digits (a tab is ``#011``, which is why the
    container's own regexes look for ``#011validation-...``)."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"#{ord(m.group()):03o}", line)


def final_metrics(log_path: Path, patterns: Iterable[MetricPattern]) -> dict[str, float]:
    """Each metric's last value in the log, as SageMaker's FinalMetricDataList reports it."""
    values: dict[str, float] = {}
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return values
    lines = [cloudwatch_line(line) for line in text.splitlines()]
    for pattern in patterns:
        for line in lines:
            for match in pattern.regex.finditer(line):
                with contextlib.suppress(ValueError, IndexError):
                    values[pattern.name] = float(match.group(1))
    return values

"""Which local runtime stands in for which container image: one explicit, extensible table.

A runtime says how a job's code runs on this machine instead of in the image: a Python entry point
runs with this interpreter (the project installs what the images hold: pandas, scikit-learn,
xgboost); an image's built-in algorithm runs as a module of this package. An image no row matches
fails validation with the step and the image named.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from pipelines.local.metrics import XGBOOST_METRICS, MetricPattern

#: The emulation of SageMaker's built-in XGBoost algorithm (training without a user entry point).
BUILTIN_XGBOOST = "pipelines.local.builtin_xgboost"


@dataclass(frozen=True)
class Runtime:
    """How jobs on one family of images run locally.

    ``interpreters`` are the entry-point commands that mean "this image's Python"; ``algorithm`` is
    the module that plays the image's built-in training algorithm, None when the image has none.
    ``algorithm_metrics`` marks an image SageMaker treats as a built-in algorithm's, script mode
    included: the metrics it reads from every training job on it, which no MetricDefinitions may
    override; None for images whose jobs define their own.
    """

    name: str
    pattern: re.Pattern
    interpreters: tuple[str, ...] = ("python", "python3")
    algorithm: str | None = None
    algorithm_metrics: tuple[MetricPattern, ...] | None = None

    @property
    def is_builtin_algorithm(self) -> bool:
        return self.algorithm_metrics is not None

    def command(self, entrypoint: list[str]) -> list[str]:
        """The entry point with the image's interpreter replaced by this one."""
        head, *rest = entrypoint
        if head in self.interpreters or head.rsplit("/", 1)[-1] in self.interpreters:
            return [sys.executable, *rest]
        return list(entrypoint)


def _image(repository: str) -> re.Pattern:
    # <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>:<tag>, any account, region and tag.
    return re.compile(rf"^\d{{12}}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/{repository}(:[\w.-]+)?$")


#: Add a row to run another image family locally; the first matching row wins.
RUNTIMES: list[Runtime] = [
    Runtime(
        "sagemaker-xgboost",
        _image("sagemaker-xgboost"),
        algorithm=BUILTIN_XGBOOST,
        algorithm_metrics=XGBOOST_METRICS,
    ),
    Runtime(
        "xgboost (first-generation built-in)",
        _image("xgboost"),
        algorithm=BUILTIN_XGBOOST,
        algorithm_metrics=XGBOOST_METRICS,
    ),
    Runtime("sagemaker-scikit-learn", _image("sagemaker-scikit-learn")),
]


def runtime_for(image: str) -> Runtime | None:
    for runtime in RUNTIMES:
        if runtime.pattern.match(image):
            return runtime
    return None


def unknown_image(image: object) -> str:
    families = ", ".join(runtime.name for runtime in RUNTIMES)
    return (
        f"image {image!r} has no local runtime (images with one: {families}); add a row to "
        "pipelines.local.runtimes.RUNTIMES to run it locally"
    )

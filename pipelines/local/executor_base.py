"""The interface every step type's executor implements, and what it is given and returns.

The executor table (``executors.py``) and the check steps (``checks.py``) both derive from it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pipelines.local.definition import StepSpec
from pipelines.local.expressions import Context
from pipelines.local.jobs import JobEnvironment


@dataclass
class StepRun:
    """What an executor gets: the step, its resolved arguments, and the machinery it may use."""

    step: StepSpec
    arguments: dict[str, Any]
    job_name: str
    env: JobEnvironment
    context: Context
    registry: Callable[[], Any]  # opens the local ModelRegistry on first use
    parallelism: int = 1  # how many processes this step may run at once
    warn: Callable[[str], None] = lambda text: None  # a warning about this step, shown once


@dataclass
class StepResult:
    """Properties (shaped like the Describe* answer), the ListPipelineExecutionSteps ``Metadata``,
    the job log, and for a Condition the branch chosen ("if" or "else")."""

    properties: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None
    branch: str | None = None


class Executor(abc.ABC):
    type: ClassVar[str]
    #: Whether CacheConfig applies (SageMaker caches only job steps).
    cacheable: ClassVar[bool] = False
    #: The Execution variable holding this step's job name (Execution.ProcessingJobName, ...).
    job_variable: ClassVar[str | None] = None

    def problems(self, step: StepSpec) -> list[str]:
        """What cannot run locally in this step, found from the definition alone."""
        return []

    def detail(self, result: StepResult) -> str:
        """A few words on what a succeeded step did, for the progress view ("" for nothing)."""
        return ""

    def summary_lines(self, name: str, properties: Mapping[str, Any]) -> list[str]:
        """What the closing summary says of this succeeded step (nothing, for most types)."""
        return []

    #: The arguments SageMaker's step cache key is made of, for this step type (AWS doc "Default
    #: cache key attributes by pipeline step type"); None: all of them, execution variables aside.
    cache_key_attributes: ClassVar[tuple[str, ...] | None] = None

    def cache_key_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
        """What of the resolved arguments the cache key covers; None for all of them."""
        if self.cache_key_attributes is None:
            return None
        return {key: arguments[key] for key in self.cache_key_attributes if key in arguments}

    def cache_inputs(self, arguments: Mapping[str, Any]) -> list[str]:
        """The S3 URIs a step reads (resolved arguments). Not part of the cache key, which holds
        the URIs as strings, not the data behind them; a cache hit on changed data is reported."""
        return []

    def outputs(self, properties: Mapping[str, Any]) -> list[str]:
        """The S3 URIs a cached result needs still present to be reused."""
        return []

    @abc.abstractmethod
    def run(self, run: StepRun) -> StepResult:
        """Do the step; StepFailure when it fails."""

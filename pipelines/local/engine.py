"""The local runner's control loop: validate, schedule, cache, retry, record.

It executes a pipeline definition JSON (the one that would be upserted to SageMaker) on this
machine. The whole definition and its parameters are checked before the first step; independent
steps run at once; only the chosen branch of a Condition runs; CacheConfig and RetryPolicies are
honoured; every state change is written to the execution records first, so a runner killed at any
point leaves an execution that ``retry`` completes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipelines.errors import UsageError, join_problems
from pipelines.local.budget import CpuBudget
from pipelines.local.definition import (
    Definition,
    DefinitionError,
    StepSpec,
    dependencies,
    parse_definition,
    validate,
)
from pipelines.local.executors import EXECUTORS, StepResult, StepRun, instance_count_problems
from pipelines.local.expressions import EXECUTION_VARIABLES, Context, ExpressionError, evaluate
from pipelines.local.jobs import JobEnvironment, StepFailure, end_jobs
from pipelines.local.progress import Reporter, SilentReporter
from pipelines.local.records import (
    EXECUTING,
    FAILED,
    STOPPED,
    SUCCEEDED,
    Execution,
    ExecutionRecords,
    pipeline_arn,
)
from pipelines.local.store import MissingObjectError, ObjectStore, StoreError
from pipelines.local_home import EXECUTIONS_DB, JOBS, OBJECT_STORE, local_home

#: SageMaker's pipeline-name rule; a local execution is filed under the name.
_PIPELINE_NAME = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,255}")
_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta | None:
    """An ISO 8601 duration of the kind CacheConfig.ExpireAfter takes (P30D, PT1H, P1DT12H, P1Y,
    p30d...); a year counts as 365 days and a month as 30."""
    match = _DURATION.fullmatch(text or "")
    if not match or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        return None
    parts = {key: int(value) for key, value in match.groupdict().items() if value}
    parts["days"] = parts.get("days", 0) + 365 * parts.pop("years", 0) + 30 * parts.pop("months", 0)
    return timedelta(**parts)


@dataclass
class ExecutionOutcome:
    """How an execution ended: its records, plus what the summary shows."""

    arn: str
    execution_id: str
    status: str
    failure_reason: str | None
    steps: dict[str, Any]
    properties: dict[str, dict] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class LocalRunner:
    """Runs pipeline definitions with everything under one local home (records, store, jobs).

    ``max_workers`` bounds how many steps run at once (default: the CPU count); ``cpus`` is what
    one job may use (``SM_NUM_CPUS``). ``sleep`` is how retries wait (tests pass a recorder; by
    default the wait ends early when the execution is interrupted).
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        reporter: Reporter | None = None,
        max_workers: int | None = None,
        cpus: int | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        # Absolute: jobs run with their sandbox as working directory.
        self.home = (Path(home) if home is not None else local_home()).resolve()
        self.store = ObjectStore(self.home / OBJECT_STORE)
        self.records = ExecutionRecords(self.home / EXECUTIONS_DB)
        self.jobs_dir = self.home / JOBS
        self.reporter = reporter or SilentReporter()
        self.cpus = cpus or os.cpu_count() or 1
        self.max_workers = max_workers or self.cpus
        # Shared by every job this runner starts, so jobs running at once split the CPUs.
        self.budget = CpuBudget(self.cpus)
        self.sleep = sleep
        self._registry = None

    def registry(self):
        if self._registry is None:
            from pipelines.registry.local import FILE_NAME, LocalModelRegistry

            self._registry = LocalModelRegistry(self.home / FILE_NAME)
        return self._registry

    # ---- checks

    def check(
        self, definition_text: str, source: str, parameters: Mapping[str, Any]
    ) -> tuple[Definition, dict[str, Any], list[str]]:
        """Parse and validate everything; (definition, parameter values, order) or DefinitionError."""
        definition = parse_definition(definition_text, source)

        def local_problems(step: StepSpec) -> list[str]:
            problems = EXECUTORS[step.type].problems(step)
            if step.cache_config and step.cache_config.get("Enabled"):
                expire = step.cache_config.get("ExpireAfter")
                if expire is not None and parse_duration(expire) is None:
                    problems.append(
                        f"CacheConfig.ExpireAfter {expire!r} is not an ISO 8601 duration such as P30D"
                    )
            for index, policy in enumerate(step.retry_policies):
                problems += _policy_problems(policy, f"RetryPolicies[{index}]")
            return problems

        values, order = validate(definition, parameters, EXECUTORS, local_problems)
        problems = [
            f"step {name!r}: {problem}"
            for name, step in definition.steps.items()
            for problem in instance_count_problems(step, values)
        ]
        if problems:
            count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
            raise DefinitionError(f"{definition.source}: {count}: {join_problems(problems)}", problems)
        return definition, values, order

    # ---- entry points

    def start(
        self,
        definition_text: str,
        *,
        pipeline_name: str,
        parameters: Mapping[str, Any] | None = None,
        source: str = "the definition",
        use_cache: bool = True,
        display_name: str | None = None,
    ) -> ExecutionOutcome:
        """Validate, then run a new execution to its end."""
        if not _PIPELINE_NAME.fullmatch(pipeline_name or ""):
            raise UsageError(
                f"pipeline name {pipeline_name!r} is not valid (letters, digits and '-', up to 256)"
            )
        definition, values, order = self.check(definition_text, source, parameters or {})
        execution_id = _execution_id()
        # Locked before it is recorded: an Executing record always has a live runner or none ever.
        with self.records.hold(execution_id):
            execution = self.records.create_execution(
                pipeline_name, execution_id, definition_text, values, use_cache, display_name
            )
            return self._drive(execution, definition, values, order, {})

    def retry(self, reference: str) -> ExecutionOutcome:
        """Run again the steps of a failed or interrupted execution that did not succeed."""
        execution = self.records.get_execution(reference)
        status = self.records.effective_status(execution)
        if status not in (FAILED, STOPPED):
            raise UsageError(
                f"execution {execution.execution_id} is {status}; only a Failed, Stopped or "
                "interrupted execution can be retried"
            )
        definition, values, order = self.check(
            execution.definition, f"execution {execution.execution_id}", execution.parameters
        )
        with self.records.hold(execution.execution_id):
            kept = {}
            for name, record in self.records.steps(execution.arn).items():
                if record.status == SUCCEEDED and name in definition.steps:
                    kept[name] = record
                else:
                    self.records.delete_step(execution.arn, name)
            self.records.set_execution_status(execution.arn, EXECUTING)
            return self._drive(execution, definition, values, order, kept)

    # ---- the loop

    def _drive(
        self,
        execution: Execution,
        definition: Definition,
        values: dict[str, Any],
        order: list[str],
        kept: Mapping[str, Any],
    ) -> ExecutionOutcome:
        started = time.monotonic()
        steps = definition.steps
        results: dict[str, dict] = {name: record.properties or {} for name, record in kept.items()}
        branches = {
            name: ("if" if results[name].get("Outcome") else "else")
            for name in kept
            if steps[name].type == "Condition"
        }
        needs = {name: {d for d in dependencies(steps[name]) if d in steps} for name in order}
        state = _RunState(execution, definition, values, results, self)
        self.reporter.started(execution.arn, [(n, steps[n].type) for n in order], set(kept))
        failures: dict[str, str] = {}
        excluded: set[str] = set()
        running: dict[Future, str] = {}
        with _stop_on_interrupt(state.stopping), ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            while True:
                excluded = _excluded(order, steps, needs, branches)
                if not failures and not state.stopping.is_set():
                    for name in order:
                        # Submit no more than can run: a step still queued when another fails
                        # would start after the failure.
                        if len(running) >= self.max_workers:
                            break
                        if (
                            name in results
                            or name in excluded
                            or name in running.values()
                            or not needs[name] <= results.keys()
                        ):
                            continue
                        running[pool.submit(state.run_step, steps[name])] = name
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    try:
                        result = future.result()
                    except StepFailure as failure:
                        failures[name] = failure.reason
                        continue
                    results[name] = result.properties
                    if result.branch is not None:
                        branches[name] = result.branch
        status = FAILED if failures else SUCCEEDED
        reason = None
        if state.stopping.is_set():
            status = STOPPED
            reason = f"stopped by an interrupt; resume it with local-pipeline retry {execution.execution_id}"
        elif failures:
            first = next(name for name in order if name in failures)
            reason = f"step {first!r} failed: {failures[first]}"
        self.records.set_execution_status(execution.arn, status, reason)
        outcome = ExecutionOutcome(
            execution.arn,
            execution.execution_id,
            status,
            reason,
            self.records.steps(execution.arn),
            results,
            started,
            time.monotonic(),
        )
        self.reporter.finished(outcome, definition)
        return outcome


@contextlib.contextmanager
def _stop_on_interrupt(stopping: threading.Event):
    """While the block runs, Ctrl-C stops the execution as StopPipelineExecution does: no new step
    or attempt starts and the running jobs are ended; a second Ctrl-C interrupts at once."""

    def stop(signum, frame):
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        end_jobs()

    try:
        previous = signal.signal(signal.SIGINT, stop)
    except ValueError:  # not the main thread: interrupts are not delivered here anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _excluded(order, steps, needs, branches) -> set[str]:
    """Steps that will not run: on a branch its Condition did not take, or waiting on such a step."""
    excluded: set[str] = set()
    for name in order:  # topological: whatever a step waits on is decided before it
        step = steps[name]
        if step.branch is not None:
            condition, label = step.branch
            if condition in excluded or (condition in branches and branches[condition] != label):
                excluded.add(name)
                continue
        if needs[name] & excluded:
            excluded.add(name)
    return excluded


class _RunState:
    """What the steps of one execution share: its variables, the results so far, the runner."""

    def __init__(self, execution: Execution, definition: Definition, values, results, runner: LocalRunner):
        self.execution = execution
        self.definition = definition
        self.values = values
        self.results = results
        self.runner = runner
        self.start_time = datetime.now(timezone.utc).isoformat()
        self._property_files: dict[tuple[str, str], Any] = {}
        self.stopping = threading.Event()

    def variables(self, job_name: str | None, variable: str | None) -> dict[str, Any]:
        execution = self.execution
        values = {
            "PipelineExecutionId": execution.execution_id,
            "PipelineExecutionArn": execution.arn,
            "PipelineName": execution.pipeline_name,
            "PipelineArn": pipeline_arn(execution.pipeline_name),
            "StartDateTime": self.start_time,
            "CurrentDateTime": datetime.now(timezone.utc).isoformat(),
        }
        if variable is not None:
            values[variable] = job_name
        return values

    def context(self, execution_values: Mapping[str, Any]) -> Context:
        return Context(self.values, execution_values, self.results.get, self.property_file)

    def property_file(self, step_name: str, file_name: str) -> Any:
        key = (step_name, file_name)
        if key in self._property_files:
            return self._property_files[key]
        properties = self.results.get(step_name)
        spec = next((p for p in self.definition.steps[step_name].property_files if p.name == file_name), None)
        if properties is None or spec is None:
            return None
        outputs = properties.get("ProcessingOutputConfig", {}).get("Outputs", [])
        output = next((o for o in outputs if o.get("OutputName") == spec.output_name), None)
        if output is None:
            raise ExpressionError(
                f"property file {file_name!r}: step {step_name!r} has no output {spec.output_name!r}"
            )
        uri = f"{output['S3Output']['S3Uri'].rstrip('/')}/{spec.file_path}"
        try:
            value = json.loads(self.runner.store.get_bytes(uri))
        except (StoreError, MissingObjectError, OSError) as err:
            raise ExpressionError(f"property file {file_name!r} of step {step_name!r}: {err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ExpressionError(f"property file {file_name!r} at {uri} is not JSON: {err}") from None
        self._property_files[key] = value
        return value

    # ---- one step

    def run_step(self, step: StepSpec) -> StepResult:
        executor = EXECUTORS[step.type]
        base_name = _job_name(self.execution.execution_id, step.name)
        try:
            arguments = self._arguments(step, executor, base_name)
        except ExpressionError as err:
            return self._fail(step, 0, None, f"cannot evaluate its arguments: {err}")
        cache_key = digests = None
        if executor.cacheable and (step.cache_config or {}).get("Enabled"):
            # The key is recorded even when this run does not look it up (--no-cache), so that a
            # later run can reuse the work.
            cache_key = self._cache_key(step, executor, arguments)
            if self.execution.use_cache:
                reused = self._reuse_cached(step, executor, arguments, cache_key)
                if reused is not None:
                    return reused
            digests = self._input_digests(executor, arguments)
        return self._run_with_retries(step, executor, base_name, arguments, cache_key, digests)

    def _arguments(self, step: StepSpec, executor, job_name: str) -> dict:
        return evaluate(step.arguments, self.context(self.variables(job_name, executor.job_variable)))

    # ---- the cache

    def _reuse_cached(self, step: StepSpec, executor, arguments: dict, cache_key: str) -> StepResult | None:
        """Record the step as a hit on an earlier run's result and return that result, or None."""
        hit = self.runner.records.cached(
            step.type, cache_key, parse_duration(step.cache_config.get("ExpireAfter", ""))
        )
        if hit is None or not self._outputs_present(executor, hit[1].properties):
            return None
        source, record = hit
        now = _now()
        # The data the reused result was computed from, carried along a chain of hits.
        computed_from = record.input_digests or {}
        current = self._input_digests(executor, arguments)
        changed = sorted(
            uri for uri, digest in current.items() if uri in computed_from and computed_from[uri] != digest
        )
        self.runner.records.put_step(
            self.execution.arn,
            step.name,
            step.type,
            SUCCEEDED,
            attempts=0,
            started=now,
            ended=now,
            properties=record.properties,
            metadata=record.metadata,
            cache_key=cache_key,
            cache_source=source,
            log_path=record.log_path,
            input_digests=computed_from,
            changed_inputs=changed,
        )
        self.runner.reporter.step(step.name, "Cached", f"from {source.rsplit('/', 1)[-1]}")
        return StepResult(record.properties, record.metadata or {}, None, _branch(record.properties))

    def _cache_key(self, step: StepSpec, executor, arguments: dict) -> str:
        # SageMaker's key: the step's arguments, input URIs as strings, not the data behind them
        # (AWS doc "Default cache key attributes by pipeline step type"). A type that names no
        # attributes is keyed on all its arguments with execution variables left symbolic, so that
        # output paths holding the execution id do not defeat the cache.
        keyed = executor.cache_key_arguments(arguments)
        if keyed is None:
            symbolic = {name: f"${{Execution.{name}}}" for name in EXECUTION_VARIABLES}
            keyed = evaluate(step.arguments, self.context(symbolic))
        document = {"Type": step.type, "Arguments": keyed}
        return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()

    def _input_digests(self, executor, arguments: dict) -> dict[str, str | None]:
        """The content behind each input URI now: what a cache hit is compared on, not keyed on."""
        digests = {}
        for uri in executor.cache_inputs(arguments):
            try:
                digests[uri] = self.runner.store.digest(uri)
            except (StoreError, OSError):
                digests[uri] = None
        return digests

    def _outputs_present(self, executor, properties) -> bool:
        try:
            return all(self.runner.store.exists(uri) for uri in executor.outputs(properties or {}))
        except (KeyError, TypeError, StoreError):
            return False

    # ---- attempts and retries

    def _run_with_retries(
        self, step: StepSpec, executor, base_name: str, arguments: dict, cache_key, digests
    ) -> StepResult:
        """Attempts until one succeeds, one fails in a way no RetryPolicy covers, or an interrupt."""
        runner = self.runner
        attempt = 0
        while True:
            if self.stopping.is_set():
                return self._fail(step, attempt, None, "stopped by an interrupt", status=STOPPED)
            attempt += 1
            job_name = base_name if attempt == 1 else f"{base_name[:58]}-r{attempt}"
            if job_name != base_name:
                arguments = self._arguments(step, executor, job_name)
            log_path = runner.jobs_dir / job_name / "log.txt"
            started = _now()
            try:
                result = self._attempt(step, executor, job_name, arguments, attempt, started, cache_key)
            except StepFailure as failure:
                if self.stopping.is_set():  # the job was ended by the interrupt: not a failure to retry
                    return self._fail(
                        step,
                        attempt,
                        failure.log_path or log_path,
                        "stopped by an interrupt",
                        started,
                        cache_key,
                        status=STOPPED,
                    )
                wait_seconds = _retry_wait(step, failure.exception_type, attempt)
                if wait_seconds is None:
                    return self._fail(
                        step, attempt, failure.log_path or log_path, failure.reason, started, cache_key
                    )
                runner.reporter.step(step.name, "Retrying", f"{failure.exception_type} in {wait_seconds:g} s")
                (runner.sleep or self.stopping.wait)(wait_seconds)
                continue
            runner.records.put_step(
                self.execution.arn,
                step.name,
                step.type,
                SUCCEEDED,
                attempts=attempt,
                started=started,
                ended=_now(),
                properties=result.properties,
                metadata=result.metadata,
                cache_key=cache_key,
                log_path=str(result.log_path) if result.log_path else None,
                input_digests=digests,
            )
            runner.reporter.step(step.name, "Succeeded", executor.detail(result))
            return result

    def _attempt(
        self, step: StepSpec, executor, job_name: str, arguments: dict, attempt: int, started: str, cache_key
    ) -> StepResult:
        """One job for the step, recorded as Executing first; StepFailure when it fails."""
        runner = self.runner
        runner.records.put_step(
            self.execution.arn,
            step.name,
            step.type,
            EXECUTING,
            attempts=attempt,
            started=started,
            cache_key=cache_key,
            log_path=str(runner.jobs_dir / job_name / "log.txt"),
        )
        runner.reporter.step(step.name, "Executing", f"attempt {attempt}" if attempt > 1 else "")
        run = StepRun(
            step=step,
            arguments=arguments,
            job_name=job_name,
            env=JobEnvironment(runner.store, runner.jobs_dir, runner.cpus, self.stopping, runner.budget),
            context=self.context(self.variables(job_name, executor.job_variable)),
            registry=runner.registry,
            warn=functools.partial(runner.reporter.warning, step.name) if attempt == 1 else _quiet,
        )
        return executor.run(run)

    def _fail(self, step, attempts, log_path, reason, started=None, cache_key=None, status=FAILED):
        self.runner.records.put_step(
            self.execution.arn,
            step.name,
            step.type,
            status,
            attempts=attempts,
            started=started or _now(),
            ended=_now(),
            failure_reason=reason,
            cache_key=cache_key,
            log_path=str(log_path) if log_path else None,
        )
        self.runner.reporter.step(step.name, status, reason, log_path)
        raise StepFailure(reason)


def _quiet(text: str) -> None:
    pass


def _branch(properties: Mapping[str, Any] | None) -> str | None:
    if properties and "Outcome" in properties:
        return "if" if properties["Outcome"] else "else"
    return None


def _policy_problems(policy: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    types = policy.get("ExceptionType")
    if not (isinstance(types, list) and types and all(isinstance(t, str) for t in types)):
        problems.append(f"{where}.ExceptionType must be a non-empty list of exception types")
    for key in ("IntervalSeconds", "MaxAttempts", "ExpireAfterMin"):
        value = policy.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            problems.append(f"{where}.{key} must be a non-negative whole number, got {value!r}")
    rate = policy.get("BackoffRate")
    if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool) or rate < 1):
        problems.append(f"{where}.BackoffRate must be a number of at least 1, got {rate!r}")
    return problems


def _retry_wait(step: StepSpec, exception_type: str | None, attempt: int) -> float | None:
    """Seconds to wait before retrying after ``attempt`` failed, or None not to retry.

    The first policy whose ExceptionType lists the failure's type applies; MaxAttempts counts the
    retries (SageMaker's reading), and ExpireAfterMin caps the total wait.
    """
    if exception_type is None:
        return None
    for policy in step.retry_policies:
        if exception_type not in policy.get("ExceptionType", []):
            continue
        if attempt > int(policy.get("MaxAttempts", 5)):
            return None
        interval = float(policy.get("IntervalSeconds", 1))
        rate = float(policy.get("BackoffRate", 2.0))
        waits = [interval * rate ** (n - 1) for n in range(1, attempt + 1)]
        expire = policy.get("ExpireAfterMin")
        if expire is not None and sum(waits) > expire * 60:
            return None
        return waits[-1]
    return None


def _execution_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def _job_name(execution_id: str, step_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", step_name).strip("-") or "step"
    return f"pipelines-{execution_id}-{slug}"[:63].rstrip("-")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()

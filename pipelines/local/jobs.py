"""SageMaker processing and training jobs run as local processes, keeping the container contracts.

Each job instance runs against its own sandbox, which it sees at ``/opt/ml`` (``sandbox``); inputs
come from the local object store, outputs go back to it, and the job's answer is shaped like
DescribeProcessingJob / DescribeTrainingJob so that step properties read as on SageMaker.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.errors import NotFoundError, TemplateError
from pipelines.local.budget import BudgetStopped, CpuBudget
from pipelines.local.metrics import MetricPattern, custom_metrics, final_metrics, override_refused
from pipelines.local.runtimes import Runtime, runtime_for, unknown_image
from pipelines.local.sandbox import CONTAINER_ROOT, Sandbox, support
from pipelines.local.sandbox import rewrite as rewrite  # still importable from here
from pipelines.local.store import ObjectStore, StoreError
from pipelines.local_home import LOCAL_ACCOUNT, LOCAL_REGION
from steps.tar_guard import UnsafeArchiveError, extract_tar

# Exception types of SageMaker's RetryPolicy that local failures map to.
JOB_INTERNAL_ERROR = "SageMaker.JOB_INTERNAL_ERROR"
RESOURCE_LIMIT = "SageMaker.RESOURCE_LIMIT"
SERVICE_FAULT = "Step.SERVICE_FAULT"


class StepFailure(TemplateError):
    """A step did not succeed. ``reason`` is its FailureReason; ``exception_type`` the RetryPolicy
    exception type it counts as (None for failures SageMaker does not retry, like a script error)."""

    def __init__(self, reason: str, exception_type: str | None = None, log_path: Path | None = None):
        super().__init__(reason)
        self.reason = reason
        self.exception_type = exception_type
        self.log_path = log_path


@dataclass(frozen=True)
class JobEnvironment:
    """Where jobs keep their sandboxes and data, the most CPUs one job instance may want, and the
    budget every job running at once shares (None: the job's own budget of ``cpus``)."""

    store: ObjectStore
    jobs_dir: Path
    cpus: int = 1
    stop: threading.Event | None = None  # set when the execution is interrupted: start no process
    budget: CpuBudget | None = None

    def cpu_budget(self) -> CpuBudget:
        return self.budget if self.budget is not None else CpuBudget(self.cpus)


def now() -> datetime:
    return datetime.now(timezone.utc)


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{kind}/{name.lower()}"


def container_path(path: str, where: str) -> str:
    if not (isinstance(path, str) and path.startswith(CONTAINER_ROOT + "/")):
        raise StepFailure(f"{where} {path!r} is not under {CONTAINER_ROOT}/, where SageMaker requires it")
    if ".." in path.split("/"):
        raise StepFailure(f"{where} {path!r} contains '..'")
    return path


# ---- processes


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A job whose runner is killed (even with SIGKILL) is killed too, so no orphan keeps writing.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_process(
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float | None,
    stop: threading.Event | None = None,
    group: ProcessGroup | None = None,
) -> int:
    """Run a job's process with its output in ``log_path``; its exit status (negative: a signal).

    StepFailure with RESOURCE_LIMIT when it cannot be started; a timeout stops it and fails the step
    as MaxRuntimeExceeded, which SageMaker does not retry.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    inherited = _resident_kib("self", "VmRSS")
    with open(log_path, "ab") as log, _live_lock:
        # Started under the lock that end_jobs takes: a process is either refused or ended by it.
        if stop is not None and stop.is_set():
            raise StepFailure("stopped by an interrupt", None, log_path)
        try:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError as err:
            raise StepFailure(
                f"could not start {command[0]!r}: {err.strerror}", RESOURCE_LIMIT, log_path
            ) from None
        _live.add(process)
    if group is not None:
        group.add(process)
    started = time.monotonic()
    try:
        status, peak = _wait(process, timeout, inherited)
        _record_usage(log_path.parent / USAGE_FILE, status, time.monotonic() - started, peak)
        return status
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise StepFailure(
            f"MaxRuntimeExceeded: the job ran longer than its {timeout:.0f} s limit (StoppingCondition)",
            None,
            log_path,
        ) from None
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        with _live_lock:
            _live.discard(process)


_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()

#: Beside a job's log: one JSON line per process it ran, with its wall time and peak resident memory
#: (what benchmarks/scale.py reports per step).
USAGE_FILE = "usage.jsonl"


def _resident_kib(pid: int | str, field: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` of a process from /proc, in KiB (None where there is no /proc, or the
    process has ended)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


#: When a job process's own high-water mark is first read, and then how often, while it runs.
PEAK_FIRST_SAMPLE_SECONDS = 0.05
PEAK_SAMPLE_SECONDS = 0.2


def _wait(
    process: subprocess.Popen, timeout: float | None, inherited_kib: int | None = None
) -> tuple[int, float | None]:
    """The process's exit status and peak resident MiB (None where the OS does not say);
    TimeoutExpired, with the process killed, after ``timeout`` seconds.

    wait4's ru_maxrss alone overstates a small job: Linux carries the high-water mark across exec,
    and a forked child starts with the runner's resident pages, so ``python -c pass`` started by a
    600 MiB runner reports 600 MiB. Above what the runner held when it started the job
    (``inherited_kib``), ru_maxrss is the job's own peak; at or below it, the job's own ``VmHWM``,
    read every PEAK_SAMPLE_SECONDS while it runs, stands in (growth in its last moments is missed)."""
    if not hasattr(os, "wait4"):
        return process.wait(timeout=timeout), None
    expired, ended = threading.Event(), threading.Event()
    sampled = [0]

    def sample() -> None:
        # The first reading waits a little: before its exec, the child's VmHWM is the runner's.
        delay = PEAK_FIRST_SAMPLE_SECONDS
        while not ended.wait(delay):
            own = _resident_kib(process.pid, "VmHWM")
            if own is not None:
                sampled[0] = max(sampled[0], own)
            delay = PEAK_SAMPLE_SECONDS

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = None
    if timeout is not None:

        def expire() -> None:
            expired.set()
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        ended.set()
        if timer is not None:
            timer.cancel()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if expired.is_set():
        raise subprocess.TimeoutExpired(process.args, timeout)
    if sys.platform == "darwin":  # bytes there, and no inherited high-water mark
        return process.returncode, usage.ru_maxrss / 2**20
    peak_kib = usage.ru_maxrss
    if inherited_kib is not None and peak_kib <= inherited_kib * 1.05 + 1024:
        peak_kib = sampled[0] or None
    return process.returncode, (peak_kib / 2**10 if peak_kib else None)


def _record_usage(path: Path, status: int, seconds: float, peak: float | None) -> None:
    line = json.dumps({"status": status, "seconds": round(seconds, 3), "peak_mib": peak})
    with _log_lock, contextlib.suppress(OSError), open(path, "a") as handle:
        handle.write(line + "\n")


class ProcessGroup:
    """The processes of one job's instances: when one instance fails the others are ended, as
    their collective would otherwise wait for it until it times out."""

    def __init__(self):
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen] = []
        self.ended = False

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.append(process)
            if self.ended:
                with contextlib.suppress(OSError):
                    process.kill()

    def end(self) -> None:
        with self._lock:
            self.ended = True
            for process in self._processes:
                with contextlib.suppress(OSError):
                    process.kill()


def end_jobs() -> None:
    """Kill every job process still running (the runner was interrupted); their steps then fail."""
    with _live_lock:
        for process in _live:
            with contextlib.suppress(OSError):
                process.kill()


def exit_failure(status: int, what: str, log_path: Path, failure_file: Path | None = None) -> StepFailure:
    """The StepFailure for a job process that ended with ``status`` != 0."""
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.Signals._value2member_map_ else -status
        return StepFailure(
            f"InternalServerError: {what} was killed by signal {name}; see {log_path}",
            JOB_INTERNAL_ERROR,
            log_path,
        )
    message = ""
    if failure_file is not None and failure_file.is_file():
        message = failure_file.read_text(errors="replace").strip()
    if not message:
        message = last_line(log_path)
    return StepFailure(f"AlgorithmError: {what} exited with status {status}: {message}", None, log_path)


def last_line(log_path: Path) -> str:
    """The last non-empty line of a log (what a script prints just before it fails)."""
    with contextlib.suppress(OSError):
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "(no output)"


def _base_environment() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# ---- inputs and outputs


def fetch_input(
    store: ObjectStore, uri: str, destination: Path, what: str, shard: tuple[int, int] | None = None
) -> int:
    try:
        count = store.fetch(uri, destination, shard)
    except StoreError as err:
        raise StepFailure(f"{what}: {err}") from None
    except OSError as err:
        raise StepFailure(f"{what}: reading {uri} from the local store: {err}", SERVICE_FAULT) from None
    if count == 0 and (shard is None or shard[0] == 0):
        raise StepFailure(f"{what}: no object at {uri} in the local object store ({store.root})")
    return count


def upload_output(store: ObjectStore, source: Path, uri: str, what: str) -> None:
    try:
        if source.is_dir():
            store.put_tree(source, uri)
    except StoreError as err:
        raise StepFailure(f"{what}: {err}") from None
    except OSError as err:
        raise StepFailure(f"{what}: writing {uri} to the local store: {err}", SERVICE_FAULT) from None


def extract_archive(data: bytes, destination: Path, what: str) -> None:
    """Unpack a tar(.gz) under the shared archive rules (steps/tar_guard.py)."""
    try:
        extract_tar(data, destination, what)
    except UnsafeArchiveError as err:
        raise StepFailure(str(err)) from None


def fresh_directory(path: Path) -> None:
    """An empty directory at ``path``. A job run again under its name (the retry of an execution)
    starts clean, as a new container does, not among the inputs and outputs of the earlier run."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


# ---- running an entry point in a sandbox


@dataclass(frozen=True)
class EntryPoint:
    """What one job instance runs: the command as the container would run it, its working
    directory (a container path; None for the sandbox itself), and the variables it adds."""

    command: list[str]
    workdir: str | None = None
    environment: dict[str, str] = field(default_factory=dict)


def run_entry_point(
    sandbox: Sandbox,
    entry: EntryPoint,
    log_path: Path,
    timeout: float | None,
    stop: threading.Event | None = None,
    group: ProcessGroup | None = None,
) -> int:
    """Start the entry point with the sandbox as its /opt/ml; its exit status (none is started once
    ``stop`` is set)."""
    workdir = entry.workdir if entry.workdir is not None else str(sandbox.root)
    command, cwd = sandbox.command(sandbox.seen(entry.command), workdir)
    process_env = _base_environment()
    process_env.update(sandbox.seen(entry.environment))
    return run_process(
        command, cwd=cwd, env=process_env, log_path=log_path, timeout=timeout, stop=stop, group=group
    )


_log_lock = threading.Lock()


def _log_command(log_path: Path, host: str, command: Sequence[str]) -> None:
    with _log_lock:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            log.write(f"---- {host}: {' '.join(command)}\n")


def instance_log(log_path: Path, hosts: Sequence[str], index: int) -> Path:
    """Where instance ``index`` writes its output: the job's log itself when it is the only one.
    With several, each has a log of its own beside the job's (SageMaker gives each instance a log
    stream of its own), so that a failure's last line is the failing instance's; they are merged
    into the job's log, in host order, once every instance has ended."""
    return log_path if len(hosts) == 1 else log_path.with_name(f"log-{hosts[index]}.txt")


def merge_instance_logs(log_path: Path, hosts: Sequence[str]) -> None:
    if len(hosts) == 1:
        return
    with open(log_path, "ab") as merged:
        for index in range(len(hosts)):
            with (
                contextlib.suppress(FileNotFoundError),
                open(instance_log(log_path, hosts, index), "rb") as part,
            ):
                shutil.copyfileobj(part, merged)


def _run_all(worker: Callable[[int], None], count: int, cpus: int) -> None:
    """Run ``worker(i)`` for every instance, ``cpus`` at a time at most (the others queue); the first
    failure is raised after all end."""
    if count == 1:
        worker(0)
        return
    with ThreadPoolExecutor(max_workers=max(1, min(count, cpus))) as pool:
        futures = [pool.submit(worker, index) for index in range(count)]
    for future in futures:
        future.result()


def _run_together(worker: Callable[[int, ProcessGroup], None], count: int) -> None:
    """Run ``worker(i, group)`` for every instance at once (a distributed job's instances wait for
    each other); the first to fail ends the others, and its failure is the one raised."""
    if count == 1:
        worker(0, ProcessGroup())
        return
    group = ProcessGroup()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        try:
            worker(index, group)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread below
            with lock:
                failures.append(err)
            group.end()

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


@contextlib.contextmanager
def _cpus(env: JobEnvironment, budget: CpuBudget, instances: int, want: int):
    try:
        with budget.lease(instances, want, env.stop) as cpus:
            yield cpus
    except BudgetStopped:
        raise StepFailure("stopped by an interrupt") from None


def _runtime(image: str) -> Runtime:
    runtime = runtime_for(image)
    if runtime is None:
        raise StepFailure(unknown_image(image))
    return runtime


# ---- processing


def processing_job(
    name: str, arguments: Mapping[str, Any], env: JobEnvironment, warn: Callable[[str], None] | None = None
) -> dict:
    """Run a processing job (CreateProcessingJob arguments, resolved); DescribeProcessingJob answer.
    ``warn`` hears of output objects that more than one instance wrote."""
    started = now()
    runtime = _runtime(arguments["AppSpecification"]["ImageUri"])
    count = int(arguments["ProcessingResources"]["ClusterConfig"].get("InstanceCount", 1))
    hosts = [f"algo-{index + 1}" for index in range(count)]
    job_dir = env.jobs_dir / name
    log_path = job_dir / "log.txt"
    timeout = arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    isolation = support()
    sandboxes = [Sandbox(job_dir / host, isolation) for host in hosts]
    entry = processing_entry_point(arguments, runtime)
    budget = env.cpu_budget()

    def instance(index: int) -> None:
        prepare_processing_sandbox(sandboxes[index], arguments, env.store, hosts, index)
        own_log = instance_log(log_path, hosts, index)
        _log_command(own_log, hosts[index], entry.command)
        # Each instance holds one CPU of the budget while it runs: processing code (pandas) is
        # mostly single-threaded, and independent steps keep running side by side. A processing
        # container gets no SM_NUM_CPUS; OpenMP's own variable caps the threads of numeric
        # libraries instead, unless the job's Environment sets it.
        with _cpus(env, budget, 1, 1) as cpus:
            environment = {"OMP_NUM_THREADS": str(cpus), **entry.environment}
            instance_entry = EntryPoint(entry.command, entry.workdir, environment)
            status = run_entry_point(sandboxes[index], instance_entry, own_log, timeout, env.stop)
        if status != 0:
            failure = sandboxes[index].local(f"{CONTAINER_ROOT}/output/message")
            raise exit_failure(status, f"processing job {name} ({hosts[index]})", own_log, failure)

    fresh_directory(job_dir)
    try:
        _run_all(instance, count, env.cpus)
    finally:
        merge_instance_logs(log_path, hosts)
    writers: dict[str, str] = {}
    clashes = []
    for host, sandbox in zip(hosts, sandboxes, strict=True):
        for uri in collect_processing_outputs(sandbox, arguments, env.store):
            if uri in writers:
                clashes.append((writers[uri], host, uri))
            writers[uri] = host
    if clashes and warn is not None:
        # Every instance uploads its LocalPath to the output's one S3Uri (botocore's
        # ProcessingS3Output has one per output, not per instance); what S3 keeps when two write
        # the same key is not documented for processing jobs. Here the last host's copy stays.
        first, second, uri = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        warn(
            f"instances {first} and {second} both wrote {uri}{more}: the local store keeps {writers[uri]}'s; "
            "which one SageMaker keeps is not documented, so give each instance's output files names of "
            "their own"
        )
    return describe_processing_job(name, arguments, started, now())


def prepare_processing_sandbox(
    sandbox: Sandbox, arguments: Mapping[str, Any], store: ObjectStore, hosts: list[str], index: int
) -> None:
    """Inputs at their LocalPath (this instance's shard of a ShardedByS3Key input), empty output
    folders, and the container's config files."""
    for item in arguments.get("ProcessingInputs", []):
        source = item.get("S3Input")
        what = f"input {item.get('InputName')!r}"
        local = sandbox.local(container_path(source["LocalPath"], f"{what} LocalPath"))
        shard = (index, len(hosts)) if source.get("S3DataDistributionType") == "ShardedByS3Key" else None
        fetch_input(store, source["S3Uri"], local, what, shard)
    for output in arguments.get("ProcessingOutputConfig", {}).get("Outputs", []):
        where = f"output {output.get('OutputName')!r} LocalPath"
        sandbox.local(container_path(output["S3Output"]["LocalPath"], where)).mkdir(
            parents=True, exist_ok=True
        )
    config_dir = sandbox.local(f"{CONTAINER_ROOT}/config")
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "resourceconfig.json").write_text(
        json.dumps({"current_host": hosts[index], "hosts": hosts})
    )
    (config_dir / "processingjobconfig.json").write_text(json.dumps(arguments, default=str))


def processing_entry_point(arguments: Mapping[str, Any], runtime: Runtime) -> EntryPoint:
    """ContainerEntrypoint + ContainerArguments with the image's interpreter, and Environment."""
    app = arguments["AppSpecification"]
    entrypoint = app.get("ContainerEntrypoint")
    if not entrypoint:
        raise StepFailure(
            f"image {app['ImageUri']} has no local default entry point; set ContainerEntrypoint"
        )
    command = runtime.command(list(entrypoint) + list(app.get("ContainerArguments", [])))
    return EntryPoint(command, None, dict(arguments.get("Environment", {})))


def collect_processing_outputs(
    sandbox: Sandbox, arguments: Mapping[str, Any], store: ObjectStore
) -> list[str]:
    """Each output's LocalPath to its S3Uri (EndOfJob upload); the URIs of the objects written."""
    written = []
    for output in arguments.get("ProcessingOutputConfig", {}).get("Outputs", []):
        s3 = output["S3Output"]
        source = sandbox.local(s3["LocalPath"])
        if source.is_dir():
            prefix = s3["S3Uri"].rstrip("/")
            written += [
                f"{prefix}/{file.relative_to(source).as_posix()}"
                for file in source.rglob("*")
                if file.is_file() and not file.is_symlink()
            ]
        upload_output(store, source, s3["S3Uri"], f"output {output.get('OutputName')!r}")
    return written


def describe_processing_job(
    name: str, arguments: Mapping[str, Any], started: datetime, ended: datetime
) -> dict:
    return {
        "ProcessingJobName": name,
        "ProcessingJobArn": arn("processing-job", name),
        "ProcessingJobStatus": "Completed",
        "ProcessingInputs": arguments.get("ProcessingInputs", []),
        "ProcessingOutputConfig": arguments.get("ProcessingOutputConfig", {"Outputs": []}),
        "ProcessingResources": arguments["ProcessingResources"],
        "AppSpecification": arguments["AppSpecification"],
        "Environment": arguments.get("Environment", {}),
        "RoleArn": arguments.get("RoleArn"),
        "StoppingCondition": arguments.get("StoppingCondition", {}),
        "NetworkConfig": arguments.get("NetworkConfig", {}),
        "ProcessingStartTime": started.isoformat(),
        "ProcessingEndTime": ended.isoformat(),
        "ExitMessage": "",
    }


# ---- training


#: Hyperparameters the SDK and SageMaker add for their own use, not passed to the script.
def _is_reserved(name: str) -> bool:
    return name.startswith("sagemaker_") or name.startswith("_")


def _hyperparameter(value: Any) -> str:
    # SDK v2 definitions JSON-encode hyperparameter strings ('"train.py"'); v3 writes them plain.
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        with contextlib.suppress(json.JSONDecodeError):
            decoded = json.loads(value)
            if isinstance(decoded, str):
                return decoded
    return str(value)


@dataclass(frozen=True)
class TrainingSetup:
    """What the sandbox was given: the channels (inputdataconfig.json) and the hyperparameters."""

    channels: dict[str, dict]
    hyperparameters: dict[str, str]

    @property
    def user_hyperparameters(self) -> dict[str, str]:
        return {key: value for key, value in self.hyperparameters.items() if not _is_reserved(key)}


def training_job(name: str, arguments: Mapping[str, Any], env: JobEnvironment) -> dict:
    """Run a training job (CreateTrainingJob arguments, resolved); DescribeTrainingJob answer."""
    started = now()
    algorithm = arguments["AlgorithmSpecification"]
    runtime = _runtime(algorithm.get("TrainingImage"))
    # Checked again here: an image given by a parameter is only known once the step runs.
    if runtime.is_builtin_algorithm and algorithm.get("MetricDefinitions"):
        raise StepFailure(override_refused(algorithm.get("TrainingImage")))
    count = training_instance_count(arguments)
    hosts = [f"algo-{index + 1}" for index in range(count)]
    job_dir = env.jobs_dir / name
    log_path = job_dir / "log.txt"
    fresh_directory(job_dir)
    isolation = support()
    sandboxes = [Sandbox(job_dir / host, isolation) for host in hosts]
    setups = [
        prepare_training_sandbox(sandbox, arguments, env.store, hosts, index)
        for index, sandbox in enumerate(sandboxes)
    ]
    timeout = arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    # A distributed job's instances meet at a collective tracker on the first host. Here every
    # host is this machine, so the tracker listens on loopback, on a port of its own (jobs run
    # side by side); the variables are the dmlc launchers' convention, which steps/train.py reads.
    tracker = {"DMLC_TRACKER_URI": "127.0.0.1", "DMLC_TRACKER_PORT": str(free_port())} if count > 1 else {}

    with _cpus(env, env.cpu_budget(), count, env.cpus) as cpus:

        def instance(index: int, group: ProcessGroup) -> None:
            sandbox = sandboxes[index]
            entry = training_entry_point(
                sandbox, arguments, runtime, setups[index], env.store, cpus, hosts, index
            )
            entry = EntryPoint(entry.command, entry.workdir, {**entry.environment, **tracker})
            own_log = instance_log(log_path, hosts, index)
            _log_command(own_log, hosts[index], entry.command)
            status = run_entry_point(sandbox, entry, own_log, timeout, env.stop, group)
            if status != 0 and not (group.ended and status < 0):
                failure = sandbox.local(f"{CONTAINER_ROOT}/output/failure")
                what = f"training job {name}" + (f" ({hosts[index]})" if count > 1 else "")
                raise exit_failure(status, what, own_log, failure)
            if status != 0:  # ended because another instance failed first: that failure is raised
                raise StepFailure(f"training job {name} ({hosts[index]}) was ended", None, log_path)

        try:
            _run_together(instance, count)
        finally:
            merge_instance_logs(log_path, hosts)
    # The first host is the one that saves the model (steps/train.py, and the XGBoost container's
    # distributed example): its model directory is the job's artifact.
    model_uri = collect_training_outputs(sandboxes[0], name, arguments, env.store)
    metrics = final_metrics(log_path, training_metrics(runtime, algorithm))
    return describe_training_job(name, arguments, model_uri, metrics, started, now())


#: Instances one local training job may ask for, standing in for the account's SageMaker quota
#: (CreateTrainingJob has no maximum of its own: botocore's ResourceConfig.InstanceCount has only
#: "min": 0; the account-level quotas refuse more). 4 was the default of "Number of instances
#: across all training jobs" (awsdocs/amazon-sagemaker-developer-guide issue 70); set the
#: variable to your account's quota.
TRAINING_INSTANCE_QUOTA_VARIABLE = "MLOPS_LOCAL_TRAINING_INSTANCE_QUOTA"
DEFAULT_TRAINING_INSTANCE_QUOTA = 4


def training_instance_quota() -> int:
    text = os.environ.get(TRAINING_INSTANCE_QUOTA_VARIABLE, "")
    try:
        return max(1, int(text)) if text else DEFAULT_TRAINING_INSTANCE_QUOTA
    except ValueError:
        return DEFAULT_TRAINING_INSTANCE_QUOTA


def instance_count_problem(count: Any, instance_type: Any) -> str | None:
    """Why SageMaker would refuse a training job of ``count`` instances, or None."""
    if not isinstance(count, int) or isinstance(count, bool):
        return None  # known only at run time; checked then
    if count < 1:
        # 0 is the API's minimum only for heterogeneous clusters (InstanceGroups), which do not
        # run locally.
        return f"ResourceConfig.InstanceCount {count}: a training job needs at least 1 instance"
    quota = training_instance_quota()
    if count > quota:
        kind = instance_type if isinstance(instance_type, str) else "ml instance"
        # SageMaker's own wording for CreateTrainingJob over a quota (ResourceLimitExceeded).
        return (
            f"ResourceLimitExceeded: The account-level service limit '{kind} for training job usage' "
            f"is {quota} Instances, with current utilization of 0 Instances and a request delta of "
            f"{count} Instances. Please use AWS Service Quotas to request an increase for this quota "
            f"(locally: {TRAINING_INSTANCE_QUOTA_VARIABLE})."
        )
    return None


def training_instance_count(arguments: Mapping[str, Any]) -> int:
    resources = arguments.get("ResourceConfig", {})
    count = resources.get("InstanceCount", 1)
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    problem = instance_count_problem(count, resources.get("InstanceType"))
    if problem is None and not isinstance(count, int):
        problem = f"ResourceConfig.InstanceCount {count!r} is not a whole number"
    if problem is not None:
        limit = problem.startswith("ResourceLimitExceeded")
        raise StepFailure(problem, RESOURCE_LIMIT if limit else None)
    return count


def free_port() -> int:
    """A TCP port free on loopback now (the tracker binds it a moment later)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_training_sandbox(
    sandbox: Sandbox,
    arguments: Mapping[str, Any],
    store: ObjectStore,
    hosts: Sequence[str] = ("algo-1",),
    index: int = 0,
) -> TrainingSetup:
    """The channels under /opt/ml/input/data (this instance's shard of a ShardedByS3Key channel)
    and the three files under /opt/ml/input/config."""
    ml = sandbox.ml
    for directory in ("model", "output/data", "input/config", "code"):
        (ml / directory).mkdir(parents=True, exist_ok=True)
    algorithm = arguments["AlgorithmSpecification"]
    channels = {}
    for channel in arguments.get("InputDataConfig", []):
        channel_name = channel["ChannelName"]
        source = channel["DataSource"]["S3DataSource"]
        sharded = source.get("S3DataDistributionType") == "ShardedByS3Key" and len(hosts) > 1
        shard = (index, len(hosts)) if sharded else None
        fetch_input(
            store, source["S3Uri"], ml / "input/data" / channel_name, f"channel {channel_name!r}", shard
        )
        channels[channel_name] = {
            "ContentType": channel.get("ContentType", ""),
            "TrainingInputMode": channel.get("InputMode", algorithm.get("TrainingInputMode", "File")),
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
    hyperparameters = {
        key: _hyperparameter(value) for key, value in arguments.get("HyperParameters", {}).items()
    }
    resource = {"current_host": hosts[index], "hosts": list(hosts), "network_interface_name": "eth0"}
    config = ml / "input/config"
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=1))
    (config / "resourceconfig.json").write_text(json.dumps(resource))
    (config / "inputdataconfig.json").write_text(json.dumps(channels, indent=1))
    return TrainingSetup(channels, hyperparameters)


def training_entry_point(
    sandbox: Sandbox,
    arguments: Mapping[str, Any],
    runtime: Runtime,
    setup: TrainingSetup,
    store: ObjectStore,
    cpus: int,
    hosts: Sequence[str] = ("algo-1",),
    index: int = 0,
) -> EntryPoint:
    """Script mode (``sagemaker_program`` from the submitted code, run in /opt/ml/code as the
    training toolkit runs it) or the image's built-in algorithm."""
    algorithm = arguments["AlgorithmSpecification"]
    hyperparameters = setup.hyperparameters
    user = setup.user_hyperparameters
    program = hyperparameters.get("sagemaker_program") or algorithm.get("ContainerEntrypoint")
    environment = _training_environment(setup.channels, user, cpus, hosts, index)
    environment.update(arguments.get("Environment", {}))
    if isinstance(program, str):
        code_dir = _submit_directory(hyperparameters, sandbox, store)
        if not sandbox.local(f"{code_dir}/{program}").is_file():
            raise StepFailure(
                f"sagemaker_program {program!r} is not in the submitted code ({sandbox.local(code_dir)})"
            )
        argv = [item for key, value in user.items() for item in (f"--{key}", value)]
        environment.update(
            SM_MODULE_DIR=code_dir,
            SM_USER_ENTRY_POINT=program,
            SM_USER_ARGS=json.dumps(argv),
            PYTHONPATH=code_dir,
        )
        # The toolkits start the entry point in the code directory (aws/sagemaker-training-toolkit
        # src/sagemaker_training/process.py: cwd=environment.code_dir, /opt/ml/code).
        return EntryPoint([sys.executable, f"{code_dir}/{program}", *argv], code_dir, environment)
    if runtime.algorithm is not None and program is None:
        environment["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        return EntryPoint([sys.executable, "-m", runtime.algorithm], None, environment)
    raise StepFailure(
        f"image {algorithm.get('TrainingImage')} has no built-in algorithm locally; give sagemaker_program"
    )


def training_metrics(runtime: Runtime, algorithm: Mapping[str, Any]) -> tuple[MetricPattern, ...]:
    """The patterns SageMaker reads the job's metrics with: a built-in algorithm image's own, or
    the job's MetricDefinitions."""
    if runtime.algorithm_metrics is not None:
        return runtime.algorithm_metrics
    return custom_metrics(algorithm.get("MetricDefinitions", []))


def collect_training_outputs(
    sandbox: Sandbox, name: str, arguments: Mapping[str, Any], store: ObjectStore
) -> str:
    """/opt/ml/model as ``model.tar.gz`` (and /opt/ml/output/data as ``output.tar.gz``) under the
    output path; the model's URI."""
    ml = sandbox.ml
    output_path = arguments["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    model_uri = f"{output_path}/{name}/output/model.tar.gz"
    try:
        store.put_bytes(model_uri, tar_directory(ml / "model"))
        if any((ml / "output/data").iterdir()):
            store.put_bytes(f"{output_path}/{name}/output/output.tar.gz", tar_directory(ml / "output/data"))
    except OSError as err:
        raise StepFailure(f"writing the model to {model_uri}: {err}", SERVICE_FAULT) from None
    return model_uri


def describe_training_job(
    name: str,
    arguments: Mapping[str, Any],
    model_uri: str,
    metrics: Mapping[str, float],
    started: datetime,
    ended: datetime,
) -> dict:
    seconds = max(1, int((ended - started).total_seconds()))
    return {
        "TrainingJobName": name,
        "TrainingJobArn": arn("training-job", name),
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": model_uri},
        "HyperParameters": arguments.get("HyperParameters", {}),
        "AlgorithmSpecification": arguments["AlgorithmSpecification"],
        "InputDataConfig": arguments.get("InputDataConfig", []),
        "OutputDataConfig": arguments["OutputDataConfig"],
        "ResourceConfig": arguments.get("ResourceConfig", {}),
        "StoppingCondition": arguments.get("StoppingCondition", {}),
        "RoleArn": arguments.get("RoleArn"),
        "FinalMetricDataList": [
            {"MetricName": metric, "Value": value, "Timestamp": ended.isoformat()}
            for metric, value in metrics.items()
        ],
        "TrainingStartTime": started.isoformat(),
        "TrainingEndTime": ended.isoformat(),
        "TrainingTimeInSeconds": seconds,
        "BillableTimeInSeconds": seconds,
        "EnableNetworkIsolation": arguments.get("EnableNetworkIsolation", False),
    }


def _training_environment(
    channels: Mapping[str, dict],
    user: Mapping[str, str],
    cpus: int,
    hosts: Sequence[str] = ("algo-1",),
    index: int = 0,
) -> dict[str, str]:
    """The SM_* variables of the SageMaker training toolkit, as container paths."""
    ml = CONTAINER_ROOT
    host = hosts[index]
    env = {
        "SM_MODEL_DIR": f"{ml}/model",
        "SM_INPUT_DIR": f"{ml}/input",
        "SM_INPUT_CONFIG_DIR": f"{ml}/input/config",
        "SM_OUTPUT_DIR": f"{ml}/output",
        "SM_OUTPUT_DATA_DIR": f"{ml}/output/data",
        "SM_OUTPUT_INTERMEDIATE_DIR": f"{ml}/output/intermediate",
        "SM_CHANNELS": json.dumps(sorted(channels)),
        # The toolkit JSON-decodes each value ("3" -> 3, "true" -> true); the argv stays text.
        "SM_HPS": json.dumps({key: _decoded(value) for key, value in user.items()}),
        "SM_HOSTS": json.dumps(list(hosts)),
        "SM_CURRENT_HOST": host,
        "SM_NUM_CPUS": str(cpus),
        "SM_NUM_GPUS": "0",
        "SM_LOG_LEVEL": "20",
        "SM_RESOURCE_CONFIG": json.dumps({"current_host": host, "hosts": list(hosts)}),
        "SM_INPUT_DATA_CONFIG": json.dumps(channels),
        "SM_NETWORK_INTERFACE_NAME": "eth0",
    }
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = f"{ml}/input/data/{channel}"
    for key, value in user.items():
        env[f"SM_HP_{key.upper()}"] = value
    return env


def _decoded(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _submit_directory(hyperparameters: Mapping[str, str], sandbox: Sandbox, store: ObjectStore) -> str:
    """The container folder holding the script-mode code: a container directory (a channel), or
    an s3:// tar.gz unpacked into /opt/ml/code as the training toolkit does."""
    submit = hyperparameters.get("sagemaker_submit_directory", f"{CONTAINER_ROOT}/code")
    if submit.startswith("s3://"):
        code_dir = f"{CONTAINER_ROOT}/code"
        try:
            data = store.get_bytes(submit)
        except (StoreError, NotFoundError) as err:
            raise StepFailure(f"sagemaker_submit_directory: {err}") from None
        extract_archive(data, sandbox.local(code_dir), f"sagemaker_submit_directory {submit}")
        return code_dir
    return container_path(submit, "sagemaker_submit_directory")


def tar_directory(directory: Path) -> bytes:
    """A gzipped tar of the directory's files at their relative paths (what SageMaker uploads)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()

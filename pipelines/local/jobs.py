"""SageMaker processing and training jobs run as local processes, keeping the container contracts.

Each job gets a sandbox directory that mirrors the container's ``/opt/ml`` tree; every
``/opt/ml/...`` path in its entry point, arguments and environment is rewritten into the sandbox.
Inputs come from the local object store, outputs go back to it, and the job's answer is shaped
like DescribeProcessingJob / DescribeTrainingJob so that step properties read as on SageMaker.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.errors import NotFoundError, TemplateError
from pipelines.local.runtimes import Runtime, runtime_for, unknown_image
from pipelines.local.store import ObjectStore, StoreError

CONTAINER_ROOT = "/opt/ml"
LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"

# Exception types of SageMaker's RetryPolicy that local failures map to.
JOB_INTERNAL_ERROR = "SageMaker.JOB_INTERNAL_ERROR"
RESOURCE_LIMIT = "SageMaker.RESOURCE_LIMIT"
SERVICE_FAULT = "Step.SERVICE_FAULT"

_NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


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
    """Where jobs keep their sandboxes and data, and how many CPUs one job may use."""

    store: ObjectStore
    jobs_dir: Path
    cpus: int = 1
    stop: threading.Event | None = None  # set when the execution is interrupted: start no process


def now() -> datetime:
    return datetime.now(timezone.utc)


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{kind}/{name.lower()}"


def rewrite(value: Any, sandbox: Path) -> Any:
    """Every string starting with ``/opt/ml`` pointed into the sandbox instead."""
    if isinstance(value, str) and (value == CONTAINER_ROOT or value.startswith(CONTAINER_ROOT + "/")):
        return str(sandbox) + value
    if isinstance(value, list):
        return [rewrite(item, sandbox) for item in value]
    if isinstance(value, dict):
        return {key: rewrite(item, sandbox) for key, item in value.items()}
    return value


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
) -> int:
    """Run a job's process with its output in ``log_path``; its exit status (negative: a signal).

    StepFailure with RESOURCE_LIMIT when it cannot be started; a timeout stops it and fails the step
    as MaxRuntimeExceeded, which SageMaker does not retry.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
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
    try:
        return process.wait(timeout=timeout)
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
    """Unpack a tar(.gz) refusing absolute names, ``..`` and links leaving ``destination``."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            archive.extractall(destination, filter="data")
    except tarfile.FilterError as err:
        raise StepFailure(f"{what}: refused a hostile archive member: {err}") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise StepFailure(f"{what}: not a readable tar archive: {err}") from None


def fresh_directory(path: Path) -> None:
    """An empty directory at ``path``. A job run again under its name (the retry of an execution)
    starts clean, as a new container does, not among the inputs and outputs of the earlier run."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


# ---- processing


def processing_job(name: str, arguments: Mapping[str, Any], env: JobEnvironment) -> dict:
    """Run a processing job (CreateProcessingJob arguments, resolved); DescribeProcessingJob answer."""
    started = now()
    app = arguments["AppSpecification"]
    runtime = _runtime(app["ImageUri"])
    entrypoint = app.get("ContainerEntrypoint")
    if not entrypoint:
        raise StepFailure(
            f"image {app['ImageUri']} has no local default entry point; set ContainerEntrypoint"
        )
    cluster = arguments["ProcessingResources"]["ClusterConfig"]
    count = int(cluster.get("InstanceCount", 1))
    hosts = [f"algo-{index + 1}" for index in range(count)]
    job_dir = env.jobs_dir / name
    log_path = job_dir / "log.txt"
    timeout = arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])

    def worker(index: int) -> None:
        sandbox = job_dir / hosts[index]
        for item in arguments.get("ProcessingInputs", []):
            source = item.get("S3Input")
            what = f"input {item.get('InputName')!r}"
            local = sandbox / container_path(source["LocalPath"], f"{what} LocalPath").lstrip("/")
            shard = (index, count) if source.get("S3DataDistributionType") == "ShardedByS3Key" else None
            fetch_input(env.store, source["S3Uri"], local, what, shard)
        for output in outputs:
            where = f"output {output.get('OutputName')!r} LocalPath"
            local = container_path(output["S3Output"]["LocalPath"], where)
            (sandbox / local.lstrip("/")).mkdir(parents=True, exist_ok=True)
        config_dir = sandbox / "opt/ml/config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({"current_host": hosts[index], "hosts": hosts})
        )
        (config_dir / "processingjobconfig.json").write_text(json.dumps(arguments, default=str))
        process_env = _base_environment()
        process_env.update(rewrite(dict(arguments.get("Environment", {})), sandbox))
        command = runtime.command(
            rewrite(list(entrypoint) + list(app.get("ContainerArguments", [])), sandbox)
        )
        with _log_lock:
            with open(log_path, "a") as log:
                log.write(f"---- {hosts[index]}: {' '.join(command)}\n")
        status = run_process(
            command, cwd=sandbox, env=process_env, log_path=log_path, timeout=timeout, stop=env.stop
        )
        if status != 0:
            raise exit_failure(
                status, f"processing job {name} ({hosts[index]})", log_path, sandbox / "opt/ml/output/message"
            )

    fresh_directory(job_dir)
    _run_all(worker, count, env.cpus)
    for index in range(count):
        for output in outputs:
            s3 = output["S3Output"]
            local = job_dir / hosts[index] / s3["LocalPath"].lstrip("/")
            upload_output(env.store, local, s3["S3Uri"], f"output {output.get('OutputName')!r}")
    ended = now()
    return {
        "ProcessingJobName": name,
        "ProcessingJobArn": arn("processing-job", name),
        "ProcessingJobStatus": "Completed",
        "ProcessingInputs": arguments.get("ProcessingInputs", []),
        "ProcessingOutputConfig": arguments.get("ProcessingOutputConfig", {"Outputs": []}),
        "ProcessingResources": arguments["ProcessingResources"],
        "AppSpecification": app,
        "Environment": arguments.get("Environment", {}),
        "RoleArn": arguments.get("RoleArn"),
        "StoppingCondition": arguments.get("StoppingCondition", {}),
        "NetworkConfig": arguments.get("NetworkConfig", {}),
        "ProcessingStartTime": started.isoformat(),
        "ProcessingEndTime": ended.isoformat(),
        "ExitMessage": "",
    }


_log_lock = threading.Lock()


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


def _runtime(image: str) -> Runtime:
    runtime = runtime_for(image)
    if runtime is None:
        raise StepFailure(unknown_image(image))
    return runtime


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


def training_job(name: str, arguments: Mapping[str, Any], env: JobEnvironment) -> dict:
    """Run a training job (CreateTrainingJob arguments, resolved); DescribeTrainingJob answer."""
    started = now()
    algorithm = arguments["AlgorithmSpecification"]
    image = algorithm.get("TrainingImage")
    runtime = _runtime(image)
    job_dir = env.jobs_dir / name
    sandbox = job_dir / "algo-1"
    log_path = job_dir / "log.txt"
    ml = sandbox / "opt/ml"
    fresh_directory(job_dir)
    for directory in ("model", "output/data", "input/config", "code"):
        (ml / directory).mkdir(parents=True, exist_ok=True)

    channels = {}
    for channel in arguments.get("InputDataConfig", []):
        channel_name = channel["ChannelName"]
        source = channel["DataSource"]["S3DataSource"]
        fetch_input(env.store, source["S3Uri"], ml / "input/data" / channel_name, f"channel {channel_name!r}")
        channels[channel_name] = {
            "ContentType": channel.get("ContentType", ""),
            "TrainingInputMode": channel.get("InputMode", algorithm.get("TrainingInputMode", "File")),
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
    hyperparameters = {
        key: _hyperparameter(value) for key, value in arguments.get("HyperParameters", {}).items()
    }
    resource = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
    config = ml / "input/config"
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=1))
    (config / "resourceconfig.json").write_text(json.dumps(resource))
    (config / "inputdataconfig.json").write_text(json.dumps(channels, indent=1))

    user = {key: value for key, value in hyperparameters.items() if not _is_reserved(key)}
    program = hyperparameters.get("sagemaker_program") or algorithm.get("ContainerEntrypoint")
    process_env = _base_environment()
    process_env.update(_training_environment(ml, channels, hyperparameters, user, env.cpus))
    process_env.update(rewrite(dict(arguments.get("Environment", {})), sandbox))
    if program is not None and isinstance(program, str):
        code_dir = _submit_directory(hyperparameters, sandbox, env.store)
        script = code_dir / program
        if not script.is_file():
            raise StepFailure(f"sagemaker_program {program!r} is not in the submitted code ({code_dir})")
        argv = [item for key, value in user.items() for item in (f"--{key}", value)]
        command = [sys.executable, str(script), *argv]
        process_env["SM_MODULE_DIR"] = str(code_dir)
        process_env["SM_USER_ENTRY_POINT"] = program
        process_env["SM_USER_ARGS"] = json.dumps(argv)
        process_env["PYTHONPATH"] = str(code_dir)
        cwd = code_dir
        metric_definitions = algorithm.get("MetricDefinitions", [])
    elif runtime.algorithm is not None and program is None:
        command = [sys.executable, "-m", runtime.algorithm]
        cwd = sandbox
        metric_definitions = algorithm.get("MetricDefinitions") or builtin_metric_definitions()
        process_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    else:
        raise StepFailure(f"image {image} has no built-in algorithm locally; give sagemaker_program")

    timeout = arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    job_dir.mkdir(parents=True, exist_ok=True)
    status = run_process(command, cwd=cwd, env=process_env, log_path=log_path, timeout=timeout, stop=env.stop)
    if status != 0:
        raise exit_failure(status, f"training job {name}", log_path, ml / "output/failure")

    output_path = arguments["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    model_uri = f"{output_path}/{name}/output/model.tar.gz"
    try:
        env.store.put_bytes(model_uri, tar_directory(ml / "model"))
        if any((ml / "output/data").iterdir()):
            env.store.put_bytes(
                f"{output_path}/{name}/output/output.tar.gz", tar_directory(ml / "output/data")
            )
    except OSError as err:
        raise StepFailure(f"writing the model to {model_uri}: {err}", SERVICE_FAULT) from None
    ended = now()
    metrics = final_metrics(log_path, metric_definitions)
    seconds = max(1, int((ended - started).total_seconds()))
    return {
        "TrainingJobName": name,
        "TrainingJobArn": arn("training-job", name),
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": model_uri},
        "HyperParameters": arguments.get("HyperParameters", {}),
        "AlgorithmSpecification": algorithm,
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
    ml: Path,
    channels: Mapping[str, dict],
    hyperparameters: Mapping[str, str],
    user: Mapping[str, str],
    cpus: int,
) -> dict[str, str]:
    """The SM_* variables of the SageMaker training toolkit, pointing into the sandbox."""
    env = {
        "SM_MODEL_DIR": str(ml / "model"),
        "SM_INPUT_DIR": str(ml / "input"),
        "SM_INPUT_CONFIG_DIR": str(ml / "input/config"),
        "SM_OUTPUT_DIR": str(ml / "output"),
        "SM_OUTPUT_DATA_DIR": str(ml / "output/data"),
        "SM_OUTPUT_INTERMEDIATE_DIR": str(ml / "output/intermediate"),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        # The toolkit JSON-decodes each value ("3" -> 3, "true" -> true); the argv stays text.
        "SM_HPS": json.dumps({key: _decoded(value) for key, value in user.items()}),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_CPUS": str(cpus),
        "SM_NUM_GPUS": "0",
        "SM_LOG_LEVEL": "20",
        "SM_RESOURCE_CONFIG": json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}),
        "SM_INPUT_DATA_CONFIG": json.dumps(channels),
        "SM_NETWORK_INTERFACE_NAME": "eth0",
    }
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(ml / "input/data" / channel)
    for key, value in user.items():
        env[f"SM_HP_{key.upper()}"] = value
    return env


def _decoded(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _submit_directory(hyperparameters: Mapping[str, str], sandbox: Path, store: ObjectStore) -> Path:
    """Where the script-mode code is: a container directory (a channel), or an s3:// tar.gz unpacked
    into /opt/ml/code as the training toolkit does."""
    submit = hyperparameters.get("sagemaker_submit_directory", "/opt/ml/code")
    if submit.startswith("s3://"):
        code_dir = sandbox / "opt/ml/code"
        try:
            data = store.get_bytes(submit)
        except (StoreError, NotFoundError) as err:
            raise StepFailure(f"sagemaker_submit_directory: {err}") from None
        extract_archive(data, code_dir, f"sagemaker_submit_directory {submit}")
        return code_dir
    return Path(rewrite(container_path(submit, "sagemaker_submit_directory"), sandbox))


def tar_directory(directory: Path) -> bytes:
    """A gzipped tar of the directory's files at their relative paths (what SageMaker uploads)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()


def builtin_metric_definitions() -> list[dict]:
    """The metrics SageMaker's built-in XGBoost publishes: ``train:<m>`` / ``validation:<m>`` from
    its ``[i]#011train-<m>:<v>#011validation-<m>:<v>`` log lines."""
    return [
        {"Name": "{channel}:{metric}", "Regex": rf"(?:#011|\t)(train|validation)-([\w@.-]+?):({_NUMBER})"}
    ]


def final_metrics(log_path: Path, definitions: list[Mapping[str, str]]) -> dict[str, float]:
    """Each metric's last value in the log, as SageMaker's FinalMetricDataList reports it."""
    values: dict[str, float] = {}
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return values
    for definition in definitions:
        pattern = re.compile(definition["Regex"])
        for line in text.splitlines():
            for match in pattern.finditer(line):
                if definition["Name"] == "{channel}:{metric}":
                    values[f"{match.group(1)}:{match.group(2)}"] = float(match.group(3))
                else:
                    with contextlib.suppress(ValueError, IndexError):
                        values[definition["Name"]] = float(match.group(1))
    return values

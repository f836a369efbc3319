"""Local endpoints: named server processes on 127.0.0.1 that outlive the command that started them.

Each endpoint lives in ``<home>/endpoints/<name>/``: its record ``endpoint.json`` (written atomically), the
server's log ``server.log``, and the extracted model ``model-<sha256[:12]>/``. A lock file per name makes
commands on the same endpoint from several processes take turns. Statuses follow SageMaker's
DescribeEndpoint: ``InService``, ``Stopped``, ``Failed`` (a start that never became healthy, or a server
that died on its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pipelines
from pipelines.errors import ConfigError, NotFoundError, TemplateError, did_you_mean
from pipelines.local.store import ObjectStore
from pipelines.local_home import ENDPOINTS, OBJECT_STORE, local_home
from pipelines.serving.artifacts import extract_model

IN_SERVICE, STOPPED, FAILED = "InService", "Stopped", "Failed"
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOCK_TIMEOUT_S = 120.0  # longer than any one start or stop holds the lock
RECORD = "endpoint.json"
#: Under the local home, one folder per stage account (``<account id>-<region>``), each a local home
#: of its own for the endpoints ``promote`` starts in that stage.
LOG = "server.log"
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # SageMaker's EndpointName rule
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What runs the server: the same Python and the same checkout of the package as this process.
_PACKAGE_ROOT = str(Path(pipelines.__file__).resolve().parents[1])
# Servers this process started: kept so that each is reaped (no zombies) and never warned about as
# "still running" when its Popen object would otherwise be collected.
_children: dict[int, subprocess.Popen] = {}


class EndpointError(TemplateError):
    """An endpoint could not be started, replaced or reached; the message says why and names the log."""

    exit_code = 1


@dataclass(frozen=True)
class Endpoint:
    """One local endpoint as ``list``/``get`` see it, with its live status."""

    name: str
    url: str
    port: int
    pid: int | None
    model_data_url: str
    started_at: str
    status: str
    model_dir: str
    log: str
    failure_reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class LocalEndpoints:
    """Start, list, describe and stop the local endpoints kept under ``home`` (default: the local home).

    ``model_data_url`` is an ``s3://`` URI in the local object store (``<home>/s3``) or a path to a
    ``model.tar.gz``; ``environment`` is added to the server's environment, as a SageMaker model's
    ``Environment`` is to its container (``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` is honoured).
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        handler_module: str = "steps.inference",
        start_timeout: float = START_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
    ):
        self.home = Path(home).resolve() if home is not None else local_home()
        self.root = self.home / ENDPOINTS
        self.store = ObjectStore(self.home / OBJECT_STORE)
        self.handler_module = handler_module
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout

    # ------------------------------------------------------------------------------------------ operations

    def start(
        self, name: str, model_data_url: str, port: int, environment: Mapping[str, str] | None = None
    ) -> Endpoint:
        """Serve the model at ``model_data_url`` on ``127.0.0.1:port`` and return once ``/ping`` answers 200.

        A running endpoint of the same name is replaced: stopped, then the new model started. If the new
        one does not become healthy, the previous model is started again on its port and EndpointError
        says what went wrong (with the last line of the server's log). A port held by another process is
        an EndpointError naming it; an unsafe archive an ArtifactError naming the member.
        """
        _check_name(name)
        port = _check_port(port)
        environment = _check_environment(environment)
        archive = self._read_artifact(model_data_url)
        folder = self.root / name
        model_dir = folder / f"model-{hashlib.sha256(archive).hexdigest()[:12]}"
        with self._lock(name):
            old = self._read(name)
            old_live = old is not None and old["state"] == "running" and _alive(old["pid"], old["started"])
            # Everything that can fail before the server starts fails before the old one is touched.
            if not (old_live and old["port"] == port):
                self._check_port_free(port)
            if not model_dir.is_dir():
                try:
                    extract_model(archive, model_dir)
                except BaseException:
                    if old is None:  # leave no trace of an endpoint that never was
                        shutil.rmtree(folder, ignore_errors=True)
                    raise
            if old_live:
                self._terminate(old["pid"], old["started"])
                # A server this process did not start is seen gone once its main thread is; its socket
                # may close a moment later.
                self._wait_port_free(old["port"])
            record = {
                "name": name,
                "port": port,
                "model_data_url": model_data_url,
                "model_dir": str(model_dir),
                "environment": environment,
            }
            try:
                self._launch(record)
            except EndpointError as err:
                if not old_live:
                    failed = {"state": "failed", "pid": None, "started": None, "started_at": _now()}
                    self._write({**record, **failed, "failure_reason": str(err)})
                    raise
                outcome = self._restore(old)
                self._prune(folder, keep=Path(old["model_dir"]))
                raise EndpointError(f"{err}; {outcome}") from None
            self._write(record)
            self._prune(folder, keep=model_dir)
        return self._endpoint(record)

    def get(self, name: str) -> Endpoint:
        """The endpoint ``name`` with its live status; NotFoundError when there is none."""
        _check_name(name)
        record = self._read(name)
        if record is None:
            known = [endpoint.name for endpoint in self.list()]
            raise NotFoundError(
                f"no local endpoint named {name!r} under {self.root}.{did_you_mean(name, known)} "
                f"Known: {', '.join(known) or 'none'}"
            )
        return self._endpoint(record)

    def list(self) -> list[Endpoint]:
        """Every endpoint, by name, with its live status (a server that died shows as Failed)."""
        if not self.root.is_dir():
            return []
        records = (self._read(path.parent.name) for path in sorted(self.root.glob(f"*/{RECORD}")))
        return [self._endpoint(record) for record in records if record is not None]

    def stop(self, name: str) -> Endpoint:
        """Stop the endpoint's server (SIGTERM, then SIGKILL after the stop timeout); a stopped one stays
        stopped. NotFoundError when there is no such endpoint."""
        self.get(name)
        with self._lock(name):
            record = self._read(name)
            if record["state"] == "running":
                self._terminate(record["pid"], record["started"])
            if record["state"] != "stopped":
                record = {**record, "state": "stopped", "pid": None, "started": None, "failure_reason": None}
                self._write(record)
        return self._endpoint(record)

    # ------------------------------------------------------------------------------------------ processes

    def _launch(self, record: dict) -> None:
        """Spawn the server for ``record`` and wait for /ping; fills in pid, start time and state."""
        folder = self.root / record["name"]
        log_path = folder / LOG
        command = [
            sys.executable, "-m", "pipelines.serving.server",
            "--model-dir", record["model_dir"], "--port", str(record["port"]), "--host", HOST,
            "--handler-module", self.handler_module,
        ]  # fmt: skip
        env = {**os.environ, **record["environment"], "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        started_at = _now()
        with open(log_path, "ab") as log:
            banner = f"--- {started_at} starting {record['model_data_url']} on port {record['port']}\n"
            log.write(banner.encode())
            log.flush()
            process = subprocess.Popen(
                command,
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: it outlives this command and its terminal
            )
        _children[process.pid] = process
        try:
            self._wait_healthy(record["name"], process, record["port"], log_path)
        except BaseException:
            self._terminate(process.pid, None)
            raise
        record.update(
            pid=process.pid,
            started=_start_time(process.pid),
            started_at=started_at,
            state="running",
            failure_reason=None,
        )

    def _wait_healthy(self, name: str, process: subprocess.Popen, port: int, log_path: Path) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = process.poll()
            if code is not None:
                raise EndpointError(
                    f"endpoint {name!r}: the server exited with code {code} before /ping answered; "
                    f"its log {log_path} ends with: {_last_line(log_path)}"
                )
            if _ping(port) and process.poll() is None:
                return
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"endpoint {name!r}: /ping on port {port} did not answer 200 within "
                    f"{self.start_timeout:.0f} s; its log {log_path} ends with: {_last_line(log_path)}"
                )
            time.sleep(0.05)

    def _restore(self, old: dict) -> str:
        """Start the previous model again after a failed replacement; says how that went."""
        try:
            self._launch(old)
        except EndpointError as err:
            self._write({**old, "state": "failed", "pid": None, "started": None, "failure_reason": str(err)})
            return f"restarting the previous model {old['model_data_url']} failed too: {err}"
        self._write(old)
        return f"the previous model {old['model_data_url']} serves again on port {old['port']}"

    def _terminate(self, pid: int | None, started: int | None) -> None:
        """SIGTERM the server's process group, SIGKILL it after the stop timeout; reap it if ours."""
        if pid is None or not _alive(pid, started):
            return
        for sig, grace in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)  # start_new_session made the server the leader of its own group
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not _alive(pid, started):
                    _children.pop(pid, None)
                    return
                time.sleep(0.02)
        _children.pop(pid, None)

    def _wait_port_free(self, port: int) -> None:
        deadline = time.monotonic() + self.stop_timeout
        while not _port_free(port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _check_port_free(self, port: int) -> None:
        if _port_free(port):
            return
        holders = [e.name for e in self.list() if e.port == port and e.status == IN_SERVICE]
        who = f"local endpoint {holders[0]!r}" if holders else "another process"
        raise EndpointError(f"port {port} on {HOST} is already in use by {who}; pick another port")

    # ------------------------------------------------------------------------------------------ records

    def _read_artifact(self, model_data_url: str) -> bytes:
        if model_data_url.startswith("s3://"):
            return self.store.get_bytes(model_data_url)
        path = Path(model_data_url).expanduser()
        if not path.is_file():
            raise NotFoundError(
                f"model data {model_data_url!r} is neither an s3:// URI in the local object store nor a file"
            )
        return path.read_bytes()

    def _read(self, name: str) -> dict | None:
        path = self.root / name / RECORD
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError as err:
            raise ConfigError(
                f"endpoint record {path} is not valid JSON ({err}); delete it to start over"
            ) from None

    def _write(self, record: dict) -> None:
        # Write then rename: a concurrent list() sees the old record or the new one, never half of one.
        folder = self.root / record["name"]
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{RECORD}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2)
            os.replace(tmp, folder / RECORD)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _endpoint(self, record: dict) -> Endpoint:
        state, pid = record["state"], record.get("pid")
        status = {"running": IN_SERVICE, "stopped": STOPPED}.get(state, FAILED)
        reason = record.get("failure_reason")
        log_path = self.root / record["name"] / LOG
        if state == "running" and not _alive(pid, record.get("started")):
            status, reason = FAILED, f"the server process (pid {pid}) is no longer running; see {log_path}"
        return Endpoint(
            name=record["name"],
            url=f"http://{HOST}:{record['port']}",
            port=record["port"],
            pid=pid if status == IN_SERVICE else None,
            model_data_url=record["model_data_url"],
            started_at=record.get("started_at") or "",
            status=status,
            model_dir=record["model_dir"],
            log=str(log_path),
            failure_reason=reason,
        )

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "a") as handle:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EndpointError(
                            f"endpoint {name!r} is being changed by another command (lock {handle.name}); "
                            "try again when it is done"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _prune(folder: Path, keep: Path) -> None:
        """Remove the models (and interrupted extractions) the endpoint no longer serves."""
        for path in folder.iterdir():
            if path != keep and path.is_dir() and path.name.startswith(("model-", ".model-")):
                shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- helpers


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"endpoint name {name!r} is not valid: up to 63 letters, digits and '-', "
            "starting and ending with a letter or digit"
        )


def _check_port(port) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port {port!r} is not a port number (1-65535)")
    return port


def _check_environment(environment: Mapping[str, str] | None) -> dict[str, str]:
    environment = dict(environment or {})
    bad = [
        key
        for key, value in environment.items()
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key) or not isinstance(value, str)
    ]
    if bad:
        raise ConfigError(
            f"environment: {', '.join(map(repr, bad))} must be NAME=text pairs (NAME: letters, digits, '_')"
        )
    return environment


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _ping(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (from /proc), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, started: int | None) -> bool:
    """Whether the process ``pid`` still runs and is the one that started at ``started``."""
    if pid is None:
        return False
    child = _children.get(pid)
    if child is not None:
        # Our own child: its pid cannot be reused before we reap it, and poll() reaps it.
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    stat_path = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():  # no /proc (macOS): the pid alone has to do
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = stat_path.read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    # "Z": exited and not yet reaped, or its main thread has returned while other threads finish: either
    # way it no longer serves.
    if fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return "(no log)"
    lines = [line for line in lines if line]
    return lines[-1] if lines else "(empty log)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

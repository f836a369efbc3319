"""Benchmark of the project's local endpoint against ``mlflow models serve`` on the same model, under wrk.

    python benchmarks/endpoint.py [--duration 10] [--warmup 2] [--keep DIR]

Run it with the project's Python (the venv that has the project installed). One run does everything:

1. set-up when something is missing: ``benchmarks/setup_endpoint_benchmark.sh`` installs wrk (apt-get) and
   MLflow in its own venv, ``benchmarks/.venv-mlflow``, so MLflow's dependencies stay out of the project's;
2. trains one model the way the project does: ``steps/preprocess.py`` on the bundled churn table, then
   ``steps/train.py`` (its defaults, eval_metric auc, the schema channel) -> ``xgboost-model.json`` and
   ``schema.json``;
3. saves that same booster as an MLflow model (``mlflow.xgboost.save_model``, in the MLflow venv);
4. starts both servers on free local ports, each in its own process group:
   ``python -m pipelines.serving.server --model-dir DIR --port N --host 127.0.0.1`` (project venv) and
   ``mlflow models serve -m MODEL -p N -h 127.0.0.1 --env-manager local`` with MLflow's default workers;
5. waits for both ``GET /ping`` to answer 200, sends each the first test row (label dropped) as a
   ``text/csv`` POST to ``/invocations`` and checks the two predictions agree to 1e-5. MLflow 3 parses CSV
   with ``pandas.read_csv``, which takes the first line as the header: it refuses the bare row (400), so it
   is sent the same row after a header line of the encoded column names (from the preprocess schema);
6. runs wrk against each server in turn, never both at once: single-row CSV POSTs at concurrency 1
   (``-t1 -c1``) and 8 (``-t2 -c8``), a short warm-up then ``--duration`` seconds, ``--latency``; p50/p99
   come from a Lua ``done()`` (``latency:percentile``, microseconds); any non-2xx answer or socket error
   fails the run;
7. runs wrk once more against the local endpoint with a raw record (the first churn.csv row without its
   label, which the handler encodes with schema.json): ``local-raw``, reported beside MLflow's encoded-row
   figures but not held to the goals, since MLflow is not sent raw records;
8. prints a table (server, concurrency, requests/s, p50 ms, p99 ms), the local/MLflow throughput ratios
   against the goals (>= 8x at both concurrencies; local p99 < 10 ms at concurrency 8), the machine and
   versions.

Both servers are always stopped (their whole process groups), and the scratch folder removed unless --keep.
About a minute with the defaults once set up (the first set-up installs MLflow: a minute or two more).

wrk and both servers share this machine's CPUs, the same way for both servers; the figures are for comparing
the two here, not absolute capacity. ``--server-module`` runs another module in place of
``pipelines.serving.server`` (same arguments), to try a variant of the local endpoint.
"""

from __future__ import annotations

import argparse
import csv
import io
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
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
SETUP = HERE / "setup_endpoint_benchmark.sh"
MLFLOW_VENV = HERE / ".venv-mlflow"
MLFLOW_PYTHON = MLFLOW_VENV / "bin" / "python"
SETUP_MARKER = MLFLOW_VENV / ".benchmark-ready"  # written by the set-up script once its installs succeeded
MODEL_FILENAME = "xgboost-model.json"

CONCURRENCY = {1: 1, 8: 2}  # connections -> wrk threads (-t1 -c1, -t2 -c8)
TOLERANCE = 1e-5
GOAL_RATIO = 8.0
GOAL_P99_MS = 10.0
GOAL_P99_CONCURRENCY = 8
OTHER_CPU_WARNING = 0.05  # share of the CPUs used by other processes during a run: warned about
BUSY_WARNING = 0.15  # CPU share busy with no load on the servers above which a warning is printed

_SAVE_MLFLOW_MODEL = """
import sys
import mlflow.xgboost
import xgboost as xgb

booster = xgb.Booster()
booster.load_model(sys.argv[1])
mlflow.xgboost.save_model(booster, sys.argv[2], model_format="json")
"""

_VERSIONS = """
import json, sys
from importlib import metadata

def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

print(json.dumps({"python": sys.version.split()[0], **{n: version(n) for n in sys.argv[1:]}}))
"""


class BenchmarkError(RuntimeError):
    """The benchmark cannot produce valid figures; the message says why."""


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    log: Path
    body: bytes = b""
    content_type: str = "text/csv"


@dataclass
class Result:
    server: str
    connections: int
    threads: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    other_cpu: float  # share of all CPUs that processes other than this benchmark's used meanwhile


# ------------------------------------------------------------------------------------------ set-up


def ensure_setup() -> None:
    if shutil.which("wrk") and SETUP_MARKER.exists() and MLFLOW_PYTHON.exists():
        return
    print(f"set-up: running {SETUP.relative_to(ROOT)} (wrk and/or the MLflow venv are missing)", flush=True)
    subprocess.run(["bash", str(SETUP)], check=True)


def run_quiet(command: list[str], what: str, **kwargs) -> str:
    """Run a command; on failure raise with its output, which is otherwise not shown."""
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise BenchmarkError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{output}")
    return done.stdout


# ------------------------------------------------------------------------------------------ the model


def train_model(work: Path) -> tuple[Path, str, list[str]]:
    """preprocess + train as the project does (schema.json beside the model, as the pipeline puts it).

    Returns the model dir, the first test row's features (label dropped, text as written) and their names.
    """
    pre, model = work / "pre", work / "model"
    run_quiet(
        [
            sys.executable,
            str(ROOT / "steps" / "preprocess.py"),
            "--input",
            str(ROOT / "data" / "churn" / "churn.csv"),
            "--spec",
            str(ROOT / "pipelines" / "churn" / "dataset.json"),
            "--output-dir",
            str(pre),
        ],
        "preprocess",
    )
    log = run_quiet(
        [
            sys.executable,
            str(ROOT / "steps" / "train.py"),
            "--train",
            str(pre / "train"),
            "--validation",
            str(pre / "validation"),
            "--model-dir",
            str(model),
            "--schema",
            str(pre / "schema"),
            "--eval_metric",
            "auc",
        ],
        "train",
    )
    best = [line for line in log.splitlines() if line.startswith("[best]")]
    print(f"model: trained with steps/train.py: {log.splitlines()[0]}; {best[-1] if best else ''}".strip())
    test_files = sorted((pre / "test").glob("*.csv"))
    if not test_files:
        raise BenchmarkError(f"preprocess wrote no test CSV under {pre / 'test'}")
    with test_files[0].open() as handle:
        first = handle.readline().rstrip("\r\n")
    label, _, features = first.partition(",")
    if not features:
        raise BenchmarkError(f"the first test row has no features: {first!r}")
    columns = json.loads((pre / "schema" / "schema.json").read_text())["csv_columns"][1:]
    if len(columns) != features.count(",") + 1:
        raise BenchmarkError(
            f"schema names {len(columns)} features, the test row has {features.count(',') + 1}"
        )
    return model, features, columns


def raw_record() -> str:
    """The first row of the bundled churn table without its label: a customer as the table holds one."""
    with (ROOT / "data" / "churn" / "churn.csv").open(newline="") as handle:
        header, first = next(csv.reader(handle)), next(csv.reader(handle))
    spec = json.loads((ROOT / "pipelines" / "churn" / "dataset.json").read_text())
    label = header.index(spec["label"])
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(first[:label] + first[label + 1 :])
    return out.getvalue()


def save_mlflow_model(model_dir: Path, work: Path) -> Path:
    target = work / "mlflow-model"
    run_quiet(
        [str(MLFLOW_PYTHON), "-c", _SAVE_MLFLOW_MODEL, str(model_dir / MODEL_FILENAME), str(target)],
        "mlflow.xgboost.save_model",
    )
    return target


# ------------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(name: str, command: list[str], port: int, log: Path, env: dict) -> Server:
    handle = log.open("wb")
    try:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() ends its workers too
        )
    finally:
        handle.close()
    return Server(name=name, url=f"http://127.0.0.1:{port}", process=process, log=log)


def stop(server: Server) -> None:
    """End the server's whole process group: SIGTERM to its children first (so the leader, e.g. the
    ``mlflow`` CLI waiting on its uvicorn, reaps them rather than leaving orphans), then to the group, then
    SIGKILL to whatever is left; the leader is reaped here."""
    pgid = server.process.pid

    def gone(pids: list[int] | None = None) -> bool:
        alive = [pid for pid, _ in group_members(pgid) if pids is None or pid in pids]
        return not alive and (pids is not None or server.process.poll() is not None)

    def wait_until(done, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if done():
                return True
            time.sleep(0.1)
        return done()

    children = [pid for pid, _ in group_members(pgid) if pid != pgid]
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if children:
        wait_until(lambda: gone(children), 10.0)
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if wait_until(gone, grace):
            break
    try:
        server.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def group_members(pgid: int) -> list[tuple[int, str]]:
    """Live (pid, command line) of the processes in a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        members.append((int(entry.name), cmdline))
    return sorted(members)


def log_tail(server: Server, lines: int = 30) -> str:
    try:
        return "\n".join(server.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(server: Server, timeout: float = 180.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            raise BenchmarkError(
                f"{server.name} exited (code {server.process.returncode}) before /ping answered; "
                f"its log {server.log}:\n{log_tail(server)}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    raise BenchmarkError(
        f"{server.name}: /ping did not answer 200 within {timeout:.0f} s:\n{log_tail(server)}"
    )


def invoke(server: Server, body: bytes, content_type: str = "text/csv") -> tuple[int, str]:
    request = urllib.request.Request(
        f"{server.url}/invocations", data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def first_prediction(text: str) -> float:
    """The first prediction of a CSV answer (``0.08\\n``) or MLflow's JSON (``{"predictions": [0.08]}``)."""
    stripped = text.strip()
    try:
        document = json.loads(stripped)
    except ValueError:
        document = None
    if isinstance(document, dict) and "predictions" in document:
        document = document["predictions"]
    while isinstance(document, list) and document:
        document = document[0]
    if isinstance(document, dict) and len(document) == 1:
        document = next(iter(document.values()))
    if isinstance(document, (int, float)) and not isinstance(document, bool):
        return float(document)
    return float(re.split(r"[,\s]", stripped, maxsplit=1)[0])


def prediction_of(
    server: Server, body: bytes, content_type: str = "text/csv"
) -> tuple[int, str, float | None]:
    status, text = invoke(server, body, content_type)
    value = None
    if status == 200:
        try:
            value = first_prediction(text)
        except ValueError:
            value = None
    return status, text, value


def server_processes(server: Server) -> str:
    members = group_members(server.process.pid)
    return f"{len(members)} process{'es' if len(members) != 1 else ''} in its group"


def mlflow_workers(server: Server) -> str:
    """The uvicorn worker count MLflow chose, from the command it logs."""
    match = re.search(r"Running command '([^']*)'", server.log.read_text(errors="replace"))
    if not match:
        return "unknown (MLflow did not log its command)"
    workers = re.search(r"--workers (\d+)", match.group(1))
    count = workers.group(1) if workers else "uvicorn's default (1)"
    return f"{count} uvicorn worker(s): {match.group(1).removeprefix('exec ')}"


# ------------------------------------------------------------------------------------------ wrk


def lua_string(text: str) -> str:
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 32 or ord(char) > 126:
            out.extend(f"\\{byte}" for byte in char.encode())
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def wrk_script(path: Path, body: bytes, content_type: str) -> Path:
    path.write_text(
        f"""-- written by benchmarks/endpoint.py: one POST /invocations, the same body every time
wrk.method = "POST"
wrk.path = "/invocations"
wrk.body = {lua_string(body.decode())}
wrk.headers["Content-Type"] = {lua_string(content_type)}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d "
      .. "status=%d connect=%d read=%d write=%d timeout=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""
    )
    return path


def run_wrk(server: Server, script: Path, connections: int, seconds: int) -> dict:
    threads = CONCURRENCY[connections]
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    command += ["-s", str(script), server.url]
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    match = re.search(r"^BENCH_RESULT (.*)$", output, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise BenchmarkError(f"wrk failed (exit {done.returncode}) against {server.name}:\n{output}")
    figures = {key: int(value) for key, value in (item.split("=") for item in match.group(1).split())}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    figures["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    socket_errors = {k: figures[k] for k in ("connect", "read", "write", "timeout") if figures[k]}
    if figures["non2xx"] or figures["status"] or socket_errors or not figures["requests"]:
        raise BenchmarkError(
            f"{server.name} at concurrency {connections}: {figures['requests']} requests, "
            f"{max(figures['non2xx'], figures['status'])} non-2xx responses, "
            f"socket errors {socket_errors or 0}; "
            f"the figures would be meaningless. wrk said:\n{output}\n{server.name}'s log:\n{log_tail(server)}"
        )
    figures["output"] = output
    return figures


def cpu_ticks_of_others(own_groups: set[int]) -> dict[int, int]:
    """utime + stime (clock ticks) of every live process outside ``own_groups`` (process group ids)."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) not in own_groups:
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def measure(
    server: Server, script: Path, connections: int, duration: int, warmup: int, own_groups: set[int]
) -> Result:
    if warmup > 0:
        run_wrk(server, script, connections, warmup)
    before, started = cpu_ticks_of_others(own_groups), time.monotonic()
    figures = run_wrk(server, script, connections, duration)
    after, elapsed = cpu_ticks_of_others(own_groups), time.monotonic() - started
    other_ticks = sum(max(0, t - before.get(pid, 0)) for pid, t in after.items())
    other_cpu = other_ticks / os.sysconf("SC_CLK_TCK") / (elapsed * len(os.sched_getaffinity(0)))
    seconds = figures["duration_us"] / 1e6
    return Result(
        server=server.name,
        connections=connections,
        threads=CONCURRENCY[connections],
        requests=figures["requests"],
        seconds=seconds,
        rps=figures["requests"] / seconds,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        other_cpu=other_cpu,
    )


# ------------------------------------------------------------------------------------------ report


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat), anything running counted."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def check_quiet(when: str) -> str:
    """One line on how busy the machine is while no server is loaded; warns when other work would skew."""
    busy = cpu_busy()
    line = f"CPU busy {busy:.0%} {when}, load average {os.getloadavg()[0]:.2f}"
    if busy > BUSY_WARNING:
        line += ": WARNING other work is using the CPUs, the figures will be low and noisy"
    return line


def versions() -> tuple[dict, dict]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    project = {"python": sys.version.split()[0], **{n: version(n) for n in ("xgboost", "uvicorn")}}
    mlflow_env = json.loads(
        run_quiet([str(MLFLOW_PYTHON), "-c", _VERSIONS, "mlflow", "xgboost", "uvicorn", "pandas"], "versions")
    )
    return project, mlflow_env


def describe(env: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in env.items() if value)


def report(results: list[Result], local_name: str, mlflow_name: str) -> bool:
    print()
    print(
        f"{'server':<10} {'concurrency':>11} {'wrk':>8} {'requests/s':>11} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'other CPU':>9}"
    )
    for r in results:
        wrk = f"-t{r.threads} -c{r.connections}"
        print(
            f"{r.server:<10} {r.connections:>11} {wrk:>8} {r.rps:>11.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
            f" {r.requests:>9} {r.other_cpu:>9.0%}"
        )
    print()
    disturbed = [f"{r.server} c{r.connections}" for r in results if r.other_cpu > OTHER_CPU_WARNING]
    if disturbed:
        print(
            f"WARNING: other processes used more than {OTHER_CPU_WARNING:.0%} of the CPUs during "
            f"{', '.join(disturbed)}: those figures are skewed; rerun on a quiet machine"
        )
    by = {(r.server, r.connections): r for r in results}
    ok = True
    for connections in CONCURRENCY:
        local, mlflow = by[(local_name, connections)], by[(mlflow_name, connections)]
        ratio = local.rps / mlflow.rps
        met = ratio >= GOAL_RATIO
        ok &= met
        print(
            f"concurrency {connections}: local/mlflow requests/s = "
            f"{local.rps:.1f}/{mlflow.rps:.1f} = {ratio:.2f}x "
            f"(goal >= {GOAL_RATIO:g}x: {'met' if met else 'MISSED'}); "
            f"p99 {local.p99_ms:.2f} ms vs {mlflow.p99_ms:.2f} ms"
        )
    for connections in CONCURRENCY:
        raw, mlflow = by.get(("local-raw", connections)), by[(mlflow_name, connections)]
        if raw is not None:  # reported, not a goal: MLflow is not sent raw records
            print(
                f"concurrency {connections}: local raw record/mlflow encoded row requests/s = "
                f"{raw.rps:.1f}/{mlflow.rps:.1f} = {raw.rps / mlflow.rps:.2f}x; p99 {raw.p99_ms:.2f} ms"
            )
    p99 = by[(local_name, GOAL_P99_CONCURRENCY)].p99_ms
    met = p99 < GOAL_P99_MS
    ok &= met
    print(
        f"local p99 at concurrency {GOAL_P99_CONCURRENCY}: {p99:.2f} ms "
        f"(goal < {GOAL_P99_MS:g} ms: {'met' if met else 'MISSED'})"
    )
    print(f"goals: {'all met' if ok else 'NOT all met'}")
    return ok


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of each measured wrk run (default 10)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="seconds of the discarded wrk run before each")
    parser.add_argument("--keep", type=Path, help="keep the model, the MLflow model, logs and scripts here")
    parser.add_argument(
        "--server-module",
        default="pipelines.serving.server",
        help="the local endpoint's module, run as python -m MODULE (default pipelines.serving.server)",
    )
    args = parser.parse_args()
    if args.duration < 1 or args.warmup < 0:
        parser.error("--duration must be >= 1 and --warmup >= 0")
    # A plain `kill` of the benchmark still stops both servers: SystemExit runs the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    began = time.perf_counter()
    ensure_setup()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="endpoint-bench-"))
    servers: list[Server] = []
    try:
        project_versions, mlflow_versions = versions()
        print(f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable); scratch {work}")
        print(f"project env ({sys.executable}): {describe(project_versions)}")
        print(f"mlflow env ({MLFLOW_PYTHON}): {describe(mlflow_versions)}")
        print(f"wrk: {subprocess.run(['wrk', '-v'], capture_output=True, text=True).stdout.splitlines()[0]}")

        model_dir, row, columns = train_model(work)
        mlflow_model = save_mlflow_model(model_dir, work)

        local_port, mlflow_port = free_port(), free_port()
        while mlflow_port == local_port:
            mlflow_port = free_port()
        project_env = dict(os.environ)
        project_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        local_command = [sys.executable, "-m", args.server_module, "--model-dir", str(model_dir)]
        local_command += ["--port", str(local_port), "--host", "127.0.0.1"]
        # MLflow runs `uvicorn` from PATH, so its venv's bin goes first (as an activated venv would have it);
        # its worker setting is left at MLflow's default: no --workers, no MLFLOW_MODELS_WORKERS.
        mlflow_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_MODELS_WORKERS", "PYTHONPATH")}
        mlflow_env["PATH"] = os.pathsep.join([str(MLFLOW_VENV / "bin"), os.environ.get("PATH", "")])
        mlflow_env["VIRTUAL_ENV"] = str(MLFLOW_VENV)
        mlflow_command = [str(MLFLOW_VENV / "bin" / "mlflow"), "models", "serve", "-m", str(mlflow_model)]
        mlflow_command += ["-p", str(mlflow_port), "-h", "127.0.0.1", "--env-manager", "local"]

        local = start("local", local_command, local_port, work / "local-server.log", project_env)
        servers.append(local)
        mlflow = start("mlflow", mlflow_command, mlflow_port, work / "mlflow-server.log", mlflow_env)
        servers.append(mlflow)
        for server in servers:
            seconds = wait_ready(server)
            print(f"{server.name}: /ping 200 after {seconds:.1f} s at {server.url}")

        # The same features to both. MLflow's CSV parser (pandas.read_csv) takes the first line as the header,
        # so a headerless row is tried first and, if MLflow refuses it, sent after a header line.
        row_body = row.encode()
        status, text, local_value = prediction_of(local, row_body)
        if local_value is None:
            raise BenchmarkError(f"local endpoint answered {status} for the CSV row: {text[:2000]}")
        local.body = row_body
        print(
            f"request: the first test row without its label, {len(columns)} features, {len(row_body)} bytes"
        )
        print(f"local  : text/csv, headerless row -> {status} {text.strip()[:200]!r}")
        status, text, mlflow_value = prediction_of(mlflow, row_body)
        if mlflow_value is not None and abs(mlflow_value - local_value) <= TOLERANCE:
            mlflow.body = row_body
            print(f"mlflow : text/csv, headerless row (the same body) -> {status} {text.strip()[:200]!r}")
        else:
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(columns)
            mlflow.body = (header.getvalue() + row + "\n").encode()
            first = text.strip().replace("\n", " ")
            print(
                f"mlflow : text/csv, headerless row -> {status} (refused: "
                f"{first[:160]}{'...' if len(first) > 160 else ''})"
            )
            status, text, mlflow_value = prediction_of(mlflow, mlflow.body)
            if mlflow_value is None:
                raise BenchmarkError(
                    f"MLflow answered {status} for the CSV with a header line: {text[:2000]}"
                )
            print(
                f"mlflow : text/csv, a header line (the {len(columns)} encoded column names from the "
                f"preprocess schema) + the same row, {len(mlflow.body)} bytes -> "
                f"{status} {text.strip()[:200]!r}"
            )
        difference = abs(local_value - mlflow_value)
        print(
            f"predictions: local {local_value!r}, mlflow {mlflow_value!r}, |difference| {difference:.3g} "
            f"(tolerance {TOLERANCE:g})"
        )
        if not difference <= TOLERANCE:
            raise BenchmarkError(
                "the two servers disagree on the same row: the comparison would be meaningless"
            )
        # The same endpoint scoring a raw record (steps/inference.py encodes it with the model's schema.json):
        # what a client that holds customers, not encoded rows, sends. MLflow serves encoded rows only.
        raw_body = raw_record().encode()
        status, text, raw_value = prediction_of(local, raw_body)
        if raw_value is None:
            raise BenchmarkError(f"local endpoint answered {status} for the raw record: {text[:2000]}")
        raw = Server("local-raw", local.url, local.process, local.log, body=raw_body)
        print(
            f"local  : text/csv, a raw churn.csv row without its label, {len(raw_body)} bytes -> "
            f"{status} {text.strip()!r}"
        )
        print(f"local  : {' '.join(local_command)}; {server_processes(local)}")
        print(f"mlflow : {mlflow_workers(mlflow)}; {server_processes(mlflow)}")

        print(check_quiet("with both servers up and idle"), flush=True)
        print(
            f"wrk: {args.warmup} s warm-up + {args.duration} s measured per server and concurrency, "
            "one server at a time",
            flush=True,
        )
        # This benchmark, wrk (its child, same group) and the two servers; anything else is other work.
        own_groups = {os.getpgrp(), *(server.process.pid for server in servers)}
        results = []
        for server in [*servers, raw]:
            script = wrk_script(work / f"wrk-{server.name}.lua", server.body, server.content_type)
            for connections in CONCURRENCY:
                result = measure(server, script, connections, args.duration, args.warmup, own_groups)
                print(
                    f"  {server.name:<6} c{connections}: {result.rps:9.1f} requests/s, "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms; "
                    f"other processes used {result.other_cpu:.0%} of the CPUs meanwhile",
                    flush=True,
                )
                results.append(result)
        report(results, local.name, mlflow.name)
        print(check_quiet("after the runs, servers idle"))
        print(f"total {time.perf_counter() - began:.0f} s")
        return 0
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            stop(server)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

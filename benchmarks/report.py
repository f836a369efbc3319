"""Benchmark of the execution report and of MLflow tracking on the churn pipeline; prints figures.

    python benchmarks/report.py [--pairs 1] [--keep DIR]

(a) generating the churn execution's report, next to the execution's own time (goal < 2 s):
    in-process, and as typed (``local-pipeline report ID``, a fresh process);
(b) an uncached ``local-pipeline run`` (a fresh process each, as typed) with MLflow tracking into the
    local SQLite store against the same run with tracking off (goal: at most 5 % more wall time);
    runs alternate off/on, ``--pairs`` times. CPU time (jobs included) is printed too: on a machine
    shared with other work it is the steadier figure.

The store is created (and its schema migrated) before the timed runs: that happens once per local
home and is printed apart.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.churn import pipeline as churn  # noqa: E402
from pipelines.local.engine import LocalRunner  # noqa: E402
from pipelines.report.build import local_report  # noqa: E402
from pipelines.run_pipeline import LOCAL_DEFAULTS  # noqa: E402
from pipelines.tracking.mlflow_log import ENV_VAR, local_uri  # noqa: E402


def stage(runner: LocalRunner) -> None:
    code = churn.get_code_upload(**LOCAL_DEFAULTS)
    for bundle in code.bundles:
        for name, body in bundle.objects().items():
            runner.store.put_bytes(f"s3://{code.bucket}/{bundle.key_prefix(code.key_prefix)}/{name}", body)
    for uri, path in churn.get_local_inputs(**LOCAL_DEFAULTS).items():
        runner.store.put_file(path, uri)


WARM_STORE = (
    "import sys, pathlib; from pipelines.tracking.mlflow_log import MlflowLogger; "
    "MlflowLogger(sys.argv[1]).open('ChurnPipeline', pathlib.Path(sys.argv[2]))"
)


def cpu_seconds() -> float:
    """CPU time of this process (the runner and the tracking thread) and of its finished children
    (the jobs): unlike wall time, it does not grow when other work shares the machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def execute(home: Path, definition_file: Path, tracking: bool) -> tuple[float, float, str]:
    """One uncached ``local-pipeline run`` as typed, in a fresh process (so MLflow's import is
    counted); (wall seconds, CPU seconds with the jobs', execution id)."""
    env = {**os.environ, "MLOPS_LOCAL_HOME": str(home), ENV_VAR: "" if tracking else "off", "CI": "1"}
    command = [sys.executable, "-m", "pipelines.local.cli", "run", "--definition-file", str(definition_file)]
    started, cpu = time.perf_counter(), cpu_seconds()
    done = subprocess.run(
        [*command, "--pipeline-name", "ChurnPipeline", "--no-cache"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    if done.returncode != 0 or "warning" in done.stderr:
        raise SystemExit(f"local-pipeline run failed or warned: {done.stderr.strip()[-500:]}")
    execution_id = LocalRunner(home).records.list_executions()[0].execution_id
    return seconds, cpu, execution_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1, help="off/on pairs of uncached executions")
    parser.add_argument("--keep", type=Path, help="use this directory as the local home and keep it")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the SDK's notes while it builds the definition
    home = args.keep or Path(tempfile.mkdtemp(prefix="report-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    try:
        definition_file = home / "definition.json"
        definition_file.write_text(churn.get_pipeline(**LOCAL_DEFAULTS).definition())
        stage(LocalRunner(home))
        # Created in another process, so that this one never imports MLflow.
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", WARM_STORE, local_uri(home), str(home / "mlflow" / "artifacts")],
            check=True,
            cwd=ROOT,
        )
        print(f"MLflow store created and migrated once: {time.perf_counter() - started:.1f} s")

        off, on, off_cpu, on_cpu, last = [], [], [], [], None
        for _ in range(args.pairs):
            seconds, cpu, _ = execute(home, definition_file, tracking=False)
            off.append(seconds)
            off_cpu.append(cpu)
            seconds, cpu, last = execute(home, definition_file, tracking=True)
            on.append(seconds)
            on_cpu.append(cpu)
        without, with_ = statistics.median(off), statistics.median(on)
        without_cpu, with_cpu = statistics.median(off_cpu), statistics.median(on_cpu)

        started = time.perf_counter()
        page = local_report(last, home=home)
        in_process = time.perf_counter() - started
        started, cpu = time.perf_counter(), cpu_seconds()
        subprocess.run(
            [sys.executable, "-m", "pipelines.local.cli", "report", last],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "MLOPS_LOCAL_HOME": str(home)},
            cwd=ROOT,
        )
        as_typed = time.perf_counter() - started
        as_typed_cpu = cpu_seconds() - cpu
        size = page.stat().st_size
    finally:
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)

    print(
        f"(a) report of execution {last}: {in_process:.2f} s in-process, {as_typed:.2f} s as typed "
        f"({as_typed_cpu:.2f} CPU s)"
    )
    print(f"    next to the execution's own {with_:.1f} s; page {size / 1024:.0f} KiB (goal < 2 s, < 5 MB)")
    print(
        f"(b) uncached execution, tracking off vs on (median of {args.pairs}): "
        f"{without:.1f} s vs {with_:.1f} s: {(with_ / without - 1) * 100:+.1f} % (goal <= +5 %)"
    )
    print(
        f"    CPU time (jobs included), off vs on: {without_cpu:.1f} s vs {with_cpu:.1f} s: "
        f"{(with_cpu / without_cpu - 1) * 100:+.1f} %"
    )
    print(f"    runs off: {', '.join(f'{s:.1f}' for s in off)}; on: {', '.join(f'{s:.1f}' for s in on)}")
    print(
        f"    load average over the last minute at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

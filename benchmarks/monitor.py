"""Benchmark of the local monitor: a data-quality check over a million captured records, and what
data capture costs the endpoint.

    python benchmarks/monitor.py [--records 1000000] [--duration 10] [--warmup 2] [--keep DIR]

Run it with the project's Python. One run:

1. trains the churn model as benchmarks/endpoint.py does (steps/preprocess.py, steps/train.py) and makes
   the data-quality baseline of its training features with Model Monitor's analyzer, as the pipeline's
   QualityCheck step does;
2. writes ``--records`` capture records in SageMaker's format (pipelines/serving/capture.py), 10,000 per
   file, each a test or train row (label dropped) with its prediction;
3. in a fresh process each, so that peak memory is the check's own: ``read_capture`` + ``data_quality``
   (what ``monitor run`` does between finding the files and writing the results), and the floor, pandas
   alone reading the same files (``pd.read_json(lines=True)`` per file, concatenated); prints both times,
   their ratio (goal <= 3x) and the check's peak RSS (goal <= 2 GB);
4. starts the local endpoint twice on the model, capture off and capture 100 % (the environment the local
   deployer sets), and drives each with wrk (single-row CSV, 8 connections, 2 threads) after a warm-up;
   prints requests/s of each and their ratio (goal >= 0.9x). wrk comes from Debian's package; set-up as
   benchmarks/setup_endpoint_benchmark.sh does when it is missing.

Figures are for this machine, shared by wrk, the server and the capture writer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import endpoint as bench  # noqa: E402 - the endpoint benchmark's model, servers and wrk

from pipelines.serving.capture import DIR_ENV, PERCENT_ENV, capture_record  # noqa: E402

PER_FILE = 10_000
GOAL_RATIO = 3.0
GOAL_MEMORY_GB = 2.0
GOAL_THROUGHPUT = 0.9
CONNECTIONS = 8

# Each measured process imports first and starts its clock after: the figures are the work, not imports.
_CHECK = """
import json, sys, time, resource
from pathlib import Path
from pipelines.stage_monitor.captured import iter_capture
from pipelines.stage_monitor.checks import data_quality
started = time.perf_counter()
work = Path(sys.argv[1])
statistics = json.loads((work / "baseline" / "statistics.json").read_text())
constraints = json.loads((work / "baseline" / "constraints.json").read_text())
files = sorted((work / "capture").rglob("*.jsonl"))
chunks = iter_capture(files, len(constraints["features"]))
result, violations = data_quality(chunks, statistics, constraints)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "rows": result["dataset"]["item_count"],
                  "violations": len(violations["violations"]),
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

_FLOOR = """
import json, sys, time, resource
from pathlib import Path
import pandas as pd
started = time.perf_counter()
files = sorted((Path(sys.argv[1]) / "capture").rglob("*.jsonl"))
frame = pd.concat([pd.read_json(f, lines=True) for f in files], ignore_index=True)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "rows": len(frame),
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_baseline(work: Path) -> int:
    """statistics.json and constraints.json of the training features, as QualityCheck makes them."""
    import pandas as pd

    from pipelines.monitoring import headerless_names, profile, suggest_constraints

    features = pd.read_csv(work / "pre" / "features" / "features.csv", header=None)
    features.columns = headerless_names(features.shape[1])
    statistics = profile(features).statistics()
    folder = work / "baseline"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "statistics.json").write_text(json.dumps(statistics))
    (folder / "constraints.json").write_text(json.dumps(suggest_constraints(statistics)))
    return features.shape[1]


def write_capture(work: Path, records: int) -> tuple[int, int]:
    """``records`` capture records of request rows from the test and train splits; (files, bytes)."""
    rows = []
    for split in ("test", "train"):
        for path in sorted((work / "pre" / split).glob("*.csv")):
            rows += [line.split(",", 1)[1] for line in path.read_text().splitlines()]
    rng = random.Random(0)
    folder = work / "capture" / "churn-dev" / "AllTraffic" / "2026" / "11" / "30" / "12"
    folder.mkdir(parents=True, exist_ok=True)
    when = 1_796_040_000.0
    files = size = 0
    for start in range(0, records, PER_FILE):
        lines = []
        for i in range(start, min(records, start + PER_FILE)):
            row = rows[rng.randrange(len(rows))].encode()
            record = capture_record(when + i / 1000, f"bench-{i}", row, "text/csv", b"0.125\n", "text/csv")
            lines.append(json.dumps(record, separators=(",", ":")))
        path = folder / f"{files:05d}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        files += 1
        size += path.stat().st_size
    return files, size


def in_fresh_process(code: str, work: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", code, str(work)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"benchmark: a measured process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(model_dir: Path, row: str, work: Path, capture: bool, duration: int, warmup: int) -> float:
    port = bench.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if capture:
        env.update({DIR_ENV: str(work / "served-capture"), PERCENT_ENV: "100"})
    name = f"capture {'100%' if capture else 'off'}"
    command = [
        sys.executable,
        "-m",
        "pipelines.serving.server",
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]
    server = bench.start(name, command, port, work / f"server-{'on' if capture else 'off'}.log", env)
    try:
        bench.wait_ready(server)
        script = bench.wrk_script(work / "request.lua", row.encode(), "text/csv")
        if warmup:
            bench.run_wrk(server, script, CONNECTIONS, warmup)
        figures = bench.run_wrk(server, script, CONNECTIONS, duration)
    finally:
        bench.stop(server)
    rps = figures["requests"] / (figures["duration_us"] / 1e6)
    p50, p99 = figures["p50_us"] / 1000, figures["p99_us"] / 1000
    print(f"  {name:<13} {rps:10.0f} requests/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    return rps


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per endpoint run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the scratch folder here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(bench.SETUP)], check=True)  # installs wrk (and MLflow's venv)
    work = Path(tempfile.mkdtemp(prefix="monitor-bench-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        model_dir, row, _ = bench.train_model(work)
        features = make_baseline(work)
        started = time.perf_counter()
        files, size = write_capture(work, args.records)
        print(
            f"capture: {args.records:,} records x {features} features in {files} files, "
            f"{size / 1e6:.0f} MB (written in {time.perf_counter() - started:.1f} s)"
        )
        floor = in_fresh_process(_FLOOR, work)
        check = in_fresh_process(_CHECK, work)
        if check["rows"] != args.records or floor["rows"] != args.records:
            raise SystemExit(
                f"benchmark: rows read {check['rows']} / {floor['rows']}, expected {args.records}"
            )
        ratio = check["seconds"] / floor["seconds"]
        peak_gb = check["peak_kb"] / 1024 / 1024
        print("data-quality check over the capture (fresh process each):")
        print(f"  pandas read_json (floor) {floor['seconds']:7.2f} s   peak {floor['peak_kb'] // 1024:7d} MB")
        print(
            f"  monitor read + check     {check['seconds']:7.2f} s   peak {check['peak_kb'] // 1024:7d} MB"
            f"   ({check['violations']} violations)"
        )
        print(f"  ratio {ratio:.2f}x (goal <= {GOAL_RATIO:g}x): {_verdict(ratio <= GOAL_RATIO)}")
        memory_met = _verdict(peak_gb <= GOAL_MEMORY_GB)
        print(f"  peak memory {peak_gb:.2f} GB (goal <= {GOAL_MEMORY_GB:g} GB): {memory_met}")
        print(
            f"endpoint throughput, wrk -t2 -c{CONNECTIONS}, {args.duration} s after {args.warmup} s warm-up:"
        )
        off = throughput(model_dir, row, work, False, args.duration, args.warmup)
        on = throughput(model_dir, row, work, True, args.duration, args.warmup)
        captured = sum(len(p.read_text().splitlines()) for p in (work / "served-capture").rglob("*.jsonl"))
        share = on / off
        print(f"  on/off {share:.2f}x (goal >= {GOAL_THROUGHPUT:g}x): {_verdict(share >= GOAL_THROUGHPUT)}")
        print(f"  records captured during the capture run (warm-up included): {captured:,}")
        print(
            f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; load {os.getloadavg()[0]:.2f}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

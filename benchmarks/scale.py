"""Benchmark of Preprocess and of the whole local pipeline as the table grows: wall time and peak
memory per size (and per step), and their ratios.

    python benchmarks/scale.py [--rows 100000 1000000 10000000] [--chunk-rows N] [--keep DIR]
    python benchmarks/scale.py --rows --shards 2 --shard-rows 1000000
    python benchmarks/scale.py --rows --pipeline-rows 100000 1000000 [--max-tuning-jobs 4]
                               [--training-instances N]

Each size is a deterministic churn-shaped table (the columns of pipelines/churn/dataset.json, values
drawn from a fixed seed), written to a CSV and preprocessed by ``steps/preprocess.py`` in its own
process, as the container runs it. Peak memory is that process's high-water resident set size
(VmHWM, read by the process itself as it ends). The size below the largest runs a second time after
the largest, and each line shows the 1-minute load average before and after its run: on a shared
machine, the spread between the two runs of one size is the noise in the ratios. Goals: at 1e7
rows, at most 2 GB peak and at most 11 times the 1e6 time.

``--shards N`` runs the pipeline's two-job form of Preprocess at ``--shard-rows`` rows: the table
written as N files, the profile stage as N instances at once (each with its resource config and
its file), then the encode stage likewise, beside the one-instance two-pass run of the same table.
Each stage's wall time is its slowest instance's; their sum against the one-instance time is the
speed-up sharding gives on this machine's CPUs.

``--pipeline-rows`` runs the churn pipeline's definition on the local runner (uncached) for each
size: per step its wall time and the peak resident memory of its jobs' processes (the largest one
instance reached; ``usage.jsonl`` beside each job's log), plus the runner process's own peak (the
in-process steps: the data-quality baseline, the condition, registration). Goal: whole pipeline
1e6 / 1e5 at most 10 times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.local.jobs import USAGE_FILE  # noqa: E402

SPEC = ROOT / "pipelines" / "churn" / "dataset.json"
SCRIPT = ROOT / "steps" / "preprocess.py"
STATES = [f"S{i:02d}" for i in range(51)]
WRITE_ROWS = 500_000


def churn_table(rows: int, first: int, seed: int = 0) -> pd.DataFrame:
    """Rows ``first`` .. ``first + rows`` of the table; the same whatever the blocks it is made in."""
    rng = np.random.RandomState([seed, first])
    day, eve, night, intl = (rng.uniform(0, 350, rows).round(1) for _ in range(4))
    calls = rng.randint(0, 170, size=(4, rows))
    service = rng.poisson(1.5, rows)
    plan = rng.rand(rows) < 0.1
    score = 0.02 * day + 0.6 * service + 2.5 * plan + rng.normal(0, 1, rows)
    return pd.DataFrame(
        {
            "state": np.array(STATES)[rng.randint(0, 51, rows)],
            "account_length": rng.randint(1, 240, rows),
            "area_code": np.array(["area_code_408", "area_code_415", "area_code_510"])[
                rng.randint(0, 3, rows)
            ],
            "international_plan": np.where(plan, "yes", "no"),
            "voice_mail_plan": np.where(rng.rand(rows) < 0.27, "yes", "no"),
            "number_vmail_messages": rng.randint(0, 50, rows),
            "total_day_minutes": day,
            "total_day_calls": calls[0],
            "total_day_charge": (day * 0.17).round(2),
            "total_eve_minutes": eve,
            "total_eve_calls": calls[1],
            "total_eve_charge": (eve * 0.085).round(2),
            "total_night_minutes": night,
            "total_night_calls": calls[2],
            "total_night_charge": (night * 0.045).round(2),
            "total_intl_minutes": (intl / 17).round(1),
            "total_intl_calls": calls[3] // 8,
            "total_intl_charge": (intl / 17 * 0.27).round(2),
            "number_customer_service_calls": service,
            "churn": np.where(score > 9.5, "yes", "no"),
        }
    )


def write_table(path: Path, rows: int) -> None:
    with open(path, "w", newline="") as handle:
        for first in range(0, rows, WRITE_ROWS):
            block = churn_table(min(WRITE_ROWS, rows - first), first)
            block.to_csv(handle, header=first == 0, index=False, lineterminator="\n")


# Runs the step script as `python script ...` would, then writes the process's VmHWM (KiB) to the
# file named first. Not ru_maxrss from wait4: Linux carries the high-water mark across exec, so a
# child's ru_maxrss counts the parent's memory at the fork (a 600 MiB parent makes `python -c pass`
# peak at 611 MiB), and this process holds the tables it writes. VmHWM is the step's image alone.
PEAK_WRAPPER = """
import os, runpy, sys
peak_file, sys.argv = sys.argv[1], sys.argv[2:]
sys.path[0] = os.path.dirname(sys.argv[0])
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    status = open("/proc/self/status").read()
    open(peak_file, "w").write(status.split("VmHWM:")[1].split()[0])
"""


def run_preprocess(data: Path, out: Path, chunk_rows: int | None) -> tuple[float, float]:
    """Seconds and peak resident MiB of one run of the step script."""
    peak_file = out.parent / f"peak-{out.name}.txt"
    command = [
        sys.executable,
        "-c",
        PEAK_WRAPPER,
        str(peak_file),
        str(SCRIPT),
        "--input",
        str(data),
        "--spec",
        str(SPEC),
        "--output-dir",
        str(out),
    ]
    if chunk_rows:
        command += ["--chunk-rows", str(chunk_rows)]
    started = time.perf_counter()
    process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"preprocess failed on {data}: {process.stderr.decode().strip()}")
    peak = int(peak_file.read_text()) / 1024
    peak_file.unlink()
    return seconds, peak


def write_parts(folder: Path, rows: int, parts: int) -> list[Path]:
    """The table of ``rows`` rows as ``parts`` CSV files of consecutive rows, each with the header."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [rows * index // parts for index in range(parts + 1)]
    paths = []
    for index in range(parts):
        path = folder / f"part-{index:03d}.csv"
        with open(path, "w", newline="") as handle:
            for first in range(bounds[index], bounds[index + 1], WRITE_ROWS):
                block = churn_table(min(WRITE_ROWS, bounds[index + 1] - first), first)
                block.to_csv(handle, header=first == bounds[index], index=False, lineterminator="\n")
        paths.append(path)
    return paths


def run_sharded(work: Path, parts: list[Path]) -> tuple[float, float]:
    """Seconds of the profile stage and of the encode stage, each run as len(parts) instances at
    once (hosts algo-1 ..., instance i given part i), as the pipeline's Profile and Preprocess jobs
    run them."""
    hosts = [f"algo-{index + 1}" for index in range(len(parts))]
    profiles = work / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    seconds = []
    for stage in ("profile", "encode"):
        processes = []
        started = time.perf_counter()
        for host, part in zip(hosts, parts, strict=True):
            shard = work / "shards" / host
            shard.mkdir(parents=True, exist_ok=True)
            if not (shard / part.name).exists():
                os.link(part, shard / part.name)
            config = work / "config" / host / "resourceconfig.json"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(json.dumps({"current_host": host, "hosts": hosts}))
            extra = ["--profiles", str(profiles)] if stage == "encode" else []
            command = [
                sys.executable, str(SCRIPT), "--stage", stage, "--input", str(shard), "--spec", str(SPEC),
                "--output-dir", str(work / stage / host), "--resource-config", str(config), *extra,
            ]  # fmt: skip
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for process in processes:
            _, error = process.communicate()
            if process.returncode != 0:
                sys.exit(f"sharded preprocess failed: {error.decode().strip()}")
        seconds.append(time.perf_counter() - started)
        if stage == "profile":
            for path in (work / "profile").glob("*/profile/*.json"):
                shutil.copy(path, profiles / path.name)
    return seconds[0], seconds[1]


def shard_figures(work: Path, rows: int, shards: int) -> None:
    print(f"Preprocess at {rows} rows: one instance, then the two-job form over {shards} instances")
    parts = write_parts(work / f"parts-{rows}", rows, shards)
    os.sync()
    before = load()
    one, _ = run_preprocess(work / f"parts-{rows}", work / f"out-one-{rows}", None)
    print(f"  1 instance, both passes:        {one:>7.1f} s  load {before}, {load()}", flush=True)
    os.sync()
    before = load()
    profile, encode = run_sharded(work / f"sharded-{rows}", parts)
    print(
        f"  {shards} instances: profile {profile:.1f} s + encode {encode:.1f} s = {profile + encode:>5.1f} s"
        f"  load {before}, {load()}"
    )
    print(f"  speed-up x{one / (profile + encode):.2f} with {shards} instances on {os.cpu_count()} CPUs")


def step_peak(record) -> float | None:
    """The largest peak resident MiB of any process of the step's job (its trials, for Tune)."""
    if not record.log_path:
        return None
    root = Path(record.log_path)
    root = root if root.is_dir() else root.parent
    peaks = [
        json.loads(line)["peak_mib"] or 0.0
        for usage in root.rglob(USAGE_FILE)
        for line in usage.read_text().splitlines()
        if line.strip()
    ]
    return max(peaks) if peaks else None


def run_pipeline(
    work: Path, data: Path, parameters: dict
) -> tuple[float, dict[str, tuple[float, float | None]]]:
    """One uncached local execution of the churn pipeline on ``data``: seconds, and per step
    (seconds, peak MiB)."""
    from pipelines.churn import pipeline as churn
    from pipelines.local.engine import LocalRunner
    from pipelines.run_pipeline import LOCAL_DEFAULTS

    logging.getLogger("sagemaker").setLevel(logging.ERROR)  # the SDK's notes on building offline

    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    runner = LocalRunner(home)
    code = churn.get_code_upload(**LOCAL_DEFAULTS)
    for bundle in code.bundles:
        for name, body in bundle.objects().items():
            runner.store.put_bytes(f"s3://{code.bucket}/{bundle.key_prefix(code.key_prefix)}/{name}", body)
    (uri,) = churn.get_local_inputs(**LOCAL_DEFAULTS)
    runner.store.put_file(data, uri)
    definition = churn.get_pipeline(**LOCAL_DEFAULTS).definition()
    started = time.perf_counter()
    outcome = runner.start(definition, pipeline_name="ScaleBenchmark", parameters=parameters, use_cache=False)
    seconds = time.perf_counter() - started
    if outcome.status != "Succeeded":
        sys.exit(f"the pipeline failed on {data}: {outcome.failure_reason}")
    steps = {}
    for name, record in outcome.steps.items():
        if record.started and record.ended:
            took = (
                datetime.fromisoformat(record.ended) - datetime.fromisoformat(record.started)
            ).total_seconds()
            steps[name] = (took, step_peak(record))
    return seconds, steps


def pipeline_figures(work: Path, sizes: list[int], parameters: dict, keep: bool) -> None:
    print(f"whole local pipeline, uncached, parameters {parameters}")
    figures = {}
    for rows in sizes:
        data = work / f"churn-{rows}.csv"
        if not data.exists():
            write_table(data, rows)
        seconds, steps = run_pipeline(work / f"pipeline-{rows}", data, parameters)
        # Cumulative over this process (the SDK's import included): the in-process steps' bound.
        runner_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures[rows] = (seconds, steps)
        print(f"{rows:>10} rows: {seconds:.1f} s; runner process peak so far {runner_peak:.0f} MiB")
        print(f"{'':>10} {'step':<24} {'seconds':>9} {'peak MiB':>9}")
        for name, (took, peak) in steps.items():
            shown = f"{peak:>9.0f}" if peak is not None else f"{'-':>9}"
            print(f"{'':>10} {name:<24} {took:>9.1f} {shown}")
        if not keep:
            data.unlink()
            shutil.rmtree(work / f"pipeline-{rows}", ignore_errors=True)
    sizes = sorted(figures)
    for small, large in zip(sizes, sizes[1:], strict=False):
        (t0, s0), (t1, s1) = figures[small], figures[large]
        ratio = t1 / t0
        goal = f" (goal <= 10: {'met' if ratio <= 10 else 'missed'})" if large == 10 * small else ""
        print(f"{large:>10} / {small:<10} whole pipeline time x{ratio:.2f}{goal}")
        for name in s1:
            if name in s0 and s0[name][0] > 0:
                print(f"{'':>10} {name:<24} time x{s1[name][0] / s0[name][0]:.2f}")


def load() -> str:
    """The 1-minute load average: the machine is shared, and a figure means little without it."""
    return f"{os.getloadavg()[0]:.2f}"


def preprocess_figures(work: Path, sizes: list[int], chunk_rows: int | None, keep: bool) -> None:
    """Preprocess alone at each size, then once more at the size below the largest, so that the
    ratio to the largest is shown against a run before it and one after it: on a shared machine
    the spread between the two is the noise the ratio carries."""
    sizes = sorted(sizes)
    again = sizes[-2] if len(sizes) > 1 else None
    runs = [*sizes, again] if again else sizes
    print(
        f"{'rows':>10} {'csv MiB':>9} {'seconds':>9} {'peak MiB':>9} {'s/1e6 rows':>11}  load before, after"
    )
    figures: dict[int, list[tuple[float, float]]] = {}
    for index, rows in enumerate(runs):
        data = work / f"churn-{rows}.csv"
        if not data.exists():
            write_table(data, rows)
        os.sync()  # what the table and earlier runs left to write back should not fall into this run
        before = load()
        seconds, peak = run_preprocess(data, work / f"out-{rows}", chunk_rows)
        figures.setdefault(rows, []).append((seconds, peak))
        size = data.stat().st_size / 2**20
        note = f"  (again, after {sizes[-1]})" if len(figures[rows]) > 1 else ""
        print(
            f"{rows:>10} {size:>9.1f} {seconds:>9.1f} {peak:>9.0f} {seconds / rows * 1e6:>11.1f}  "
            f"{before}, {load()}{note}",
            flush=True,
        )
        if not keep:
            shutil.rmtree(work / f"out-{rows}")
            if rows not in runs[index + 1 :]:
                data.unlink()
    for small, large in zip(sizes, sizes[1:], strict=False):
        (t0, m0), (t1, m1) = figures[small][0], figures[large][0]
        after = f" (x{t1 / figures[small][1][0]:.2f} to the run after it)" if small == again else ""
        print(f"{large:>10} / {small:<10} time x{t1 / t0:.2f}{after}, peak memory x{m1 / m0:.2f}")
    if 10_000_000 in figures:
        seconds, peak = figures[10_000_000][0]
        print(f"goal 1e7 peak <= 2048 MiB: {peak:.0f} MiB -> {'met' if peak <= 2048 else 'missed'}")
        if 1_000_000 in figures:
            ratios = [seconds / t0 for t0, _ in figures[1_000_000]]
            verdicts = ["met" if ratio <= 11 else "missed" for ratio in ratios]
            verdict = verdicts[0] if len(set(verdicts)) == 1 else "met against one 1e6 run only"
            shown = " and ".join(f"x{ratio:.2f}" for ratio in ratios)
            print(f"goal 1e7 time <= 11 x 1e6: {shown} -> {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000], help="Preprocess alone"
    )
    parser.add_argument("--pipeline-rows", type=int, nargs="*", default=[], help="the whole local pipeline")
    parser.add_argument("--shards", type=int, default=0, help="Preprocess's two-job form over N instances")
    parser.add_argument("--shard-rows", type=int, default=1_000_000)
    parser.add_argument("--max-tuning-jobs", type=int, default=4)
    parser.add_argument("--training-instances", type=int, default=1, help="TrainingInstanceCount")
    parser.add_argument("--chunk-rows", type=int, help="passed to preprocess (default: its own)")
    parser.add_argument(
        "--keep", type=Path, help="keep tables and outputs here instead of a temporary folder"
    )
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"python {sys.version.split()[0]}, pandas {pd.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start"
    )
    try:
        if args.rows:
            preprocess_figures(work, args.rows, args.chunk_rows, bool(args.keep))
        if args.shards:
            shard_figures(work, args.shard_rows, args.shards)
        if args.pipeline_rows:
            parameters = {
                "MaxTuningJobs": args.max_tuning_jobs,
                "TrainingInstanceCount": args.training_instances,
            }
            pipeline_figures(work, args.pipeline_rows, parameters, bool(args.keep))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of Preprocess as the table grows: wall time and peak memory per size, and their ratios.

    python benchmarks/scale.py [--rows 100000 1000000 10000000] [--chunk-rows N] [--keep DIR]

Each size is a deterministic churn-shaped table (the columns of pipelines/churn/dataset.json, values
drawn from a fixed seed), written to a CSV and preprocessed by ``steps/preprocess.py`` in its own
process, as the container runs it. Peak memory is that process's maximum resident set size.
Goals: at 1e7 rows, at most 2 GB peak and at most 11 times the 1e6 time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
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


def run_preprocess(data: Path, out: Path, chunk_rows: int | None) -> tuple[float, float]:
    """Seconds and peak resident MiB of one run of the step script."""
    command = [
        sys.executable,
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
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"preprocess failed on {data}: {process.stderr.read().decode().strip()}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--chunk-rows", type=int, help="passed to preprocess (default: its own)")
    parser.add_argument(
        "--keep", type=Path, help="keep tables and outputs here instead of a temporary folder"
    )
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"python {sys.version.split()[0]}, pandas {pd.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'rows':>10} {'csv MiB':>9} {'seconds':>9} {'peak MiB':>9} {'s/1e6 rows':>11}")
    figures: dict[int, tuple[float, float]] = {}
    try:
        for rows in args.rows:
            data = work / f"churn-{rows}.csv"
            if not data.exists():
                write_table(data, rows)
            seconds, peak = run_preprocess(data, work / f"out-{rows}", args.chunk_rows)
            figures[rows] = (seconds, peak)
            size = data.stat().st_size / 2**20
            print(
                f"{rows:>10} {size:>9.1f} {seconds:>9.1f} {peak:>9.0f} {seconds / rows * 1e6:>11.1f}",
                flush=True,
            )
            if not args.keep:
                data.unlink()
                shutil.rmtree(work / f"out-{rows}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sizes = sorted(figures)
    for small, large in zip(sizes, sizes[1:], strict=False):
        (t0, m0), (t1, m1) = figures[small], figures[large]
        print(f"{large:>10} / {small:<10} time x{t1 / t0:.2f}, peak memory x{m1 / m0:.2f}")
    if 10_000_000 in figures:
        seconds, peak = figures[10_000_000]
        print(f"goal 1e7 peak <= 2048 MiB: {peak:.0f} MiB -> {'met' if peak <= 2048 else 'missed'}")
        if 1_000_000 in figures:
            ratio = seconds / figures[1_000_000][0]
            print(f"goal 1e7 time <= 11 x 1e6: x{ratio:.2f} -> {'met' if ratio <= 11 else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

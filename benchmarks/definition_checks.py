"""Benchmark of the checks a local run makes before its first step, on long definitions; prints figures.

    python benchmarks/definition_checks.py [--steps 10000]

A chain of Processing steps (each reading the one before), checked as ``local-pipeline run`` checks
it: parsed, ordered, every step's Arguments walked against CreateProcessingJob. The time should grow
linearly with the step count (goal: 10,000 steps in well under the 11 s the quadratic check took).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "helpers")]

from step_definitions import definition, processing_step, s3_input, s3_output  # noqa: E402

from pipelines.local.engine import LocalRunner  # noqa: E402


def chain(count: int) -> str:
    steps = []
    for index in range(count):
        source = (
            {"Get": f"Steps.S{index - 1}.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri"}
            if index
            else "s3://bench/in"
        )
        step = processing_step(
            f"S{index}",
            "run.py",
            "s3://bench/code/run.py",
            inputs=[s3_input("in", source, "/opt/ml/processing/input/data")],
            outputs=[s3_output("out", f"s3://bench/out/{index}")],
        )
        steps.append(step)
    return definition(*steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        runner = LocalRunner(Path(home))
        runner.check(chain(10), "warm-up", {})  # loads botocore's service model once
        for count in (args.steps // 4, args.steps // 2, args.steps):
            text = chain(count)
            started = time.perf_counter()
            _, _, order = runner.check(text, "bench", {})
            seconds = time.perf_counter() - started
            assert len(order) == count
            print(f"{count:>6} steps checked in {seconds:5.2f} s ({seconds / count * 1e6:5.0f} us per step)")


if __name__ == "__main__":
    main()

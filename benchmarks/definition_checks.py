"""Benchmark of the checks a local run makes before its first step, on long definitions; prints figures.

    python benchmarks/definition_checks.py [--steps 10000]

A chain of Processing steps (each reading the one before), checked as ``local-pipeline run`` checks
it: parsed, ordered, every step's Arguments walked against CreateProcessingJob. The time should grow
linearly with the step count (goal: 10,000 steps in well under the 11 s the quadratic check took).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.local.engine import LocalRunner  # noqa: E402

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"


def chain(count: int) -> str:
    steps = []
    for index in range(count):
        previous = f"S{index - 1}"
        source = (
            {"Get": f"Steps.{previous}.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri"}
            if index
            else "s3://bench/in"
        )
        steps.append(
            {
                "Name": f"S{index}",
                "Type": "Processing",
                "Arguments": {
                    "ProcessingResources": {
                        "ClusterConfig": {
                            "InstanceCount": 1,
                            "InstanceType": "ml.m5.large",
                            "VolumeSizeInGB": 30,
                        }
                    },
                    "AppSpecification": {
                        "ImageUri": IMAGE,
                        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/run.py"],
                    },
                    "RoleArn": "arn:aws:iam::000000000000:role/Bench",
                    "ProcessingInputs": [
                        {
                            "InputName": "in",
                            "S3Input": {
                                "S3Uri": source,
                                "LocalPath": "/opt/ml/processing/input",
                                "S3DataType": "S3Prefix",
                            },
                        }
                    ],
                    "ProcessingOutputConfig": {
                        "Outputs": [
                            {
                                "OutputName": "out",
                                "S3Output": {
                                    "S3Uri": f"s3://bench/out/{index}",
                                    "LocalPath": "/opt/ml/processing/output",
                                    "S3UploadMode": "EndOfJob",
                                },
                            }
                        ]
                    },
                },
            }
        )
    return json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": steps})


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

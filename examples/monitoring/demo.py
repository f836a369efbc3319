"""The monitoring loop on this machine, start to finish, with the commands a person would type:

    train -> approve -> deploy dev (capture 100 %) -> normal traffic -> monitor run: Completed
          -> shifted traffic -> monitor run: CompletedWithViolations naming the drifted features
          -> a retraining execution on the stage's data -> a new version, pending approval

    python examples/monitoring/demo.py [--home DIR] [--port N] [--rows N] [--max-tuning-jobs N]

Everything lives in ``--home`` (default: a new temporary directory), never in your local home.
The stage is ``examples/monitoring/deploy/stages/dev.json``: the shipped dev stage is serverless,
which has no data capture, so the demo's dev serves on an instance variant.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).resolve().parent / "deploy"
GROUP = "ChurnModelPackageGroup"
RETRAIN_DATA = "s3://sagemaker-local/churn/retrain/"
# Three of the encoded churn features (day, evening and night minutes: csv_columns[61], [64], [67]
# of schema.json, request columns 60, 63, 66) as if a billing change had inflated them.
SHIFTED_COLUMNS = (60, 63, 66)
SHIFT = 1.6


def sh(*command: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    print(f"\n$ {' '.join(command)}", flush=True)
    done = subprocess.run(command, env=env, text=True, capture_output=True)
    print((done.stdout + done.stderr).rstrip(), flush=True)
    if check and done.returncode != 0:
        raise SystemExit(f"demo: {command[0]} exited {done.returncode}")
    return done


def test_rows(home: Path) -> list[str]:
    """The newest execution's test split without its label: rows as requests carry them (one file
    per Preprocess instance)."""
    folders = sorted((home / "s3" / "sagemaker-local").glob("*/*/Preprocess/test"), key=os.path.getmtime)
    return [
        line.split(",", 1)[1]
        for split in sorted(folders[-1].glob("test-*.csv"))
        for line in split.read_text().splitlines()
    ]


def shifted(row: str) -> str:
    cells = row.split(",")
    for index in SHIFTED_COLUMNS:
        if cells[index]:
            cells[index] = f"{float(cells[index]) * SHIFT:.2f}"
    return ",".join(cells)


def send(port: int, rows: list[str]) -> None:
    for row in rows:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=row.encode(), headers={"Content-Type": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback, built here
            answer.read()
    print(f"sent {len(rows)} requests to 127.0.0.1:{port}", flush=True)


def stage_config(port: int, target: Path) -> Path:
    shutil.copytree(CONFIG, target, dirs_exist_ok=True)
    path = target / "stages" / "dev.json"
    document = json.loads(path.read_text())
    document["endpoint"]["local_port"] = port
    path.write_text(json.dumps(document, indent=2))
    return target / "promotion.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="local home to use (default: a new temporary one)")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--rows", type=int, default=400, help="requests per traffic phase")
    parser.add_argument("--max-tuning-jobs", type=int, default=8)
    args = parser.parse_args(argv)
    home = (args.home or Path(tempfile.mkdtemp(prefix="monitor-demo-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLOPS_LOCAL_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    bin_dir = Path(sys.executable).parent
    tool = {
        name: str(bin_dir / name)
        for name in ("run-pipeline", "model-registry", "promote", "monitor", "local-pipeline")
    }
    config = stage_config(args.port, home / "deploy")
    print(f"local home: {home}")

    tuning = f"MaxTuningJobs={args.max_tuning_jobs}"
    sh(
        tool["run-pipeline"],
        "--local",
        "--module-name",
        "pipelines.churn.pipeline",
        "--parameters",
        tuning,
        env=env,
    )
    sh(tool["model-registry"], "approve", GROUP, "1", "--reason", "demo", env=env)
    sh(tool["promote"], "--config", str(config), "deploy", "--stage", "dev", env=env)
    monitor = [tool["monitor"], "--config", str(config), "--pipeline-parameter", tuning]
    try:
        rows = test_rows(home)[: args.rows]
        print("\n# normal traffic: the test split, as the model saw in training")
        send(args.port, rows)
        # The capture writer files what it has queued within a second; give it two.
        subprocess.run([sys.executable, "-c", "import time; time.sleep(2)"], check=True)
        sh(*monitor, "run", "--stage", "dev", env=env)

        print(f"\n# shifted traffic: request columns {', '.join(map(str, SHIFTED_COLUMNS))} x {SHIFT}")
        sh(
            tool["local-pipeline"],
            "upload",
            str(ROOT / "data" / "churn" / "churn.csv"),
            RETRAIN_DATA,
            env=env,
        )
        send(args.port, [shifted(row) for row in rows])
        subprocess.run([sys.executable, "-c", "import time; time.sleep(2)"], check=True)
        sh(*monitor, "run", "--stage", "dev", env=env)
        sh(*monitor, "history", "--stage", "dev", env=env)
        sh(tool["model-registry"], "list-versions", GROUP, env=env)
        print(
            "\n# the retrained version waits for approval; then promotion proceeds as usual:\n"
            f"#   MLOPS_LOCAL_HOME={home} model-registry approve {GROUP} 2 --reason reviewed\n"
            f"#   MLOPS_LOCAL_HOME={home} promote --config {config} deploy --stage dev"
        )
    finally:
        sh(tool["promote"], "--config", str(config), "undeploy", "--stage", "dev", env=env, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

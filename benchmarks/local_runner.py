"""Benchmark of the local runner on the churn pipeline and the bundled data; prints three figures.

    python benchmarks/local_runner.py [--trials 8] [--keep DIR]

(a) a whole local execution (uncached) against the same step scripts run directly one after
    another on the same data with the same tuning trials: the ratio (goal <= 1.10);
(b) a cached rerun: ``local-pipeline run`` on the saved definition, as a user types it (goal <= 2 s);
(c) tuning wall time with MaxParallelTuningJobs 2 against 1 on this machine (goal >= 1.6x).

Every figure comes from this one run, on a fresh local home, so they are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.churn import pipeline as churn  # noqa: E402
from pipelines.local.engine import LocalRunner  # noqa: E402
from pipelines.local.jobs import tar_directory  # noqa: E402
from pipelines.run_pipeline import LOCAL_DEFAULTS  # noqa: E402

STEPS = ROOT / "steps"


def stage(runner: LocalRunner) -> None:
    code = churn.get_code_upload(**LOCAL_DEFAULTS)
    for bundle in code.bundles:
        for name, body in bundle.objects().items():
            runner.store.put_bytes(f"s3://{code.bucket}/{bundle.key_prefix(code.key_prefix)}/{name}", body)
    for uri, path in churn.get_local_inputs(**LOCAL_DEFAULTS).items():
        runner.store.put_file(path, uri)


def seconds(record) -> float:
    return (datetime.fromisoformat(record.ended) - datetime.fromisoformat(record.started)).total_seconds()


def python(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(STEPS / script), *args], check=True, stdout=subprocess.DEVNULL)


def direct_run(work: Path, definition: dict, trials: list[dict]) -> float:
    """preprocess -> baseline train -> every trial's train -> evaluate, one after another."""
    steps = {step["Name"]: step for step in definition["Steps"]}
    raw, out = work / "raw", work / "out"
    raw.mkdir(parents=True)
    shutil.copy(churn.SAMPLE_DATA, raw / "churn.csv")
    baseline = {
        k: v
        for k, v in steps["Train"]["Arguments"]["HyperParameters"].items()
        if not k.startswith("sagemaker_")
    }
    static = {
        k: v
        for k, v in steps["Tune"]["Arguments"]["TrainingJobDefinition"]["StaticHyperParameters"].items()
        if not k.startswith("sagemaker_")
    }
    started = time.perf_counter()
    python(
        "preprocess.py",
        "--input",
        str(raw),
        "--spec",
        str(churn.DEFAULT_DATASET_SPEC),
        "--output-dir",
        str(out),
    )
    models = []
    for index, hyperparameters in enumerate([baseline, *({**static, **t} for t in trials)]):
        model_dir = work / f"model-{index}"
        argv = [item for key, value in hyperparameters.items() for item in (f"--{key}", value)]
        python(
            "train.py",
            *argv,
            "--train",
            str(out / "train"),
            "--validation",
            str(out / "validation"),
            "--model-dir",
            str(model_dir),
        )
        models.append(model_dir)
    best = work / "best"
    best.mkdir()
    (best / "model.tar.gz").write_bytes(tar_directory(models[1]))  # trials[0] is the tuner's best
    python(
        "evaluate.py",
        "--model",
        str(best),
        "--test",
        str(out / "test"),
        "--problem-type",
        "binary_classification",
        "--output-dir",
        str(work / "evaluation"),
    )
    return time.perf_counter() - started


def tuning_only(definition: dict, parallel: int, trials: int) -> str:
    """The definition cut to Profile, Preprocess and Tune, with the tuning limits set."""
    document = json.loads(json.dumps(definition))
    document["Steps"] = [s for s in document["Steps"] if s["Name"] in ("Profile", "Preprocess", "Tune")]
    for parameter in document["Parameters"]:
        if parameter["Name"] == "MaxParallelTuningJobs":
            parameter["DefaultValue"] = parallel
        if parameter["Name"] == "MaxTuningJobs":
            parameter["DefaultValue"] = trials
    return json.dumps(document)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="tuning trials (MaxTuningJobs)")
    parser.add_argument("--keep", type=Path, help="keep the local home here instead of a temporary one")
    args = parser.parse_args()
    home = args.keep or Path(tempfile.mkdtemp(prefix="local-runner-bench-"))
    os.environ["MLOPS_LOCAL_HOME"] = str(home)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; local home {home}")

    started = time.perf_counter()
    text = churn.get_pipeline(**LOCAL_DEFAULTS).definition()
    build = time.perf_counter() - started
    definition = json.loads(text)
    definition_file = home / "definition.json"
    definition_file.write_text(text)
    runner = LocalRunner(home)
    stage(runner)
    parameters = {"MaxTuningJobs": args.trials, "MaxParallelTuningJobs": 2}

    # (a) one uncached local execution against the same scripts run directly
    started = time.perf_counter()
    outcome = runner.start(text, pipeline_name="ChurnPipeline", parameters=parameters, use_cache=False)
    local = time.perf_counter() - started
    assert outcome.status == "Succeeded", outcome.failure_reason
    summaries = outcome.properties["Tune"]["TrainingJobSummaries"]
    trials = [s["TunedHyperParameters"] for s in summaries]
    direct = direct_run(home / "direct", definition, trials)
    print(
        f"(a) local execution {local:.2f} s vs the scripts run directly {direct:.2f} s: "
        f"ratio {local / direct:.2f} (goal <= 1.10); {len(trials)} trials, 2 in parallel"
    )
    for name, record in outcome.steps.items():
        print(f"      {name:<22} {seconds(record):6.2f} s")

    # (b) a cached rerun, as a user runs it
    script = Path(sys.executable).parent / "local-pipeline"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.local.cli"]
    command = [*entry, "run", "--definition-file", str(definition_file), "--pipeline-name", "ChurnPipeline"]
    command += ["--parameters", *(f"{key}={value}" for key, value in parameters.items())]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    cached = time.perf_counter() - started
    print(
        f"(b) cached rerun (local-pipeline run, whole command) {cached:.2f} s (goal <= 2 s); "
        f"building the definition with the SDK takes {build:.2f} s more when run-pipeline --local does it"
    )

    # (c) tuning wall time, MaxParallelTuningJobs 2 against 1
    times = {}
    for parallel in (1, 2):
        result = runner.start(
            tuning_only(definition, parallel, args.trials), pipeline_name="TuningBenchmark", use_cache=False
        )
        assert result.status == "Succeeded", result.failure_reason
        times[parallel] = seconds(result.steps["Tune"])
    print(
        f"(c) tuning {args.trials} trials: 1 at a time {times[1]:.2f} s, 2 at a time {times[2]:.2f} s: "
        f"speed-up {times[1] / times[2]:.2f}x (goal >= 1.6x)"
    )
    if args.keep is None:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

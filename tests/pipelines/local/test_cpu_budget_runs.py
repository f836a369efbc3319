"""Jobs running at once in one execution share the runner's CPUs: Train beside Tune's trials never
hold more CPUs between them than the runner has, and each job's SM_NUM_CPUS is its share."""

import io
import json
import tarfile
from pathlib import Path

from pipelines.local.engine import LocalRunner
from pipelines.local.jobs import USAGE_FILE

SCRIPTS = Path(__file__).parent / "fixtures" / "engine"
BUCKET = "s3://budget-tests"
ROLE = "arn:aws:iam::000000000000:role/LocalPipelineRole"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"


def code(runner) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(SCRIPTS / "cpu_share.py", arcname="cpu_share.py")
    uri = f"{BUCKET}/code/sourcedir.tar.gz"
    runner.store.put_bytes(uri, buffer.getvalue())
    return uri


def job(code_uri: str, output: str) -> dict:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": SKLEARN,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "score", "Regex": r"score=([-0-9.]+)"}],
        },
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": f"{BUCKET}/{output}"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


def definition(code_uri: str) -> str:
    static = {"sagemaker_program": "cpu_share.py", "sagemaker_submit_directory": code_uri}
    train = {
        "Name": "Train",
        "Type": "Training",
        "Arguments": {**job(code_uri, "train"), "HyperParameters": static},
    }
    tune = {
        "Name": "Tune",
        "Type": "Tuning",
        "Arguments": {
            "HyperParameterTuningJobConfig": {
                "Strategy": "Random",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
                "ParameterRanges": {
                    "CategoricalParameterRanges": [{"Name": "x", "Values": ["1", "2", "3", "4"]}]
                },
                "TrainingJobEarlyStoppingType": "Off",
            },
            "TrainingJobDefinition": {**job(code_uri, "tune"), "StaticHyperParameters": static},
        },
    }
    return json.dumps({"Version": "2020-12-01", "Metadata": {}, "Parameters": [], "Steps": [train, tune]})


def shares(runner) -> list[dict]:
    found = []
    for model in runner.store.root.rglob("model.tar.gz"):
        with tarfile.open(model) as archive:
            found.append(json.loads(archive.extractfile("share.json").read()))
    return found


def test_train_beside_tunings_trials_never_holds_more_cpus_than_the_runner_has(tmp_path):
    runner = LocalRunner(tmp_path / "home", cpus=2, max_workers=2)

    outcome = runner.start(definition(code(runner)), pipeline_name="budget-test")

    assert outcome.status == "Succeeded", outcome.failure_reason
    records = shares(runner)
    assert len(records) == 5  # Train and four trials
    # Alone, Train wants every CPU; a trial wants its part (2 CPUs over 2 parallel trials).
    assert sorted(r["cpus"] for r in records) in ([1, 1, 1, 1, 2], [1, 1, 1, 1, 1])
    for record in records:
        overlapping = [
            r for r in records if r["started"] < record["ended"] and record["started"] < r["ended"]
        ]
        assert sum(r["cpus"] for r in overlapping) <= 2, overlapping
    assert runner.budget.in_use == 0
    # Each process a job ran left its time and peak memory beside the job's log.
    log = Path(outcome.steps["Train"].log_path)
    (usage,) = [json.loads(line) for line in (log.parent / USAGE_FILE).read_text().splitlines()]
    assert usage["status"] == 0
    assert usage["seconds"] >= 0.6  # the script sleeps that long
    assert 5 < usage["peak_mib"] < 2048

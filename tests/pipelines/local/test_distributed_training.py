"""A training job of several instances runs as one process per instance on loopback, each with its own
/opt/ml, SM_HOSTS, SM_CURRENT_HOST and resourceconfig.json, training steps/train.py in one XGBoost
collective over its ShardedByS3Key shard of the train channel."""

import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from step_definitions import training_channel

from pipelines.local.definition import DefinitionError, StepSpec
from pipelines.local.engine import LocalRunner
from pipelines.local.executors import TrainingExecutor
from pipelines.local.jobs import (
    DEFAULT_TRAINING_INSTANCE_QUOTA,
    RESOURCE_LIMIT,
    TRAINING_INSTANCE_QUOTA_VARIABLE,
    JobEnvironment,
    StepFailure,
    training_job,
)
from pipelines.local.store import ObjectStore
from steps import train

REPO = Path(__file__).resolve().parents[3]
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0"
BUCKET = "s3://distributed-tests"
#: How far two instances' validation AUC may fall from one instance's on the same rows: the
#: instances merge their quantile sketches, so split candidates differ a little, not the model's skill.
AUC_TOLERANCE = 0.02


def rows(count: int, seed: int) -> list[str]:
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(count, 4))
    y = (x[:, 0] - 0.7 * x[:, 1] + 0.5 * rng.normal(size=count) > 0).astype(int)
    return [f"{label},{','.join(f'{v:.4f}' for v in row)}\n" for label, row in zip(y, x, strict=True)]


@pytest.fixture
def store(tmp_path):
    return ObjectStore(tmp_path / "store")


@pytest.fixture
def code_uri(store):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(REPO / "steps" / "train.py", arcname="train.py")
    uri = f"{BUCKET}/code/sourcedir.tar.gz"
    store.put_bytes(uri, buffer.getvalue())
    return uri


def stage(store, parts: int, train_rows: int = 1600) -> None:
    train = rows(train_rows, seed=1)
    for part in range(parts):
        store.put_bytes(f"{BUCKET}/train/train-part-{part:04d}.csv", "".join(train[part::parts]).encode())
    store.put_bytes(f"{BUCKET}/validation/validation.csv", "".join(rows(400, seed=2)).encode())


def arguments(code_uri: str, instances) -> dict:
    return {
        "AlgorithmSpecification": {"TrainingImage": XGBOOST, "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": f"{BUCKET}/models"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        "ResourceConfig": {"InstanceCount": instances, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30},
        "RoleArn": "arn:aws:iam::000000000000:role/Local",
        "InputDataConfig": [
            training_channel("train", f"{BUCKET}/train", "ShardedByS3Key"),
            training_channel("validation", f"{BUCKET}/validation"),
        ],
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": code_uri,
            "num_round": "40",
            "max_depth": "3",
            "objective": "binary:logistic",
            "eval_metric": "auc",
        },
    }


def run_job(tmp_path, store, name, args, cpus=2):
    return training_job(name, args, JobEnvironment(store, tmp_path / "jobs", cpus))


def validation_auc(description) -> float:
    return next(m["Value"] for m in description["FinalMetricDataList"] if m["MetricName"] == "validation:auc")


def model_names(store, description) -> list[str]:
    data = store.get_bytes(description["ModelArtifacts"]["S3ModelArtifacts"])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return sorted(archive.getnames())


def single_instance_auc(hyperparameters: dict) -> float:
    """What one instance reaches on all the train rows: the script's own training, in process."""
    hp = {**train.DEFAULT_HYPERPARAMETERS, "nthread": 1}
    for name, value in hyperparameters.items():
        if name in hp:
            hp[name] = type(hp[name])(value)

    def parse(lines):
        values = np.array([[float(v) for v in line.split(",")] for line in lines])
        return values[:, 0], values[:, 1:]

    _, result = train.train_booster(
        parse(rows(1600, seed=1)), parse(rows(400, seed=2)), hp, log=lambda _: None
    )
    return result["validation"]


@pytest.mark.slow
def test_two_instances_reach_the_single_instance_validation_auc(tmp_path, store, code_uri):
    stage(store, parts=2)
    args = arguments(code_uri, 2)

    double = run_job(tmp_path, store, "double", args)

    single = single_instance_auc(args["HyperParameters"])
    assert single > 0.85
    assert abs(validation_auc(double) - single) <= AUC_TOLERANCE
    assert model_names(store, double) == ["xgboost-model.json"]
    log = (tmp_path / "jobs" / "double" / "log.txt").read_text()
    # Each instance trained on its own half of the train rows and only the first logged rounds.
    assert "training on 800 rows on algo-1's shard (1 of 2)" in log
    assert "training on 800 rows on algo-2's shard (2 of 2)" in log
    for host in ("algo-1", "algo-2"):
        config = tmp_path / "jobs" / "double" / host / "opt/ml/input/config/resourceconfig.json"
        assert json.loads(config.read_text())["current_host"] == host
        assert json.loads(config.read_text())["hosts"] == ["algo-1", "algo-2"]
        shard = sorted(
            p.name for p in (tmp_path / "jobs" / "double" / host / "opt/ml/input/data/train").iterdir()
        )
        assert shard == [f"train-part-000{int(host[-1]) - 1}.csv"]
    assert not (tmp_path / "jobs" / "double" / "algo-2" / "opt/ml/model" / "xgboost-model.json").exists()


@pytest.mark.slow
def test_an_instance_with_an_empty_shard_fails_the_job_with_one_clear_line(tmp_path, store, code_uri):
    stage(store, parts=1, train_rows=200)
    started = time.monotonic()

    with pytest.raises(StepFailure) as failure:
        run_job(tmp_path, store, "empty-shard", arguments(code_uri, 2))

    reason = failure.value.reason
    assert "\n" not in reason
    assert "AlgorithmError: training job empty-shard" in reason
    assert "algo-2" in reason and "holds no file" in reason
    # Both instances stop at once: the other does not wait for the collective to time out.
    assert time.monotonic() - started < 60


def test_an_instance_count_over_the_quota_is_refused_in_sagemakers_words(tmp_path, store, code_uri):
    stage(store, parts=2)
    count = DEFAULT_TRAINING_INSTANCE_QUOTA + 1

    with pytest.raises(StepFailure) as failure:
        run_job(tmp_path, store, "too-many", arguments(code_uri, count))

    assert failure.value.reason.startswith(
        f"ResourceLimitExceeded: The account-level service limit 'ml.m5.xlarge for training job usage' "
        f"is {DEFAULT_TRAINING_INSTANCE_QUOTA} Instances, with current utilization of 0 Instances and a "
        f"request delta of {count} Instances."
    )
    assert failure.value.exception_type == RESOURCE_LIMIT
    assert not (tmp_path / "jobs" / "too-many").exists()


def test_the_quota_is_checked_before_the_run_for_a_literal_count_and_follows_the_variable(
    code_uri, monkeypatch
):
    def problems(count):
        return TrainingExecutor().problems(StepSpec("Train", "Training", arguments(code_uri, count)))

    assert problems(DEFAULT_TRAINING_INSTANCE_QUOTA) == []
    assert any("ResourceLimitExceeded" in p for p in problems(DEFAULT_TRAINING_INSTANCE_QUOTA + 1))
    assert problems(0) == ["ResourceConfig.InstanceCount 0: a training job needs at least 1 instance"]
    # An expression (a pipeline parameter) is known only when the step runs.
    assert problems({"Get": "Parameters.TrainingInstanceCount"}) == []
    monkeypatch.setenv(TRAINING_INSTANCE_QUOTA_VARIABLE, "16")
    assert problems(16) == []


def test_a_parameter_count_over_the_quota_is_refused_before_anything_runs(tmp_path, code_uri):
    runner = LocalRunner(tmp_path / "home")
    args = arguments(code_uri, {"Get": "Parameters.TrainingInstanceCount"})
    step = {"Name": "Train", "Type": "Training", "Arguments": args}
    parameter = {"Name": "TrainingInstanceCount", "Type": "Integer", "DefaultValue": 1}
    text = json.dumps({"Version": "2020-12-01", "Metadata": {}, "Parameters": [parameter], "Steps": [step]})

    with pytest.raises(DefinitionError) as error:
        runner.start(text, pipeline_name="quota", parameters={"TrainingInstanceCount": 5})

    assert error.value.problems == (
        "step 'Train': ResourceLimitExceeded: The account-level service limit 'ml.m5.xlarge for training "
        "job usage' is 4 Instances, with current utilization of 0 Instances and a request delta of 5 "
        f"Instances. Please use AWS Service Quotas to request an increase for this quota (locally: "
        f"{TRAINING_INSTANCE_QUOTA_VARIABLE}).",
    )
    assert runner.records.list_executions() == []

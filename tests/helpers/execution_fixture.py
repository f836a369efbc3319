"""A small finished execution in a local home, written as the runner writes it: records, job logs
and step outputs (a real XGBoost model on a tiny table), without running the pipeline."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from pipelines.local.records import ExecutionRecords
from pipelines.local.store import ObjectStore
from steps import evaluate as evaluate_step
from steps import preprocess as preprocess_step

PIPELINE = "ChurnPipeline"
BUCKET = "sagemaker-local"
FEATURES = ["tenure", "calls", "plan=yes"]
STEP_NAMES = ["Preprocess", "Train", "Tune", "Evaluate", "CheckAuc", "RegisterModel", "MetricBelowThreshold"]


@dataclass
class Built:
    home: Path
    execution_id: str
    arn: str
    records: ExecutionRecords
    store: ObjectStore
    outputs: dict[str, str]


def definition() -> str:
    def step(name, type_, depends=(), arguments=None):
        return {"Name": name, "Type": type_, "Arguments": arguments or {}, "DependsOn": list(depends)}

    steps = [
        step("Preprocess", "Processing"),
        step("Train", "Training", ["Preprocess"]),
        step("Tune", "Tuning", ["Preprocess"]),
        step("Evaluate", "Processing", ["Tune"]),
        step(
            "CheckAuc",
            "Condition",
            ["Evaluate"],
            {
                "Conditions": [],
                "IfSteps": [step("RegisterModel", "RegisterModel")],
                "ElseSteps": [step("MetricBelowThreshold", "Fail")],
            },
        ),
    ]
    return json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": steps})


def step_types() -> list[tuple[str, str]]:
    """(name, type) of every step, branch steps included, as the runner announces them."""
    document = json.loads(definition())
    steps = document["Steps"] + [
        branch
        for step in document["Steps"]
        for key in ("IfSteps", "ElseSteps")
        for branch in step["Arguments"].get(key, [])
    ]
    return [(step["Name"], step["Type"]) for step in steps]


def _table(rows: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = np.column_stack([rng.uniform(0, 60, rows), rng.integers(0, 9, rows), rng.integers(0, 2, rows)])
    signal = 0.08 * features[:, 1] + 1.2 * features[:, 2] - 0.03 * features[:, 0]
    labels = (signal + rng.normal(0, 0.4, rows) > 0.3).astype(float)
    return labels, features


def _model_archive(labels, features) -> bytes:
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "seed": 0},
        xgb.DMatrix(features, label=labels),
        num_boost_round=8,
    )
    raw = booster.save_raw("json")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(evaluate_step.MODEL_FILENAME)
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(bytes(raw)))
    return buffer.getvalue()


def _csv(labels, features) -> bytes:
    return pd.DataFrame(np.column_stack([labels, features])).to_csv(header=False, index=False).encode()


def build(home: Path, execution_id: str = "fixture000001", *, status: str = "Succeeded") -> Built:
    """A succeeded execution; ``status='Executing'`` leaves it with Evaluate still running."""
    home = Path(home)
    records = ExecutionRecords(home / "executions" / "executions.sqlite")
    store = ObjectStore(home / "s3")
    base = f"s3://{BUCKET}/{PIPELINE}/{execution_id}"
    outputs = {
        "train": f"{base}/Preprocess/train",
        "test": f"{base}/Preprocess/test",
        "baseline": f"{base}/Preprocess/baseline",
        "schema": f"{base}/Preprocess/schema",
        "evaluation": f"{base}/Evaluate/evaluation",
        "model": f"s3://{BUCKET}/{PIPELINE}/tuning/{execution_id}-Tune-002/output/model.tar.gz",
    }
    labels, features = _table()
    test_labels, test_features = _table(60, seed=1)
    archive = _model_archive(labels, features)
    store.put_bytes(outputs["model"], archive)
    store.put_bytes(f"{outputs['train']}/train.csv", _csv(labels, features))
    store.put_bytes(f"{outputs['test']}/test.csv", _csv(test_labels, test_features))
    statistics = preprocess_step.baseline_statistics(pd.DataFrame(features))
    store.put_bytes(f"{outputs['baseline']}/statistics.json", json.dumps(statistics).encode())
    schema = {"problem_type": "binary_classification", "csv_columns": ["churn", *FEATURES]}
    store.put_bytes(f"{outputs['schema']}/schema.json", json.dumps(schema).encode())
    with tarfile.open(fileobj=io.BytesIO(archive)) as opened:
        booster = xgb.Booster()
        booster.load_model(bytearray(opened.extractfile(evaluate_step.MODEL_FILENAME).read()))
    predictions = booster.predict(xgb.DMatrix(test_features))
    evaluation = evaluate_step.evaluate("binary_classification", test_labels, predictions)
    auc = evaluation["binary_classification_metrics"]["auc"]["value"]

    execution = records.create_execution(PIPELINE, execution_id, definition(), {"AucThreshold": 0.6}, True)
    arn = execution.arn
    jobs = home / "jobs"

    def log(name: str, text: str) -> str:
        path = jobs / name / "log.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    def rounds(train: list[float], validation: list[float]) -> str:
        lines = [
            f"[{i}]#011train-auc:{t}#011validation-auc:{v}"
            for i, (t, v) in enumerate(zip(train, validation, strict=True))
        ]
        return (
            "\n".join(
                [
                    "training on 120 rows",
                    *lines,
                    f"[best]#011train-auc:{train[-1]}#011validation-auc:{validation[-1]}",
                ]
            )
            + "\n"
        )

    def processing(name, inputs, out):
        return {
            "ProcessingJobName": f"pipelines-{execution_id}-{name}",
            "ProcessingInputs": [{"InputName": k, "S3Input": {"S3Uri": v}} for k, v in inputs.items()],
            "ProcessingOutputConfig": {
                "Outputs": [{"OutputName": k, "S3Output": {"S3Uri": v}} for k, v in out.items()]
            },
        }

    t = "2026-11-30T10:00:{:02d}+00:00".format
    records.put_step(
        arn,
        "Preprocess",
        "Processing",
        "Succeeded",
        attempts=1,
        started=t(0),
        ended=t(4),
        properties=processing(
            "Preprocess", {}, {k: outputs[k] for k in ("train", "test", "baseline", "schema")}
        ),
        log_path=log(f"pipelines-{execution_id}-Preprocess", "preprocessed\n"),
    )
    train_job = f"pipelines-{execution_id}-Train"
    records.put_step(
        arn,
        "Train",
        "Training",
        "Succeeded",
        attempts=1,
        started=t(4),
        ended=t(9),
        properties={
            "TrainingJobName": train_job,
            "HyperParameters": {"eta": "0.1", "max_depth": "6", "sagemaker_program": "train.py"},
            "ModelArtifacts": {
                "S3ModelArtifacts": f"s3://{BUCKET}/{PIPELINE}/training/{train_job}/output/model.tar.gz"
            },
            "FinalMetricDataList": [
                {"MetricName": "train:auc", "Value": 0.91},
                {"MetricName": "validation:auc", "Value": 0.84},
            ],
        },
        log_path=log(train_job, rounds([0.8, 0.86, 0.91], [0.78, 0.82, 0.84])),
    )
    tune_dir = jobs / f"pipelines-{execution_id}-Tune"
    summaries = []
    for number, (eta, value) in enumerate([(0.05, 0.81), (0.2, 0.88), (0.3, 0.85)], start=1):
        trial = f"{execution_id}-Tune-{number:03d}"
        (tune_dir / trial).mkdir(parents=True, exist_ok=True)
        (tune_dir / trial / "log.txt").write_text(rounds([0.8, 0.9], [value - 0.02, value]))
        summaries.append(
            {
                "TrainingJobName": trial,
                "TrainingJobStatus": "Completed",
                "TunedHyperParameters": {"eta": str(eta), "max_depth": str(2 + number)},
                "FinalHyperParameterTuningJobObjectiveMetric": {
                    "MetricName": "validation:auc",
                    "Value": value,
                },
            }
        )
    records.put_step(
        arn,
        "Tune",
        "Tuning",
        "Succeeded",
        attempts=1,
        started=t(4),
        ended=t(20),
        properties={
            "HyperParameterTuningJobName": f"{execution_id}-Tune",
            "HyperParameterTuningJobConfig": {
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"MetricName": "validation:auc", "Type": "Maximize"},
                "ParameterRanges": {
                    "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3"}],
                    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "3", "MaxValue": "10"}],
                },
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 3},
            },
            "TrainingJobDefinition": {
                "StaticHyperParameters": {"num_round": "8", "sagemaker_program": "train.py"},
                "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{PIPELINE}/tuning"},
                "InputDataConfig": [
                    {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": outputs["train"]}}}
                ],
            },
            "TrainingJobSummaries": summaries,
            "BestTrainingJob": summaries[1],
        },
        log_path=str(tune_dir),
    )
    if status == "Executing":
        records.put_step(arn, "Evaluate", "Processing", "Executing", attempts=1, started=t(20))
        return Built(home, execution_id, arn, records, store, outputs)
    store.put_bytes(f"{outputs['evaluation']}/evaluation.json", json.dumps(evaluation).encode())
    records.put_step(
        arn,
        "Evaluate",
        "Processing",
        "Succeeded",
        attempts=1,
        started=t(20),
        ended=t(24),
        properties=processing(
            "Evaluate",
            {"model": outputs["model"], "test": outputs["test"]},
            {"evaluation": outputs["evaluation"]},
        ),
        log_path=log(f"pipelines-{execution_id}-Evaluate", "evaluated\n"),
    )
    records.put_step(
        arn,
        "CheckAuc",
        "Condition",
        "Succeeded",
        attempts=1,
        started=t(24),
        ended=t(24),
        properties={
            "Outcome": auc >= 0.6,
            "EvaluatedConditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": auc, "RightValue": 0.6}],
        },
    )
    from pipelines.registry.local import FILE_NAME, LocalModelRegistry

    registry = LocalModelRegistry(home / FILE_NAME)
    registry.ensure_group("ChurnModelPackageGroup")
    package = registry.register(
        "ChurnModelPackageGroup",
        model_data_url=outputs["model"],
        image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0",
        environment={},
        content_types=["text/csv"],
        response_types=["text/csv"],
        approval_status="PendingManualApproval",
        model_metrics={
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"{outputs['evaluation']}/evaluation.json",
                }
            },
            "ModelDataQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"{outputs['baseline']}/statistics.json",
                }
            },
        },
        customer_metadata={"ProblemType": "binary_classification", "GateMetric": "auc"},
        description="",
        by=f"pipeline execution {execution_id}",
    )
    records.put_step(
        arn,
        "RegisterModel",
        "RegisterModel",
        "Succeeded",
        attempts=1,
        started=t(25),
        ended=t(26),
        properties=package.to_describe(),
    )
    records.set_execution_status(arn, "Succeeded")
    return Built(home, execution_id, arn, records, store, outputs)

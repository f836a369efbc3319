"""The AWS report's per-round training metrics (CloudWatch Logs) and gate values (recomputed from the
definition, the parameters and evaluation.json in S3), against moto. moto 5.2.5 lacks only
ListPipelineExecutionSteps; that one call is added beside moto's client, its answer checked against
botocore's shape."""

import json
import re
import time
from datetime import datetime, timezone

import boto3
import pytest
from botocore.validate import validate_parameters
from moto import mock_aws

from pipelines.report.build import aws_report
from pipelines.report.execution import aws_execution
from pipelines.report.insights import gather, iteration_metrics
from pipelines.report.logs import TRAINING_LOG_GROUP, CloudWatchJobLogs
from pipelines.report.objects import S3Objects

REGION = "us-east-1"
BUCKET = "artifacts"
ROLE = "arn:aws:iam::123456789012:role/pipeline"
EVALUATION = f"s3://{BUCKET}/churn/evaluation"
JSON_PATH = "binary_classification_metrics.auc.value"

DEFINITION = {
    "Version": "2020-12-01",
    "Parameters": [{"Name": "AucThreshold", "Type": "Float", "DefaultValue": 0.8}],
    "Steps": [
        {"Name": "Train", "Type": "Training", "Arguments": {}},
        {
            "Name": "Evaluate",
            "Type": "Processing",
            "Arguments": {},
            "DependsOn": ["Train"],
            "PropertyFiles": [
                {
                    "PropertyFileName": "EvaluationReport",
                    "OutputName": "evaluation",
                    "FilePath": "evaluation.json",
                }
            ],
        },
        {
            "Name": "CheckAuc",
            "Type": "Condition",
            "DependsOn": ["Evaluate"],
            "Arguments": {
                "Conditions": [
                    {
                        "Type": "GreaterThanOrEqualTo",
                        "LeftValue": {
                            "Std:JsonGet": {
                                "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
                                "Path": JSON_PATH,
                            }
                        },
                        "RightValue": {"Get": "Parameters.AucThreshold"},
                    }
                ],
                "IfSteps": [],
                "ElseSteps": [],
            },
        },
    ],
}

ALGO_1 = [
    "[2026-11-30:10:00:01:INFO] Single node training.",
    "[0]#011train-auc:0.81000#011validation-auc:0.78000",
    "[1]#011train-auc:0.86000#011validation-auc:0.80000",
    "[2]#011train-auc:0.90000#011validation-auc:0.83000",
]


class WithExecutionSteps:
    """moto's SageMaker client, plus ListPipelineExecutionSteps answering ``steps``."""

    def __init__(self, client, steps):
        self._client, self._steps = client, steps
        model = client.meta.service_model.operation_model("ListPipelineExecutionSteps")
        validate_parameters({"PipelineExecutionSteps": steps}, model.output_shape)
        self._input_shape = model.input_shape

    def __getattr__(self, name):
        return getattr(self._client, name)

    def list_pipeline_execution_steps(self, **kwargs):
        validate_parameters(kwargs, self._input_shape)
        return {"PipelineExecutionSteps": self._steps}


@pytest.fixture
def aws():
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        logs = boto3.client("logs", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(
            Bucket=BUCKET,
            Key="churn/evaluation/evaluation.json",
            Body=json.dumps({"binary_classification_metrics": {"auc": {"value": 0.83}}}).encode(),
        )
        sm.create_pipeline(PipelineName="churn", PipelineDefinition=json.dumps(DEFINITION), RoleArn=ROLE)
        arn = sm.start_pipeline_execution(
            PipelineName="churn", PipelineParameters=[{"Name": "AucThreshold", "Value": "0.7"}]
        )["PipelineExecutionArn"]
        train = sm.create_training_job(
            TrainingJobName="churn-train-1",
            AlgorithmSpecification={"TrainingImage": "xgboost", "TrainingInputMode": "File"},
            RoleArn=ROLE,
            HyperParameters={"max_depth": "3", "sagemaker_program": "train.py"},
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/churn/models"},
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
        )["TrainingJobArn"]
        evaluate = sm.create_processing_job(
            ProcessingJobName="churn-evaluate-1",
            ProcessingResources={
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 10}
            },
            AppSpecification={"ImageUri": "xgboost"},
            RoleArn=ROLE,
            ProcessingOutputConfig={
                "Outputs": [
                    {
                        "OutputName": "evaluation",
                        "S3Output": {
                            "S3Uri": EVALUATION,
                            "LocalPath": "/opt/ml/processing/evaluation",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
        )["ProcessingJobArn"]
        logs.create_log_group(logGroupName=TRAINING_LOG_GROUP)
        now = int(time.time() * 1000)
        # A second instance's stream with other values: the report reads the first host's (algo-1).
        for stream, lines in (
            ("churn-train-1/algo-2-1764496800", [line.replace("0.8", "0.1") for line in ALGO_1]),
            ("churn-train-1/algo-1-1764496800", ALGO_1),
        ):
            logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream)
            logs.put_log_events(
                logGroupName=TRAINING_LOG_GROUP,
                logStreamName=stream,
                # CloudWatch refuses events older than 14 days: the job ran just now.
                logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
            )
        t0 = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)
        steps = [
            {"StepName": "Train", "StepStatus": "Succeeded", "StartTime": t0, "EndTime": t0,
             "Metadata": {"TrainingJob": {"Arn": train}}},
            {"StepName": "Evaluate", "StepStatus": "Succeeded", "StartTime": t0, "EndTime": t0,
             "Metadata": {"ProcessingJob": {"Arn": evaluate}}},
            {"StepName": "CheckAuc", "StepStatus": "Succeeded", "StartTime": t0, "EndTime": t0,
             "Metadata": {"Condition": {"Outcome": "True"}}},
        ]  # fmt: skip
        yield arn, WithExecutionSteps(sm, steps), s3, logs


def _insights(aws):
    arn, sm, s3, logs = aws
    view = aws_execution(sm, arn)
    return view, gather(view, S3Objects(s3), logs=CloudWatchJobLogs(logs), with_predictions=False)


def test_per_round_metrics_come_from_the_first_hosts_cloudwatch_stream(aws):
    _, found = _insights(aws)
    assert found.training_curves["Train"] == {
        "train:auc": [(0, 0.81), (1, 0.86), (2, 0.9)],
        "validation:auc": [(0, 0.78), (1, 0.8), (2, 0.83)],
    }


def test_the_gate_values_are_recomputed_from_evaluation_json_and_the_executions_parameters(aws):
    _, found = _insights(aws)
    [gate] = found.gates
    assert gate.outcome is True
    # 0.7 is the value the execution was started with, not the definition's default 0.8.
    assert gate.conditions == [{"Type": "GreaterThanOrEqualTo", "LeftValue": 0.83, "RightValue": 0.7}]
    assert found.gaps == []


def test_the_report_page_shows_the_curves_and_the_gate(aws, tmp_path):
    arn, sm, s3, logs = aws
    html = aws_report(arn, tmp_path / "r.html", sm=sm, s3=s3, logs=logs).read_text()
    assert 'data-plot="training-Train"' in html
    gate_row = re.search(r"<h2>Gate</h2><table>.*?<tr><td>CheckAuc</td>(.*?)</tr>", html).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", gate_row) == ["0.83", "GreaterThanOrEqualTo", "0.7", "true"]


def test_an_expired_log_stream_is_a_marked_gap(aws):
    arn, sm, s3, logs = aws
    logs.delete_log_group(logGroupName=TRAINING_LOG_GROUP)
    _, found = _insights(aws)
    assert found.training_curves == {}
    assert found.gaps == [
        f"Train: no per-round metrics: churn-train-1: {TRAINING_LOG_GROUP}: ResourceNotFoundException"
    ]


def test_a_deleted_evaluation_leaves_the_outcome_and_names_what_is_missing(aws):
    arn, sm, s3, logs = aws
    s3.delete_object(Bucket=BUCKET, Key="churn/evaluation/evaluation.json")
    _, found = _insights(aws)
    [gate] = found.gates
    assert gate.outcome is True and gate.conditions == []
    assert (
        f"CheckAuc: the compared values cannot be recomputed: {EVALUATION}/evaluation.json: NoSuchKey"
        in found.gaps
    )


def test_the_aws_execution_is_logged_with_its_per_round_metrics(aws, tmp_path):
    from mlflow.tracking import MlflowClient

    from pipelines.tracking.mlflow_log import log_execution

    view, found = _insights(aws)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    warnings = []
    assert log_execution(
        uri,
        view,
        found,
        artifact_root=tmp_path / "artifacts",
        logs=CloudWatchJobLogs(aws[3]),
        warn=warnings.append,
    )
    assert warnings == []
    client = MlflowClient(tracking_uri=uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "churn"]
    [train] = client.search_runs([experiment.experiment_id], "tags.`sagemaker.step` = 'Train'")
    history = client.get_metric_history(train.info.run_id, "validation:auc")
    assert [(m.step, m.value) for m in history] == [(0, 0.78), (1, 0.8), (2, 0.83)]
    assert train.data.params == {"max_depth": "3"}
    [parent] = client.search_runs([experiment.experiment_id], "tags.`sagemaker.run_kind` = 'execution'")
    assert parent.data.tags["sagemaker.gate.CheckAuc"] == "true"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "[3]#011train-rmse:1.5#011validation-rmse:2.5",
            {"train:rmse": [(3, 1.5)], "validation:rmse": [(3, 2.5)]},
        ),
        ("[10:00:01] [4]\tvalidation-auc:0.9", {"validation:auc": [(4, 0.9)]}),
        ("[2026-11-30:10:00:01:INFO] validation-auc:0.9", {}),
    ],
)
def test_a_round_line_may_carry_a_prefix_as_the_containers_metric_regexes_allow(line, expected):
    assert iteration_metrics(line) == expected

"""The report of a SageMaker execution: ListPipelineExecutionSteps and the job descriptions through
botocore's Stubber (moto lacks list_pipeline_execution_steps), the step outputs in moto's S3."""

import re
from datetime import datetime, timezone

import boto3
import execution_fixture
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.errors import NotFoundError
from pipelines.report.build import aws_report

ARN = "arn:aws:sagemaker:us-east-1:111122223333:pipeline/churnpipeline/execution/abc123"
JOB = "arn:aws:sagemaker:us-east-1:111122223333:{}/{}"
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def processing_job(name, inputs, outputs):
    return {
        "ProcessingJobName": name,
        "ProcessingJobArn": JOB.format("processing-job", name),
        "ProcessingJobStatus": "Completed",
        "CreationTime": T0,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
        },
        "AppSpecification": {"ImageUri": "image"},
        "ProcessingInputs": [
            {"InputName": k, "S3Input": {"S3Uri": v, "S3DataType": "S3Prefix", "LocalPath": "/opt/ml/x"}}
            for k, v in inputs.items()
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": k,
                    "S3Output": {"S3Uri": v, "S3UploadMode": "EndOfJob", "LocalPath": "/opt/ml/y"},
                }
                for k, v in outputs.items()
            ]
        },
    }


@pytest.fixture
def aws(tmp_path):
    built = execution_fixture.build(tmp_path)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=execution_fixture.BUCKET)
        for key, path in built.store.list(f"s3://{execution_fixture.BUCKET}/"):
            s3.put_object(Bucket=execution_fixture.BUCKET, Key=key, Body=path.read_bytes())
        sm = boto3.client("sagemaker", region_name="us-east-1")
        yield built, sm, s3


def stub_execution(stub: Stubber, built, status="Succeeded"):
    out = built.outputs
    stub.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionArn": ARN, "PipelineExecutionStatus": status, "CreationTime": T0},
        {"PipelineExecutionArn": ARN},
    )
    stub.add_response(
        "describe_pipeline_definition_for_execution",
        {"PipelineDefinition": execution_fixture.definition()},
        {"PipelineExecutionArn": ARN},
    )
    steps = [
        {
            "StepName": "Preprocess",
            "StepStatus": "Succeeded",
            "StartTime": T0,
            "EndTime": datetime(2026, 11, 30, 10, 0, 5, tzinfo=timezone.utc),
            "Metadata": {"ProcessingJob": {"Arn": JOB.format("processing-job", "pre")}},
        },
        {
            "StepName": "Train",
            "StepStatus": "Failed",
            "FailureReason": "AlgorithmError: see the job's log",
            "Metadata": {"TrainingJob": {"Arn": JOB.format("training-job", "train")}},
        },
    ]
    if status == "Succeeded":
        steps.append(
            {
                "StepName": "Evaluate",
                "StepStatus": "Succeeded",
                "CacheHitResult": {"SourcePipelineExecutionArn": ARN.replace("abc123", "older1")},
                "Metadata": {"ProcessingJob": {"Arn": JOB.format("processing-job", "eval")}},
            }
        )
    stub.add_response(
        "list_pipeline_execution_steps", {"PipelineExecutionSteps": steps}, {"PipelineExecutionArn": ARN}
    )
    stub.add_response(
        "list_pipeline_parameters_for_execution",
        {"PipelineParameters": [{"Name": "AucThreshold", "Value": "0.6"}]},
        {"PipelineExecutionArn": ARN},
    )
    preprocess = {k: out[k] for k in ("train", "test", "baseline", "schema")}
    stub.add_response(
        "describe_processing_job", processing_job("pre", {}, preprocess), {"ProcessingJobName": "pre"}
    )
    stub.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "train",
            "TrainingJobArn": JOB.format("training-job", "train"),
            "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m"},
            "TrainingJobStatus": "Failed",
            "SecondaryStatus": "Failed",
            "StoppingCondition": {},
            "CreationTime": T0,
        },
        {"TrainingJobName": "train"},
    )
    if status == "Succeeded":
        stub.add_response(
            "describe_processing_job",
            processing_job(
                "eval", {"model": out["model"], "test": out["test"]}, {"evaluation": out["evaluation"]}
            ),
            {"ProcessingJobName": "eval"},
        )


def test_the_aws_report_reads_steps_jobs_and_s3_outputs(aws, tmp_path):
    built, sm, s3 = aws
    with Stubber(sm) as stub:
        stub_execution(stub, built)
        html = aws_report(ARN, tmp_path / "aws.html", sm=sm, s3=s3).read_text()
        stub.assert_no_pending_responses()
    statuses = dict(re.findall(r'data-step="([^"]+)" data-status="([^"]+)"', html))
    assert statuses["Preprocess"] == "Succeeded"
    assert statuses["Train"] == "Failed"
    assert statuses["Tune"] == "NotStarted"
    assert "AlgorithmError: see the job&#x27;s log" in html
    assert "from older1" in html  # the cache hit
    assert {"roc", "pr", "calibration", "confusion", "importance"} <= set(
        re.findall(r'data-plot="([^"]+)"', html)
    )
    assert "tenure" in html


def test_a_running_aws_execution_is_shown_as_running(aws, tmp_path):
    built, sm, s3 = aws
    with Stubber(sm) as stub:
        stub_execution(stub, built, status="Executing")
        html = aws_report(ARN, tmp_path / "aws.html", sm=sm, s3=s3).read_text()
    assert re.search(r'id="status"[^>]*>Running<', html)
    assert "No evaluation report" in html


def test_an_unknown_aws_execution_is_not_found(aws, tmp_path):
    _, sm, s3 = aws
    with Stubber(sm) as stub:
        stub.add_client_error(
            "describe_pipeline_execution", "ResourceNotFound", "Pipeline execution not found"
        )
        with pytest.raises(NotFoundError, match="no pipeline execution .*abc123"):
            aws_report(ARN, tmp_path / "aws.html", sm=sm, s3=s3)
    assert not (tmp_path / "aws.html").exists()

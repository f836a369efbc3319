"""A QualityCheckStep built by the installed SageMaker SDK (3.27.0) runs in the local runner as
written: the definition shape is the SDK's, not a hand-written imitation of it."""

import json
import os

import boto3
import numpy as np
import pandas as pd
import pytest

from pipelines.local.engine import LocalRunner

ROLE = "arn:aws:iam::000000000000:role/LocalPipelineRole"
OUTPUT = "s3://checks-tests/monitoring/data-quality"


@pytest.fixture(scope="module")
def sdk_definition():
    # The SDK makes clients at import (it needs a region) and checks roles with IAM unless told not to.
    wanted = {"SAGEMAKER_VALIDATE_ROLE": "false", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        from sagemaker.core.model_monitor.dataset_format import DatasetFormat
        from sagemaker.core.workflow.parameters import ParameterBoolean, ParameterString
        from sagemaker.core.workflow.pipeline_context import PipelineSession
        from sagemaker.mlops.workflow.check_job_config import CheckJobConfig
        from sagemaker.mlops.workflow.pipeline import Pipeline
        from sagemaker.mlops.workflow.quality_check_step import DataQualityCheckConfig, QualityCheckStep

        session = PipelineSession(
            boto_session=boto3.Session(region_name="us-east-1"),
            default_bucket="checks-tests",
            sagemaker_config={"SchemaVersion": "1.0", "SageMaker": {}},
        )
        session.sagemaker_config = {}
        data = ParameterString("BaselineDataset", default_value="s3://checks-tests/data/train/")
        skip = ParameterBoolean("SkipCheck", default_value=True)
        supplied = ParameterString("SuppliedConstraints", default_value="")
        step = QualityCheckStep(
            name="DataQualityCheck",
            quality_check_config=DataQualityCheckConfig(
                baseline_dataset=data, dataset_format=DatasetFormat.csv(header=True), output_s3_uri=OUTPUT
            ),
            check_job_config=CheckJobConfig(
                role=ROLE, instance_count=1, instance_type="ml.m5.xlarge", sagemaker_session=session
            ),
            skip_check=skip,
            register_new_baseline=True,
            fail_on_violation=True,
            supplied_baseline_constraints=supplied,
        )
        return Pipeline(
            name="checks", parameters=[data, skip, supplied], steps=[step], sagemaker_session=session
        ).definition()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_the_sdks_quality_check_step_runs_and_then_catches_drift(tmp_path, sdk_definition):
    step = json.loads(sdk_definition)["Steps"][0]
    assert (step["Type"], step["CheckType"]) == ("QualityCheck", "DATA_QUALITY")
    runner = LocalRunner(tmp_path / "home")
    rng = np.random.RandomState(0)
    train = pd.DataFrame({"age": rng.randint(18, 90, 500), "balance": rng.normal(1000, 200, 500)})
    runner.store.put_bytes("s3://checks-tests/data/train/train.csv", train.to_csv(index=False).encode())
    first = runner.start(sdk_definition, pipeline_name="checks")
    assert first.status == "Succeeded", first.failure_reason
    assert (
        first.properties["DataQualityCheck"]["CalculatedBaselineConstraints"] == f"{OUTPUT}/constraints.json"
    )

    # The SDK's output location is fixed: keep the baseline somewhere the next run does not write.
    runner.store.put_bytes(
        "s3://checks-tests/baseline/constraints.json", runner.store.get_bytes(f"{OUTPUT}/constraints.json")
    )
    runner.store.put_bytes(
        "s3://checks-tests/data/today/today.csv",
        train.assign(age=train["age"] + 0.5).to_csv(index=False).encode(),
    )
    second = runner.start(
        sdk_definition,
        pipeline_name="checks",
        parameters={
            "BaselineDataset": "s3://checks-tests/data/today/",
            "SkipCheck": "false",
            "SuppliedConstraints": "s3://checks-tests/baseline/constraints.json",
        },
    )
    assert second.status == "Failed"
    violations = json.loads(runner.store.get_bytes(f"{OUTPUT}/constraint_violations.json"))["violations"]
    assert [(v["feature_name"], v["constraint_check_type"]) for v in violations] == [
        ("age", "data_type_check")
    ]

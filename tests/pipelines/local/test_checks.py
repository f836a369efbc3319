"""QualityCheck steps in the local runner: the definitions under ``fixtures/checks/`` are shaped as
the SageMaker SDK writes them (its v2 unit tests' expected ``QualityCheckStep`` requests)."""

import json
from pathlib import Path

import botocore.session
import numpy as np
import pandas as pd
import pytest

from pipelines.local.definition import DefinitionError
from pipelines.local.engine import LocalRunner

FIXTURES = Path(__file__).parent / "fixtures" / "checks"
DATA = "s3://checks-tests/data"


@pytest.fixture
def runner(tmp_path):
    return LocalRunner(tmp_path / "home")


def put_csv(runner, uri, frame):
    runner.store.put_bytes(uri, frame.to_csv(index=False).encode())


def churn_like(seed=0, rows=400, shift=0.0):
    rng = np.random.RandomState(seed)
    return pd.DataFrame(
        {
            "tenure": rng.randint(0, 72, rows),
            "charges": rng.normal(70 + shift, 10, rows).round(2),
            "plan": rng.choice(["basic", "plus"], rows),
        }
    )


def start(runner, fixture, **parameters):
    text = (FIXTURES / fixture).read_text()
    values = {
        key: str(value).lower() if isinstance(value, bool) else value for key, value in parameters.items()
    }
    return runner.start(text, pipeline_name="checks", parameters=values, source=fixture)


def step(runner, outcome, name):
    answer = runner.records.list_execution_steps(outcome.arn)
    return next(e for e in answer["PipelineExecutionSteps"] if e["StepName"] == name)


def read(runner, uri):
    return json.loads(runner.store.get_bytes(uri))


def first_baseline(runner):
    put_csv(runner, f"{DATA}/train/train.csv", churn_like())
    outcome = start(runner, "quality_check_data.json")
    assert outcome.status == "Succeeded", outcome.failure_reason
    return outcome.properties["DataQualityCheck"]


def test_a_first_run_calculates_and_registers_a_new_baseline(runner):
    properties = first_baseline(runner)
    statistics = properties["CalculatedBaselineStatistics"]
    constraints = properties["CalculatedBaselineConstraints"]
    assert statistics.endswith("/data-quality/statistics.json")
    assert constraints.endswith("/data-quality/constraints.json")
    # RegisterNewBaseline: the new baseline is the one later steps use for drift checks.
    assert properties["BaselineUsedForDriftCheckStatistics"] == statistics
    assert properties["BaselineUsedForDriftCheckConstraints"] == constraints
    stats = read(runner, statistics)
    assert stats["dataset"]["item_count"] == 400
    assert [f["name"] for f in stats["features"]] == ["tenure", "charges", "plan"]
    assert [f["inferred_type"] for f in read(runner, constraints)["features"]] == [
        "Integral",
        "Fractional",
        "String",
    ]
    # SkipCheck: no drift check, so no violation report.
    assert not runner.store.exists(statistics.replace("statistics.json", "constraint_violations.json"))


def test_the_same_data_against_its_baseline_passes_and_keeps_the_previous_baseline(runner):
    baseline = first_baseline(runner)
    outcome = start(
        runner,
        "quality_check_data.json",
        SkipCheck=False,
        RegisterNewBaseline=False,
        SuppliedBaselineStatisticsUri=baseline["CalculatedBaselineStatistics"],
        SuppliedBaselineConstraintsUri=baseline["CalculatedBaselineConstraints"],
    )
    assert outcome.status == "Succeeded", outcome.failure_reason
    properties = outcome.properties["DataQualityCheck"]
    assert properties["BaselineUsedForDriftCheckConstraints"] == baseline["CalculatedBaselineConstraints"]
    assert properties["CalculatedBaselineConstraints"] != baseline["CalculatedBaselineConstraints"]
    report = properties["CalculatedBaselineStatistics"].replace(
        "statistics.json", "constraint_violations.json"
    )
    assert read(runner, report) == {"violations": []}
    metadata = step(runner, outcome, "DataQualityCheck")["Metadata"]["QualityCheck"]
    assert metadata["CheckType"] == "DATA_QUALITY"
    assert metadata["SkipCheck"] is False and metadata["RegisterNewBaseline"] is False
    assert "ViolationReport" not in metadata
    # The ListPipelineExecutionSteps shape SageMaker answers with.
    shape = (
        botocore.session.get_session().get_service_model("sagemaker").shape_for("QualityCheckStepMetadata")
    )
    assert set(metadata) <= set(shape.members)
    assert metadata["BaselineUsedForDriftCheckStatistics"] == baseline["CalculatedBaselineStatistics"]


def test_drift_with_fail_on_violation_fails_the_step_and_keeps_the_report(runner):
    baseline = first_baseline(runner)
    drifted = churn_like(seed=1, shift=30.0).assign(extra=1)
    put_csv(runner, f"{DATA}/today/today.csv", drifted)
    outcome = start(
        runner,
        "quality_check_data.json",
        BaselineDataset=f"{DATA}/today/",
        SkipCheck=False,
        RegisterNewBaseline=False,
        SuppliedBaselineStatisticsUri=baseline["CalculatedBaselineStatistics"],
        SuppliedBaselineConstraintsUri=baseline["CalculatedBaselineConstraints"],
    )
    assert outcome.status == "Failed"
    entry = step(runner, outcome, "DataQualityCheck")
    assert entry["StepStatus"] == "Failed"
    reason = entry["FailureReason"]
    assert reason.startswith("DATA_QUALITY check failed: 2 violation(s) of the baseline constraints")
    assert "baseline_drift_check, extra_column_check: charges, extra" in reason
    report = reason.rsplit("see ", 1)[1]
    violations = read(runner, report)["violations"]
    assert [(v["feature_name"], v["constraint_check_type"]) for v in violations] == [
        ("charges", "baseline_drift_check"),
        ("extra", "extra_column_check"),
    ]


def test_a_check_without_any_previous_baseline_fails_before_writing(runner):
    put_csv(runner, f"{DATA}/train/train.csv", churn_like())
    outcome = start(runner, "quality_check_data.json", SkipCheck=False)
    assert outcome.status == "Failed"
    reason = step(runner, outcome, "DataQualityCheck")["FailureReason"]
    assert reason == (
        "DATA_QUALITY needs a previous baseline (SkipCheck is false), but no SuppliedBaselineConstraints is "
        "given and no ModelPackageGroupName is given; supply a baseline, or set SkipCheck and "
        "RegisterNewBaseline to true for a first run"
    )
    assert not runner.store.exists("s3://checks-tests/monitoring/")


def test_a_model_package_group_without_approved_baselines_is_no_baseline(runner):
    runner.registry().ensure_group("Churn")
    put_csv(runner, f"{DATA}/train/train.csv", churn_like())
    outcome = start(runner, "quality_check_data.json", RegisterNewBaseline=False, ModelPackageGroup="Churn")
    reason = step(runner, outcome, "DataQualityCheck")["FailureReason"]
    assert "(RegisterNewBaseline is false)" in reason
    assert (
        "model package group 'Churn' has no approved version with ModelDataQuality drift check baselines"
        in reason
    )


def test_a_baseline_in_the_wrong_format_fails_the_step_naming_the_file(runner):
    put_csv(runner, f"{DATA}/train/train.csv", churn_like())
    wrong = f"{DATA}/baseline/constraints.json"
    runner.store.put_bytes(wrong, json.dumps({"version": 0.0, "regression_constraints": {}}).encode())
    outcome = start(runner, "quality_check_data.json", SkipCheck=False, SuppliedBaselineConstraintsUri=wrong)
    reason = step(runner, outcome, "DataQualityCheck")["FailureReason"]
    assert reason == (
        f"baseline in the wrong format: {wrong}: holds 'regression_constraints': a model-quality "
        "constraints file, not a data-quality one"
    )
    assert not runner.store.exists("s3://checks-tests/monitoring/")
    missing = f"{DATA}/baseline/nothing.json"
    outcome = start(
        runner, "quality_check_data.json", SkipCheck=False, SuppliedBaselineConstraintsUri=missing
    )
    assert step(runner, outcome, "DataQualityCheck")["FailureReason"] == (
        f"SuppliedBaselineConstraints {missing} is not an object in the local object store"
    )


def test_a_dataset_that_is_not_there_or_not_csv_fails_the_step(runner):
    outcome = start(runner, "quality_check_data.json")
    assert step(runner, outcome, "DataQualityCheck")["FailureReason"] == (
        f"dataset {DATA}/train/: no objects at this location in the local object store"
    )
    runner.store.put_bytes(f"{DATA}/train/bad.csv", b'a,b\n1,"2\n')
    outcome = start(runner, "quality_check_data.json")
    assert step(runner, outcome, "DataQualityCheck")["FailureReason"].startswith(
        f"{DATA}/train/bad.csv: cannot parse CSV"
    )


def test_an_invalid_check_step_is_refused_before_anything_runs(runner):
    with pytest.raises(DefinitionError) as err:
        start(runner, "quality_check_invalid.json")
    problems = err.value.problems
    assert (
        "step 'DataQualityCheck': unknown CheckType 'DATA_DRIFT' for a QualityCheck step; "
        "supported: DATA_QUALITY, MODEL_QUALITY" in problems
    )
    assert any("SkipCheck must be true or false, got 'no'" in p for p in problems)
    # Fields beside Arguments are validated like Arguments.
    assert any("reads unknown step 'Elsewhere'" in p for p in problems)
    assert any("is not the sagemaker-model-monitor-analyzer image" in p for p in problems)
    assert any("parquet and sagemaker capture formats are not supported locally" in p for p in problems)
    assert runner.records.list_executions(pipeline_name="checks") == []


def scored(seed, rows=300, flip=0):
    rng = np.random.RandomState(seed)
    label = rng.randint(0, 2, rows)
    probability = np.clip(label * 0.7 + rng.uniform(0, 0.3, rows), 0, 1)
    probability[:flip] = 1 - probability[:flip]
    return pd.DataFrame(
        {"label": label, "prediction": (probability >= 0.5).astype(int), "probability": probability}
    )


def test_model_quality_baseline_then_a_worse_model_violates_it(runner):
    put_csv(runner, f"{DATA}/train/scored.csv", scored(0))
    first = start(runner, "quality_check_model.json")
    assert first.status == "Succeeded", first.failure_reason
    properties = first.properties["ModelQualityCheck"]
    metrics = read(runner, properties["CalculatedBaselineStatistics"])["binary_classification_metrics"]
    assert metrics["accuracy"]["value"] == 1.0
    assert metrics["auc"]["value"] == 1.0
    constraints = read(runner, properties["CalculatedBaselineConstraints"])[
        "binary_classification_constraints"
    ]
    assert constraints["accuracy"] == {"threshold": 1.0, "comparison_operator": "LessThanThreshold"}

    put_csv(runner, f"{DATA}/worse/scored.csv", scored(0, flip=60))
    worse = start(
        runner,
        "quality_check_model.json",
        BaselineDataset=f"{DATA}/worse/",
        SkipCheck=False,
        RegisterNewBaseline=False,
        SuppliedBaselineConstraintsUri=properties["CalculatedBaselineConstraints"],
    )
    reason = step(runner, worse, "ModelQualityCheck")["FailureReason"]
    assert reason.startswith("MODEL_QUALITY check failed: ")
    report = read(runner, reason.rsplit("see ", 1)[1])["violations"]
    accuracy = next(v for v in report if v["metric_name"] == "accuracy")
    assert accuracy == {
        "constraint_check_type": "LessThanThreshold",
        "description": "Metric accuracy with 0.8 was LessThanThreshold 1.0",
        "metric_name": "accuracy",
    }


class _Package:
    def __init__(self, baselines):
        self.baselines = baselines

    def to_describe(self):
        return {"ModelApprovalStatus": "Approved", "DriftCheckBaselines": self.baselines}


class _Registry:
    """A registry whose latest approved version carries DriftCheckBaselines (CreateModelPackage's
    shape); the local registry does not record them."""

    def __init__(self, baselines):
        self.baselines = baselines
        self.asked = []

    def latest_approved(self, group):
        self.asked.append(group)
        return _Package(self.baselines)


def test_without_a_supplied_baseline_the_latest_approved_versions_is_used(runner):
    baseline = first_baseline(runner)
    registry = _Registry(
        {
            "ModelDataQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": baseline["CalculatedBaselineStatistics"],
                },
                "Constraints": {
                    "ContentType": "application/json",
                    "S3Uri": baseline["CalculatedBaselineConstraints"],
                },
            }
        }
    )
    runner._registry = registry
    put_csv(runner, f"{DATA}/today/today.csv", churn_like(seed=2, shift=30.0))
    outcome = start(
        runner,
        "quality_check_data.json",
        BaselineDataset=f"{DATA}/today/",
        SkipCheck=False,
        RegisterNewBaseline=False,
        ModelPackageGroup="Churn",
    )
    assert registry.asked == ["Churn"]
    reason = step(runner, outcome, "DataQualityCheck")["FailureReason"]
    assert "baseline_drift_check: charges" in reason
    # With SkipCheck the same baseline is only passed on.
    outcome = start(runner, "quality_check_data.json", RegisterNewBaseline=False, ModelPackageGroup="Churn")
    assert outcome.status == "Succeeded", outcome.failure_reason
    properties = outcome.properties["DataQualityCheck"]
    assert properties["BaselineUsedForDriftCheckStatistics"] == baseline["CalculatedBaselineStatistics"]
    assert properties["BaselineUsedForDriftCheckConstraints"] == baseline["CalculatedBaselineConstraints"]


def test_datasets_are_read_as_model_monitor_reads_them(runner):
    from pipelines.local.checks import dataset_chunks

    runner.store.put_bytes(f"{DATA}/h/a.csv", b"1,x\n2,\n")
    (chunk,) = dataset_chunks(runner.store, f"{DATA}/h/", {"csv": {"header": False}})
    assert list(chunk.columns) == ["_c0", "_c1"]  # headerless CSV columns as Model Monitor names them
    assert chunk["_c1"].isna().tolist() == [False, True]  # only an empty cell is missing
    runner.store.put_bytes(f"{DATA}/j/a.jsonl", b'{"a": 1, "b": "NA"}\n{"a": 2.5, "b": "x"}\n')
    (chunk,) = dataset_chunks(runner.store, f"{DATA}/j/", {"json": {"lines": True}})
    assert chunk.to_dict("list") == {"a": [1.0, 2.5], "b": ["NA", "x"]}


def test_model_quality_attributes_that_name_nothing_fail_the_step(runner):
    put_csv(runner, f"{DATA}/train/scored.csv", scored(0, rows=20))
    definition = json.loads((FIXTURES / "quality_check_model.json").read_text())
    environment = definition["Steps"][0]["Arguments"]["Environment"]
    environment["probability_threshold_attribute"] = "half"
    outcome = runner.start(json.dumps(definition), pipeline_name="checks")
    assert step(runner, outcome, "ModelQualityCheck")["FailureReason"] == (
        f"MODEL_QUALITY analysis of {DATA}/train/: "
        "Environment probability_threshold_attribute 'half' is not a number"
    )
    environment["probability_threshold_attribute"] = "0.5"
    environment["ground_truth_attribute"] = "churned"
    outcome = runner.start(json.dumps(definition), pipeline_name="checks")
    assert step(runner, outcome, "ModelQualityCheck")["FailureReason"] == (
        f"MODEL_QUALITY analysis of {DATA}/train/: "
        "Environment ground_truth_attribute 'churned' names no column "
        "(columns: label, prediction, probability)"
    )

"""ClarifyCheck steps in the local runner; definitions under ``fixtures/checks/`` are shaped as the
SageMaker SDK writes ``ClarifyCheckStep`` (its v2 unit tests' expected requests)."""

import io
import json
import tarfile
from pathlib import Path

import botocore.session
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from pipelines.local.definition import DefinitionError
from pipelines.local.engine import LocalRunner

FIXTURES = Path(__file__).parent / "fixtures" / "checks"
ROOT = "s3://checks-tests/clarify"
HEADERS = ["label", "gender", "tenure", "charges"]


@pytest.fixture
def runner(tmp_path):
    return LocalRunner(tmp_path / "home")


def table(seed=0, rows=400, bias=0.0):
    rng = np.random.RandomState(seed)
    gender = rng.randint(0, 2, rows)
    tenure = rng.randint(0, 72, rows)
    charges = rng.normal(70, 15, rows).round(2)
    score = 0.04 * (36 - tenure) + 0.03 * (charges - 70) + bias * gender + rng.normal(0, 0.5, rows)
    return pd.DataFrame(
        {"label": (score > 0).astype(int), "gender": gender, "tenure": tenure, "charges": charges}
    )


def stage(runner, frame, *, methods, name="data"):
    runner.store.put_bytes(
        f"{ROOT}/{name}/part.csv", frame[HEADERS].to_csv(index=False, header=False).encode()
    )
    config = {
        "dataset_type": "text/csv",
        "headers": HEADERS,
        "label": "label",
        "label_values_or_threshold": [1],
        "facet": [{"name_or_index": "gender", "value_or_threshold": [1]}],
        "probability_threshold": 0.5,
        "methods": methods,
    }
    runner.store.put_bytes(f"{ROOT}/config/analysis_config.json", json.dumps(config).encode())


def stage_model(runner, frame):
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "seed": 0},
        xgb.DMatrix(frame[HEADERS[1:]].to_numpy(dtype="float64"), label=frame["label"]),
        num_boost_round=20,
    )
    model = booster.save_raw("json")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(model)
        archive.addfile(info, io.BytesIO(bytes(model)))
    runner.store.put_bytes(f"{ROOT}/model/model.tar.gz", buffer.getvalue())


def start(runner, fixture, **parameters):
    values = {k: str(v).lower() if isinstance(v, bool) else v for k, v in parameters.items()}
    return runner.start(
        (FIXTURES / fixture).read_text(), pipeline_name="clarify", parameters=values, source=fixture
    )


def read(runner, uri):
    return json.loads(runner.store.get_bytes(uri))


def reason(runner, outcome, name):
    steps = runner.records.list_execution_steps(outcome.arn)["PipelineExecutionSteps"]
    return next(e for e in steps if e["StepName"] == name).get("FailureReason")


def test_data_bias_writes_clarify_analysis_with_smclarify_metrics(runner):
    stage(runner, table(), methods={"pre_training_bias": {"methods": "all"}})
    outcome = start(runner, "clarify_check_data_bias.json")
    assert outcome.status == "Succeeded", outcome.failure_reason
    properties = outcome.properties["DataBiasCheck"]
    assert properties["CalculatedBaselineConstraints"].endswith("/data-bias/analysis.json")
    assert properties["BaselineUsedForDriftCheckConstraints"] == properties["CalculatedBaselineConstraints"]
    assert "CalculatedBaselineStatistics" not in properties  # a Clarify baseline is one file
    steps = runner.records.list_execution_steps(outcome.arn)["PipelineExecutionSteps"]
    metadata = steps[0]["Metadata"]["ClarifyCheck"]
    shape = (
        botocore.session.get_session().get_service_model("sagemaker").shape_for("ClarifyCheckStepMetadata")
    )
    assert set(metadata) <= set(shape.members)
    assert (metadata["CheckType"], metadata["SkipCheck"], metadata["RegisterNewBaseline"]) == (
        "DATA_BIAS",
        True,
        True,
    )
    analysis = read(runner, properties["CalculatedBaselineConstraints"])
    # Layout of AWS's "Analysis results" example: version, then label, label_value_or_threshold, facets.
    assert analysis["version"] == "1.0"
    section = analysis["pre_training_bias_metrics"]
    assert (section["label"], section["label_value_or_threshold"]) == ("label", "1")
    (entry,) = section["facets"]["gender"]
    assert entry["value_or_threshold"] == "1"
    names = [m["name"] for m in entry["metrics"]]
    assert {"CI", "DPL", "KL", "JS", "LP", "TVD", "KS"} <= set(names)
    assert all(set(m) >= {"name", "description", "value"} for m in entry["metrics"])
    ci = next(m for m in entry["metrics"] if m["name"] == "CI")
    frame = table()
    n_a, n_d = (frame["gender"] == 0).sum(), (frame["gender"] == 1).sum()
    assert ci["description"] == "Class Imbalance (CI)"
    assert ci["value"] == pytest.approx((n_a - n_d) / (n_a + n_d))  # CI = (n_a - n_d) / n


def test_model_bias_scores_with_the_model_step_and_finds_bias_drift(runner):
    fair = table()
    stage_model(runner, fair)
    stage(runner, fair, methods={"post_training_bias": {"methods": ["DPPL", "DI", "AD"]}})
    first = start(runner, "clarify_check_model_bias.json")
    assert first.status == "Succeeded", first.failure_reason
    baseline = first.properties["ModelBiasCheck"]["CalculatedBaselineConstraints"]
    section = read(runner, baseline)["post_training_bias_metrics"]
    assert [m["name"] for m in section["facets"]["gender"][0]["metrics"]] == ["AD", "DI", "DPPL"]

    skewed = table(seed=1)
    skewed.loc[skewed["gender"] == 1, "tenure"] = 0  # the model predicts churn for every gender=1 row
    stage(runner, skewed, methods={"post_training_bias": {"methods": ["DPPL", "DI", "AD"]}})
    second = start(
        runner,
        "clarify_check_model_bias.json",
        SkipCheck=False,
        RegisterNewBaseline=False,
        SuppliedBaselineConstraintsUri=baseline,
    )
    assert second.status == "Failed"
    why = reason(runner, second, "ModelBiasCheck")
    assert why.startswith("MODEL_BIAS check failed: ")
    violations = read(runner, why.rsplit("see ", 1)[1])
    assert violations["version"] == "1.0"
    dppl = next(v for v in violations["violations"] if v["metric_name"] == "DPPL")
    # Fields of AWS's "Bias drift violations" example.
    assert set(dppl) == {"facet", "facet_value", "metric_name", "constraint_check_type", "description"}
    assert (dppl["facet"], dppl["facet_value"], dppl["constraint_check_type"]) == (
        "gender",
        "1",
        "bias_drift_check",
    )
    assert dppl["description"].startswith("Value ") and dppl["description"].endswith(
        " does not meet the constraint requirement"
    )


def test_explainability_writes_global_shap_values_from_the_model(runner):
    frame = table()
    stage_model(runner, frame)
    stage(runner, frame, methods={"shap": {"num_samples": 100, "agg_method": "mean_abs"}})
    outcome = start(runner, "clarify_check_explainability.json")
    assert outcome.status == "Succeeded", outcome.failure_reason
    analysis = read(runner, outcome.properties["ExplainabilityCheck"]["CalculatedBaselineConstraints"])
    label0 = analysis["explanations"]["kernel_shap"]["label0"]
    assert set(label0) == {"global_shap_values", "expected_value"}
    assert list(label0["global_shap_values"]) == ["gender", "tenure", "charges"]
    # gender does not enter the label: it matters least.
    assert min(label0["global_shap_values"], key=label0["global_shap_values"].get) == "gender"
    again = start(
        runner,
        "clarify_check_explainability.json",
        SkipCheck=False,
        RegisterNewBaseline=False,
        SuppliedBaselineConstraintsUri=outcome.properties["ExplainabilityCheck"][
            "CalculatedBaselineConstraints"
        ],
    )
    assert again.status == "Succeeded", again.failure_reason


def test_a_model_bias_baseline_that_is_not_an_analysis_fails_the_step(runner):
    frame = table()
    stage_model(runner, frame)
    stage(runner, frame, methods={"post_training_bias": {"methods": "all"}})
    wrong = f"{ROOT}/baseline/statistics.json"
    runner.store.put_bytes(
        wrong, json.dumps({"version": 0.0, "dataset": {"item_count": 1}, "features": []}).encode()
    )
    outcome = start(
        runner, "clarify_check_model_bias.json", SkipCheck=False, SuppliedBaselineConstraintsUri=wrong
    )
    assert reason(runner, outcome, "ModelBiasCheck") == (
        f"baseline in the wrong format: {wrong}: not a Clarify analysis with 'post_training_bias_metrics' "
        "(found none of its sections)"
    )
    assert not runner.store.exists(f"{ROOT}/output/")


def test_an_analysis_config_without_the_check_types_method_fails_the_step(runner):
    stage(runner, table(), methods={"shap": {}})
    outcome = start(runner, "clarify_check_data_bias.json")
    assert reason(runner, outcome, "DataBiasCheck") == (
        f"analysis config {ROOT}/config/analysis_config.json: "
        "methods.pre_training_bias is required for this check type"
    )


def test_invalid_clarify_steps_are_refused_before_anything_runs(runner):
    with pytest.raises(DefinitionError) as err:
        start(runner, "clarify_check_invalid.json")
    problems = err.value.problems
    assert any("MODEL_BIAS needs ModelName read from a Model step of this pipeline" in p for p in problems)
    assert (
        "step 'UnknownCheck': unknown CheckType 'DATA_QUALITY' for a ClarifyCheck step; "
        "supported: DATA_BIAS, MODEL_BIAS, MODEL_EXPLAINABILITY" in problems
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"facet": ["gender"]}, "facet must be a list of {name_or_index, value_or_threshold (a list)}"),
        ({"facet": [{"name_or_index": "gender", "value_or_threshold": 1}]}, "facet must be a list of"),
        ({"excluded_columns": "tenure"}, "excluded_columns must be a list of column names"),
        ({"probability_threshold": "high"}, "probability_threshold must be a number"),
        ({"group_variable": ["tenure"]}, "group_variable must be a column name"),
        (
            {"dataset_type": "application/x-parquet"},
            "dataset_type 'application/x-parquet' is not supported locally",
        ),
    ],
)
def test_a_malformed_analysis_config_fails_the_step_naming_the_field(runner, change, message):
    stage(runner, table(rows=60), methods={"pre_training_bias": {"methods": "all"}})
    config_uri = f"{ROOT}/config/analysis_config.json"
    config = {**read(runner, config_uri), **change}
    runner.store.put_bytes(config_uri, json.dumps(config).encode())
    outcome = start(runner, "clarify_check_data_bias.json")
    assert reason(runner, outcome, "DataBiasCheck").startswith(f"analysis config {config_uri}: ")
    assert message in reason(runner, outcome, "DataBiasCheck")

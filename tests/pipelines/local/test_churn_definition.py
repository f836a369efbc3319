"""The churn pipeline's real definition parses, validates and evaluates: the engine reads what we ship."""

import json
from pathlib import Path

import botocore.session
import pytest
from support import all_steps

from pipelines.local.definition import DefinitionError, dependencies, parse_definition, validate
from pipelines.local.expressions import Context, evaluate, evaluate_conditions

INSTANCE_TYPES = (
    botocore.session.get_session().get_service_model("sagemaker").shape_for("ProcessingInstanceType").enum
)
GOLDEN = Path(__file__).parents[1] / "churn" / "golden" / "definition.json"


@pytest.fixture(params=["golden", "built"])
def churn_text(request):
    """The reviewed golden file, and a fresh build from get_pipeline (the golden test ties the two)."""
    if request.param == "golden":
        return GOLDEN.read_text(), str(GOLDEN)
    return request.getfixturevalue("churn_definition_text"), "get_pipeline()"


@pytest.fixture
def churn(churn_text):
    return parse_definition(*churn_text)


@pytest.fixture
def churn_types(churn_text):
    """The step types the definition uses, read from its JSON: the runner must support each."""
    return sorted({step["Type"] for step in all_steps(json.loads(churn_text[0])).values()})


def test_the_churn_definition_validates_every_step_after_what_it_waits_for(churn, churn_text, churn_types):
    values, order = validate(churn, {"AucThreshold": "0.9"}, churn_types)
    assert sorted(order) == sorted(all_steps(json.loads(churn_text[0])))
    position = {name: index for index, name in enumerate(order)}
    for name in order:
        waits_for = dependencies(churn.steps[name])
        assert all(position[other] < position[name] for other in waits_for), (name, sorted(waits_for))
    assert values["AucThreshold"] == 0.9
    assert values["MaxTuningJobs"] == 8


def test_the_churn_gate_is_a_condition_with_a_branch_each_way(churn):
    assert churn.steps["RegisterModel"].branch == ("CheckAuc", "if")
    assert churn.steps["MetricBelowThreshold"].branch == ("CheckAuc", "else")
    assert [spec.name for spec in churn.steps["Evaluate"].property_files] == ["EvaluationReport"]


def fake_run(auc):
    """A context as the runner would have it after Evaluate, with answers shaped like AWS's."""
    outputs = ["train", "validation", "test", "schema", "baseline"]
    properties = {
        "Preprocess": {
            "ProcessingOutputConfig": {
                "Outputs": [
                    {"OutputName": name, "S3Output": {"S3Uri": f"s3://b/run/{name}"}} for name in outputs
                ]
            }
        },
        "Tune": {"TrainingJobSummaries": [{"TrainingJobName": "tune-007"}]},
        "DataQualityBaseline": {
            "CalculatedBaselineStatistics": "s3://b/run/quality/statistics.json",
            "CalculatedBaselineConstraints": "s3://b/run/quality/constraints.json",
            "BaselineUsedForDriftCheckStatistics": "s3://b/run/quality/statistics.json",
            "BaselineUsedForDriftCheckConstraints": "s3://b/run/quality/constraints.json",
        },
        "Evaluate": {
            "ProcessingOutputConfig": {
                "Outputs": [{"OutputName": "evaluation", "S3Output": {"S3Uri": "s3://b/run/evaluation"}}]
            }
        },
    }
    report = {"binary_classification_metrics": {"auc": {"value": auc}}}
    return Context(
        parameters={
            "AucThreshold": 0.8,
            "InferenceInstanceType": "ml.m5.large",
            "ModelApprovalStatus": "Approved",
        },
        execution={"PipelineExecutionId": "run"},
        step_properties=properties.get,
        property_file=lambda step, name: report if (step, name) == ("Evaluate", "EvaluationReport") else None,
    )


@pytest.mark.parametrize(("auc", "passes"), [(0.87, True), (0.8, True), (0.5, False)])
def test_the_auc_gate_compares_the_evaluation_report_with_the_threshold(auc, passes, churn):
    conditions = churn.steps["CheckAuc"].arguments["Conditions"]
    assert evaluate_conditions(conditions, fake_run(auc)) is passes


def test_the_fail_step_message_and_the_register_arguments_evaluate(churn):
    ctx = fake_run(0.5)
    message = evaluate(churn.steps["MetricBelowThreshold"].arguments["ErrorMessage"], ctx)
    assert message == "Test AUC 0.5 is below the threshold 0.8 so the model was not registered."
    register = evaluate(churn.steps["RegisterModel"].arguments, ctx)
    assert register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].endswith(
        "/ChurnPipeline/tuning/tune-007/output/model.tar.gz"
    )
    statistics = register["ModelMetrics"]["ModelDataQuality"]["Statistics"]["S3Uri"]
    assert statistics == "s3://b/run/quality/statistics.json"  # Model Monitor's own, from the check step
    drift = register["DriftCheckBaselines"]["ModelDataQuality"]["Constraints"]["S3Uri"]
    assert drift == "s3://b/run/quality/constraints.json"
    assert json.dumps(register).count('"Get"') == 0


def test_parameter_values_the_step_apis_refuse_are_reported_together_before_any_step(churn, churn_types):
    """Reproduction: ``local-pipeline run ... --parameters MaxTuningJobs=-1 ModelApprovalStatus=Yes``
    failed only at Tune (CreateHyperParameterTuningJob: MaxNumberOfTrainingJobs has a minimum of 1),
    and with a valid MaxTuningJobs, only at RegisterModel after every trial had run."""
    overrides = {"MaxTuningJobs": "-1", "ModelApprovalStatus": "Yes", "ProcessingInstanceType": "ml.m5.xlage"}
    with pytest.raises(DefinitionError) as caught:
        validate(churn, overrides, churn_types)
    wrong_type = (
        "Arguments.ProcessingResources.ClusterConfig.InstanceType: parameter "
        "ProcessingInstanceType='ml.m5.xlage' is not a valid ProcessingInstanceType "
        f"({len(INSTANCE_TYPES)} values, e.g. {', '.join(INSTANCE_TYPES[:3])}). Did you mean "
        "'ml.m5.xlarge'? (CreateProcessingJob)"
    )
    assert list(caught.value.problems) == [
        f"step 'Profile': {wrong_type}",
        f"step 'Preprocess': {wrong_type}",
        "step 'Tune': Arguments.HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs: "
        "parameter MaxTuningJobs=-1 is below the minimum 1 (CreateHyperParameterTuningJob)",
        f"step 'Evaluate': {wrong_type}",
        "step 'RegisterModel': Arguments.ModelApprovalStatus: parameter ModelApprovalStatus='Yes' is not "
        "one of Approved, Rejected, PendingManualApproval. (CreateModelPackage)",
    ]

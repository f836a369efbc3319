"""Expressions read a context shaped like the AWS Describe* answers, and fail naming the expression."""

import pytest

from pipelines.errors import TemplateError
from pipelines.local.expressions import (
    CONDITION_TYPES,
    Context,
    ExpressionError,
    condition_problems,
    evaluate,
    evaluate_condition,
    evaluate_conditions,
    expression_problems,
    parse_reference,
    references,
)

STEP_PROPERTIES = {
    "Preprocess": {
        "ProcessingJobName": "pipelines-abc-Preprocess",
        "ProcessingInputs": [{"InputName": "code", "S3Input": {"S3Uri": "s3://b/code"}}],
        "ProcessingOutputConfig": {
            "Outputs": [
                {"OutputName": name, "S3Output": {"S3Uri": f"s3://b/run-1/{name}"}}
                for name in ("train", "validation", "test")
            ]
        },
    },
    "Train": {
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/train/model.tar.gz"},
        "FinalMetricDataList": [
            {"MetricName": "train:auc", "Value": 0.95},
            {"MetricName": "validation:auc", "Value": 0.91},
        ],
        "HyperParameters": {"eta": "0.1", "max.depth": "6"},
        "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv"}],
        "AlgorithmSpecification": {"MetricDefinitions": [{"Name": "train:auc", "Regex": "auc:(.*)"}]},
        "Tags": [{"Key": "team", "Value": "ml"}],
    },
    "Tune": {
        "BestTrainingJob": {"TrainingJobName": "tune-002"},
        "TrainingJobSummaries": [{"TrainingJobName": "tune-002"}, {"TrainingJobName": "tune-001"}],
    },
    "Register": {"ModelPackageArn": "arn:aws:sagemaker:eu-west-1:111122223333:model-package/g/1"},
}
PROPERTY_FILES = {
    ("Evaluate", "EvaluationReport"): {
        "binary_classification_metrics": {"auc": {"value": 0.87, "standard_deviation": "NaN"}},
        "per_class": [{"label": "yes", "f1": 0.7}],
    }
}


@pytest.fixture
def ctx():
    return Context(
        parameters={"Threshold": 0.8, "Count": 2, "Strict": True, "Url": "s3://b/in"},
        execution={"PipelineExecutionId": "run-1", "PipelineName": "Churn"},
        step_properties=STEP_PROPERTIES.get,
        property_file=lambda step, name: PROPERTY_FILES.get((step, name)),
    )


def get(text):
    return {"Get": text}


def json_get(path, file="Steps.Evaluate.PropertyFiles.EvaluationReport"):
    return {"Std:JsonGet": {"PropertyFile": get(file), "Path": path}}


def join(on, *values):
    return {"Std:Join": {"On": on, "Values": list(values)}}


def error_of(expr, ctx):
    with pytest.raises(ExpressionError) as caught:
        evaluate(expr, ctx)
    return str(caught.value)


# --- plain values, parameters, execution variables


@pytest.mark.parametrize("value", ["text", 3, 0.5, True, None, [], {}, {"a": [1, {"b": "c"}]}])
def test_plain_values_pass_through_unchanged(value, ctx):
    assert evaluate(value, ctx) == value


def test_a_parameter_reads_its_resolved_value(ctx):
    assert evaluate(get("Parameters.Threshold"), ctx) == 0.8


def test_an_execution_variable_reads_the_execution(ctx):
    assert evaluate(get("Execution.PipelineExecutionId"), ctx) == "run-1"


def test_objects_and_lists_are_resolved_element_wise(ctx):
    expr = {"Resources": {"Count": get("Parameters.Count")}, "Args": ["--in", get("Parameters.Url")]}
    assert evaluate(expr, ctx) == {"Resources": {"Count": 2}, "Args": ["--in", "s3://b/in"]}


def test_the_expression_is_not_modified(ctx):
    expr = {"A": [get("Parameters.Count")]}
    evaluate(expr, ctx)
    assert expr == {"A": [get("Parameters.Count")]}


# --- step properties


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Steps.Train.ModelArtifacts.S3ModelArtifacts", "s3://b/train/model.tar.gz"),
        ("Steps.Register.ModelPackageArn", "arn:aws:sagemaker:eu-west-1:111122223333:model-package/g/1"),
        ("Steps.Tune.TrainingJobSummaries[0].TrainingJobName", "tune-002"),
        ("Steps.Tune.TrainingJobSummaries[1].TrainingJobName", "tune-001"),
        ("Steps.Tune.BestTrainingJob.TrainingJobName", "tune-002"),
        (
            "Steps.Preprocess.ProcessingOutputConfig.Outputs['validation'].S3Output.S3Uri",
            "s3://b/run-1/validation",
        ),
        ("Steps.Preprocess.ProcessingInputs['code'].S3Input.S3Uri", "s3://b/code"),
        ("Steps.Train.FinalMetricDataList['validation:auc'].Value", 0.91),
        ("Steps.Train.InputDataConfig['train'].ContentType", "text/csv"),
        ("Steps.Train.AlgorithmSpecification.MetricDefinitions['train:auc'].Regex", "auc:(.*)"),
        ("Steps.Train.Tags['team'].Value", "ml"),
        ("Steps.Train.HyperParameters['eta']", "0.1"),
        ('Steps.Train.HyperParameters["max.depth"]', "6"),
        ("Steps.Train.HyperParameters.eta", "0.1"),
    ],
)
def test_a_step_property_path_reads_the_describe_answer(path, expected, ctx):
    assert evaluate(get(path), ctx) == expected


def test_an_unknown_list_name_lists_the_names_there_are(ctx):
    message = error_of(get("Steps.Preprocess.ProcessingOutputConfig.Outputs['tran'].S3Output.S3Uri"), ctx)
    assert message == (
        "Steps.Preprocess.ProcessingOutputConfig.Outputs['tran']: no output named 'tran'; "
        "outputs: train, validation, test"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "Steps.Train.FinalMetricDataList['test:auc'].Value",
            "Steps.Train.FinalMetricDataList['test:auc']: no metric named 'test:auc'; "
            "metrics: train:auc, validation:auc",
        ),
        (
            "Steps.Train.ModelArtifacts.S3ModelArtifact",
            "Steps.Train.ModelArtifacts.S3ModelArtifact: no key 'S3ModelArtifact'; keys: S3ModelArtifacts",
        ),
        (
            "Steps.Tune.TrainingJobSummaries[2].TrainingJobName",
            "Steps.Tune.TrainingJobSummaries[2]: index 2 is out of range: the list has 2",
        ),
        (
            "Steps.Tune.BestTrainingJob[0]",
            "Steps.Tune.BestTrainingJob[0]: [0] needs a list, found an object",
        ),
        (
            "Steps.Preprocess.ProcessingOutputConfig.Outputs.train",
            "Steps.Preprocess.ProcessingOutputConfig.Outputs.train: cannot read 'train' from a list; "
            "select an element with [n] or ['<name>']",
        ),
        (
            "Steps.Register.ModelPackageArn.Version",
            "Steps.Register.ModelPackageArn.Version: cannot read 'Version' from String "
            "'arn:aws:sagemaker:eu-west-1:111122223333:model-package/g/1'",
        ),
        (
            "Steps.Tune.TrainingJobSummaries['tune-001']",
            "Steps.Tune.TrainingJobSummaries['tune-001']: no element named 'tune-001': "
            "its elements have none of OutputName, InputName, MetricName, ChannelName, Name, Key",
        ),
        (
            "Steps.Evaluate.ProcessingOutputConfig",
            "Steps.Evaluate.ProcessingOutputConfig: step 'Evaluate' has no recorded properties "
            "(it has not run, or did not succeed)",
        ),
        (
            "Parameters.Treshold",
            "Parameters.Treshold: no parameter 'Treshold'; known: Threshold, Count, Strict, Url",
        ),
        (
            "Execution.StartDateTime",
            "Execution.StartDateTime: no execution variable 'StartDateTime'; "
            "known: PipelineExecutionId, PipelineName",
        ),
    ],
)
def test_a_path_that_leads_nowhere_is_named_with_the_reason(path, message, ctx):
    assert error_of(get(path), ctx) == message


def test_an_expression_error_is_a_user_facing_template_error():
    assert issubclass(ExpressionError, TemplateError)


# --- Std:Join


def test_join_renders_values_as_sagemaker_does(ctx):
    expr = join(",", "s", 3, 0.8, 1e-07, 2.0, True, False, get("Parameters.Count"))
    assert evaluate(expr, ctx) == "s,3,0.8,1e-07,2.0,true,false,2"


def test_join_resolves_references_inside_its_values(ctx):
    expr = join(
        "/",
        "s3:/",
        "b",
        get("Execution.PipelineExecutionId"),
        get("Steps.Tune.BestTrainingJob.TrainingJobName"),
    )
    assert evaluate(expr, ctx) == "s3://b/run-1/tune-002"


def test_join_nests(ctx):
    assert evaluate(join("-", "a", join("+", 1, 2)), ctx) == "a-1+2"


def test_join_refuses_a_value_it_cannot_write(ctx):
    expr = join("/", "a", get("Steps.Tune.TrainingJobSummaries"))
    assert error_of(expr, ctx) == "Std:Join Values[1]: cannot join a list"


def test_a_malformed_join_says_what_it_expects(ctx):
    assert error_of({"Std:Join": {"On": "/"}}, ctx).startswith('Std:Join: expected {"On": "<separator>"')


# --- Std:JsonGet


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("binary_classification_metrics.auc.value", 0.87),
        ("per_class[0].f1", 0.7),
        ("per_class[0]['label']", "yes"),
        ("binary_classification_metrics.auc", {"value": 0.87, "standard_deviation": "NaN"}),
    ],
)
def test_json_get_reads_the_property_file(path, expected, ctx):
    assert evaluate(json_get(path), ctx) == expected


def test_json_get_with_a_wrong_path_names_the_file_and_the_path(ctx):
    message = error_of(json_get("binary_classification_metrics.auc.vale"), ctx)
    assert message == (
        "Steps.Evaluate.PropertyFiles.EvaluationReport Path 'binary_classification_metrics.auc.vale': "
        "no key 'vale'; keys: value, standard_deviation"
    )


def test_json_get_of_a_file_not_recorded_says_so(ctx):
    message = error_of(json_get("a", file="Steps.Evaluate.PropertyFiles.Other"), ctx)
    assert message == (
        "Steps.Evaluate.PropertyFiles.Other: step 'Evaluate' has no property file 'Other' recorded "
        "(it has not run, or did not write it)"
    )


def test_json_get_of_an_s3_uri_is_refused_with_the_supported_form(ctx):
    message = error_of({"Std:JsonGet": {"S3Uri": join("/", "s3://b", "x"), "Path": "a"}}, ctx)
    assert "S3Uri (the output of a @step function) is not supported" in message
    assert '"PropertyFile": {"Get": "Steps.<step>.PropertyFiles.<name>"}' in message


def test_a_property_file_cannot_be_read_with_a_plain_get(ctx):
    message = error_of(get("Steps.Evaluate.PropertyFiles.EvaluationReport"), ctx)
    assert "a property file is read with Std:JsonGet" in message


def test_an_unknown_function_names_the_supported_ones(ctx):
    message = error_of({"Std:Concat": {"Values": []}}, ctx)
    assert message == "unknown function 'Std:Concat'; supported: Std:Join, Std:JsonGet"


# --- references and form checks


def test_references_finds_every_get_wherever_it_sits():
    expr = {
        "A": get("Parameters.Count"),
        "B": [
            join("/", get("Execution.PipelineExecutionId"), get("Steps.Tune.BestTrainingJob.TrainingJobName"))
        ],
        "C": {"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": json_get("x"), "RightValue": 1}},
    }
    assert references(expr) == {
        "Parameters.Count",
        "Execution.PipelineExecutionId",
        "Steps.Tune.BestTrainingJob.TrainingJobName",
        "Steps.Evaluate.PropertyFiles.EvaluationReport",
    }


@pytest.mark.parametrize(
    ("text", "root", "name", "path", "property_file"),
    [
        ("Parameters.Count", "Parameters", "Count", "", None),
        ("Execution.PipelineName", "Execution", "PipelineName", "", None),
        ("Steps.Train", "Steps", "Train", "", None),
        ("Steps.Tune.TrainingJobSummaries[0].X", "Steps", "Tune", ".TrainingJobSummaries[0].X", None),
        ("Steps.Evaluate.PropertyFiles.Report", "Steps", "Evaluate", ".PropertyFiles.Report", "Report"),
    ],
)
def test_a_reference_is_split_into_root_name_and_path(text, root, name, path, property_file):
    reference = parse_reference(text)
    assert (reference.root, reference.name, reference.path, reference.property_file) == (
        root,
        name,
        path,
        property_file,
    )


@pytest.mark.parametrize(
    "text",
    ["Parameter.Count", "Parameters.", "Parameters.A.B", "Steps.", "Steps.S.Outputs[x]", "Steps.S..A", 3],
)
def test_a_malformed_reference_is_refused(text):
    with pytest.raises(ExpressionError):
        parse_reference(text)


def test_well_formed_expressions_have_no_problems():
    expr = {"A": [join("/", get("Steps.S.X['y'][0]"))], "B": json_get("a.b[1]"), "C": get("Parameters.P")}
    assert expression_problems(expr, "Arguments") == []


def test_form_problems_name_where_they_sit():
    expr = {
        "Out": [get("Steps.S.Outputs[x]")],
        "Msg": join("/", "a", get("Param.X")),
        "Val": {"Std:JsonGet": {"PropertyFile": get("Steps.S.Report"), "Path": "a"}},
        "Bad": {"Std:Split": "x"},
        "File": get("Steps.S.PropertyFiles.F"),
        "Path": json_get("a..b", file="Steps.S.PropertyFiles.F"),
    }
    problems = expression_problems(expr, "Arguments")
    assert [problem.split(": ")[0] for problem in problems] == [
        "Arguments.Out[0]",
        "Arguments.Msg.Std:Join.Values[1]",
        "Arguments.Val",
        "Arguments.Bad",
        "Arguments.File",
        "Arguments.Path",
    ]
    assert "cannot read '[x]'" in problems[0]
    assert "expected Parameters.<name>, Execution.<name> or Steps.<step>.<property path>" in problems[1]


# --- conditions


def condition(kind, left, right):
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize(
    ("kind", "left", "right", "expected"),
    [
        ("Equals", 1, 1, True),
        ("Equals", 1, 1.0, True),
        ("Equals", "a", "b", False),
        ("Equals", True, True, True),
        ("GreaterThan", 0.9, 0.8, True),
        ("GreaterThan", 0.8, 0.8, False),
        ("GreaterThanOrEqualTo", 0.8, 0.8, True),
        ("GreaterThanOrEqualTo", 0.7, 0.8, False),
        ("LessThan", 1, 2.5, True),
        ("LessThan", 2, 2, False),
        ("LessThanOrEqualTo", 2, 2, True),
        ("LessThanOrEqualTo", 3, 2, False),
    ],
)
def test_each_comparison_compares_its_two_values(kind, left, right, expected, ctx):
    assert evaluate_condition(condition(kind, left, right), ctx) is expected


def test_a_comparison_evaluates_its_operands(ctx):
    cond = condition(
        "GreaterThanOrEqualTo",
        json_get("binary_classification_metrics.auc.value"),
        get("Parameters.Threshold"),
    )
    assert evaluate_condition(cond, ctx) is True


@pytest.mark.parametrize(
    ("query", "values", "expected"),
    [
        ("eu-west-1", ["us-east-1", "eu-west-1"], True),
        ("ap-south-1", ["us-east-1", "eu-west-1"], False),
        (2, [1.0, 2.0], True),
        (1, [True], False),
        ({"Get": "Parameters.Count"}, [{"Get": "Parameters.Count"}], True),
    ],
)
def test_in_looks_for_the_query_value_among_the_values(query, values, expected, ctx):
    assert evaluate_condition({"Type": "In", "QueryValue": query, "Values": values}, ctx) is expected


def test_not_inverts_its_condition(ctx):
    assert evaluate_condition({"Type": "Not", "Condition": condition("Equals", 1, 2)}, ctx) is True


def test_or_is_true_when_any_condition_is(ctx):
    cond = {"Type": "Or", "Conditions": [condition("Equals", 1, 2), condition("LessThan", 1, 2)]}
    assert evaluate_condition(cond, ctx) is True
    cond = {"Type": "Or", "Conditions": [condition("Equals", 1, 2), condition("LessThan", 3, 2)]}
    assert evaluate_condition(cond, ctx) is False


def test_not_and_or_nest(ctx):
    inner_or = {
        "Type": "Or",
        "Conditions": [condition("Equals", "a", "b"), {"Type": "In", "QueryValue": 3, "Values": [1, 2]}],
    }
    cond = {"Type": "Not", "Condition": {"Type": "Not", "Condition": inner_or}}
    assert evaluate_condition(cond, ctx) is False
    assert evaluate_condition({"Type": "Not", "Condition": inner_or}, ctx) is True


def test_a_condition_steps_conditions_must_all_hold(ctx):
    assert evaluate_conditions([condition("Equals", 1, 1), condition("LessThan", 1, 2)], ctx) is True
    assert evaluate_conditions([condition("Equals", 1, 1), condition("LessThan", 3, 2)], ctx) is False
    assert evaluate_conditions([], ctx) is True


def test_ordering_values_that_are_not_numbers_names_both(ctx):
    with pytest.raises(ExpressionError) as caught:
        evaluate_conditions(
            [condition("Equals", 1, 1), condition("GreaterThan", get("Parameters.Url"), 0.5)], ctx
        )
    assert str(caught.value) == (
        "Conditions[1] (GreaterThan): compares numbers, "
        "got LeftValue String 's3://b/in' and RightValue Float 0.5"
    )


def test_equals_between_different_types_is_an_error_not_false(ctx):
    with pytest.raises(
        ExpressionError, match=r"Condition \(Equals\): cannot compare String '1' with Integer 1"
    ):
        evaluate_condition(condition("Equals", "1", 1), ctx)
    with pytest.raises(ExpressionError, match="cannot compare Boolean true with Integer 1"):
        evaluate_condition(condition("Equals", True, 1), ctx)


def test_an_error_deep_in_a_condition_names_its_place(ctx):
    cond = {"Type": "Or", "Conditions": [{"Type": "Not", "Condition": condition("LessThan", "a", 1)}]}
    with pytest.raises(ExpressionError, match=r"^Conditions\[0\]\.Conditions\[0\]\.Condition \(LessThan\)"):
        evaluate_conditions([cond], ctx)


def test_an_unknown_condition_type_names_the_supported_ones(ctx):
    with pytest.raises(ExpressionError) as caught:
        evaluate_condition(condition("Between", 1, 2), ctx)
    assert (
        str(caught.value)
        == f"Condition: unknown condition type 'Between'; supported: {', '.join(CONDITION_TYPES)}"
    )
    assert CONDITION_TYPES == (
        "Equals",
        "GreaterThan",
        "GreaterThanOrEqualTo",
        "LessThan",
        "LessThanOrEqualTo",
        "In",
        "Not",
        "Or",
    )


@pytest.mark.parametrize(
    ("cond", "problem"),
    [
        ({"Type": "Equals", "LeftValue": 1}, "Condition (Equals): missing RightValue"),
        (
            {"Type": "In", "QueryValue": 1, "Values": 2},
            "Condition (In): Values must be a list, got Integer 2",
        ),
        ({"Type": "Not", "Condition": [1]}, "Condition (Not): Condition must be an object, got a list"),
        (
            {"Type": "Or", "Conditions": [{"Type": "Nope"}]},
            "Condition.Conditions[0]: unknown condition type 'Nope'",
        ),
        ({"Type": "Not", "Condition": {"Type": "Or"}}, "Condition.Condition (Or): missing Conditions"),
        ("GreaterThan", "Condition: expected a condition object, got String 'GreaterThan'"),
    ],
)
def test_condition_problems_are_found_without_evaluating(cond, problem):
    problems = condition_problems(cond)
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_well_formed_nested_conditions_have_no_problems():
    cond = {
        "Type": "Not",
        "Condition": {"Type": "Or", "Conditions": [condition("Equals", get("Parameters.X"), 1)]},
    }
    assert condition_problems(cond) == []

"""A step's Arguments are checked against botocore's model of the API request its type makes."""

import pytest

from pipelines.local.shapes import STEP_REQUESTS, UNKNOWN, request_problems

ROLE = "arn:aws:iam::000000000000:role/Pipeline"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"


def processing(**changes):
    arguments = {
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
        },
        "AppSpecification": {"ImageUri": IMAGE},
        "RoleArn": ROLE,
    }
    arguments.update(changes)
    return arguments


def nothing_known(expression):
    return (UNKNOWN, "") if len(expression) == 1 and "Get" in expression else None


def test_a_complete_request_without_the_name_the_pipeline_fills_in_has_no_problem():
    assert request_problems("Processing", processing(), nothing_known) == []


def test_a_step_type_without_an_api_request_is_not_checked():
    assert "Condition" not in STEP_REQUESTS
    assert request_problems("Condition", {"Anything": 1}, nothing_known) == []


def test_an_unknown_member_is_named_with_the_closest_known_one():
    (problem,) = request_problems("Processing", processing(Enviroment={"A": "1"}), nothing_known)
    assert (
        problem == "Arguments: unknown member 'Enviroment'. Did you mean 'Environment'? (CreateProcessingJob)"
    )


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"Environment": {"A": 1}}, "Arguments.Environment['A']: expected a string, got a number 1"),
        (
            {"ProcessingInputs": "s3://b/in"},
            "Arguments.ProcessingInputs: expected a list, got a string 's3://b/in'",
        ),
        (
            {"AppSpecification": {"ImageUri": IMAGE, "ContainerArguments": []}},
            "Arguments.AppSpecification.ContainerArguments: has 0 items, fewer than the minimum 1",
        ),
        (
            {
                "ProcessingInputs": [
                    {"InputName": "a", "S3Input": {"S3Uri": "s3://b/a", "S3DataType": "Prefix"}}
                ]
            },
            "Arguments.ProcessingInputs[0].S3Input.S3DataType: 'Prefix' is not one of ManifestFile, "
            "S3Prefix. Did you mean 'S3Prefix'?",
        ),
        (
            {"StoppingCondition": {"MaxRuntimeInSeconds": True}},
            "Arguments.StoppingCondition.MaxRuntimeInSeconds: expected a whole number, got a boolean True",
        ),
    ],
)
def test_each_kind_of_problem_names_where_it_is(changes, problem):
    assert request_problems("Processing", processing(**changes), nothing_known) == [
        f"{problem} (CreateProcessingJob)"
    ]


def test_a_value_known_only_at_run_time_is_not_checked_and_a_parameter_is_checked_with_its_name():
    count = {"Get": "Parameters.Count"}
    arguments = processing()
    arguments["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = count
    assert request_problems("Processing", arguments, nothing_known) == []

    def parameters(expression):
        return (0, "parameter Count") if expression == count else None

    assert request_problems("Processing", arguments, parameters) == [
        "Arguments.ProcessingResources.ClusterConfig.InstanceCount: parameter Count=0 is below the minimum 1 "
        "(CreateProcessingJob)"
    ]

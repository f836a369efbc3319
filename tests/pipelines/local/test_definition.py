"""A definition is parsed into steps and parameters, and checked whole before anything runs."""

import json

import pytest

from pipelines.errors import ConfigError
from pipelines.local.definition import (
    Definition,
    DefinitionError,
    Parameter,
    PropertyFileSpec,
    StepSpec,
    dependencies,
    parse_definition,
    resolve_parameters,
    topological_order,
    validate,
)

ALL_TYPES = (
    "Processing",
    "Training",
    "Tuning",
    "Condition",
    "RegisterModel",
    "Fail",
    "CreateModel",
    "Transform",
)


#: The least a CreateProcessingJob request holds (the pipeline names the job itself).
PROCESSING = {
    "ProcessingResources": {
        "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
    },
    "AppSpecification": {
        "ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"
    },
    "RoleArn": "arn:aws:iam::000000000000:role/Pipeline",
}


def definition_of(steps, parameters=()):
    """A definition of ``steps`` given as (name, type, arguments[, extra keys]) tuples."""
    document = {"Parameters": list(parameters), "Steps": []}
    for name, kind, arguments, *extra in steps:
        document["Steps"].append(
            {"Name": name, "Type": kind, "Arguments": arguments, **(extra[0] if extra else {})}
        )
    return parse_definition(json.dumps(document), "test.json")


def problems_of(definition, overrides=None, supported=ALL_TYPES, extra_checks=None):
    with pytest.raises(DefinitionError) as caught:
        validate(definition, overrides or {}, supported, extra_checks)
    return list(caught.value.problems)


# --- parsing


def test_branch_steps_are_flattened_after_their_condition_in_definition_order(load_definition):
    definition = load_definition("all_step_types.json")
    assert list(definition.steps) == [
        "Prep",
        "Fit",
        "Search",
        "Gate",
        "MakeModel",
        "Score",
        "Register",
        "RegionGate",
        "WrongRegion",
        "TooWeak",
    ]
    branches = {name: step.branch for name, step in definition.steps.items()}
    assert branches["Prep"] is None
    assert branches["Gate"] is None
    assert branches["MakeModel"] == ("Gate", "if")
    assert branches["RegionGate"] == ("Gate", "if")
    assert branches["WrongRegion"] == ("RegionGate", "else")
    assert branches["TooWeak"] == ("Gate", "else")


def test_a_condition_steps_arguments_leave_its_branches_to_the_branch_steps(load_definition):
    gate = load_definition("all_step_types.json").steps["Gate"]
    assert set(gate.arguments) == {"Conditions"}
    assert [step["Name"] for step in gate.raw["Arguments"]["IfSteps"]] == [
        "MakeModel",
        "Score",
        "Register",
        "RegionGate",
    ]


def test_a_step_keeps_its_declared_settings(load_definition):
    definition = load_definition("all_step_types.json")
    prep = definition.steps["Prep"]
    assert prep.type == "Processing"
    assert prep.property_files == (PropertyFileSpec("Report", "report", "report.json"),)
    assert prep.cache_config == {"Enabled": True, "ExpireAfter": "P1D"}
    assert prep.retry_policies == ({"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": 2},)
    assert prep.location == "Steps[0]"
    assert definition.steps["Search"].depends_on == ("Fit",)
    assert definition.steps["WrongRegion"].location == "Steps[3].Arguments.IfSteps[3].Arguments.ElseSteps[0]"


def test_parameters_are_read_with_their_types_and_defaults(load_definition):
    assert load_definition("all_step_types.json").parameters == (
        Parameter("InputData", "String", "s3://bucket/in/"),
        Parameter("Epochs", "Integer", 3),
        Parameter("Threshold", "Float", 1.0),
        Parameter("Strict", "Boolean", False),
        Parameter("Region", "String", None),
    )


def test_invalid_json_names_the_source():
    with pytest.raises(DefinitionError, match=r"^pipeline\.json: not valid JSON: Expecting"):
        parse_definition('{"Steps": [}', "pipeline.json")


def test_a_definition_error_is_a_configuration_error_with_its_exit_code():
    assert issubclass(DefinitionError, ConfigError)
    assert DefinitionError("x").exit_code == 2


STEP = {"Name": "S", "Type": "Processing", "Arguments": {}}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "d.json: the definition: expected an object, got a list"),
        ({}, "d.json: Steps: expected a list, got null"),
        (
            {"Steps": [STEP, {**STEP, "Name": "T", "Arguments": []}]},
            "d.json: Steps[1].Arguments: expected an object",
        ),
        ({"Steps": [{"Type": "Fail"}]}, "d.json: Steps[0].Name: expected a non-empty string, got null"),
        (
            {
                "Steps": [
                    {
                        "Name": "C",
                        "Type": "Condition",
                        "Arguments": {"Conditions": [], "IfSteps": [{"Name": "X"}]},
                    }
                ]
            },
            "d.json: Steps[0].Arguments.IfSteps[0].Type: expected a non-empty string",
        ),
        (
            {"Steps": [{"Name": "C", "Type": "Condition", "Arguments": {"IfSteps": []}}]},
            "d.json: Steps[0].Arguments.Conditions: expected a list, got null",
        ),
        (
            {"Steps": [{**STEP, "DependsOn": "A"}]},
            "d.json: Steps[0].DependsOn: expected a list, got a string",
        ),
        (
            {"Steps": [{**STEP, "DependsOn": [{"Step": "A", "Trigger": "Failed"}]}]},
            "d.json: Steps[0].DependsOn[0]: run conditions ({'Step': 'A', 'Trigger': 'Failed'}) "
            "are not supported",
        ),
        (
            {"Steps": [{**STEP, "PropertyFiles": [{"PropertyFileName": "R", "OutputName": "o"}]}]},
            "d.json: Steps[0].PropertyFiles[0].FilePath: expected a non-empty string, got null",
        ),
        (
            {"Steps": [{**STEP, "RetryPolicies": [3]}]},
            "d.json: Steps[0].RetryPolicies[0]: expected an object",
        ),
        (
            {"Steps": [{**STEP, "CacheConfig": True}]},
            "d.json: Steps[0].CacheConfig: expected an object, got a boolean",
        ),
        (
            {"Parameters": [{"Name": "P", "Type": "Double"}], "Steps": []},
            "d.json: Parameters[0].Type: 'Double' is not a parameter type; "
            "expected one of Boolean, Float, Integer, String",
        ),
        (
            {"Parameters": [{"Name": "P", "Type": "Integer", "DefaultValue": "8"}], "Steps": []},
            "d.json: Parameters[0].DefaultValue: '8' is not an Integer (a whole number such as 8)",
        ),
    ],
)
def test_a_shape_error_names_the_source_and_where(document, message):
    with pytest.raises(DefinitionError) as caught:
        parse_definition(json.dumps(document), "d.json")
    assert str(caught.value).startswith(message)


# --- parameters


def test_defaults_are_used_when_nothing_is_overridden(load_definition):
    values = resolve_parameters(load_definition("all_step_types.json"), {"Region": "eu-west-1"})
    assert values == {
        "InputData": "s3://bucket/in/",
        "Epochs": 3,
        "Threshold": 1.0,
        "Strict": False,
        "Region": "eu-west-1",
    }


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("Epochs", "8", 8),
        ("Epochs", "-2", -2),
        ("Threshold", "0.75", 0.75),
        ("Threshold", "1e-3", 0.001),
        ("Threshold", "3", 3.0),
        ("Strict", "true", True),
        ("Strict", "False", False),
        ("InputData", "8", "8"),
    ],
)
def test_an_override_is_read_as_its_declared_type(name, text, value, load_definition):
    values = resolve_parameters(load_definition("all_step_types.json"), {"Region": "x", name: text})
    assert values[name] == value
    assert type(values[name]) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("Epochs", "8.5", "parameter Epochs='8.5' is not an Integer (a whole number such as 8)"),
        ("Epochs", "eight", "parameter Epochs='eight' is not an Integer (a whole number such as 8)"),
        ("Threshold", "high", "parameter Threshold='high' is not a Float (a number such as 0.75)"),
        ("Threshold", "nan", "parameter Threshold='nan' is not a Float (a number such as 0.75)"),
        ("Strict", "yes", "parameter Strict='yes' is not a Boolean (true or false)"),
    ],
)
def test_an_override_not_of_its_declared_type_is_refused(name, text, problem, load_definition):
    with pytest.raises(DefinitionError) as caught:
        resolve_parameters(load_definition("all_step_types.json"), {"Region": "x", name: text})
    assert caught.value.problems == (problem,)


def test_an_unknown_parameter_suggests_the_close_one(load_definition):
    with pytest.raises(DefinitionError) as caught:
        resolve_parameters(load_definition("all_step_types.json"), {"Region": "x", "Epoch": "2"})
    assert caught.value.problems == ("unknown parameter 'Epoch'. Did you mean 'Epochs'?",)


def test_an_unknown_parameter_with_nothing_close_lists_the_declared_ones(load_definition):
    with pytest.raises(DefinitionError) as caught:
        resolve_parameters(load_definition("all_step_types.json"), {"Region": "x", "Zzz": "2"})
    assert caught.value.problems == (
        "unknown parameter 'Zzz'. Declared parameters: InputData, Epochs, Threshold, Strict, Region.",
    )


def test_every_parameter_problem_is_reported_at_once(load_definition):
    with pytest.raises(DefinitionError) as caught:
        resolve_parameters(load_definition("all_step_types.json"), {"Epochs": "x", "Strict": "maybe"})
    assert len(caught.value.problems) == 3
    assert (
        caught.value.problems[2]
        == "parameter 'Region' has no default and no value was given: pass Region=<String>"
    )
    assert str(caught.value).startswith("invalid parameters for all_step_types.json: parameter Epochs='x'")


# --- dependencies and order


def test_dependencies_come_from_every_kind_of_reference_and_depends_on(load_definition):
    steps = load_definition("all_step_types.json").steps
    assert dependencies(steps["Prep"]) == set()
    assert dependencies(steps["Fit"]) == {"Prep"}
    assert dependencies(steps["Search"]) == {"Fit"}
    assert dependencies(steps["Gate"]) == {"Prep"}  # through the JsonGet inside an Or condition
    assert dependencies(steps["MakeModel"]) == {"Gate", "Search"}  # through a Join, and its branch
    assert dependencies(steps["Score"]) == {"Gate", "MakeModel"}
    assert dependencies(steps["WrongRegion"]) == {"RegionGate"}
    assert dependencies(steps["TooWeak"]) == {"Gate"}


def test_a_condition_does_not_depend_on_what_its_branches_read(load_definition):
    # Gate's branches read Search and Fit; Gate itself must not wait for them.
    assert "Search" not in dependencies(load_definition("all_step_types.json").steps["Gate"])


def test_dependencies_of_a_step_spec_built_by_hand():
    step = StepSpec("S", "Processing", {"In": {"Get": "Steps.A.X"}}, depends_on=("B",), branch=("C", "else"))
    assert dependencies(step) == {"A", "B", "C"}


def test_steps_ready_together_run_in_definition_order():
    definition = definition_of(
        [
            ("Zeta", "Processing", {}),
            ("Needs", "Processing", {"In": {"Get": "Steps.Alpha.ProcessingJobName"}}),
            ("Alpha", "Processing", {}),
            ("Mid", "Processing", {}),
        ]
    )
    assert topological_order(definition) == ["Zeta", "Alpha", "Needs", "Mid"]


class _CountedName(str):
    """A step name that counts how often it is hashed: the work of ordering, without a clock."""

    hashes = 0

    def __hash__(self):
        _CountedName.hashes += 1
        return str.__hash__(self)


def test_ordering_a_long_chain_hashes_each_name_a_bounded_number_of_times():
    """Reproduction: a definition of 10,000 steps, each depending on the one before, took 11 s in
    ``local-pipeline run`` before any step started; the order check built ``set(order)`` once per
    step, so the work grew with the square of the step count."""
    count = 2000
    names = [_CountedName(f"S{index}") for index in range(count)]
    steps = {
        name: StepSpec(name, "Processing", {}, depends_on=(names[index - 1],) if index else ())
        for index, name in enumerate(names)
    }
    _CountedName.hashes = 0
    order = topological_order(Definition("chain.json", (), steps))
    assert order == names
    # Linear work hashes each name a few times; the quadratic check hashed it ~count times.
    assert _CountedName.hashes < 20 * count


def test_the_order_is_the_same_every_time(load_definition):
    orders = {tuple(topological_order(load_definition("all_step_types.json"))) for _ in range(3)}
    assert len(orders) == 1


def test_a_cycle_is_named_step_by_step(load_definition):
    with pytest.raises(DefinitionError) as caught:
        topological_order(load_definition("cycle.json"))
    # An arrow points from a step to the one that needs it; a step waiting on a cycle is not named.
    assert caught.value.problems == ("cycle: A -> B -> C -> A", "cycle: Selfish -> Selfish")


# --- validate


def test_a_definition_of_every_supported_type_validates_to_values_and_order(load_definition):
    values, order = validate(load_definition("all_step_types.json"), {"Region": "eu-west-1"}, ALL_TYPES)
    assert values["Region"] == "eu-west-1"
    assert order == [
        "Prep",
        "Fit",
        "Search",
        "Gate",
        "MakeModel",
        "Score",
        "Register",
        "RegionGate",
        "WrongRegion",
        "TooWeak",
    ]


BROKEN_PROBLEMS = [
    "duplicate step name 'Prep' at Steps[0] and Steps[1]",
    "parameter 'Threshold' is declared twice",
    "step 'Prep': reads undeclared parameter 'Treshold'. Did you mean 'Threshold'?",
    "step 'Prep': reads unknown execution variable 'PipelineExecutionID'. "
    "Did you mean 'PipelineExecutionId'?",
    "step 'Notify': unsupported step type 'Lambda'; supported types: "
    "Condition, CreateModel, Fail, Processing, RegisterModel, Training, Transform, Tuning",
    "step 'Fit': Arguments.Bad: Get 'Steps.Prep.Outputs[x]': "
    "cannot read '[x]' (expected .name, [n] or ['name'])",
    "step 'Fit': reads unknown step 'Prepp' in "
    "\"Steps.Prepp.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri\". Did you mean 'Prep'?",
    "step 'Fit': DependsOn unknown step 'Cleanup'. Known: Prep, Notify, Fit, Gate.",
    "step 'Gate': Arguments.Conditions[1]: unknown condition type 'Between'; supported: Equals, GreaterThan, "
    "GreaterThanOrEqualTo, LessThan, LessThanOrEqualTo, In, Not, Or",
    "step 'Gate': reads property file 'Reprot' that step 'Prep' does not declare. Did you mean 'Report'?",
    "parameter 'Bucket' has no default and no value was given: pass Bucket=<String>",
]


@pytest.mark.parametrize("problem", BROKEN_PROBLEMS)
def test_validation_reports_each_kind_of_problem(problem, load_definition):
    assert problem in problems_of(load_definition("broken.json"))


def test_validation_reports_every_problem_in_one_error(load_definition):
    with pytest.raises(DefinitionError) as caught:
        validate(load_definition("broken.json"), {"Bukcet": "b"}, ALL_TYPES)
    problems = caught.value.problems
    assert sorted(problems) == sorted(
        [*BROKEN_PROBLEMS, "unknown parameter 'Bukcet'. Did you mean 'Bucket'?"]
    )
    assert str(caught.value).startswith(f"broken.json: {len(problems)} problems: duplicate step name 'Prep'")
    assert "\n" not in str(caught.value)


def test_a_cycle_is_a_validation_problem_too(load_definition):
    assert problems_of(load_definition("cycle.json")) == [
        "cycle: A -> B -> C -> A",
        "cycle: Selfish -> Selfish",
    ]


def test_a_get_of_a_property_file_with_no_json_get_is_a_validation_problem():
    definition = definition_of(
        [
            (
                "Eval",
                "Fail",
                {},
                {"PropertyFiles": [{"PropertyFileName": "R", "OutputName": "o", "FilePath": "r.json"}]},
            ),
            ("Use", "Fail", {"X": {"Get": "Steps.Eval.PropertyFiles.R"}}),
        ]
    )
    (problem,) = problems_of(definition)
    assert problem.startswith(
        "step 'Use': Arguments.X: Get 'Steps.Eval.PropertyFiles.R': a property file is read with"
    )


def test_a_missing_thing_read_many_times_is_reported_once():
    read = {"Get": "Steps.Nope.ProcessingJobName"}
    definition = definition_of([("Use", "Fail", {"A": read, "B": [read, {"Get": "Steps.Nope.X"}]})])
    assert problems_of(definition) == [
        "step 'Use': reads unknown step 'Nope' in 'Steps.Nope.ProcessingJobName'. Known: Use."
    ]


def test_extra_checks_add_a_runners_own_problems_for_supported_steps_only():
    definition = definition_of([("Prep", "Processing", PROCESSING), ("Odd", "EMR", {})])
    seen = []

    def no_local_runtime(step):
        seen.append(step.name)
        return [f"image for {step.type} has no local runtime"]

    problems = problems_of(definition, supported=["Processing"], extra_checks=no_local_runtime)
    assert seen == ["Prep"]
    assert problems == [
        "step 'Prep': image for Processing has no local runtime",
        "step 'Odd': unsupported step type 'EMR'; supported types: Processing",
    ]


def test_a_valid_definition_with_nothing_to_report_passes_extra_checks():
    definition = definition_of([("Prep", "Processing", PROCESSING)])
    assert validate(definition, {}, ["Processing"], lambda step: []) == ({}, ["Prep"])


def test_a_definition_of_deeply_nested_brackets_is_one_error_not_a_recursion_error():
    """`local-pipeline run --definition-file` on '[' * 100000 + ']' * 100000 gave a RecursionError
    traceback; so did a definition nested a few thousand levels that JSON could still read."""
    with pytest.raises(DefinitionError, match="nested deeper than Python's JSON reader can follow"):
        parse_definition("[" * 100_000 + "]" * 100_000, "deep.json")
    with pytest.raises(DefinitionError, match=r"deep.json: nested 500 levels deep"):
        parse_definition('{"Steps": ' + "[" * 499 + "]" * 499 + "}", "deep.json")

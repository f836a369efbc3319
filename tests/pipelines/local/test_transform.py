"""The Transform step: batch transform through the model's serving handler (steps/inference.py, called as
the XGBoost container calls it) or the built-in XGBoost handler, with SageMaker's splitting, batching,
JSONPath data processing and output naming. Definitions are the JSON fixtures under fixtures/transform/."""

import json
from pathlib import Path

import botocore.session
import numpy as np
import pytest
import xgboost as xgb
from archives import tar_gz

from pipelines.local.definition import DefinitionError
from pipelines.local.engine import LocalRunner
from pipelines.local.transform import (
    JsonPathError,
    apply_jsonpath,
    mini_batches,
    parse_jsonpath,
)

FIXTURES = Path(__file__).parent / "fixtures" / "transform"
REPO = Path(__file__).resolve().parents[3]
BUCKET = "s3://transform-tests"
ROWS = [[0.5, -1.2, 3.3], [0.0, 0.0, 0.0], [-2.0, 0.3, 1.0], [1.5, 2.5, -0.5]]


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def tiny_booster() -> xgb.Booster:
    rng = np.random.RandomState(0)
    features = rng.normal(size=(60, 3))
    labels = (features[:, 0] - 0.5 * features[:, 1] > 0).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "seed": 0}
    return xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=5)


@pytest.fixture(scope="module")
def booster():
    return tiny_booster()


@pytest.fixture
def runner(tmp_path, booster):
    """A local home holding the script-mode model, its code, the built-in model, and no input yet."""
    runner = LocalRunner(tmp_path / "home", sleep=lambda seconds: None)
    model_json = tmp_path / "xgboost-model.json"
    booster.save_model(str(model_json))
    runner.store.put_bytes(
        f"{BUCKET}/model/model.tar.gz", tar_gz({"xgboost-model.json": model_json.read_bytes()})
    )
    runner.store.put_bytes(
        f"{BUCKET}/code/sourcedir.tar.gz",
        tar_gz({"inference.py": (REPO / "steps" / "inference.py").read_bytes()}),
    )
    ubj = tmp_path / "xgboost-model.ubj"
    booster.save_model(str(ubj))  # the built-in algorithm's artifact: "xgboost-model", no extension
    runner.store.put_bytes(
        f"{BUCKET}/builtin-model/model.tar.gz", tar_gz({"xgboost-model": ubj.read_bytes()})
    )
    return runner


def start(runner, definition: dict):
    return runner.start(json.dumps(definition), pipeline_name="transform-test", source="fixture")


def entry(runner, outcome, step="Score") -> dict:
    answer = runner.records.list_execution_steps(outcome.arn)
    return {e["StepName"]: e for e in answer["PipelineExecutionSteps"]}[step]


def csv_rows(ids_and_rows) -> bytes:
    return "".join(f"{i}," + ",".join(map(str, row)) + "\n" for i, row in ids_and_rows).encode()


def served(booster, rows) -> list[float]:
    """The handler's CSV answer for ``rows``: float32 printed at its own precision."""
    return [float(str(np.float32(v))) for v in booster.predict(xgb.DMatrix(np.asarray(rows, dtype=float)))]


# ------------------------------------------------------------------------------------------ script mode


def test_each_prediction_is_joined_to_its_input_id_through_the_serving_handler(runner, booster):
    runner.store.put_bytes(f"{BUCKET}/input/test.csv", csv_rows(enumerate(ROWS, start=101)))

    outcome = start(runner, fixture("script_mode_join.json"))

    assert outcome.status == "Succeeded", outcome.failure_reason
    lines = runner.store.get_bytes(f"{BUCKET}/output/test.csv.out").decode().splitlines()
    assert [line.split(",")[0] for line in lines] == ["101", "102", "103", "104"]
    assert [float(line.split(",")[1]) for line in lines] == served(booster, ROWS)
    assert outcome.properties["Score"]["TransformJobStatus"] == "Completed"


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_single_and_multi_record_batches_write_the_same_output(runner, strategy):
    runner.store.put_bytes(f"{BUCKET}/input/test.csv", csv_rows(enumerate(ROWS, start=1)))
    definition = fixture("script_mode_join.json")
    definition["Steps"][1]["Arguments"]["BatchStrategy"] = strategy

    assert start(runner, definition).status == "Succeeded"
    assert len(runner.store.get_bytes(f"{BUCKET}/output/test.csv.out").decode().splitlines()) == len(ROWS)


def test_without_data_processing_the_output_is_the_handlers_answers_one_per_line(runner, booster):
    runner.store.put_bytes(
        f"{BUCKET}/input/features.csv", "".join(",".join(map(str, r)) + "\n" for r in ROWS).encode()
    )
    definition = fixture("script_mode_join.json")
    del definition["Steps"][1]["Arguments"]["DataProcessing"]

    outcome = start(runner, definition)

    assert outcome.status == "Succeeded", outcome.failure_reason
    answer = runner.store.get_bytes(f"{BUCKET}/output/features.csv.out").decode()
    assert [float(v) for v in answer.splitlines()] == served(booster, ROWS)


def test_json_lines_records_are_filtered_and_joined_under_sagemaker_output(runner, booster):
    records = [{"id": f"c{i}", "features": row} for i, row in enumerate(ROWS)]
    runner.store.put_bytes(
        f"{BUCKET}/input/test.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode()
    )
    definition = fixture("script_mode_join.json")
    arguments = definition["Steps"][1]["Arguments"]
    arguments["BatchStrategy"] = "SingleRecord"
    arguments["TransformInput"]["ContentType"] = "application/json"
    arguments["TransformOutput"]["Accept"] = "application/json"
    arguments["DataProcessing"] = {
        "InputFilter": "$.features",
        "JoinSource": "Input",
        "OutputFilter": "$['id','SageMakerOutput']",
    }

    outcome = start(runner, definition)

    assert outcome.status == "Succeeded", outcome.failure_reason
    lines = runner.store.get_bytes(f"{BUCKET}/output/test.jsonl.out").decode().splitlines()
    joined = [json.loads(line) for line in lines]
    assert [j["id"] for j in joined] == ["c0", "c1", "c2", "c3"]
    assert [j["SageMakerOutput"]["predictions"][0] for j in joined] == served(booster, ROWS)
    assert all(set(j) == {"id", "SageMakerOutput"} for j in joined)


def test_the_step_properties_have_describe_transform_jobs_shape(runner):
    runner.store.put_bytes(f"{BUCKET}/input/test.csv", csv_rows(enumerate(ROWS)))

    properties = start(runner, fixture("script_mode_join.json")).properties["Score"]

    shape = botocore.session.get_session().get_service_model("sagemaker")
    output = shape.operation_model("DescribeTransformJob").output_shape
    assert set(properties) <= set(output.members)
    assert set(output.required_members) <= set(properties)
    assert properties["TransformOutput"]["S3OutputPath"] == f"{BUCKET}/output"


# ------------------------------------------------------------------------------------------ built-in


def test_the_built_in_handler_answers_one_prediction_per_line_as_the_container_prints_it(runner, booster):
    runner.store.put_bytes(
        f"{BUCKET}/input/test.csv", "".join(",".join(map(str, r)) + "\n" for r in ROWS).encode()
    )

    outcome = start(runner, fixture("builtin.json"))

    assert outcome.status == "Succeeded", outcome.failure_reason
    answer = runner.store.get_bytes(f"{BUCKET}/builtin-output/test.csv.out").decode()
    # algorithm_mode/serve.py with SAGEMAKER_BATCH: str() of each float64 prediction.
    expected = booster.predict(xgb.DMatrix(np.asarray(ROWS, dtype=float)), validate_features=False).tolist()
    assert answer.splitlines() == [str(v) for v in expected]


def test_the_built_in_handler_refuses_a_wrong_feature_count_with_its_400(runner):
    runner.store.put_bytes(f"{BUCKET}/input/test.csv", b"1,2,3,4,5\n")

    outcome = start(runner, fixture("builtin.json"))

    assert outcome.status == "Failed"
    reason = entry(runner, outcome)["FailureReason"]
    assert "ClientError: 400" in reason
    assert (
        "Feature size of csv inference data 5 is not consistent with feature size of trained model 3"
        in reason
    )


# ------------------------------------------------------------------------------------------ failures


def test_a_record_the_handler_refuses_fails_the_step_and_writes_no_output_for_that_file(runner):
    runner.store.put_bytes(f"{BUCKET}/input/a-good.csv", csv_rows(enumerate(ROWS)))
    runner.store.put_bytes(f"{BUCKET}/input/b-bad.csv", b"1,0.5,abc,3\n")

    outcome = start(runner, fixture("script_mode_join.json"))

    assert outcome.status == "Failed"
    reason = entry(runner, outcome)["FailureReason"]
    assert reason == (
        "AlgorithmError: See job logs for more information (transform-tests/input/b-bad.csv: "
        "ClientError: 400: line 1 column 2: 'abc' is not a number "
        "(rows are numbers only: no header, no label; raw records need a model version with schema.json))"
    )
    assert not runner.store.exists(f"{BUCKET}/output/b-bad.csv.out")
    # botocore S3OutputPath: the output of every wholly transformed object is still uploaded.
    assert runner.store.exists(f"{BUCKET}/output/a-good.csv.out")
    log = (runner.home / "jobs").rglob("log.txt")
    assert any(
        "[sagemaker logs]: transform-tests/input/b-bad.csv: ClientError: 400" in p.read_text() for p in log
    )


def test_input_that_is_not_where_the_definition_says_fails_naming_the_uri(runner):
    runner.store.put_bytes(f"{BUCKET}/elsewhere/test.csv", csv_rows(enumerate(ROWS)))

    outcome = start(runner, fixture("script_mode_join.json"))

    assert outcome.status == "Failed"
    assert entry(runner, outcome)["FailureReason"].startswith(
        f"ClientError: no object at TransformInput S3Uri {BUCKET}/input in the local object store"
    )
    assert not runner.store.exists(f"{BUCKET}/output")


def test_a_malformed_jsonpath_filter_is_refused_before_anything_runs(runner):
    with pytest.raises(DefinitionError, match=r"InputFilter '\$\[\?\(@\.id\)\]'.*not a name list"):
        start(runner, fixture("malformed_filter.json"))
    assert runner.records.list_executions() == []


def test_an_output_filter_index_outside_the_joined_record_fails_the_step(runner):
    runner.store.put_bytes(f"{BUCKET}/input/test.csv", csv_rows(enumerate(ROWS)))
    definition = fixture("script_mode_join.json")
    definition["Steps"][1]["Arguments"]["DataProcessing"]["OutputFilter"] = "$[0,9]"

    outcome = start(runner, definition)

    assert outcome.status == "Failed"
    assert (
        "OutputFilter: '$[0,9]': index 9 is outside a record of 5 elements"
        in entry(runner, outcome)["FailureReason"]
    )
    assert not runner.store.exists(f"{BUCKET}/output")


def test_a_model_name_that_is_not_a_model_steps_is_refused_before_anything_runs(runner):
    definition = fixture("script_mode_join.json")
    definition["Steps"][1]["Arguments"]["ModelName"] = "some-model-outside"
    with pytest.raises(DefinitionError, match="ModelName must be a Model step's ModelName"):
        start(runner, definition)


# ------------------------------------------------------------------------------------------ JSONPath subset


@pytest.mark.parametrize(
    ("path", "record", "selected"),
    [
        ("$", [1, 2, 3], [1, 2, 3]),
        ("$[1:]", ["id", 1, 2], [1, 2]),
        ("$[:2]", ["id", 1, 2], ["id", 1]),
        ("$[-1]", ["id", 1, 2], 2),
        ("$[0,5:]", [0, 1, 2, 3, 4, 5, 6], [0, 5, 6]),
        ("$[1,3]", [0, 1, 2, 3], [1, 3]),
        ("$.features", {"id": 1, "features": [1, 2]}, [1, 2]),
        ("$.a.b[0]", {"a": {"b": [7, 8]}}, 7),
        (
            "$['id','SageMakerOutput']",
            {"id": 1, "x": 2, "SageMakerOutput": 3},
            {"id": 1, "SageMakerOutput": 3},
        ),
        ("$.*", {"a": 1, "b": 2}, [1, 2]),
    ],
)
def test_the_jsonpath_subset_selects_as_the_aws_examples_show(path, record, selected):
    assert apply_jsonpath(parse_jsonpath(path, "InputFilter"), record, path) == selected


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("features", "must start with '$'"),
        ("$..id", "recursive descent"),
        ("$[?(@.id)]", "not a name list, an index list or a slice"),
        ("$[1:].a", "only the last part of a path may select several elements"),
        ("$['a','b.c']x", "cannot read 'x'"),
        ("$." + "a" * 70, "longer than SageMaker's 63 characters"),
    ],
)
def test_paths_outside_the_subset_are_refused_naming_the_problem(path, problem):
    with pytest.raises(
        JsonPathError, match=problem.replace("(", r"\(").replace("?", r"\?").replace("$", r"\$")
    ):
        parse_jsonpath(path, "InputFilter")


def test_multi_record_batches_fill_up_to_the_payload_limit_and_single_record_sends_one_each():
    records = [b"aaaa", b"bbbb", b"cccc"]
    assert list(mini_batches(records, "MultiRecord", 9)) == [[b"aaaa", b"bbbb"], [b"cccc"]]
    assert list(mini_batches(records, "MultiRecord", None)) == [records]
    assert list(mini_batches(records, "SingleRecord", 9)) == [[r] for r in records]


def test_with_split_type_none_a_csv_object_is_one_request_whose_rows_are_filtered_and_joined(runner, booster):
    runner.store.put_bytes(f"{BUCKET}/input/test.csv", csv_rows([("1e5", ROWS[0]), ("007", ROWS[1])]))
    definition = fixture("script_mode_join.json")
    definition["Steps"][1]["Arguments"]["TransformInput"]["SplitType"] = "None"

    outcome = start(runner, definition)

    assert outcome.status == "Succeeded", outcome.failure_reason
    lines = runner.store.get_bytes(f"{BUCKET}/output/test.csv.out").decode().splitlines()
    assert [line.split(",")[0] for line in lines] == ["1e5", "007"]  # ids written back as they were read
    assert [float(line.split(",")[1]) for line in lines] == served(booster, ROWS[:2])

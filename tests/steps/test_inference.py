import json
import math

import numpy as np
import pytest
import xgboost as xgb

from steps import inference
from steps.inference import InferenceError


@pytest.fixture(scope="module")
def model(tiny_binary_model):
    return inference.model_fn(str(tiny_binary_model))


def refused(status: int, call, *args) -> str:
    with pytest.raises(InferenceError) as caught:
        call(*args)
    assert caught.value.status_code == status
    message = str(caught.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ model_fn


def test_model_fn_loads_the_json_model(model):
    assert isinstance(model, xgb.Booster)
    assert model.num_features() == 3


def test_model_fn_names_a_missing_model(tmp_path):
    message = refused(500, inference.model_fn, str(tmp_path))
    assert message == f"no xgboost-model.json in the model directory {tmp_path}"


# ------------------------------------------------------------------------------------------ input_fn


def test_csv_rows_parse_with_empty_cells_as_missing():
    rows = inference.input_fn("1,2,3\n4,,6\n\n", "text/csv")
    assert rows.dtype == np.float64 and rows.shape == (2, 3)
    assert np.isnan(rows[1, 1])


def test_csv_accepts_bytes_crlf_and_a_charset_parameter():
    rows = inference.input_fn(b"1,2,3\r\n4,5,6\r\n", "text/csv; charset=utf-8")
    assert rows.tolist() == [[1, 2, 3], [4, 5, 6]]
    latin = inference.input_fn("7,8,9".encode("latin-1"), "Text/CSV;charset=ISO-8859-1")
    assert latin.tolist() == [[7, 8, 9]]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("state,length,calls\n1,2,3\n", "line 1 column 1: 'state' is not a number (rows are numbers only"),
        ("1,2,3\n4,x,6\n", "line 2 column 2: 'x' is not a number"),
        ("1,2,3\n4,5\n", "rows differ in length: row 1 has 3 values, row 2 has 2"),
        ("1,inf,3\n", "line 1 column 2: 'inf' is not a finite number"),
        ('1,"2,3\n', "malformed CSV"),
        ("", "no rows in the request"),
        ("\n\n", "no rows in the request"),
    ],
)
def test_malformed_csv_is_a_400_naming_the_cell(body, problem):
    assert problem in refused(400, inference.input_fn, body, "text/csv")


def test_json_takes_instances_a_list_of_rows_or_one_flat_row():
    expected = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert (
        inference.input_fn('{"instances": [[1, 2, 3], [4, 5, 6]]}', "application/json").tolist() == expected
    )
    assert inference.input_fn(b"[[1, 2, 3], [4, 5, 6]]", "application/json").tolist() == expected
    assert inference.input_fn("[1, 2.5, 3]", "application/json; charset=utf-8").tolist() == [[1.0, 2.5, 3.0]]


def test_json_null_and_nan_are_missing_values():
    rows = inference.input_fn('{"instances": [[1, null, NaN]]}', "application/json")
    assert rows[0, 0] == 1 and np.isnan(rows[0, 1]) and np.isnan(rows[0, 2])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"instances": [[1, 2', "malformed JSON"),
        ('{"rows": [[1, 2, 3]]}', 'JSON body must be {"instances": [[...], ...]}'),
        ('"1,2,3"', 'JSON body must be {"instances"'),
        ('[[1, "a", 3]]', "row 1 column 2: 'a' is not a number"),
        ("[[1, true, 3]]", "row 1 column 2: True is not a number"),
        ("[[1, 2, 3], 4]", "row 2 is not a list of numbers"),
        ("[[1, Infinity, 3]]", "row 1 column 2: inf is not a finite number"),
        ("[[1, 2, 3], [4, 5]]", "rows differ in length"),
        ('{"instances": []}', "no rows in the request"),
    ],
)
def test_malformed_json_is_a_400(body, problem):
    assert problem in refused(400, inference.input_fn, body, "application/json")


def test_oversized_payload_is_a_413_checked_before_parsing():
    body = b"x" * (inference.MAX_PAYLOAD_BYTES + 1)  # would also be malformed: size wins
    assert "over the 6291456-byte limit" in refused(413, inference.input_fn, body, "text/csv")
    just_fits = ("1," * (inference.MAX_PAYLOAD_BYTES // 2 - 1)) + "1"
    assert inference.input_fn(just_fits, "text/csv").shape == (1, inference.MAX_PAYLOAD_BYTES // 2)


@pytest.mark.parametrize("content_type", ["application/x-npy", "text/plain", "", None, "application/jsonl"])
def test_unsupported_content_type_is_a_415(content_type):
    message = refused(415, inference.input_fn, "1,2,3", content_type)
    assert "(supported: text/csv, application/json)" in message


def test_unknown_charset_is_a_415():
    assert "unsupported charset 'klingon'" in refused(
        415, inference.input_fn, b"1,2,3", "text/csv; charset=klingon"
    )


def test_undecodable_bytes_are_a_400():
    assert "body is not valid utf-8" in refused(400, inference.input_fn, b"1,\xff,3", "text/csv")


# ---------------------------------------------------------------------------------- predict and output


def test_predict_fn_checks_the_feature_count(model):
    message = refused(400, inference.predict_fn, np.ones((2, 4)), model)
    assert message == "each row must have 3 features, got 4"
    assert refused(400, inference.predict_fn, np.ones((2, 2)), model).endswith("got 2")


def test_predict_fn_returns_one_value_per_row_and_tolerates_missing_values(model):
    predictions = inference.predict_fn(np.array([[1.0, np.nan, 0.0], [-1.0, 1.0, np.nan]]), model)
    assert predictions.shape == (2,)
    assert np.all((predictions > 0) & (predictions < 1))


@pytest.mark.parametrize("accept", ["text/csv", "*/*", "", None, "text/csv; charset=utf-8", "text/*"])
def test_output_csv_is_one_value_per_line(accept):
    assert inference.output_fn(np.array([0.1, 0.25], dtype=np.float32), accept) == "0.1\n0.25\n"


@pytest.mark.parametrize("accept", ["application/json", "application/json, text/csv", "application/*"])
def test_output_json_lists_predictions(accept):
    body = inference.output_fn(np.array([0.1, 0.25], dtype=np.float32), accept)
    assert json.loads(body) == {"predictions": [0.1, 0.25]}


def test_the_first_supported_accept_type_wins():
    assert inference.output_fn(np.array([1.0]), "application/xml, text/csv") == "1.0\n"


@pytest.mark.parametrize("accept", ["application/xml", "image/png"])
def test_unsupported_accept_is_a_406(accept):
    message = refused(406, inference.output_fn, np.array([1.0]), accept)
    assert "(supported: text/csv, application/json)" in message


def test_round_trip_matches_the_booster(model):
    rows = np.array([[0.5, -1.0, 2.0], [-2.0, 0.3, np.nan], [0.0, 0.0, 0.0]])
    direct = model.predict(xgb.DMatrix(rows))
    csv_body = "0.5,-1,2\n-2,0.3,\n0,0,0\n"
    csv_answer = inference.output_fn(
        inference.predict_fn(inference.input_fn(csv_body, "text/csv"), model), "text/csv"
    )
    assert [float(v) for v in csv_answer.splitlines()] == pytest.approx(direct.tolist(), rel=1e-6)
    json_body = json.dumps({"instances": [[0.5, -1, 2], [-2, 0.3, None], [0, 0, 0]]})
    json_answer = inference.output_fn(
        inference.predict_fn(inference.input_fn(json_body, "application/json"), model), "application/json"
    )
    assert json.loads(json_answer)["predictions"] == pytest.approx(direct.tolist(), rel=1e-6)
    assert all(not math.isnan(v) for v in json.loads(json_answer)["predictions"])

import importlib.util
import inspect
import json
import math
import sys
import types

import numpy as np
import pytest
import xgboost as xgb

from steps import inference, train
from steps.inference import InferenceError


@pytest.fixture(scope="module")
def model(tiny_binary_model):
    return inference.model_fn(str(tiny_binary_model))


def refused(status: int, call, *args) -> str:
    with pytest.raises(InferenceError) as caught:
        call(*args)
    assert caught.value.status_code == status
    message = str(caught.value)
    assert message == caught.value.message
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ contract


def test_the_model_file_name_is_the_one_train_writes():
    assert inference.MODEL_FILENAME == train.MODEL_FILENAME


def test_the_default_accept_is_csv():
    assert inference.DEFAULT_ACCEPT == "text/csv"


@pytest.mark.parametrize(
    ("handler", "arity"), [("model_fn", 1), ("input_fn", 2), ("predict_fn", 2), ("output_fn", 2)]
)
def test_handlers_take_the_argument_count_the_toolkit_calls_them_with(handler, arity):
    # The toolkit passes an extra context argument to a handler with one parameter more than expected.
    assert len(inspect.signature(getattr(inference, handler)).parameters) == arity


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


PREDICTIONS = np.array([0.1, 0.25], dtype=np.float32)


@pytest.mark.parametrize(
    "accept",
    ["text/csv", "*/*", "", "  ", None, "text/csv; charset=utf-8", "text/*", "Text/CSV", "TEXT/*;q=0.5"],
)
def test_output_csv_is_one_value_per_line_typed_text_csv(accept):
    assert inference.output_fn(PREDICTIONS, accept) == ("0.1\n0.25\n", "text/csv")


@pytest.mark.parametrize(
    "accept", ["application/json", "application/json; charset=utf-8", "application/*", "Application/JSON"]
)
def test_output_json_lists_predictions_typed_application_json(accept):
    body, media_type = inference.output_fn(PREDICTIONS, accept)
    assert media_type == "application/json"
    assert json.loads(body) == {"predictions": [0.1, 0.25]}


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("application/json, text/csv", "application/json"),
        ("text/csv, application/json", "text/csv"),
        ("application/xml, text/csv", "text/csv"),
        ("application/xml;q=1.0, application/json;q=0.9, text/csv;q=0.8", "application/json"),
        ("text/csv;q=0.1, application/json;q=0.9", "text/csv"),
        ("image/png, */*;q=0.1", "text/csv"),
        ("image/png, application/*", "application/json"),
        ("application/json;q=0, text/csv", "text/csv"),
        ("application/json;q=oops, text/csv", "application/json"),
        (" , text/csv", "text/csv"),
    ],
)
def test_the_first_supported_media_range_in_the_accept_list_wins(accept, media_type):
    assert inference.output_fn(np.array([1.0]), accept)[1] == media_type


def test_the_returned_type_is_never_the_raw_accept_header():
    accept = "application/xml, text/csv;q=0.5"
    body, media_type = inference.output_fn(np.array([1.0]), accept)
    assert (body, media_type) == ("1.0\n", "text/csv")


@pytest.mark.parametrize(
    "accept", ["application/xml", "image/png", "image/*", "application/xml, image/png", "text/csv;q=0"]
)
def test_unsupported_accept_is_a_406_naming_the_supported_types(accept):
    message = refused(406, inference.output_fn, np.array([1.0]), accept)
    assert repr(accept) in message
    assert message.endswith("(supported: text/csv, application/json)")


def test_round_trip_matches_the_booster(model):
    rows = np.array([[0.5, -1.0, 2.0], [-2.0, 0.3, np.nan], [0.0, 0.0, 0.0]])
    direct = model.predict(xgb.DMatrix(rows))
    csv_body = "0.5,-1,2\n-2,0.3,\n0,0,0\n"
    csv_answer, _ = inference.output_fn(
        inference.predict_fn(inference.input_fn(csv_body, "text/csv"), model), "text/csv"
    )
    assert [float(v) for v in csv_answer.splitlines()] == pytest.approx(direct.tolist(), rel=1e-6)
    json_body = json.dumps({"instances": [[0.5, -1, 2], [-2, 0.3, None], [0, 0, 0]]})
    json_answer, _ = inference.output_fn(
        inference.predict_fn(inference.input_fn(json_body, "application/json"), model), "application/json"
    )
    assert json.loads(json_answer)["predictions"] == pytest.approx(direct.tolist(), rel=1e-6)
    assert all(not math.isnan(v) for v in json.loads(json_answer)["predictions"])


# ------------------------------------------------------------------------------------------ errors


def test_errors_carry_status_code_message_and_the_standard_phrase():
    error = InferenceError(413, "payload too big")
    assert (error.status_code, error.message, error.phrase) == (
        413,
        "payload too big",
        "Request Entity Too Large",
    )
    assert str(error) == "payload too big"
    assert isinstance(error, ValueError)


def _fake_toolkit(monkeypatch, with_generic_error: bool = True) -> types.ModuleType:
    """Put a stand-in for sagemaker_inference.errors (same constructor signatures) into sys.modules."""

    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code, message, phrase):
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)

    class GenericInferenceToolkitError(BaseInferenceToolkitError):
        def __init__(self, status_code, message=None, phrase=None):
            message = message or "Invalid Request"
            super().__init__(status_code, message, phrase or message)

    package = types.ModuleType("sagemaker_inference")
    errors = types.ModuleType("sagemaker_inference.errors")
    errors.BaseInferenceToolkitError = BaseInferenceToolkitError
    if with_generic_error:
        errors.GenericInferenceToolkitError = GenericInferenceToolkitError
    package.errors = errors
    monkeypatch.setitem(sys.modules, "sagemaker_inference", package)
    monkeypatch.setitem(sys.modules, "sagemaker_inference.errors", errors)
    return errors


def _import_fresh(name: str) -> types.ModuleType:
    """Execute steps/inference.py as a new module, so its module-level import runs again."""
    spec = importlib.util.spec_from_file_location(name, inference.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_in_the_container_errors_are_toolkit_errors_that_keep_their_status(monkeypatch):
    toolkit = _fake_toolkit(monkeypatch)
    served = _import_fresh("inference_in_container")
    assert served._toolkit_errors is toolkit
    with pytest.raises(toolkit.BaseInferenceToolkitError) as caught:
        served.input_fn("1,2,3", "text/plain")
    error = caught.value
    assert isinstance(error, toolkit.GenericInferenceToolkitError)
    assert isinstance(error, served.InferenceError)
    assert error.status_code == 415
    assert error.message == "unsupported content type 'text/plain' (supported: text/csv, application/json)"
    assert error.phrase == "Unsupported Media Type"
    assert str(error) == error.message
    assert served.output_fn(np.array([1.0]), "*/*") == ("1.0\n", "text/csv")


def test_a_toolkit_without_the_generic_error_still_imports(monkeypatch):
    _fake_toolkit(monkeypatch, with_generic_error=False)
    served = _import_fresh("inference_in_old_container")
    error = served.InferenceError(400, "bad row")
    assert (error.status_code, error.message, str(error)) == (400, "bad row", "bad row")


def test_outside_the_container_errors_use_the_local_base(monkeypatch):
    monkeypatch.setitem(sys.modules, "sagemaker_inference", None)  # makes the import fail
    local = _import_fresh("inference_outside_container")
    assert local._toolkit_errors is None
    with pytest.raises(local._LocalToolkitError) as caught:
        local.output_fn(np.array([1.0]), "image/png")
    assert (caught.value.status_code, caught.value.phrase) == (406, "Not Acceptable")

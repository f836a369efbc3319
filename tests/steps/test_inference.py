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


def test_the_module_defines_transform_fn_and_none_of_the_functions_it_excludes():
    # sagemaker_xgboost_container/serving.py _user_module_transformer: a module with transform_fn and any
    # of input_fn, predict_fn, output_fn raises UserError, and the container does not start.
    assert callable(inference.transform_fn)
    assert [name for name in ("input_fn", "predict_fn", "output_fn") if hasattr(inference, name)] == []


@pytest.mark.parametrize(("handler", "arity"), [("model_fn", 1), ("transform_fn", 4)])
def test_handlers_take_the_arguments_the_container_passes(handler, arity):
    # sagemaker_containers/_transformer.py: model_fn(model_dir); transform_fn(model, content, type, accept).
    assert len(inspect.signature(getattr(inference, handler)).parameters) == arity


# ------------------------------------------------------------------------------------------ model_fn


def test_model_fn_loads_the_json_model_and_no_encoding_without_schema_json(model):
    assert isinstance(model.booster, xgb.Booster)
    assert model.booster.num_features() == 3
    assert model.encoding is None


def test_model_fn_names_a_missing_model(tmp_path):
    message = refused(500, inference.model_fn, str(tmp_path))
    assert message == f"no xgboost-model.json in the model directory {tmp_path}"


# ------------------------------------------------------------------------------------- parse_request


def test_csv_rows_parse_with_empty_cells_as_missing():
    rows = inference.parse_request("1,2,3\n4,,6\n\n", "text/csv")
    assert rows.dtype == np.float64 and rows.shape == (2, 3)
    assert np.isnan(rows[1, 1])


def test_csv_accepts_bytes_crlf_and_a_charset_parameter():
    rows = inference.parse_request(b"1,2,3\r\n4,5,6\r\n", "text/csv; charset=utf-8")
    assert rows.tolist() == [[1, 2, 3], [4, 5, 6]]
    latin = inference.parse_request("7,8,9".encode("latin-1"), "Text/CSV;charset=ISO-8859-1")
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
    assert problem in refused(400, inference.parse_request, body, "text/csv")


def test_json_takes_instances_a_list_of_rows_or_one_flat_row():
    expected = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert (
        inference.parse_request('{"instances": [[1, 2, 3], [4, 5, 6]]}', "application/json").tolist()
        == expected
    )
    assert inference.parse_request(b"[[1, 2, 3], [4, 5, 6]]", "application/json").tolist() == expected
    assert inference.parse_request("[1, 2.5, 3]", "application/json; charset=utf-8").tolist() == [
        [1.0, 2.5, 3.0]
    ]


def test_json_null_and_nan_are_missing_values():
    rows = inference.parse_request('{"instances": [[1, null, NaN]]}', "application/json")
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
    assert problem in refused(400, inference.parse_request, body, "application/json")


def test_oversized_payload_is_a_413_checked_before_parsing():
    body = b"x" * (inference.MAX_PAYLOAD_BYTES + 1)  # would also be malformed: size wins
    assert "over the 6291456-byte limit" in refused(413, inference.parse_request, body, "text/csv")
    just_fits = ("1," * (inference.MAX_PAYLOAD_BYTES // 2 - 1)) + "1"
    assert inference.parse_request(just_fits, "text/csv").shape == (1, inference.MAX_PAYLOAD_BYTES // 2)


@pytest.mark.parametrize("content_type", ["application/x-npy", "text/plain", "", None, "application/jsonl"])
def test_unsupported_content_type_is_a_415(content_type):
    message = refused(415, inference.parse_request, "1,2,3", content_type)
    assert "(supported: text/csv, application/json)" in message


def test_unknown_charset_is_a_415():
    assert "unsupported charset 'klingon'" in refused(
        415, inference.parse_request, b"1,2,3", "text/csv; charset=klingon"
    )


def test_undecodable_bytes_are_a_400():
    assert "body is not valid utf-8" in refused(400, inference.parse_request, b"1,\xff,3", "text/csv")


# ---------------------------------------------------------------------------------- predict and output


def test_predict_checks_the_feature_count(model):
    message = refused(400, inference.predict, model, np.ones((2, 4)))
    assert message == "each row must have 3 features, got 4"
    assert refused(400, inference.predict, model, np.ones((2, 2))).endswith("got 2")


def test_predict_returns_one_value_per_row_and_tolerates_missing_values(model):
    predictions = inference.predict(model, np.array([[1.0, np.nan, 0.0], [-1.0, 1.0, np.nan]]))
    assert predictions.shape == (2,)
    assert np.all((predictions > 0) & (predictions < 1))


PREDICTIONS = np.array([0.1, 0.25], dtype=np.float32)


@pytest.mark.parametrize(
    "accept",
    ["text/csv", "*/*", "", "  ", None, "text/csv; charset=utf-8", "text/*", "Text/CSV", "TEXT/*;q=0.5"],
)
def test_csv_is_chosen_for_csv_ranges_and_an_empty_accept(accept):
    assert inference.choose_accept(accept) == "text/csv"


def test_output_csv_is_one_value_per_line():
    assert inference.format_predictions(PREDICTIONS, "text/csv") == "0.1\n0.25\n"


@pytest.mark.parametrize(
    "accept", ["application/json", "application/json; charset=utf-8", "application/*", "Application/JSON"]
)
def test_output_json_lists_predictions(accept):
    assert inference.choose_accept(accept) == "application/json"
    assert json.loads(inference.format_predictions(PREDICTIONS, "application/json")) == {
        "predictions": [0.1, 0.25]
    }


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
    assert inference.choose_accept(accept) == media_type


@pytest.mark.parametrize(
    "accept", ["application/xml", "image/png", "image/*", "application/xml, image/png", "text/csv;q=0"]
)
def test_unsupported_accept_is_a_406_naming_the_supported_types(accept):
    message = refused(406, inference.choose_accept, accept)
    assert repr(accept) in message
    assert message.endswith("(supported: text/csv, application/json)")


def test_round_trip_matches_the_booster(model):
    rows = np.array([[0.5, -1.0, 2.0], [-2.0, 0.3, np.nan], [0.0, 0.0, 0.0]])
    direct = model.booster.predict(xgb.DMatrix(rows))
    csv_body = "0.5,-1,2\n-2,0.3,\n0,0,0\n"
    csv_answer = inference.transform_fn(model, csv_body, "text/csv", "text/csv")
    assert csv_answer[1] == "text/csv"
    assert [float(v) for v in csv_answer[0].splitlines()] == pytest.approx(direct.tolist(), rel=1e-6)
    json_body = json.dumps({"instances": [[0.5, -1, 2], [-2, 0.3, None], [0, 0, 0]]})
    json_answer, media_type = inference.transform_fn(model, json_body, "application/json", "application/json")
    assert media_type == "application/json"
    assert json.loads(json_answer)["predictions"] == pytest.approx(direct.tolist(), rel=1e-6)
    assert all(not math.isnan(v) for v in json.loads(json_answer)["predictions"])


# ------------------------------------------------------------------------------------------ transform_fn


def test_transform_fn_answers_with_a_body_and_the_type_it_chose(model):
    body, media_type = inference.transform_fn(model, "1,2,3", "text/csv", "application/xml, text/csv")
    assert media_type == "text/csv"
    assert len(body.splitlines()) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "message"),
    [
        ("1,abc,3", "text/csv", "text/csv", 400, "line 1 column 2: 'abc' is not a number"),
        ("1,2", "text/csv", "text/csv", 400, "each row must have 3 features, got 2"),
        ('{"instances": [[1, 2', "application/json", "text/csv", 400, "malformed JSON"),
        ("[" * 100_000, "application/json", "text/csv", 400, "malformed JSON: nested too deeply"),
        ("1,2,3", "application/x-npy", "text/csv", 415, "unsupported content type 'application/x-npy'"),
        ("1,2,3", "text/csv", "image/png", 406, "no type in Accept 'image/png' can be answered"),
        ("1," * inference.MAX_PAYLOAD_BYTES, "text/csv", "text/csv", 413, "over the 6291456-byte limit"),
    ],
)
def test_transform_fn_returns_a_refusal_with_its_status_instead_of_raising(
    model, body, content_type, accept, status, message
):
    answer = inference.transform_fn(model, body, content_type, accept)
    assert isinstance(answer, inference.LocalResponse)
    assert answer.status_code == status
    assert answer.headers == {"Content-Type": "text/plain; charset=utf-8"}
    text = answer.get_data().decode()
    assert message in text and "\n" not in text


def test_an_unexpected_failure_is_raised_for_the_container_to_answer_500():
    class Broken:
        def num_features(self):
            return 3

        def inplace_predict(self, data):
            raise RuntimeError("booster fell over")

    with pytest.raises(RuntimeError, match="booster fell over"):
        inference.transform_fn(inference.Model(Broken(), None), "1,2,3", "text/csv", "text/csv")


def test_in_the_container_a_refusal_is_the_workers_response_class(monkeypatch):
    class WorkerResponse:
        def __init__(self, response=None, accept=None, status=200, headers=None, mimetype=None):
            self.args = (response, status, mimetype)

    worker = types.ModuleType("sagemaker_containers.beta.framework.worker")
    worker.Response = WorkerResponse
    for name in ("sagemaker_containers", "sagemaker_containers.beta", "sagemaker_containers.beta.framework"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, worker.__name__, worker)
    served = _import_fresh("inference_in_container")
    answer = served.error_response(415, "unsupported content type 'x'")
    assert isinstance(answer, WorkerResponse)
    assert answer.args == ("unsupported content type 'x'", 415, "text/plain")


def test_outside_the_container_a_refusal_is_a_local_response(monkeypatch):
    monkeypatch.setitem(sys.modules, "sagemaker_containers", None)  # makes the import fail
    local = _import_fresh("inference_outside_container")
    assert local._WorkerResponse is None
    assert isinstance(local.error_response(400, "bad row"), local.LocalResponse)


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


def _import_fresh(name: str) -> types.ModuleType:
    """Execute steps/inference.py as a new module, so its module-level import runs again."""
    spec = importlib.util.spec_from_file_location(name, inference.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module

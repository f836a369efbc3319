"""The ASGI application in-process: SageMaker's inference contract over steps/inference.py called as the
XGBoost container calls it, and every refusal a one-line 4xx after which the application keeps answering."""

import json
import logging
import sys
import types

import numpy as np
import pytest

from pipelines.serving import app as app_module
from pipelines.serving.app import create_app
from pipelines.serving.handler import INTERNAL_ERROR, ModelLoadError

SIX_MB = 6 * 1024 * 1024
ROW = [0.5, -1.2, 3.3]
CSV_ROW = b"0.5,-1.2,3.3"


@pytest.fixture(scope="module")
def app(model_dir):
    return create_app(model_dir, default_accept="text/csv")  # what the pipeline sets in the container


def csv_post(call, app, body=CSV_ROW, **headers):
    return call(app, "POST", "/invocations", body=body, headers={"Content-Type": "text/csv", **headers})


def assert_still_serving(call, app, expected):
    answer = csv_post(call, app)
    assert answer.status == 200
    assert float(answer.text) == expected([ROW])[0]


def assert_one_line_refusal(answer, status: int, fragment: str) -> None:
    assert answer.status == status
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.text and "\n" not in answer.text
    assert fragment in answer.text


# ------------------------------------------------------------------------------------------ the contract


def test_ping_answers_200_with_an_empty_body(call, app):
    answer = call(app, "GET", "/ping")
    assert answer.status == 200
    assert answer.body == b""


def test_a_csv_row_gets_its_prediction_as_csv(call, app, expected):
    answer = csv_post(call, app)
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.text == f"{expected([ROW])[0]}\n"


def test_json_rows_get_json_predictions(call, app, expected):
    rows = [ROW, [0, 0, 0]]
    answer = call(
        app,
        "POST",
        "/invocations",
        body=json.dumps({"instances": rows}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == {"predictions": expected(rows)}


def test_csv_in_json_out_when_accept_asks_for_json(call, app, expected):
    answer = csv_post(call, app, Accept="application/json")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body)["predictions"] == expected([ROW])


def test_several_rows_get_one_prediction_each_in_order(call, app, expected):
    rows = [[float(i), -float(i), 0.5] for i in range(-3, 4)]
    body = "\n".join(",".join(map(str, row)) for row in rows).encode()
    answer = csv_post(call, app, body=body)
    assert answer.status == 200
    assert [float(line) for line in answer.text.splitlines()] == expected(rows)


@pytest.mark.parametrize("accept", [None, "", "*/*"])
def test_a_missing_or_wildcard_accept_gets_the_default_accept(call, app, accept):
    headers = {} if accept is None else {"Accept": accept}
    answer = csv_post(call, app, **headers)
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"


def test_the_containers_default_accept_variable_replaces_a_missing_or_wildcard_accept(
    call, model_dir, monkeypatch
):
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
    app = create_app(model_dir)
    assert csv_post(call, app).headers["content-type"] == "application/json"
    assert csv_post(call, app, Accept="*/*").headers["content-type"] == "application/json"
    assert csv_post(call, app, Accept="text/csv").headers["content-type"] == "text/csv; charset=utf-8"


def test_without_the_variable_a_missing_accept_is_json_as_in_the_container(call, model_dir, monkeypatch):
    # sagemaker_containers/_env.py ServingEnv: default_accept falls back to application/json.
    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    answer = csv_post(call, create_app(model_dir))
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"


def test_a_body_above_the_inline_size_is_answered_in_a_worker_thread_just_as_well(call, app, expected):
    rows = np.random.RandomState(1).normal(size=(5000, 3)).round(4).tolist()
    body = "\n".join(",".join(map(str, row)) for row in rows).encode()
    assert len(body) > app_module.INLINE_BYTES
    answer = csv_post(call, app, body=body)
    assert answer.status == 200
    assert [float(line) for line in answer.text.splitlines()] == expected(rows)


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "fragment"),
    [
        ("POST", "/invocations", {"Content-Type": "text/csv"}, b"1,abc,3", 400, "'abc' is not a number"),
        ("POST", "/invocations", {"Content-Type": "text/csv"}, b'1,"2,3', 400, "malformed CSV"),
        ("POST", "/invocations", {"Content-Type": "application/json"}, b"{", 400, "malformed JSON"),
        ("POST", "/invocations", {"Content-Type": "text/csv"}, b"1,2", 400, "must have 3 features, got 2"),
        ("POST", "/invocations", {"Content-Type": "text/csv"}, b"", 400, "no rows"),
        (
            "POST",
            "/invocations",
            {"Content-Type": "application/xml"},
            b"<a/>",
            415,
            "unsupported content type",
        ),
        ("POST", "/invocations", {}, CSV_ROW, 400, "malformed JSON"),  # no type: JSON, as in the container
        (
            "POST",
            "/invocations",
            {"Content-Type": "text/csv", "Accept": "application/xml"},
            CSV_ROW,
            406,
            "no type in Accept 'application/xml'",
        ),
        ("GET", "/nowhere", {}, b"", 404, "no such path '/nowhere'"),
        ("GET", "/invocations", {}, b"", 405, "GET is not allowed on /invocations; use POST"),
        ("POST", "/ping", {}, b"", 405, "POST is not allowed on /ping"),
    ],
    ids=[
        "not-a-number",
        "bad-csv-quote",
        "bad-json",
        "feature-count",
        "no-rows",
        "content-type",
        "no-content-type",
        "accept",
        "path",
        "method-invocations",
        "method-ping",
    ],
)
def test_a_bad_request_gets_a_one_line_4xx_and_the_app_keeps_serving(
    call, app, expected, method, path, headers, body, status, fragment
):
    answer = call(app, method, path, body=body, headers=headers)
    assert_one_line_refusal(answer, status, fragment)
    assert_still_serving(call, app, expected)


def test_a_wrong_method_answer_says_which_methods_are_allowed(call, app):
    assert call(app, "DELETE", "/invocations").headers["allow"] == "POST"


def test_a_body_over_6_mb_is_refused_by_its_content_length_and_a_waiting_client_never_sends_it(
    call, app, expected
):
    headers = {"Content-Length": str(SIX_MB + 1), "Expect": "100-continue"}
    answer = csv_post(call, app, body=b"", **headers)
    assert_one_line_refusal(answer, 413, f"payload of {SIX_MB + 1} bytes is over the {SIX_MB}-byte limit")
    assert answer.messages_read == 0  # receive() never called: no "100 Continue", no body
    assert_still_serving(call, app, expected)


def test_a_refused_body_is_read_to_its_end_and_dropped_so_that_the_client_sees_the_413(call, app):
    # Decided from Content-Length (the message names the declared size), then the body is drained.
    chunks = [b"1" * (1024 * 1024)] * 7
    headers = {"Content-Type": "text/csv", "Content-Length": str(7 * 1024 * 1024)}
    answer = call(app, "POST", "/invocations", headers=headers, chunks=chunks)
    assert_one_line_refusal(answer, 413, f"payload of {7 * 1024 * 1024} bytes is over")
    assert answer.messages_read == len(chunks) + 1


def test_a_chunked_body_is_refused_once_it_passes_6_mb(call, app, expected):
    chunks = [b"1" * (1024 * 1024)] * 10
    answer = call(app, "POST", "/invocations", headers={"Content-Type": "text/csv"}, chunks=chunks)
    assert_one_line_refusal(
        answer, 413, f"payload of more than {SIX_MB} bytes is over the {SIX_MB}-byte limit"
    )
    assert_still_serving(call, app, expected)


def test_a_body_of_exactly_6_mb_is_not_refused_for_its_size(call, app):
    answer = csv_post(call, app, body=b"x" * SIX_MB)
    assert answer.status == 400  # read and parsed: refused for what it holds, not for its size


# ------------------------------------------------------------------------------------------ other handlers


@pytest.fixture
def handler(monkeypatch):
    """A stand-in handler module, steps.inference's shape without its checks; tests replace its functions."""
    module = types.ModuleType("fake_handler")
    module.model_fn = lambda model_dir: types.SimpleNamespace(num_features=lambda: 3)
    module.input_fn = lambda body, content_type: np.array(
        [[float(v) for v in body.split(",")]]
    )  # text/csv arrives as str
    module.predict_fn = lambda data, model: data.sum(axis=1)
    module.output_fn = lambda prediction, accept: (",".join(map(str, prediction)), "text/csv")
    monkeypatch.setitem(sys.modules, "fake_handler", module)
    return module


def test_an_unexpected_error_is_a_generic_500_with_its_traceback_in_the_log_only(
    call, tmp_path, handler, caplog
):
    def predict_fn(data, model):
        raise RuntimeError("secret internal detail")

    handler.predict_fn = predict_fn
    app = create_app(tmp_path, "fake_handler")
    with caplog.at_level(logging.ERROR, logger="pipelines.serving.handler"):
        answer = call(app, "POST", "/invocations", body=b"1,2,3", headers={"Content-Type": "text/csv"})
    assert_one_line_refusal(answer, 500, INTERNAL_ERROR)
    assert "secret" not in answer.text
    assert "RuntimeError: secret internal detail" in caplog.text
    assert "Traceback" in caplog.text


def test_an_exception_carrying_a_4xx_status_is_still_a_500_as_in_the_container(call, tmp_path, handler):
    # sagemaker_containers/_functions.py error_wrapper re-raises every exception as ClientError: a 500.
    class Refusal(ValueError):
        status_code = 400
        message = "bad row"

    def input_fn(body, content_type):
        raise Refusal("bad row")

    handler.input_fn = input_fn
    answer = call(create_app(tmp_path, "fake_handler"), "POST", "/invocations", body=b"1", headers={})
    assert_one_line_refusal(answer, 500, INTERNAL_ERROR)


def test_the_endpoint_adds_no_check_of_its_own_to_the_handlers(call, tmp_path, handler):
    # The fake handler takes any number of features; so does the container, so two features are a 200.
    app = create_app(tmp_path, "fake_handler")
    answer = call(app, "POST", "/invocations", body=b"1,2", headers={"Content-Type": "text/csv"})
    assert (answer.status, answer.text) == (200, "3.0")


def test_a_bare_string_from_output_fn_is_sent_as_flask_sends_it(call, tmp_path, handler):
    handler.output_fn = lambda prediction, accept: "42"
    app = create_app(tmp_path, "fake_handler")
    headers = {"Content-Type": "text/csv", "Accept": "text/plain"}
    answer = call(app, "POST", "/invocations", body=b"1,2,3", headers=headers)
    assert (answer.status, answer.text) == (200, "42")
    assert answer.headers["content-type"] == "text/html; charset=utf-8"


def test_a_response_returned_by_transform_fn_is_sent_with_its_status(call, tmp_path, handler):
    for name in ("input_fn", "predict_fn", "output_fn"):
        delattr(handler, name)
    handler.transform_fn = lambda model, body, content_type, accept: types.SimpleNamespace(
        status_code=422, headers={"Content-Type": "application/json"}, get_data=lambda: b'{"e": 1}'
    )
    answer = call(create_app(tmp_path, "fake_handler"), "POST", "/invocations", body=b"1", headers={})
    assert (answer.status, answer.body, answer.headers["content-type"]) == (
        422,
        b'{"e": 1}',
        "application/json",
    )


def test_a_model_that_cannot_load_is_one_line_naming_the_model_directory(tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        create_app(tmp_path)
    assert str(caught.value) == (
        f"steps.inference.model_fn could not load the model in {tmp_path}: "
        f"no xgboost-model.json in the model directory {tmp_path}"
    )


def test_a_handler_module_without_transform_fn_or_the_three_functions_is_refused(tmp_path, handler):
    del handler.output_fn
    with pytest.raises(ModelLoadError, match="'fake_handler' defines neither transform_fn nor output_fn"):
        create_app(tmp_path, "fake_handler")


def test_a_handler_module_with_transform_fn_beside_input_fn_is_refused_as_the_container_does(
    tmp_path, handler
):
    handler.transform_fn = lambda model, body, content_type, accept: ("", "text/csv")
    with pytest.raises(ModelLoadError, match="Cannot use transform_fn implementation with input_fn"):
        create_app(tmp_path, "fake_handler")


def test_the_lifespan_protocol_is_answered():
    async def drive():
        incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent = []

        async def receive():
            return next(incoming)

        async def send(message):
            sent.append(message["type"])

        await app_module.InferenceApp(types.SimpleNamespace(module=None))({"type": "lifespan"}, receive, send)
        return sent

    import asyncio

    assert asyncio.run(drive()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

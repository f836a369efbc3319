"""steps/inference.py through a double of the XGBoost container's serving worker (written from that
container's source: tests/helpers/xgboost_container_double.py) and through the local endpoint: the same
status, Content-Type and body for every request, good or bad."""

import json

import pytest
from raw_model import write_raw_model
from xgboost_container_double import Worker

from pipelines.serving.app import create_app
from steps import inference

SIX_MB = 6 * 1024 * 1024
CSV = {"Content-Type": "text/csv"}
JSON = {"Content-Type": "application/json"}

REQUESTS = {
    "csv": (b"0.5,-1.2,3.3", {**CSV, "Accept": "text/csv"}),
    "csv-to-json": (b"0.5,-1.2,3.3\n1,2,3", {**CSV, "Accept": "application/json"}),
    "csv-wildcard-accept": (b"0.5,-1.2,3.3", {**CSV, "Accept": "*/*"}),
    "csv-no-accept": (b"0.5,-1.2,3.3", CSV),
    "json": (json.dumps({"instances": [[1, 2, 3]]}).encode(), {**JSON, "Accept": "application/json"}),
    "aws-contenttype-header": (b"1,2,3", {"ContentType": "text/csv", "Content-Type": "application/json"}),
    "malformed-csv": (b'1,"2,3', CSV),
    "not-a-number": (b"1,abc,3", CSV),
    "not-utf-8": (b"1,\xff,3", CSV),
    "wrong-feature-count": (b"1,2", CSV),
    "no-rows": (b"", CSV),
    "malformed-json": (b'{"instances": [[1, 2', JSON),
    "deeply-nested-json": (b"[" * 100_000, JSON),
    "json-not-rows": (b'{"rows": []}', JSON),
    "unsupported-content-type": (b"<a/>", {"Content-Type": "application/xml"}),
    "no-content-type": (b"1,2,3", {}),
    "unsupported-accept": (b"1,2,3", {**CSV, "Accept": "image/png"}),
    "unknown-charset": (b"1,2,3", {"Content-Type": "text/csv; charset=klingon"}),
    "too-large": (b"1," * (SIX_MB // 2) + b"1", CSV),
}


@pytest.fixture(scope="module")
def container(model_dir):
    return Worker(inference, str(model_dir), default_accept="text/csv")


@pytest.fixture(scope="module")
def endpoint(model_dir):
    return create_app(model_dir, default_accept="text/csv")


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_the_endpoint_answers_as_the_container_does(call, container, endpoint, case):
    body, headers = REQUESTS[case]
    expected = container.invoke(body, headers)
    answer = call(endpoint, "POST", "/invocations", body=body, headers=headers)
    assert (answer.status, answer.headers["content-type"], answer.body) == (
        expected.status,
        expected.content_type,
        expected.body,
    )


# Raw records to a model whose model.tar.gz carries schema.json, good and bad, beside encoded rows.
RAW_REQUESTS = {
    "raw-csv-header": (b"color,size,plan\nred,2.5,yes\nblue,-1,no", {**CSV, "Accept": "text/csv"}),
    "raw-csv-no-header": (b"red,2.5,yes", {**CSV, "Accept": "application/json"}),
    "raw-csv-unseen-and-missing": (b"plan,size,color\n,,green", CSV),
    "raw-json-record": (json.dumps({"color": "red", "size": 2.5, "plan": "yes"}).encode(), JSON),
    "raw-json-records": (
        json.dumps({"instances": [{"color": "blue", "size": None, "plan": "no"}]}).encode(),
        {**JSON, "Accept": "text/csv"},
    ),
    "encoded-csv": (b"0,1,2.5,0,1", CSV),
    "unknown-header-column": (b"colour,size,plan\nred,1,no", CSV),
    "header-with-label": (b"color,size,plan,churn\nred,1,no,yes", CSV),
    "wrong-column-count": (b"red,1", CSV),
    "not-a-number-in-numeric-column": (b"red,big,no", CSV),
    "record-unknown-column": (json.dumps({"color": "red", "size": 1, "plan": "no", "x": 1}).encode(), JSON),
    "record-wrong-type": (json.dumps({"color": "red", "size": "1", "plan": "no"}).encode(), JSON),
}


@pytest.fixture(scope="module")
def raw_model_dir(tmp_path_factory):
    return write_raw_model(tmp_path_factory.mktemp("raw-model"))


@pytest.mark.parametrize("case", sorted(RAW_REQUESTS))
def test_raw_records_are_answered_by_the_endpoint_as_the_container_answers_them(call, raw_model_dir, case):
    body, headers = RAW_REQUESTS[case]
    expected = Worker(inference, str(raw_model_dir), default_accept="text/csv").invoke(body, headers)
    endpoint = create_app(raw_model_dir, default_accept="text/csv")
    answer = call(endpoint, "POST", "/invocations", body=body, headers=headers)
    assert (answer.status, answer.headers["content-type"], answer.body) == (
        expected.status,
        expected.content_type,
        expected.body,
    )
    good = not case.startswith(("unknown", "header", "wrong", "not-a", "record-"))
    assert expected.status == (200 if good else 400), expected.body


def test_raw_records_to_a_model_without_schema_json_are_a_4xx_in_the_container(container):
    for case, says in (
        ("raw-json-record", b"records (objects keyed by column name) need a model version with schema.json"),
        ("raw-json-records", b"this model version carries no schema.json"),
        ("raw-csv-header", b"raw records need a model version with schema.json"),
    ):
        answer = container.invoke(*RAW_REQUESTS[case])
        assert answer.status == 400
        assert says in answer.body


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("malformed-csv", 400),
        ("not-a-number", 400),
        ("not-utf-8", 400),
        ("wrong-feature-count", 400),
        ("malformed-json", 400),
        ("deeply-nested-json", 400),
        ("unsupported-content-type", 415),
        ("unsupported-accept", 406),
        ("too-large", 413),
    ],
)
def test_bad_requests_are_4xx_in_the_container(container, case, status):
    answer = container.invoke(*REQUESTS[case])
    assert answer.status == status
    assert answer.content_type == "text/plain; charset=utf-8"


def test_good_requests_are_200_typed_as_the_container_types_them(container):
    assert container.invoke(*REQUESTS["csv"]).content_type == "text/csv; charset=utf-8"
    assert container.invoke(*REQUESTS["csv-no-accept"]).content_type == "text/csv; charset=utf-8"
    assert container.invoke(*REQUESTS["json"]).content_type == "application/json"


def test_a_raised_refusal_would_be_a_500_in_the_container(model_dir):
    """Why transform_fn returns its refusals: the worker turns any exception into a 500."""

    class RaisingHandler:
        model_fn = staticmethod(inference.model_fn)

        @staticmethod
        def transform_fn(model, content, content_type, accept):
            raise inference.InferenceError(400, "bad row")

    assert Worker(RaisingHandler, str(model_dir)).invoke(b"1,2,3", CSV).status == 500

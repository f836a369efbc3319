"""The record preprocessor Model Monitor runs on captured requests: the encoded rows it returns are the
ones steps/encoding.py (through the serving handler) gives the same churn rows."""

import base64
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from archives import tar_gz

from pipelines.stage_monitor import preprocessor
from steps import inference
from steps.encoding import encode_features, fit_encoding, schema_document
from steps.preprocess import load_spec

ROOT = Path(__file__).resolve().parents[3]
SPEC = load_spec(ROOT / "pipelines" / "churn" / "dataset.json")


@pytest.fixture(scope="module")
def churn():
    table = pd.read_csv(ROOT / "data" / "churn" / "churn.csv", dtype=str, keep_default_na=False)
    return table


@pytest.fixture(scope="module")
def encoding(churn):
    # Fitted on rows whose states leave some out, so later rows hold unseen categories.
    train = churn.iloc[:400]
    train = train[~train["state"].isin(["CA", "TX"])]
    return fit_encoding(train, SPEC)


@pytest.fixture(scope="module")
def schema(encoding):
    return schema_document(SPEC, encoding, {"train": 400}, {}, 0.7, 0.15, 42)


@pytest.fixture(scope="module")
def script(schema):
    return preprocessor.load(preprocessor.render(schema))


def capture(data, content_type="text/csv", encoding="CSV"):
    """An inference record shaped like Model Monitor's CapturedData (the AWS guide's classes)."""
    endpoint_input = SimpleNamespace(
        data=data, encoding=encoding, observedContentType=content_type, mode="INPUT"
    )
    return SimpleNamespace(
        endpoint_input=endpoint_input, event_metadata=SimpleNamespace(event_id="e-1"), event_version="0"
    )


def rows_of(returned):
    """The handler's dicts back as rows in _c order, None as NaN."""
    width = len(returned[0])
    assert all(list(row) == [f"_c{i}" for i in range(width)] for row in returned)
    return np.array([[math.nan if v is None else v for v in row.values()] for row in returned], dtype=float)


def features_only(churn, rows):
    return churn.iloc[rows][list(SPEC.feature_names)]


def csv_body(table, header):
    return table.to_csv(index=False, header=header)


def expected(table, encoding):
    raw = table.replace({"": None}).astype(object)
    return encode_features(raw, encoding).to_numpy(dtype=float)


@pytest.mark.parametrize("header", [True, False])
def test_raw_csv_rows_become_the_encoded_rows_preprocess_writes(churn, encoding, script, header):
    table = features_only(churn, range(400, 460))
    assert set(table["state"]) & {"CA", "TX"}, "the rows include an unseen category"
    body = csv_body(table, header)
    got = rows_of(script.preprocess_handler(capture(body)))
    np.testing.assert_array_equal(got, expected(table, encoding))
    np.testing.assert_array_equal(got, inference.parse_request(body, "text/csv", encoding))


def test_json_records_become_the_same_rows_as_the_handler_reads_them(churn, encoding, script):
    table = features_only(churn, range(500, 520))
    records = [
        {name: (float(v) if dict(SPEC.features)[name] == "numeric" else v) for name, v in row.items()}
        for row in table.to_dict(orient="records")
    ]
    for body in (json.dumps(records), json.dumps({"instances": records}), json.dumps(records[0])):
        got = rows_of(script.preprocess_handler(capture(body, "application/json", "JSON")))
        np.testing.assert_array_equal(got, inference.parse_request(body, "application/json", encoding))
    np.testing.assert_array_equal(
        rows_of(script.preprocess_handler(capture(json.dumps(records), "application/json", "JSON"))),
        expected(table, encoding),
    )


def test_missing_values_stay_missing_and_unseen_or_missing_categories_are_all_zeros(churn, encoding, script):
    table = features_only(churn, range(600, 603)).copy()
    table.iloc[0, list(table.columns).index("account_length")] = ""
    # A missing token, as Preprocess reads it:
    table.iloc[1, list(table.columns).index("total_day_calls")] = "N/A"
    table.iloc[1, list(table.columns).index("state")] = "ZZ"
    table.iloc[2, list(table.columns).index("international_plan")] = "NA"
    body = csv_body(table, header=True)
    got = rows_of(script.preprocess_handler(capture(body)))
    np.testing.assert_array_equal(got, inference.parse_request(body, "text/csv", encoding))
    columns = list(encoding.columns)
    assert math.isnan(got[0, columns.index("account_length")])
    assert math.isnan(got[1, columns.index("total_day_calls")])
    states = [i for i, c in enumerate(columns) if c.startswith("state=")]
    assert got[1, states].sum() == 0
    plans = [i for i, c in enumerate(columns) if c.startswith("international_plan=")]
    assert got[2, plans].sum() == 0
    record = {name: None for name in SPEC.feature_names}
    got = rows_of(script.preprocess_handler(capture(json.dumps(record), "application/json", "JSON")))
    assert np.isnan(got[0, [columns.index(n) for n, t in SPEC.features if t == "numeric"]]).all()
    assert np.nansum(got) == 0


def test_encoded_rows_and_base64_capture_pass_through(churn, encoding, script):
    encoded = expected(features_only(churn, range(700, 705)), encoding)
    body = "\n".join(",".join(repr(v) for v in row) for row in encoded.tolist())
    np.testing.assert_array_equal(rows_of(script.preprocess_handler(capture(body))), encoded)
    as_json = json.dumps({"instances": encoded.tolist()})
    np.testing.assert_array_equal(
        rows_of(script.preprocess_handler(capture(as_json, "application/json", "JSON"))), encoded
    )
    packed = base64.b64encode(body.encode()).decode()
    np.testing.assert_array_equal(
        rows_of(script.preprocess_handler(capture(packed, "text/csv", "BASE64"))), encoded
    )


@pytest.mark.parametrize(
    "data, content_type, capture_encoding",
    [
        ('"unterminated,1,2', "text/csv", "CSV"),
        ("KS,abc,area_code_415", "text/csv", "CSV"),  # neither a raw record nor an encoded row
        ("{not json", "application/json", "JSON"),
        ('{"state": "KS"}', "application/json", "JSON"),  # a record lacking features
        ("!!!", "text/csv", "BASE64"),
        ("1,2", "application/x-protobuf", "BASE64"),
    ],
)
def test_a_capture_the_endpoint_could_not_have_scored_is_skipped_and_logged(
    script, data, content_type, capture_encoding
):
    logged = []
    logger = SimpleNamespace(warning=logged.append)
    assert script.preprocess_handler(capture(data, content_type, capture_encoding), logger) == []
    assert len(logged) == 1 and "e-1" in logged[0] and "\n" not in logged[0]


@pytest.mark.parametrize("cell", ["lots", " ", "inf"])
def test_a_non_number_in_a_raw_row_is_skipped_as_the_handler_refuses_it(churn, encoding, script, cell):
    table = features_only(churn, range(3)).copy()
    table.iloc[1, list(table.columns).index("total_day_calls")] = cell
    with pytest.raises(inference.InferenceError):
        inference.parse_request(csv_body(table, header=True), "text/csv", encoding)
    assert (
        script.preprocess_handler(capture(csv_body(table, header=True)), SimpleNamespace(warning=print)) == []
    )


def test_the_script_is_the_same_bytes_for_the_same_schema_and_carries_it(schema, encoding):
    first = preprocessor.render(schema)
    assert first == preprocessor.render(json.loads(json.dumps(schema)))
    assert "import numpy" not in first and "import pandas" not in first
    assert preprocessor.load(first).columns() == list(encoding.columns)


def test_the_script_imports_only_the_standard_library(schema):
    import ast
    import sys

    tree = ast.parse(preprocessor.render(schema))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [SimpleNamespace(name=node.module)])
    }
    assert imported and imported <= set(sys.stdlib_module_names)


def test_schema_json_is_read_from_a_model_archive_and_absent_is_none(schema):
    def archive(members):
        return io.BytesIO(tar_gz(members))

    found = preprocessor.schema_from_artifact(
        archive({"xgboost-model.json": b"{}", "schema.json": json.dumps(schema).encode()})
    )
    assert found == schema
    assert preprocessor.schema_from_artifact(archive({"xgboost-model.json": b"{}"})) is None

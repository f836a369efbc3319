"""Raw records at the serving handler: CSV with or without a header row and JSON records, encoded as
Preprocess encoded the training data, beside the encoded rows that keep working."""

import json
import math

import numpy as np
import pytest
from raw_model import ENCODING, write_raw_model

from steps import inference
from steps.encoding import DatasetSpec, Encoding
from steps.inference import InferenceError

NAN = math.nan
# color=blue, color=red, size, plan=no, plan=yes
RED_BIG_YES = [0.0, 1.0, 2.5, 0.0, 1.0]
BLUE_SMALL_NO = [1.0, 0.0, -1.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return inference.model_fn(str(write_raw_model(tmp_path_factory.mktemp("raw-model"))))


def parsed(body, content_type="text/csv"):
    return inference.parse_request(body, content_type, ENCODING).tolist()


def same(actual, expected):
    np.testing.assert_array_equal(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float))


def refused(body, content_type="text/csv", encoding=ENCODING, status=400) -> str:
    with pytest.raises(InferenceError) as caught:
        inference.parse_request(body, content_type, encoding)
    assert caught.value.status_code == status
    assert "\n" not in caught.value.message
    return caught.value.message


def test_model_fn_loads_the_encoding_beside_the_model(model):
    assert model.encoding == ENCODING
    assert model.booster.num_features() == len(ENCODING.columns)


# ------------------------------------------------------------------------------------------------ CSV


@pytest.mark.parametrize(
    "body",
    [
        "color,size,plan\nred,2.5,yes\nblue,-1,no\n",
        "plan,color,size\nyes,red,2.5\nno,blue,-1\n",  # a header row puts the columns in any order
        "red,2.5,yes\nblue,-1,no\n",  # no header row: the spec's order
    ],
)
def test_raw_csv_rows_encode_as_training_encoded_them(body):
    same(parsed(body), [RED_BIG_YES, BLUE_SMALL_NO])


def test_encoded_rows_still_work_where_they_did():
    same(parsed("0,1,2.5,0,1\n1,0,-1,1,0\n"), [RED_BIG_YES, BLUE_SMALL_NO])
    same(parsed("[[0, 1, 2.5, 0, 1]]", "application/json"), [RED_BIG_YES])


def test_missing_values_and_unseen_categories_encode_as_training_encoded_them():
    rows = parsed("color,size,plan\ngreen,,yes\nNA,N/A,\n")
    same(rows, [[0, 0, NAN, 0, 1], [0, 0, NAN, 0, 0]])


def test_a_raw_row_scores_what_its_encoded_row_scores(model):
    raw = inference.transform_fn(model, "color,size,plan\nred,2.5,yes\n", "text/csv", "text/csv")
    encoded = inference.transform_fn(model, "0,1,2.5,0,1\n", "text/csv", "text/csv")
    assert raw == encoded
    assert raw[1] == "text/csv" and 0 < float(raw[0]) < 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "colour,size,plan\nred,1,no\n",
            "the header row names unknown column(s) 'colour' (did you mean 'color'?)",
        ),
        (
            "color,size,plan,churn\nred,1,no,yes\n",
            "the header row names the label 'churn': send the features only",
        ),
        (
            "color,size\nred,1\n",
            "the header row lacks 'plan': name every feature, an empty cell for a missing value",
        ),
        ("color,size,size\nred,1,2\n", "the header row names 'size' more than once: name each feature once"),
        ("color,size,plan,size\nred,1,no,2\n", "the header row names 'size' more than once"),
        ("color,size,plan\n", "no rows after the header row"),
        ("color,size,plan\nred,1\n", "line 2 has 2 values, expected 3 (one per feature)"),
        ("red,big,yes\n", "line 1 column 'size': 'big' is not a number (a header row names the dataset spec"),
        ("color,size,plan\nred,1,no\nred,inf,no\n", "line 3 column 'size': 'inf' is not a number"),
        ("color,size,plan\n\nred,x,no\n", "line 3 column 'size': 'x' is not a number"),  # lines as sent
        (
            "red,1,yes,no\n",
            "line 1 has 4 values: a raw record has 3 ('color', 'size', 'plan'; no label), "
            "an encoded row 5 (drop the label 'churn')",
        ),
        ("1,2\n", "line 1 has 2 values: a raw record has 3"),
        ("red,1,yes\nblue,2\n", "line 2 has 2 values, expected 3"),
    ],
)
def test_bad_raw_csv_is_one_line_400_naming_the_problem(body, problem):
    assert problem in refused(body)


# ----------------------------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "body",
    [
        {
            "instances": [
                {"color": "red", "size": 2.5, "plan": "yes"},
                {"plan": "no", "size": -1, "color": "blue"},
            ]
        },
        [{"color": "red", "size": 2.5, "plan": "yes"}, {"color": "blue", "size": -1, "plan": "no"}],
    ],
)
def test_json_records_encode_as_training_encoded_them(body):
    same(parsed(json.dumps(body), "application/json"), [RED_BIG_YES, BLUE_SMALL_NO])


def test_one_json_record_is_one_row_and_null_is_missing():
    same(parsed('{"color": "red", "size": null, "plan": null}', "application/json"), [[0, 1, NAN, 0, 0]])
    same(parsed('{"color": "purple", "size": 1, "plan": "NA"}', "application/json"), [[0, 0, 1, 0, 0]])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"color": "red", "size": 1, "plan": "no", "colr": 1},
            "record 1 names unknown column(s) 'colr' (did you mean 'color'?)",
        ),
        ({"color": "red", "size": 1}, "record 1 lacks 'plan': name every feature, null for a missing value"),
        (
            [{"color": "red", "size": 1, "plan": "no"}, {"color": "red", "sise": 1, "plan": "no"}],
            "record 2 names unknown column(s) 'sise' (did you mean 'size'?)",
        ),
        (
            {"color": "red", "size": 1, "plan": "no", "churn": "yes"},
            "record 1 names the label 'churn': send the features only",
        ),
        ({"color": "red", "size": "12", "plan": "no"}, "record 1 'size': '12' is not a number"),
        ({"color": "red", "size": True, "plan": "no"}, "record 1 'size': True is not a number"),
        ({"color": 1.5, "size": 1, "plan": "no"}, "record 1 'color': 1.5 is not a category (a string)"),
        ([{"color": "red", "size": 1, "plan": "no"}, [0, 1, 2, 0, 1]], "the rows mix records (objects)"),
    ],
)
def test_bad_json_records_are_one_line_400_naming_the_problem(body, problem):
    assert problem in refused(json.dumps(body), "application/json")


# ------------------------------------------------------------------------------ ambiguous and older models


def test_rows_that_could_be_either_kind_need_the_header_row():
    # One category each: a raw record and an encoded row both have two values.
    spec = DatasetSpec("y", "regression", (("kind", "categorical"), ("x", "numeric")))
    narrow = Encoding(spec, (("kind", ("a",)),))
    message = refused("1,2\n", encoding=narrow)
    assert message.startswith("rows of 2 values could be raw records or encoded rows for this model")
    same(inference.parse_request("kind,x\na,2\nb,3\n", "text/csv", narrow), [[1, 2], [0, 3]])


def test_all_numeric_rows_are_the_same_either_way():
    spec = DatasetSpec("y", "regression", (("a", "numeric"), ("b", "numeric")))
    same(inference.parse_request("1,2\n", "text/csv", Encoding(spec, ())), [[1, 2]])


def test_a_model_without_schema_json_takes_encoded_rows_and_says_so_for_raw_ones():
    message = refused('[{"color": "red", "size": 1, "plan": "no"}]', "application/json", encoding=None)
    assert message.startswith("this model version carries no schema.json")
    message = refused("red,1,no\n", encoding=None)
    assert message == (
        "line 1 column 1: 'red' is not a number (rows are numbers only: no header, no label; "
        "raw records need a model version with schema.json)"
    )


def test_a_schema_that_does_not_describe_the_model_stops_it_loading(tmp_path):
    folder = write_raw_model(tmp_path / "model")
    schema = json.loads((folder / "schema.json").read_text())
    schema["features"][0]["categories"].append("green")
    schema["features"][0]["columns"].append("color=green")
    schema["csv_columns"].insert(3, "color=green")
    (folder / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(InferenceError, match="describes 6 encoded features, the model takes 5"):
        inference.model_fn(str(folder))
    (folder / "schema.json").write_text("{")
    with pytest.raises(InferenceError, match="schema.json in .* cannot be read"):
        inference.model_fn(str(folder))

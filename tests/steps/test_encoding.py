import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps import encoding, preprocess
from steps.encoding import SchemaError

ROWS = 400
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def churn():
    """Preprocess's outputs for the first rows of the bundled churn table, with the raw rows of its
    test split in the order Preprocess wrote them."""
    spec = preprocess.load_spec(REPO_ROOT / "pipelines" / "churn" / "dataset.json")
    lines = (REPO_ROOT / "data" / "churn" / "churn.csv").read_text().splitlines()[: ROWS + 1]
    rows = list(csv.reader(lines))
    # Cells Preprocess must treat as missing, and a category the train split cannot have seen.
    for row, column, cell in (
        (2, "total_day_minutes", "NA"),
        (5, "state", "ZZ"),
        (7, "international_plan", ""),
        (9, "account_length", ""),
    ):
        rows[1 + row][rows[0].index(column)] = cell
    text = "".join(encoding.csv_line(row) + "\n" for row in rows)
    raw = pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, na_values=list(encoding.MISSING_TOKENS)
    )
    table = preprocess.check_table(raw, spec)
    outputs = preprocess.preprocess(table, spec)
    codes = preprocess.split_codes(table, spec, 0.7, 0.15, 42)
    test = pd.read_csv(io.StringIO(outputs["test/test.csv"]), header=None).to_numpy(dtype="float64")
    return {
        "spec": spec,
        "schema": json.loads(outputs["schema/schema.json"]),
        "raw_test": raw_text_rows(text, codes == 2),
        "encoded_test": test[:, 1:],
    }


def raw_text_rows(text: str, mask: np.ndarray) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    return [header] + [row for row, keep in zip(body, mask, strict=True) if keep]


def encode_raw(rows: list[list[str]], enc: encoding.Encoding) -> np.ndarray:
    header, body = rows[0], rows[1:]
    columns = {
        name: encoding.missing_to_nan([row[header.index(name)] for row in body])
        for name in enc.spec.feature_names
    }
    typed, bad = encoding.typed_columns(columns, enc.spec)
    assert bad == {}
    return encoding.encode_matrix(typed, enc)


def test_the_schema_reads_back_as_the_encoding_preprocess_used(churn):
    enc = encoding.encoding_from_schema(churn["schema"])
    assert enc.spec.feature_names == churn["spec"].feature_names
    assert enc.spec.label == "churn" and enc.spec.classes == ("no", "yes")
    assert ["churn", *enc.columns] == churn["schema"]["csv_columns"]
    assert len(enc.columns) == churn["encoded_test"].shape[1]


def test_raw_rows_encode_to_the_rows_preprocess_wrote(churn):
    enc = encoding.encoding_from_schema(churn["schema"])
    encoded = encode_raw(churn["raw_test"], enc)
    np.testing.assert_array_equal(encoded, churn["encoded_test"])  # NaN where Preprocess left it empty


def test_missing_and_unseen_values_encode_as_training_encoded_them(churn):
    enc = encoding.encoding_from_schema(churn["schema"])
    header = churn["raw_test"][0]
    row = dict(zip(header, churn["raw_test"][1], strict=True))
    row.update(state="XX", international_plan="NULL", total_day_minutes="N/A")
    encoded = encode_raw([header, [row[name] for name in header]], enc)[0]
    columns = enc.columns
    assert [encoded[i] for i, c in enumerate(columns) if c.startswith(("state=", "international_plan="))] == [
        0.0
    ] * sum(c.startswith(("state=", "international_plan=")) for c in columns)
    assert np.isnan(encoded[columns.index("total_day_minutes")])


def test_encoded_rows_decode_to_records_that_encode_back_to_them(churn):
    enc = encoding.encoding_from_schema(churn["schema"])
    records = encoding.decode_rows(churn["encoded_test"], enc)
    assert len(records[0]) == len(enc.spec.features)
    names = list(enc.spec.feature_names)
    lines = [names] + [next(csv.reader([encoding.csv_line(r)])) for r in records]
    np.testing.assert_array_equal(encode_raw(lines, enc), churn["encoded_test"])
    assert isinstance(records[0][names.index("account_length")], int)  # 128, as the raw table spells it


def test_a_numeric_cell_that_is_not_a_number_is_found():
    spec = encoding.DatasetSpec("y", "regression", (("a", "numeric"), ("b", "categorical")))
    columns = {
        "a": encoding.missing_to_nan(["1", "abc", "inf", "NA"]),
        "b": encoding.missing_to_nan(["x"] * 4),
    }
    _, bad = encoding.typed_columns(columns, spec)
    assert bad["a"].tolist() == [False, True, True, False]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.update(problem_type="multiclass"), "unknown problem_type 'multiclass'"),
        (lambda s: s.update(features=[]), "'features' is not a non-empty list"),
        (lambda s: s["features"][0].update(type="text"), "has unknown type 'text'"),
        (lambda s: s["features"][0].pop("categories"), "has no list of categories"),
        (lambda s: s["csv_columns"].pop(), "'csv_columns' does not follow"),
        (lambda s: s.pop("label"), "'label' has no name"),
    ],
)
def test_a_schema_that_is_not_preprocess_s_is_refused_in_one_line(churn, change, problem):
    schema = json.loads(json.dumps(churn["schema"]))
    change(schema)
    with pytest.raises(SchemaError, match=problem):
        encoding.encoding_from_schema(schema)

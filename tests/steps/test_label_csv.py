"""The label-first CSV reader Train and Evaluate share: numbers parsed by pandas' numeric reader give
the same arrays as the text cells parsed one by one, and what it cannot read is named as before."""

import numpy as np
import pytest

from steps import label_csv
from steps.label_csv import LabelFirstError, read_label_first

ROWS = (
    "1,0.5,,3\n"
    "0,-0.0,1e5,7.25\n"
    "1,.5,5.,+2\n"
    '0,"4",1.7976931348623157e308,2.2250738585072014e-308\n'
    "1,0.1,0.30000000000000004,123456789.123456789\n"
)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def test_numbers_read_as_numbers_equal_numbers_read_as_text(folder, monkeypatch):
    (folder / "part-1.csv").write_text(ROWS)
    (folder / "part-2.csv").write_text("".join(ROWS.splitlines(keepends=True)[:3]))
    assert label_csv._read_numbers(folder / "part-1.csv") is not None  # the numeric path takes them
    fast = read_label_first(folder, "channel")
    monkeypatch.setattr(label_csv, "_read_numbers", lambda file: None)  # the text path alone
    text = read_label_first(folder, "channel")
    for a, b in zip(fast, text, strict=True):
        assert a.dtype == b.dtype == np.float64
        assert np.array_equal(a, b, equal_nan=True)
        assert np.array_equal(np.signbit(a), np.signbit(b))  # -0.0 stays negative


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,2,3\n0,inf,1\n", "row 2 column 2 has non-numeric value 'inf'"),
        ("1,2,3\n0,nan,1\n", "row 2 column 2 has non-numeric value 'nan'"),
        ("1,2,3\n0,1e999,1\n", "row 2 column 2 has non-numeric value '1e999'"),
        (
            "y,a,b\n1,2,3\n",
            "the first row looks like a header row ('y', 'a', 'b'): channel CSVs have no header",
        ),
        ("1,2,3\n,4,5\n", "the label (column 1) is missing in 1 row(s)"),
        ("1,,3\n0,,5\n", "feature column(s) [2] have no values (all missing)"),
        ("1\n0\n", "expected the label and at least one feature, found 1 column"),
    ],
)
def test_what_the_numeric_reader_cannot_take_is_named_as_the_text_path_names_it(folder, body, message):
    (folder / "part.csv").write_text(body)
    with pytest.raises(LabelFirstError) as caught:
        read_label_first(folder, "channel")
    assert str(caught.value) == message

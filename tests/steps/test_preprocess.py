import io
import json

import numpy as np
import pandas as pd
import pytest

from steps import preprocess
from steps.preprocess import DataError, DatasetSpec, SpecError

SPEC = {
    "label": "y",
    "problem_type": "binary_classification",
    "classes": ["no", "yes"],
    "features": {"color": "categorical", "size": "numeric"},
}
REGRESSION_SPEC = {
    "label": "target",
    "problem_type": "regression",
    "features": {"a": "numeric", "b": "categorical"},
}


def tiny_csv(rows: int = 20) -> str:
    lines = ["color,size,y"]
    colors = ["red", "green", "blue"]
    for i in range(rows):
        size = "" if i == 3 else f"{i * 1.5}"
        lines.append(f"{colors[i % 3]},{size},{'yes' if i % 2 else 'no'}")
    return "\n".join(lines) + "\n"


def raw(text: str) -> pd.DataFrame:
    """A raw table read the way main reads one."""
    return pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, na_values=list(preprocess.MISSING_TOKENS)
    )


def spec(obj=None) -> DatasetSpec:
    return preprocess.parse_spec(obj or SPEC, "dataset.json")


@pytest.fixture
def layout(tmp_path, write):
    """Paths of a step run: raw input folder, spec file and output folder."""
    write(tmp_path / "spec" / "dataset.json", json.dumps(SPEC))
    return {"input": tmp_path / "raw", "spec": tmp_path / "spec" / "dataset.json", "out": tmp_path / "out"}


def argv(layout, *extra):
    return ["--input", layout["input"], "--spec", layout["spec"], "--output-dir", layout["out"], *extra]


# ------------------------------------------------------------------------------------------ the spec


def test_bundled_specs_parse(repo_root):
    churn = preprocess.load_spec(repo_root / "pipelines" / "churn" / "dataset.json")
    assert churn.label == "churn"
    assert churn.problem_type == "binary_classification"
    assert churn.classes == ("no", "yes")
    assert churn.feature_types["state"] == "categorical"
    assert len(churn.features) == 19
    concrete = preprocess.load_spec(repo_root / "data" / "concrete" / "dataset.json")
    assert concrete.problem_type == "regression"
    assert concrete.classes is None


def test_spec_keeps_feature_order():
    parsed = spec()
    assert parsed.feature_names == ("color", "size")
    assert parsed == spec()  # frozen dataclass, compares by value


def test_spec_errors_are_collected_into_one_line_naming_the_file():
    bad = {
        "label": "y",
        "problem_type": "multiclass",
        "features": {"y": "numeric", "x": "text"},
        "extra": 1,
    }
    with pytest.raises(SpecError) as caught:
        preprocess.parse_spec(bad, "specs/dataset.json")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("specs/dataset.json: invalid dataset spec: ")
    assert "unknown problem_type 'multiclass' (allowed: ['binary_classification', 'regression'])" in message
    assert "unknown key(s) ['extra']" in message
    assert "feature 'x' has unknown type 'text' (allowed: ['numeric', 'categorical'])" in message
    assert "label 'y' is also listed as a feature" in message


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({**SPEC, "classes": None}, "'classes' must be a list of exactly two"),
        (
            {k: v for k, v in SPEC.items() if k != "classes"},
            "'classes' is required for binary_classification",
        ),
        ({**SPEC, "classes": ["a", "b", "c"]}, "exactly two"),
        ({**SPEC, "classes": ["a", "a"]}, "two different values"),
        ({**SPEC, "classes": [True, False]}, "strings or integers"),
        ({**REGRESSION_SPEC, "classes": ["a", "b"]}, "'classes' is only allowed for binary_classification"),
        ({**SPEC, "features": {}}, "'features' is empty"),
        ({**SPEC, "features": ["a"]}, "'features' must be an object"),
        ({k: v for k, v in SPEC.items() if k != "label"}, "'label' is missing"),
        ({**SPEC, "label": ""}, "'label' must be a non-empty string"),
        ({k: v for k, v in SPEC.items() if k != "problem_type"}, "'problem_type' is missing"),
        ([1, 2], "expected a JSON object, got a list"),
    ],
)
def test_each_spec_problem_is_named(obj, problem):
    with pytest.raises(SpecError, match="^dataset.json: ") as caught:
        preprocess.parse_spec(obj, "dataset.json")
    assert problem in str(caught.value)


def test_integer_classes_compare_as_text():
    parsed = spec({**SPEC, "classes": [0, 1]})
    assert parsed.classes == ("0", "1")


def test_load_spec_reports_bad_json_missing_file_and_duplicate_keys(tmp_path, write):
    broken = write(tmp_path / "broken.json", '{"label": "y",}')
    with pytest.raises(SpecError, match=r"broken.json: dataset spec is not valid JSON: .* line 1 column 15"):
        preprocess.load_spec(broken)
    with pytest.raises(SpecError, match=r"missing.json: cannot read dataset spec: No such file"):
        preprocess.load_spec(tmp_path / "missing.json")
    duplicated = write(
        tmp_path / "dup.json", '{"label": "y", "features": {"a": "numeric", "a": "categorical"}}'
    )
    with pytest.raises(SpecError, match=r"duplicate key\(s\) \['a'\]"):
        preprocess.load_spec(duplicated)


# ------------------------------------------------------------------------------------- the raw table


def test_check_table_types_columns_and_encodes_the_label():
    table = preprocess.check_table(raw(tiny_csv()), spec())
    assert list(table.columns) == ["y", "color", "size"]
    assert table["y"].tolist()[:4] == [0, 1, 0, 1]
    assert table["size"].dtype == "float64"
    assert np.isnan(table.loc[3, "size"])
    assert table["color"].tolist()[:3] == ["red", "green", "blue"]


def test_missing_column_is_named():
    with pytest.raises(DataError, match=r"^missing column\(s\) \['size'\]$"):
        preprocess.check_table(raw("color,y\nred,no\n"), spec())


def test_extra_column_is_named():
    with pytest.raises(
        DataError, match=r"unexpected column\(s\) \['weight'\]: every column must be the label"
    ):
        preprocess.check_table(raw("color,size,weight,y\nred,1,2,no\n"), spec())


def test_a_headerless_file_gets_a_hint():
    with pytest.raises(DataError, match="is the header row missing"):
        preprocess.check_table(raw("red,1.5,no\ngreen,2,yes\n"), spec())


@pytest.mark.parametrize(
    ("header", "named"), [("color,size,y,size", "'size'"), ("color,color,size,y,y", "'color', 'y'")]
)
def test_a_duplicated_header_name_is_reported_as_duplicate_before_pandas_renames_it(
    layout, write, run_main, header, named
):
    """Reproduction: a header ``color,size,y,size`` was read by pandas as ``size`` and ``size.1``;
    with a spec naming ``size.1`` the table was accepted, otherwise it was reported as a missing
    and an unexpected column, never as a duplicate."""
    features = {"color": "categorical", "size": "numeric", "size.1": "numeric"}
    write(layout["spec"], json.dumps({**SPEC, "features": features}))
    cells = {"color": "red", "size": "1", "y": "no"}
    row = ",".join(cells[name] for name in header.split(","))
    write(layout["input"] / "data.csv", header + "\n" + "\n".join([row] * 20) + "\n")
    result = run_main(preprocess.main, argv(layout))
    assert result.code == 2
    assert f"duplicate column(s) [{named}] in the header row" in result.err
    assert result.err.count("\n") == 1


def test_a_semicolon_separated_file_gets_a_hint_about_the_delimiter():
    """Reproduction: ``color;size;y`` was reported only as a missing header row."""
    with pytest.raises(DataError, match="one column holding ';': save the file comma-separated"):
        preprocess.check_table(raw("color;size;y\nred;1;no\n"), spec())


def test_non_numeric_text_in_a_numeric_feature_names_column_and_value():
    with pytest.raises(DataError) as caught:
        preprocess.check_table(raw("color,size,y\nred,1,no\nblue,big,yes\nred,inf,no\n"), spec())
    assert str(caught.value) == "numeric column 'size' has non-numeric value(s) 'big', 'inf'"


@pytest.mark.parametrize(
    "cells",
    [
        ["3", "1", "3", "", "123456789012345678", "1", "9007199254740993"],  # integers, one missing
        ["3", "0.1", "3", "1e-5", "-0", "0.1", "", "7"],
    ],
    ids=["integers", "decimals"],
)
def test_numeric_cells_parse_as_pandas_parses_each_cell(cells):
    table = preprocess.check_table(raw("color,size,y\n" + "".join(f"red,{c},no\n" for c in cells)), spec())
    expected = pd.to_numeric(pd.Series(cells, dtype=object).replace("", np.nan), errors="coerce")
    np.testing.assert_array_equal(
        table["size"].to_numpy().view("uint64"), expected.to_numpy("float64").view("uint64")
    )


def test_header_only_table_is_refused():
    with pytest.raises(DataError, match=r"no data rows \(header only\)"):
        preprocess.check_table(raw("color,size,y\n"), spec())


def test_unexpected_label_values_are_named_up_to_five_with_the_allowed_ones():
    labels = ["no", "yes", "maybe", "Yes", "n", "1", "0", "true", "", "no"]
    text = "color,size,y\n" + "".join(f"red,1,{label}\n" for label in labels)
    with pytest.raises(DataError) as caught:
        preprocess.check_table(raw(text), spec())
    assert str(caught.value) == (
        "label 'y' has unexpected value(s) '0', '1', 'Yes', 'maybe', 'n' and 1 more, "
        "and 1 missing value(s) (allowed: ['no', 'yes'])"
    )


def test_a_missing_label_alone_is_reported():
    with pytest.raises(DataError, match=r"^label 'y' has 1 missing value\(s\) \(allowed: \['no', 'yes'\]\)$"):
        preprocess.check_table(raw("color,size,y\nred,1,no\nred,2,NA\n"), spec())


def test_regression_label_must_be_numeric_and_present():
    text = "a,b,target\n1,x,2.5\n2,y,lots\n3,z,\n"
    with pytest.raises(DataError) as caught:
        preprocess.check_table(raw(text), spec(REGRESSION_SPEC))
    assert "label 'target' must be numeric for regression; got 'lots'" in str(caught.value)
    assert "label 'target' is missing in 1 row(s)" in str(caught.value)


def test_all_missing_column_is_refused_over_the_whole_dataset():
    table = preprocess.check_table(raw("color,size,y\nred,,no\nblue,NA,yes\n"), spec())
    with pytest.raises(DataError, match=r"column\(s\) \['size'\] have no values \(all missing\)"):
        preprocess.check_dataset(table, spec())


def test_a_class_that_never_occurs_is_refused():
    table = preprocess.check_table(raw("color,size,y\nred,1,no\nblue,2,no\n"), spec())
    with pytest.raises(DataError, match=r"never takes the value\(s\) \['yes'\]"):
        preprocess.check_dataset(table, spec())


# ----------------------------------------------------------------------------------- split and encode


def wide_csv(rows: int) -> str:
    """A small table with missing cells and a category seen only in a few rows."""
    lines = ["color,size,y"]
    for i in range(rows):
        color = "" if i % 11 == 5 else ("violet" if i % 37 == 3 else ["red", "green", "blue"][i * 7 % 3])
        size = "NA" if i % 13 == 4 else f"{i * 0.25}"
        lines.append(f"{color},{size},{'yes' if i * 5 % 7 < 3 else 'no'}")
    return "\n".join(lines) + "\n"


def test_split_is_deterministic_complete_and_follows_the_fractions():
    table = preprocess.check_table(raw(wide_csv(3000)), spec())
    first = preprocess.split_codes(table, spec(), 0.7, 0.15, seed=7)
    again = preprocess.split_codes(table, spec(), 0.7, 0.15, seed=7)
    other = preprocess.split_codes(table, spec(), 0.7, 0.15, seed=8)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert set(first.tolist()) == {0, 1, 2}
    shares = np.bincount(first, minlength=3) / len(first)
    assert np.allclose(shares, [0.7, 0.15, 0.15], atol=0.03), shares


def test_a_rows_split_depends_on_its_values_not_its_position():
    table = preprocess.check_table(raw(wide_csv(300)), spec())
    codes = preprocess.split_codes(table, spec(), 0.7, 0.15, seed=1)
    order = np.random.RandomState(0).permutation(len(table))
    shuffled = table.iloc[order].reset_index(drop=True)
    assert np.array_equal(preprocess.split_codes(shuffled, spec(), 0.7, 0.15, seed=1), codes[order])
    doubled = pd.concat([table, table], ignore_index=True)
    twice = preprocess.split_codes(doubled, spec(), 0.7, 0.15, seed=1)
    assert np.array_equal(twice, np.concatenate([codes, codes]))  # a repeated row never crosses splits


@pytest.mark.parametrize(
    ("train", "validation"), [(0.9, 0.1), (0.8, 0.3), (0.0, 0.5), (0.5, 0.0), (1.2, 0.1)]
)
def test_fractions_that_leave_no_test_set_are_refused(train, validation):
    with pytest.raises(DataError):
        preprocess.check_fractions(train, validation)


def test_too_few_rows_to_fill_every_split_is_refused():
    table = preprocess.check_table(raw("color,size,y\nred,1,no\nblue,2,yes\nred,3,yes\n"), spec())
    with pytest.raises(DataError, match="3 row.* too few .* split would be empty"):
        preprocess.preprocess(table, spec(), seed=0)


def test_categories_come_from_train_only_and_unseen_ones_encode_as_zeros():
    parsed = spec()
    train = preprocess.check_table(raw("color,size,y\nred,1,no\nblue,2,yes\n"), parsed)
    test = preprocess.check_table(raw("color,size,y\ngreen,3,no\nred,,yes\n,4,no\n"), parsed)
    encoding = preprocess.fit_encoding(train, parsed)
    assert encoding.columns == ("color=blue", "color=red", "size")
    encoded = preprocess.encode_features(test, encoding)
    assert encoded[["color=blue", "color=red"]].to_numpy().tolist() == [[0, 0], [0, 1], [0, 0]]
    assert preprocess.unseen_rows(test, encoding) == {"color": 1}
    assert preprocess.to_csv(test["y"], encoded) == "0,0,0,3.0\n1,0,1,\n0,0,0,4.0\n"


def test_baseline_files_follow_model_monitor_shapes():
    features = pd.DataFrame({"flag": [0, 1, 1, 0], "amount": [1.5, np.nan, -2.0, 4.0]})
    statistics = preprocess.baseline_statistics(features)
    assert statistics["version"] == 0.0
    assert statistics["dataset"] == {"item_count": 4}
    flag, amount = statistics["features"]
    assert flag["name"] == "_c0" and flag["inferred_type"] == "Integral"
    assert amount["name"] == "_c1" and amount["inferred_type"] == "Fractional"
    numbers = amount["numerical_statistics"]
    assert numbers["common"] == {"num_present": 3, "num_missing": 1}
    assert numbers["sum"] == 3.5 and numbers["min"] == -2.0 and numbers["max"] == 4.0
    assert numbers["mean"] == pytest.approx(3.5 / 3)
    assert numbers["std_dev"] == pytest.approx(np.std([1.5, -2.0, 4.0]))
    constraints = preprocess.baseline_constraints(features)
    assert constraints["features"][1] == {
        "name": "_c1",
        "inferred_type": "Fractional",
        "completeness": 0.75,
        "num_constraints": {"is_non_negative": False},
    }
    assert constraints["monitoring_config"]["evaluate_constraints"] == "Enabled"


# ------------------------------------------------------------------------------------------------ main


def test_main_writes_every_output_label_first_without_header(layout, write, run_main):
    write(layout["input"] / "part-1.csv", tiny_csv(40))
    run = run_main(preprocess.main, argv(layout))
    assert run.code == 0, run.err
    written = sorted(p.relative_to(layout["out"]).as_posix() for p in layout["out"].rglob("*") if p.is_file())
    assert written == [
        "baseline/constraints.json",
        "baseline/statistics.json",
        "features/features.csv",
        "schema/schema.json",
        "test/test.csv",
        "train/train.csv",
        "validation/validation.csv",
    ]
    assert {p.split("/")[0] for p in written} == set(preprocess.OUTPUT_DIRS)
    schema = json.loads((layout["out"] / "schema" / "schema.json").read_text())
    assert schema["csv_columns"] == ["y", "color=blue", "color=green", "color=red", "size"]
    assert schema["num_features"] == 4
    # The QualityCheck baseline dataset: the train split's rows without their label, as requests send them.
    train_rows = (layout["out"] / "train" / "train.csv").read_text().splitlines()
    features = (layout["out"] / "features" / "features.csv").read_text().splitlines()
    assert features == [row.split(",", 1)[1] for row in train_rows]
    assert schema["rows"] == {"train": 32, "validation": 3, "test": 5}
    assert schema["label"] == {"name": "y", "classes": ["no", "yes"], "encoding": {"no": 0, "yes": 1}}
    train = pd.read_csv(layout["out"] / "train" / "train.csv", header=None)
    assert train.shape == (32, 5)
    assert set(train[0]) == {0, 1}
    statistics = json.loads((layout["out"] / "baseline" / "statistics.json").read_text())
    assert [f["name"] for f in statistics["features"]] == ["_c0", "_c1", "_c2", "_c3"]


def test_main_reads_every_csv_of_a_folder_in_name_order(layout, write, run_main, tmp_path):
    rows = tiny_csv(40).splitlines()
    write(layout["input"] / "b.csv", "\n".join([rows[0], *rows[21:]]) + "\n")
    write(layout["input"] / "a.csv", "\n".join(rows[:21]) + "\n")
    write(layout["input"] / "notes.txt", "ignored")
    assert run_main(preprocess.main, argv(layout)).code == 0
    single = tmp_path / "single.csv"
    single.write_text(tiny_csv(40))
    one_file = {**layout, "input": single, "out": tmp_path / "out-single"}
    assert run_main(preprocess.main, argv(one_file)).code == 0
    for relative in ("train/train.csv", "test/test.csv", "schema/schema.json"):
        assert (layout["out"] / relative).read_bytes() == (tmp_path / "out-single" / relative).read_bytes()


def test_same_input_and_seed_give_byte_identical_outputs(layout, write, run_main, tmp_path):
    write(layout["input"] / "data.csv", tiny_csv(60))
    run_main(preprocess.main, argv(layout, "--seed", "3"))
    again = {**layout, "out": tmp_path / "again"}
    run_main(preprocess.main, argv(again, "--seed", "3"))
    for path in layout["out"].rglob("*.*"):
        assert path.read_bytes() == (again["out"] / path.relative_to(layout["out"])).read_bytes()


def test_regression_table_is_split_without_stratification(tmp_path, write, run_main):
    text = "a,b,target\n" + "".join(f"{i},{'xy'[i % 2]},{i * 0.5}\n" for i in range(30))
    write(tmp_path / "raw" / "t.csv", text)
    write(tmp_path / "spec.json", json.dumps(REGRESSION_SPEC))
    run = run_main(
        preprocess.main,
        ["--input", tmp_path / "raw", "--spec", tmp_path / "spec.json", "--output-dir", tmp_path / "o"],
    )
    assert run.code == 0, run.err
    schema = json.loads((tmp_path / "o" / "schema" / "schema.json").read_text())
    assert schema["split"]["stratified"] is False
    assert "classes" not in schema["label"]
    first_row = (tmp_path / "o" / "train" / "train.csv").read_text().splitlines()[0]
    assert first_row.count(",") == 3  # label, a, b=x, b=y


BAD_FILES = [
    ("", "data.csv: file is empty"),
    ("color,size,y\n", "data.csv: no data rows (header only)"),
    ("color,y\nred,no\n", "data.csv: missing column(s) ['size']"),
    ("color,size,y,z\nred,1,no,1\n", "data.csv: unexpected column(s) ['z']"),
    (
        "color,size,y\nred,1,no\nred,abc,yes\n",
        "data.csv: numeric column 'size' has non-numeric value(s) 'abc'",
    ),
    ("color,size,y\nred,,no\nblue,,yes\n", "raw: column(s) ['size'] have no values (all missing)"),
    ("color,size,y\nred,1,no\nred,2,maybe\n", "data.csv: label 'y' has unexpected value(s) 'maybe' (allowed"),
    ("color,size,y\nred,1,no\nred,2,\n", "data.csv: label 'y' has 1 missing value(s)"),
    ('color,size,y\nred,1,no\n"red,2\n', "data.csv: cannot parse CSV"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_bad_data_exits_2_with_one_line_and_writes_nothing(layout, write, run_main, text, problem):
    write(layout["input"] / "data.csv", text)
    run = run_main(preprocess.main, argv(layout))
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith("error: ")
    assert problem in run.error_lines[0]
    assert not layout["out"].exists()


def test_bad_arguments_and_spec_exit_2_with_one_line(layout, write, run_main):
    write(layout["input"] / "data.csv", tiny_csv())
    fractions = run_main(
        preprocess.main, argv(layout, "--train-fraction", "0.9", "--validation-fraction", "0.1")
    )
    assert fractions.code == 2
    assert fractions.error_lines == [
        "error: arguments: train fraction 0.9 + validation fraction 0.1 leaves no test set; "
        "their sum must be below 1"
    ]
    typo = run_main(preprocess.main, argv(layout, "--seed", "x"))
    assert typo.code == 2 and typo.error_lines == [
        "error: arguments: argument --seed: invalid int value: 'x'"
    ]
    write(layout["spec"], json.dumps({**SPEC, "problem_type": "ranking"}))
    bad_spec = run_main(preprocess.main, argv(layout))
    assert bad_spec.code == 2
    assert len(bad_spec.error_lines) == 1
    assert bad_spec.error_lines[0].startswith(
        f"error: {layout['spec']}: invalid dataset spec: unknown problem_type"
    )
    assert not layout["out"].exists()


def test_missing_input_is_one_line(layout, run_main):
    run = run_main(preprocess.main, argv(layout))
    assert run.code == 2
    assert run.error_lines == [f"error: {layout['input']}: no such file or directory"]


# ----------------------------------------------------------------------------- chunks and shards


def whole_file_outputs(files: dict[str, str], parsed: DatasetSpec, seed: int = 42) -> dict[str, str]:
    """The reference: every file read whole, concatenated, preprocessed in memory."""
    tables = [preprocess.check_table(raw(text), parsed) for _, text in sorted(files.items())]
    return preprocess.preprocess(pd.concat(tables, ignore_index=True), parsed, seed=seed)


def written(out) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("obj", [SPEC, REGRESSION_SPEC], ids=["binary", "regression"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 100_000])
def test_chunked_main_writes_what_the_whole_file_path_computes(tmp_path, write, run_main, obj, chunk_rows):
    if obj is SPEC:
        files = {"a.csv": wide_csv(150), "b.csv": "color,size,y\n" + wide_csv(400).split("\n", 151)[-1]}
    else:
        text = "a,b,target\n" + "".join(
            f"{'' if i % 9 == 2 else i % 17 * 1.1},{'xyz'[i % 3]},{i * 0.5}\n" for i in range(300)
        )
        files = {"t.csv": text}
    for name, text in files.items():
        write(tmp_path / "raw" / name, text)
    write(tmp_path / "spec.json", json.dumps(obj))
    out = tmp_path / "out"
    run = run_main(
        preprocess.main,
        [
            "--input",
            tmp_path / "raw",
            "--spec",
            tmp_path / "spec.json",
            "--output-dir",
            out,
            "--chunk-rows",
            chunk_rows,
        ],
    )
    assert run.code == 0, run.err
    assert written(out) == whole_file_outputs(files, preprocess.parse_spec(obj, "spec"))


def to_csv_chunk(table, codes, encoding) -> list[str]:
    """encode_chunk's four texts as DataFrame.to_csv writes them, the way preprocess() does."""
    texts = []
    for i in range(3):
        part = table[codes == i]
        encoded = preprocess.encode_features(part, encoding)
        texts.append(preprocess.to_csv(part[encoding.spec.label], encoded) if len(part) else "")
    train = preprocess.encode_features(table[codes == 0], encoding)
    features = train.to_csv(header=False, index=False, na_rep="", lineterminator="\n") if len(train) else ""
    return [*texts, features]


EDGE_NUMBERS = ["-0", "0", "1e16", "0.00001", "0.1", "123456789012345678", "5e-324", "1.7976931348623157e308"]


@pytest.mark.parametrize(
    ("obj", "text", "categories"),
    [
        (  # numbers whose text numpy and Python spell differently from their input, signed zero included
            REGRESSION_SPEC,
            "a,b,target\n"
            + "".join(f"{n},{'xyzw'[i % 4]},{EDGE_NUMBERS[-i]}\n" for i, n in enumerate(EDGE_NUMBERS))
            + ",,2.5e-7\n-0.0,x,-0\n",
            (("b", ("x", "y")),),  # z and w unseen, one missing
        ),
        (  # one column: a row that is one empty field is quoted
            {**SPEC, "features": {"size": "numeric"}},
            "size,y\n1.5,no\n,yes\n,no\n2,yes\n,no\n-3,yes\n",
            (),
        ),
        (  # and beside a numeric one
            SPEC,
            "color,size,y\nred,1,no\n,,yes\nblue,2,no\nred,,yes\n",
            (("color", ()),),
        ),
        (
            {**SPEC, "features": {"color": "categorical"}},
            "color,y\nred,no\n,yes\nblue,no\nred,yes\n",
            (("color", ("red",)),),
        ),
    ],
    ids=["edge-numbers", "one-numeric-column", "empty-categorical", "one-category"],
)
@pytest.mark.parametrize(
    "pattern", [[0, 1, 2], [0, 0, 2], [1, 2, 1]], ids=["all-splits", "no-validation", "no-train"]
)
def test_encode_chunk_writes_the_bytes_dataframe_to_csv_writes(obj, text, categories, pattern):
    parsed = spec(obj)
    table = preprocess.check_table(raw(text), parsed)
    codes = np.resize(np.array(pattern, dtype="int8"), len(table))
    encoding = preprocess.Encoding(spec=parsed, categories=categories)
    assert preprocess.encode_chunk(table, codes, encoding) == to_csv_chunk(table, codes, encoding)


def test_a_train_split_without_any_feature_value_is_one_line(layout, write, run_main):
    obj = {**SPEC, "features": {"color": "categorical"}}
    write(layout["spec"], json.dumps(obj))
    parsed = spec(obj)
    table = preprocess.check_table(
        raw("color,y\n" + "".join(f"c{i},{'no' if i % 2 else 'yes'}\n" for i in range(60))), parsed
    )
    blank = preprocess.check_table(raw("color,y\n,no\n,yes\n"), parsed)
    # a seed that puts both blank rows in train; only the rows that seed keeps out of train have colours
    seed = next(s for s in range(100) if not preprocess.split_codes(blank, parsed, 0.7, 0.15, s).any())
    held_out = preprocess.split_codes(table, parsed, 0.7, 0.15, seed) != 0
    rows = [
        f"{c},{'yes' if y else 'no'}"
        for c, y in zip(table["color"][held_out], table["y"][held_out], strict=True)
    ]
    write(layout["input"] / "data.csv", "color,y\n" + "\n".join([",no", ",yes", *rows]) + "\n")
    run = run_main(preprocess.main, argv(layout, "--seed", seed))
    assert run.code == 2, run.out
    (line,) = run.error_lines
    assert line.endswith(
        "raw: every feature is missing in every train row (['color']): "
        "the model would have no column to learn from"
    )
    assert not layout["out"].exists()


def resource_config(tmp_path, host: str, hosts: list[str]):
    path = tmp_path / "config" / host / "resourceconfig.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"current_host": host, "hosts": hosts}))
    return path


def sharded_run(tmp_path, write, run_main, files: dict[str, str], hosts: list[str], rotate: int = 0):
    """The two processing jobs of a sharded run, each host given every len(hosts)-th file by name
    (ShardedByS3Key's split; with ``rotate``, the encode job hands the shards to other hosts);
    returns the encode job's folder per host."""
    write(tmp_path / "spec.json", json.dumps(SPEC))
    names = sorted(files)
    profiles = tmp_path / "profiles"
    for stage in ("profile", "encode"):
        for index, host in enumerate(hosts):
            shard = tmp_path / "shards" / stage / host
            dealt = (index + (rotate if stage == "encode" else 0)) % len(hosts)
            for name in names[dealt :: len(hosts)]:
                write(shard / name, files[name])
            shard.mkdir(parents=True, exist_ok=True)
            extra = ["--profiles", profiles] if stage == "encode" else []
            run = run_main(
                preprocess.main,
                [
                    "--input",
                    shard,
                    "--spec",
                    tmp_path / "spec.json",
                    "--output-dir",
                    tmp_path / stage / host,
                    "--stage",
                    stage,
                    "--resource-config",
                    resource_config(tmp_path, host, hosts),
                    *extra,
                ],
            )
            if run.code:
                return run
        if stage == "profile":
            for host in hosts:
                for path in (tmp_path / "profile" / host / "profile").iterdir():
                    write(profiles / path.name, path.read_text())
    return {host: tmp_path / "encode" / host for host in hosts}


def two_files() -> dict[str, str]:
    """A table of 200 rows as two files of 100."""
    return {"a.csv": wide_csv(100), "b.csv": "color,size,y\n" + wide_csv(200).split("\n", 101)[-1]}


def encode_again(tmp_path, run_main, shard, host, hosts, *extra, profiles=None):
    """The encode stage of ``host`` once more, on ``shard``, into ``tmp_path / 'again'``."""
    return run_main(
        preprocess.main,
        ["--input", shard, "--spec", tmp_path / "spec.json", "--output-dir", tmp_path / "again",
         "--stage", "encode", "--profiles", profiles or tmp_path / "profiles",
         "--resource-config", resource_config(tmp_path, host, hosts), *extra],
    )  # fmt: skip


# SageMaker does not say that two jobs deal a ShardedByS3Key input's objects to the same hosts, so
# the encode job may hold other files than the same host profiled (rotate=1).
@pytest.mark.parametrize("rotate", [0, 1])
def test_three_sharded_instances_write_what_one_writes_up_to_row_order(tmp_path, write, run_main, rotate):
    rows = wide_csv(900).splitlines()
    files = {
        f"part-{i}.csv": "\n".join([rows[0], *rows[1 + i * 100 : 101 + i * 100]]) + "\n" for i in range(9)
    }
    whole = whole_file_outputs(files, spec())
    hosts = ["algo-1", "algo-2", "algo-3"]
    outs = sharded_run(tmp_path, write, run_main, files, hosts, rotate)
    assert isinstance(outs, dict), outs.err
    parts = [(split, split) for split in preprocess.SPLITS] + [(preprocess.FEATURES_DIR, "features")]
    for folder, stem in parts:
        lines = [
            line
            for host in hosts
            for line in (outs[host] / folder / f"{stem}-{host}.csv").read_text().splitlines()
        ]
        assert sorted(lines) == sorted(whole[f"{folder}/{stem}.csv"].splitlines())
        assert all(len((outs[h] / folder / f"{stem}-{h}.csv").read_text()) for h in hosts)
    shared = {key: text for key, text in whole.items() if not key.endswith(".csv")}
    assert written(outs["algo-1"]) == {
        **shared,
        **{
            f"{folder}/{stem}-algo-1.csv": (outs["algo-1"] / folder / f"{stem}-algo-1.csv").read_text()
            for folder, stem in parts
        },
    }
    assert not (outs["algo-2"] / "schema").exists()  # one instance writes what all of them share
    assert not (outs["algo-2"] / "baseline" / "statistics.json").exists()


def test_encode_refuses_an_input_that_is_not_sharded(tmp_path, write, run_main):
    """A raw input FullyReplicated to the encode job: every instance would encode every row."""
    files = two_files()
    hosts = ["algo-1", "algo-2"]
    assert isinstance(sharded_run(tmp_path, write, run_main, files, hosts), dict)
    whole = tmp_path / "whole"
    for name, text in files.items():
        write(whole / name, text)
    run = encode_again(tmp_path, run_main, whole, "algo-2", hosts)
    assert run.code == 2
    assert run.error_lines == [
        f"error: {whole}: this instance holds all 2 profiled files, though the job has 2 instances: "
        "give the encode job its raw input ShardedByS3Key too"
    ]
    assert not (tmp_path / "again").exists()


def test_encode_refuses_profiles_that_saw_the_same_file_twice(tmp_path, write, run_main):
    """A raw input FullyReplicated to the profile job: every instance profiles every file."""
    files = two_files()
    hosts = ["algo-1", "algo-2"]
    assert isinstance(sharded_run(tmp_path, write, run_main, files, hosts), dict)
    profiles = tmp_path / "profiles"
    twice = json.loads((profiles / "profile-algo-2.json").read_text())
    twice["files"].update(json.loads((profiles / "profile-algo-1.json").read_text())["files"])
    (profiles / "profile-algo-2.json").write_text(json.dumps(twice))
    run = encode_again(tmp_path, run_main, tmp_path / "shards" / "encode" / "algo-1", "algo-1", hosts)
    assert run.code == 2
    assert run.error_lines == [
        f"error: {profiles}: a.csv was profiled by both algo-1 and algo-2, so its rows would count twice: "
        "give the profile job its raw input ShardedByS3Key, one object per instance"
    ]
    assert not (tmp_path / "again").exists()


def test_a_small_shard_writes_no_empty_file_for_a_split_it_has_no_row_of(tmp_path, write, run_main):
    """Reproduction: a host whose shard held three rows wrote 0-byte validation and test files, and
    Train and Evaluate, which read every file of those folders, failed on them as empty."""
    rows = wide_csv(300).splitlines()
    files = {"big.csv": "\n".join(rows[:298]) + "\n", "small.csv": "\n".join([rows[0], *rows[298:]]) + "\n"}
    hosts = ["algo-1", "algo-2"]
    outs = sharded_run(tmp_path, write, run_main, files, hosts)
    assert isinstance(outs, dict), outs.err
    small = written(outs["algo-2"])
    assert small and all(text for text in small.values())
    assert sum(1 for key in small if key.startswith(("validation/", "test/"))) < 2  # 2 rows: not both
    whole = whole_file_outputs(files, spec())
    for split in preprocess.SPLITS:
        lines = [
            line for host in hosts for key, text in written(outs[host]).items()
            if key.startswith(f"{split}/") for line in text.splitlines()
        ]  # fmt: skip
        assert sorted(lines) == sorted(whole[f"{split}/{split}.csv"].splitlines())


def test_a_missing_input_folder_is_an_empty_shard(tmp_path, write, run_main):
    """SageMaker does not say whether an instance with no objects gets an empty folder or none."""
    write(tmp_path / "spec.json", json.dumps(SPEC))
    hosts = ["algo-1", "algo-2"]
    run = run_main(
        preprocess.main,
        ["--input", tmp_path / "absent", "--spec", tmp_path / "spec.json", "--output-dir", tmp_path / "out",
         "--stage", "profile", "--resource-config", resource_config(tmp_path, "algo-2", hosts)],
    )  # fmt: skip
    assert run.code == 2
    assert run.error_lines == [
        f"error: {tmp_path / 'absent'}: the shard of algo-2 (2 of 2 instances) holds no data rows: "
        "give the job at most as many instances as there are input files with rows"
    ]


def test_a_shard_without_rows_is_an_error_naming_the_instance(tmp_path, write, run_main):
    files = two_files()
    run = sharded_run(tmp_path, write, run_main, files, ["algo-1", "algo-2", "algo-3"])
    assert run.code == 2
    assert run.error_lines == [
        f"error: {tmp_path / 'shards' / 'profile' / 'algo-3'}: "
        "the shard of algo-3 (3 of 3 instances) holds no data rows: "
        "give the job at most as many instances as there are input files with rows"
    ]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"current_host": "algo-1", "hosts": [f"algo-{i}" for i in range(1, 102)]},
            "101 hosts, but a processing job runs at most 100 instances "
            "(ProcessingClusterConfig.InstanceCount)",
        ),
        (
            {"current_host": "algo-9", "hosts": ["algo-1", "algo-2"]},
            "resource config does not name this instance: current_host 'algo-9' is not one of its hosts",
        ),
        ({"hosts": ["algo-1"]}, "resource config does not name this instance: current_host None"),
        ({"current_host": "algo-1"}, "resource config has no 'hosts' list of host names"),
    ],
)
def test_a_bad_resource_config_is_one_line_naming_the_file(layout, write, run_main, config, problem):
    write(layout["input"] / "data.csv", tiny_csv())
    path = write(layout["out"].parent / "resourceconfig.json", json.dumps(config))
    run = run_main(preprocess.main, argv(layout, "--stage", "profile", "--resource-config", path))
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith(f"error: {path}: {problem}")
    assert not layout["out"].exists()


def test_encode_refuses_an_incomplete_set_of_profiles(tmp_path, write, run_main):
    files = two_files()
    assert isinstance(sharded_run(tmp_path, write, run_main, files, ["algo-1", "algo-2"]), dict)
    (tmp_path / "profiles" / "profile-algo-2.json").unlink()
    run = run_main(
        preprocess.main,
        [
            "--input",
            tmp_path / "shards" / "encode" / "algo-1",
            "--spec",
            tmp_path / "spec.json",
            "--output-dir",
            tmp_path / "again",
            "--stage",
            "encode",
            "--profiles",
            tmp_path / "profiles",
            "--resource-config",
            resource_config(tmp_path, "algo-1", ["algo-1", "algo-2"]),
        ],
    )
    assert run.code == 2
    assert run.error_lines == [
        f"error: {tmp_path / 'profiles'}: the profiles are not one complete set: hosts ['algo-1', 'algo-2'], "
        "profiles from ['algo-1']; pass every profile of one profile job"
    ]
    assert not (tmp_path / "again").exists()


def test_encode_refuses_profiles_of_other_fractions_and_a_shard_that_changed(tmp_path, write, run_main):
    files = two_files()
    hosts = ["algo-1", "algo-2"]
    assert isinstance(sharded_run(tmp_path, write, run_main, files, hosts), dict)

    def encode(*extra):
        return encode_again(
            tmp_path, run_main, tmp_path / "shards" / "encode" / "algo-2", "algo-2", hosts, *extra
        )

    other = encode("--seed", "7")
    assert other.code == 2
    assert other.error_lines == [
        f"error: {tmp_path / 'profiles'}: profile of algo-1 used fractions [0.7, 0.15] and seed 42, "
        "this stage [0.7, 0.15] and 7; pass the same to both"
    ]
    shard = tmp_path / "shards" / "encode" / "algo-2"
    with open(shard / "b.csv", "a") as handle:
        handle.write("red,1.5,yes\n")
    changed = encode()
    assert changed.code == 2
    assert changed.error_lines == [
        f"error: {shard}: b.csv has 1369 bytes, its profile 1357 bytes, 100 rows: "
        "the input changed between the profile and encode stages; run both again "
        "(in a pipeline: with caching off, or a new input location)"
    ]
    (shard / "b.csv").rename(shard / "c.csv")
    assert encode().error_lines == [
        f"error: {shard}: c.csv is in this shard but in no profile: "
        "the input changed between the profile and encode stages; run both again "
        "(in a pipeline: with caching off, or a new input location)"
    ]
    assert not any((tmp_path / "again").rglob("*.csv"))

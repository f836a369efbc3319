import io
import json
import math
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

from steps import evaluate
from steps.evaluate import EvaluationError


def test_csv(rows: int = 120, seed: int = 3, binary: bool = True) -> str:
    """Headerless label-first rows matching the tiny models' 3 features and signal."""
    rng = np.random.RandomState(seed)
    features = rng.normal(size=(rows, 3))
    signal = features[:, 0] - 0.5 * features[:, 1]
    labels = (signal + 0.5 * rng.normal(size=rows) > 0).astype(int) if binary else signal * 10 + 3
    return "".join(f"{y},{a:.4f},{b:.4f},{c:.4f}\n" for y, (a, b, c) in zip(labels, features, strict=True))


test_csv.__test__ = False  # a helper, not a test


@pytest.fixture
def binary_case(tmp_path, write, tiny_binary_model, make_model_archive):
    make_model_archive(tiny_binary_model, tmp_path / "model")
    write(tmp_path / "test" / "test.csv", test_csv())
    return tmp_path


def argv(root, problem_type="binary_classification"):
    return [
        "--model",
        root / "model",
        "--test",
        root / "test",
        "--problem-type",
        problem_type,
        "--output-dir",
        root / "out",
    ]


def resolve(document: dict, dotted: str):
    for key in dotted.split("."):
        document = document[key]
    return document


# ------------------------------------------------------------------------------ the gate's shared keys


def test_gate_metric_path_resolves_in_a_real_binary_evaluation(binary_case, run_main):
    run = run_main(evaluate.main, argv(binary_case))
    assert run.code == 0, run.err
    document = json.loads((binary_case / "out" / evaluate.EVALUATION_FILENAME).read_text())
    path = evaluate.metric_json_path("binary_classification", evaluate.GATE_METRIC["binary_classification"])
    assert path == "binary_classification_metrics.auc.value"
    value = resolve(document, path)
    assert isinstance(value, float) and 0.5 < value <= 1.0


def test_gate_metric_path_resolves_in_a_real_regression_evaluation(
    tmp_path, write, tiny_regression_model, make_model_archive, run_main
):
    make_model_archive(tiny_regression_model, tmp_path / "model")
    write(tmp_path / "test" / "test.csv", test_csv(binary=False))
    run = run_main(evaluate.main, argv(tmp_path, "regression"))
    assert run.code == 0, run.err
    document = json.loads((tmp_path / "out" / evaluate.EVALUATION_FILENAME).read_text())
    path = evaluate.metric_json_path("regression", evaluate.GATE_METRIC["regression"])
    assert path == "regression_metrics.rmse.value"
    assert isinstance(resolve(document, path), float)
    assert set(document["regression_metrics"]) == {"mse", "rmse", "mae", "r2"}
    assert not evaluate.HIGHER_IS_BETTER["rmse"]


def test_every_metric_has_a_path_and_a_direction():
    for problem_type, metrics in evaluate.METRICS.items():
        assert evaluate.GATE_METRIC[problem_type] in metrics
        for metric in metrics:
            assert evaluate.metric_json_path(problem_type, metric) == f"{problem_type}_metrics.{metric}.value"
            assert metric in evaluate.HIGHER_IS_BETTER
    with pytest.raises(ValueError, match=r"unknown binary_classification metric 'rmse' \(allowed: auc,"):
        evaluate.metric_json_path("binary_classification", "rmse")
    with pytest.raises(ValueError, match="unknown problem type 'ranking'"):
        evaluate.metric_json_path("ranking", "auc")


# ----------------------------------------------------------------------------------------- the report


def test_binary_report_has_every_model_quality_field_and_only_finite_numbers(binary_case, run_main):
    run_main(evaluate.main, argv(binary_case))
    text = (binary_case / "out" / evaluate.EVALUATION_FILENAME).read_text()
    metrics = json.loads(text)["binary_classification_metrics"]
    for name in ("auc", "accuracy", "precision", "recall", "f1"):
        assert set(metrics[name]) == {"value", "standard_deviation"}
        assert metrics[name]["standard_deviation"] > 0
    matrix = metrics["confusion_matrix"]
    assert sum(matrix[a][p] for a in "01" for p in "01") == 120
    curve = metrics["receiver_operating_characteristic_curve"]
    assert len(curve["false_positive_rates"]) == len(curve["true_positive_rates"]) <= evaluate.ROC_POINTS + 1
    assert curve["false_positive_rates"][0] == 0.0 and curve["true_positive_rates"][-1] == 1.0
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite {c} in evaluation.json"))


def test_report_is_byte_identical_across_runs(binary_case, run_main):
    run_main(evaluate.main, argv(binary_case))
    first = (binary_case / "out" / evaluate.EVALUATION_FILENAME).read_bytes()
    run_main(evaluate.main, argv(binary_case))
    assert (binary_case / "out" / evaluate.EVALUATION_FILENAME).read_bytes() == first


def test_scores_match_hand_computed_values():
    labels = np.array([0, 0, 1, 1, 1.0])
    probabilities = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    report = evaluate.evaluate("binary_classification", labels, probabilities)[
        "binary_classification_metrics"
    ]
    assert report["accuracy"]["value"] == 0.6
    assert report["precision"]["value"] == round(2 / 3, 6)
    assert report["recall"]["value"] == round(2 / 3, 6)
    assert report["auc"]["value"] == round(5 / 6, 6)
    assert report["confusion_matrix"] == {"0": {"0": 1, "1": 1}, "1": {"0": 1, "1": 2}}
    regression = evaluate.regression_scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert regression == {"mse": 4 / 3, "rmse": math.sqrt(4 / 3), "mae": 2 / 3, "r2": 1 - 4 / 2}


def test_roc_curve_is_thinned_to_about_a_hundred_points():
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 2, 5000).astype(float)
    curve = evaluate.roc_points(labels, rng.uniform(size=5000))
    assert 50 < len(curve["false_positive_rates"]) <= 100
    assert curve["false_positive_rates"][-1] == 1.0


def test_undefined_metrics_are_refused_rather_than_written_as_nan():
    with pytest.raises(EvaluationError, match="all test labels are 1: AUC needs both classes"):
        evaluate.evaluate("binary_classification", np.ones(5), np.full(5, 0.7))
    with pytest.raises(EvaluationError, match="all test labels are 2: r2 is undefined"):
        evaluate.evaluate("regression", np.full(5, 2.0), np.arange(5.0))
    with pytest.raises(EvaluationError, match="labels must be 0 or 1; found 2"):
        evaluate.evaluate("binary_classification", np.array([0, 1, 2.0]), np.full(3, 0.5))


# ---------------------------------------------------------------------------------- hostile archives


def hostile_archive(folder, member: tarfile.TarInfo, data: bytes = b"") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "model.tar.gz", "w:gz") as archive:
        safe = tarfile.TarInfo("notes.txt")
        safe.size = 2
        archive.addfile(safe, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


HOSTILE = [
    (member("/tmp/escaped-model.json"), "'/tmp/escaped-model.json' has an absolute path"),
    (member("../escaped.json"), "'../escaped.json' has a '..' component"),
    (member("model/../../escaped.json"), "'model/../../escaped.json' has a '..' component"),
    (
        member("xgboost-model.json", tarfile.SYMTYPE, "/etc/passwd"),
        "'xgboost-model.json' is a symlink to '/etc/passwd', outside the archive",
    ),
    (
        member("xgboost-model.json", tarfile.LNKTYPE, "../notes.txt"),
        "'xgboost-model.json' is a hard link to '../notes.txt', outside the archive",
    ),
    (member("pipe", tarfile.FIFOTYPE), "'pipe' is a FIFO"),
    (member("tty", tarfile.CHRTYPE), "'tty' is a device file"),
    (member("disk", tarfile.BLKTYPE), "'disk' is a device file"),
]


@pytest.mark.parametrize(("info", "problem"), HOSTILE, ids=[p for _, p in HOSTILE])
def test_hostile_archive_members_are_refused_before_anything_is_extracted(
    tmp_path, write, run_main, info, problem
):
    hostile_archive(tmp_path / "model", info, b"{}")
    write(tmp_path / "test" / "test.csv", test_csv())
    run = run_main(evaluate.main, argv(tmp_path))
    assert run.code == 2
    archive = tmp_path / "model" / "model.tar.gz"
    assert run.error_lines == [f"error: {archive}: model archive: member {problem}; refusing to extract it"]
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escaped.json").exists()


def test_an_archive_that_is_not_a_tarball_or_lacks_the_model_is_one_line(tmp_path, write, run_main):
    write(tmp_path / "test" / "test.csv", test_csv())
    write(tmp_path / "model" / "model.tar.gz", "not gzip at all")
    run = run_main(evaluate.main, argv(tmp_path))
    assert run.code == 2 and len(run.error_lines) == 1
    assert "model archive is not a readable tar archive" in run.err
    hostile_archive(tmp_path / "model", member("other.bin"), b"x")
    run = run_main(evaluate.main, argv(tmp_path))
    assert run.error_lines == [
        f"error: {tmp_path / 'model' / 'model.tar.gz'}: no xgboost-model.json in the archive "
        "(found: notes.txt, other.bin)"
    ]


def test_a_tarball_made_with_dot_prefixed_names_is_accepted(tmp_path, write, run_main, tiny_binary_model):
    (tmp_path / "model").mkdir()
    with tarfile.open(tmp_path / "model" / "model.tar.gz", "w:gz") as archive:
        archive.add(tiny_binary_model, arcname=".")
    write(tmp_path / "test" / "test.csv", test_csv())
    assert run_main(evaluate.main, argv(tmp_path)).code == 0


# ------------------------------------------------------------------------------------------- test data

BAD_TEST_DATA = [
    ("", "test.csv: file is empty"),
    (
        "label,a,b,c\n1,0.1,0.2,0.3\n",
        "test.csv: the first row looks like a header row ('label', 'a', 'b', 'c')",
    ),
    ("1,0.1,0.2\n0,0.3,0.4\n", "test: the test data has 2 feature columns but the model expects 3"),
    (
        "1,0.1,0.2,0.3,0.4\n0,0.3,0.4,0.5,0.6\n",
        "test: the test data has 4 feature columns but the model expects 3",
    ),
    ("1,0.1,0.2,0.3\n3,0.3,0.4,0.5\n", "test: labels must be 0 or 1; found 3"),
    ("1,0.1,0.2,0.3\n,0.3,0.4,0.5\n", "test.csv: the label (column 1) is missing in 1 row(s)"),
    ("1,0.1,,0.3\n0,0.3,,0.5\n", "test.csv: feature column(s) [3] have no values (all missing)"),
    ("1,0.1,0.2,0.3\n0,0.3,oops,0.5\n", "test.csv: row 2 column 3 has non-numeric value 'oops'"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_TEST_DATA)
def test_bad_test_data_exits_2_with_one_line_and_writes_nothing(binary_case, write, run_main, text, problem):
    write(binary_case / "test" / "test.csv", text)
    run = run_main(evaluate.main, argv(binary_case))
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith("error: ")
    assert problem in run.error_lines[0]
    assert not (binary_case / "out").exists()


def test_problem_type_must_fit_the_model(binary_case, run_main):
    run = run_main(evaluate.main, argv(binary_case, "regression"))
    assert run.code == 2
    assert "the model's objective 'binary:logistic' does not fit problem type 'regression'" in run.err
    run = run_main(evaluate.main, argv(binary_case, "ranking"))
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.err.startswith("error: arguments: argument --problem-type: invalid choice: 'ranking'")


# ------------------------------------------------------------------------------ the smoke-test sample


def test_the_sample_requests_replay_through_the_serving_handler_to_the_recorded_predictions(
    binary_case, run_main
):
    from steps import inference

    run = run_main(evaluate.main, argv(binary_case))
    assert run.code == 0, run.err
    sample = json.loads((binary_case / "out" / evaluate.SAMPLE_FILENAME).read_text())
    assert sample["content_type"] == inference.CSV
    assert 0 < len(sample["rows"]) == len(sample["predictions"]) <= evaluate.SAMPLE_ROWS

    with tempfile.TemporaryDirectory() as model_dir:
        evaluate.extract_archive(binary_case / "model" / evaluate.MODEL_ARCHIVE, Path(model_dir))
        model = inference.model_fn(model_dir)
    for body, expected in zip(sample["rows"], sample["predictions"], strict=True):
        served, _ = inference.transform_fn(model, body, inference.CSV, inference.CSV)
        assert float(served) == pytest.approx(expected, abs=1e-6)


def test_missing_values_become_empty_cells_in_the_sample_requests():
    features = np.array([[1.0, np.nan, 3.5]])
    sample = evaluate.sample_requests(features, np.array([0.25]))
    assert sample["rows"] == ["1.0,,3.5"]
    assert sample["predictions"] == [0.25]


def test_with_schema_json_in_the_archive_the_sample_is_raw_records_that_score_as_recorded(
    tmp_path, write, make_model_archive, run_main
):
    from raw_model import ENCODING, write_raw_model

    from steps import inference

    model_dir = write_raw_model(tmp_path / "model-dir")
    make_model_archive(model_dir, tmp_path / "model")
    # Label, then color=blue, color=red, size, plan=no, plan=yes; the last row's colour was unseen.
    write(tmp_path / "test" / "test.csv", "1,0,1,2.5,0,1\n0,1,0,-1.0,1,0\n1,0,0,,0,1\n0,1,0,0.25,1,0\n")
    run = run_main(evaluate.main, argv(tmp_path))
    assert run.code == 0, run.err
    sample = json.loads((tmp_path / "out" / evaluate.SAMPLE_FILENAME).read_text())
    assert sample["columns"] == ["color", "size", "plan"]
    assert sample["rows"] == ["red,2.5,yes", "blue,-1,no", ",,yes", "blue,0.25,no"]
    assert sample["records"][2] == {"color": None, "size": None, "plan": "yes"}

    model = inference.model_fn(str(model_dir))
    assert model.encoding == ENCODING
    header = ",".join(sample["columns"])
    for row, record, expected in zip(sample["rows"], sample["records"], sample["predictions"], strict=True):
        served, _ = inference.transform_fn(model, f"{header}\n{row}", inference.CSV, inference.CSV)
        assert float(served) == pytest.approx(expected, abs=1e-6)
        served, _ = inference.transform_fn(model, json.dumps(record), inference.JSON, inference.CSV)
        assert float(served) == pytest.approx(expected, abs=1e-6)


def test_a_schema_json_that_does_not_fit_the_test_data_fails_the_evaluation(
    tmp_path, write, make_model_archive, tiny_binary_model, run_main
):
    from raw_model import write_raw_model

    folder = tmp_path / "model-dir"
    folder.mkdir()
    (folder / "xgboost-model.json").write_bytes((tiny_binary_model / "xgboost-model.json").read_bytes())
    (folder / "schema.json").write_text((write_raw_model(tmp_path / "other") / "schema.json").read_text())
    make_model_archive(folder, tmp_path / "model")
    write(tmp_path / "test" / "test.csv", test_csv())
    run = run_main(evaluate.main, argv(tmp_path))
    assert run.code == 2
    assert run.error_lines == [
        f"error: {tmp_path / 'model' / 'model.tar.gz'}: schema.json describes 5 encoded features, "
        "the test data has 3"
    ]

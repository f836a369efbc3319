import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from support import container_metric
from training_channels import argv, channel_csv

from steps import train
from steps.train import TrainingError


def raw(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False, na_values=[""])


# ------------------------------------------------------------------------------- log and metric regexes


def test_every_round_and_last_the_kept_round_match_the_containers_regex(channels, run_main):
    run = run_main(train.main, argv(channels, "--num_round", "60", "--early_stopping_rounds", "5"))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    best = int(re.search(r"best iteration (\d+) of (\d+) rounds", run.out).group(1))
    rounds = int(re.search(r"best iteration (\d+) of (\d+) rounds", run.out).group(2))
    assert best < rounds - 1  # early stopping: the kept round is not the last one trained
    found = container_metric(run.out, "auc")
    assert len(found) == rounds + 1  # every round, then the kept one again, last
    first_round = next(i for i, line in enumerate(lines) if line.startswith("training on")) + 1
    assert lines[-1] == lines[first_round + best]  # the last line repeats the kept round verbatim
    assert float(found[-1]) == pytest.approx(max(float(v) for v in found[:-1]), abs=1e-5)
    # The last matched value is the kept model's validation AUC, recomputed from the saved booster.
    booster = xgb.Booster(model_file=str(channels / "model" / train.MODEL_FILENAME))
    booster.set_param("eval_metric", "auc")
    frame = pd.read_csv(channels / "validation" / "validation.csv", header=None)
    dvalidation = xgb.DMatrix(frame.iloc[:, 1:].to_numpy(), label=frame.iloc[:, 0].to_numpy())
    kept = float(booster.eval(dvalidation, "validation").split("validation-auc:")[1])
    assert float(found[-1]) == pytest.approx(kept, abs=1e-5)


def test_the_last_line_is_the_best_round_for_a_metric_that_is_minimised(tmp_path, write, run_main):
    write(tmp_path / "train" / "train.csv", channel_csv(300, seed=1, binary=False))
    write(tmp_path / "validation" / "validation.csv", channel_csv(100, seed=2, binary=False))
    hyperparameters = ["--objective", "reg:squarederror", "--eval_metric", "rmse", "--num_round", "300"]
    run = run_main(
        train.main, argv(tmp_path, *hyperparameters, "--early_stopping_rounds", "3", "--eta", "0.5")
    )
    assert run.code == 0, run.err
    found = [float(v) for v in container_metric(run.out, "rmse")]
    assert found[-1] == pytest.approx(min(found[:-1]), abs=1e-5)
    assert container_metric(run.out, "auc") == []


def test_the_containers_regex_does_not_confuse_similar_metric_names():
    log = "\n".join(
        [
            train.format_round(3, "aucpr", 0.5, 0.4),
            train.format_round(3, "auc", 0.9, 0.8),
            "best iteration 3 of 4 rounds",
        ]
    )
    assert container_metric(log, "auc") == ["0.80000"]
    assert container_metric(log, "aucpr") == ["0.40000"]


def test_format_round_is_the_built_in_algorithms_shape():
    assert train.format_round(7, "rmse", 1.5, 2.25) == "[7]\ttrain-rmse:1.50000\tvalidation-rmse:2.25000"


# ------------------------------------------------------------------------------------- hyperparameters


def test_tuner_arguments_starting_with_underscore_are_ignored(channels, run_main):
    run = run_main(
        train.main,
        argv(channels, "--_tuning_objective_metric", "validation:auc", "--_flag", "--max_depth", "3.0"),
    )
    assert run.code == 0, run.err


def test_unknown_hyperparameter_is_named_with_the_known_ones(channels, run_main):
    run = run_main(train.main, argv(channels, "--max_dept", "3", "--eta", "0.2"))
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith(
        "error: hyperparameters: unknown hyperparameter(s) --max_dept (known: "
    )
    assert "max_depth" in run.error_lines[0]
    assert not (channels / "model").exists()


def test_bad_values_are_all_named_in_one_line(channels, run_main):
    run = run_main(
        train.main,
        argv(
            channels, "--max_depth", "-1", "--eta", "0", "--subsample", "1.5", "--objective", "multi:softmax"
        ),
    )
    assert run.code == 2
    assert len(run.error_lines) == 1
    line = run.error_lines[0]
    for problem in (
        "max_depth=-1 must be >= 1",
        "eta=0.0 must be in (0, 1]",
        "subsample=1.5 must be in (0, 1]",
        "unknown objective 'multi:softmax' (allowed: binary:logistic,",
    ):
        assert problem in line
    assert not (channels / "model").exists()


def test_metric_must_fit_the_objective():
    hp = {**train.DEFAULT_HYPERPARAMETERS, "nthread": 0, "objective": "reg:squarederror"}
    with pytest.raises(TrainingError, match="eval_metric 'auc' does not fit objective 'reg:squarederror'"):
        train.check_hyperparameters(hp)


def test_non_numeric_hyperparameter_is_one_line(channels, run_main):
    run = run_main(train.main, argv(channels, "--num_round", "many"))
    assert run.code == 2
    assert run.error_lines == ["error: hyperparameters: argument --num_round: invalid int value: 'many'"]


# ---------------------------------------------------------------------------------------------- data


def test_label_first_csv_is_parsed_with_empty_cells_as_missing():
    labels, features = train.parse_label_first(raw("1,0.5,,3\n0,1.5,2,\n"))
    assert labels.tolist() == [1.0, 0.0]
    assert features.shape == (2, 3)
    assert np.isnan(features[0, 1]) and np.isnan(features[1, 2])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "churn,a,b\n1,2,3\n",
            "the first row looks like a header row ('churn', 'a', 'b'): channel CSVs have no header",
        ),
        ("1,2,3\n0,x,3\n", "row 2 column 2 has non-numeric value 'x'"),
        ("1,2,\n0,3,\n", "feature column(s) [3] have no values (all missing)"),
        ("1,2,3\n,3,4\n", "the label (column 1) is missing in 1 row(s)"),
        ("1\n0\n", "expected the label and at least one feature, found 1 column"),
    ],
)
def test_bad_channel_rows_are_named(text, problem):
    with pytest.raises(TrainingError) as caught:
        train.parse_label_first(raw(text))
    assert str(caught.value) == problem


def test_binary_labels_must_be_zero_or_one():
    with pytest.raises(
        TrainingError, match=r"labels must be 0 or 1 for objective 'binary:logistic'; found 2, 3.5"
    ):
        train.check_labels(np.array([0.0, 1.0, 2.0, 3.5]), "binary:logistic")
    train.check_labels(np.array([0.0, 7.5]), "reg:squarederror")


BAD_CHANNELS = [
    ("train", "", "train.csv: file is empty"),
    ("train", "y,a,b,c\n1,2,3,4\n", "train.csv: the first row looks like a header row"),
    ("train", "1,2,3,4\n0,2,x,4\n", "train.csv: row 2 column 3 has non-numeric value 'x'"),
    (
        "train",
        "1,2,3,4\n2,2,3,4\n",
        "train.csv: labels must be 0 or 1 for objective 'binary:logistic'; found 2",
    ),
    ("train", "1,2,3,4\n,2,3,4\n", "train.csv: the label (column 1) is missing in 1 row(s)"),
    ("train", "1,2,,4\n0,2,,4\n", "train.csv: feature column(s) [3] have no values"),
    ("validation", "1,2,3\n0,2,3\n", "validation: has 2 feature columns but the train channel has 3"),
    ("validation", "1,2,3,4,5\n0,2,3,4,5\n", "validation: has 4 feature columns but the train channel has 3"),
    ("train", "1,2,3,4\n1,2,3,5\n", "train: the labels are all one class"),
]


@pytest.mark.parametrize(("channel", "text", "problem"), BAD_CHANNELS)
def test_bad_channel_data_exits_2_with_one_line_and_writes_no_model(
    channels, write, run_main, channel, text, problem
):
    write(channels / channel / f"{channel}.csv", text)
    run = run_main(train.main, argv(channels))
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith(f"error: {channels / channel}")
    assert problem in run.error_lines[0]
    assert not (channels / "model").exists()


def test_files_of_a_channel_must_agree_and_an_empty_channel_is_refused(channels, write, run_main):
    write(channels / "train" / "z-more.csv", "1,2,3\n")
    run = run_main(train.main, argv(channels))
    assert run.error_lines == [
        f"error: {channels / 'train' / 'z-more.csv'}: has 2 feature columns but train.csv has 3"
    ]
    (channels / "train" / "z-more.csv").unlink()
    (channels / "validation" / "validation.csv").unlink()
    run = run_main(train.main, argv(channels))
    assert run.error_lines == [f"error: {channels / 'validation'}: no *.csv file in the channel directory"]


# ----------------------------------------------------------------------------------------- the model


def test_saves_only_a_json_model_cut_at_the_best_round(channels, run_main):
    run = run_main(train.main, argv(channels, "--num_round", "80", "--early_stopping_rounds", "5"))
    assert run.code == 0, run.err
    assert [p.name for p in (channels / "model").iterdir()] == [train.MODEL_FILENAME]
    document = json.loads((channels / "model" / train.MODEL_FILENAME).read_text())
    assert "learner" in document
    booster = xgb.Booster(model_file=str(channels / "model" / train.MODEL_FILENAME))
    best = int(re.search(r"best iteration (\d+) of (\d+) rounds", run.out).group(1))
    assert booster.num_boosted_rounds() == best + 1
    assert booster.num_features() == 3


def test_same_data_and_seed_give_a_byte_identical_model(channels, run_main, tmp_path):
    run_main(train.main, argv(channels, "--subsample", "0.8", "--seed", "5"))
    first = (channels / "model" / train.MODEL_FILENAME).read_bytes()
    run_main(train.main, argv(channels, "--subsample", "0.8", "--seed", "5"))
    assert (channels / "model" / train.MODEL_FILENAME).read_bytes() == first


def test_paths_and_threads_default_to_the_training_toolkit_environment(channels, run_main, monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(channels / "train"))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(channels / "validation"))
    monkeypatch.setenv("SM_MODEL_DIR", str(channels / "env-model"))
    monkeypatch.setenv("SM_NUM_CPUS", "3")
    seen = []
    real_train = train.xgb.train
    monkeypatch.setattr(
        train.xgb, "train", lambda params, *a, **k: seen.append(params) or real_train(params, *a, **k)
    )
    run = run_main(train.main, ["--num_round", "5"])
    assert run.code == 0, run.err
    assert (channels / "env-model" / train.MODEL_FILENAME).is_file()
    assert [params["nthread"] for params in seen] == [3]  # SM_NUM_CPUS, as the toolkit sets it


def test_regression_objective_trains_on_numeric_labels(tmp_path, write, run_main):
    write(tmp_path / "train" / "t.csv", channel_csv(300, seed=1, binary=False))
    write(tmp_path / "validation" / "v.csv", channel_csv(100, seed=2, binary=False))
    run = run_main(train.main, argv(tmp_path, "--objective", "reg:squarederror", "--eval_metric", "rmse"))
    assert run.code == 0, run.err
    assert re.fullmatch(r"\[\d+\]\ttrain-rmse:[0-9.]+\tvalidation-rmse:[0-9.]+", run.out.splitlines()[-1])


# ------------------------------------------------------------------------------------------ the schema


def test_the_schema_channel_s_schema_json_is_saved_beside_the_model(channels, run_main, write):
    from raw_model import write_raw_model

    schema = json.loads((write_raw_model(channels / "raw") / "schema.json").read_text())
    # A schema of three encoded columns, as many as the channels have.
    schema["features"] = [{"name": n, "type": "numeric", "encoding": "float", "columns": [n]} for n in "abc"]
    schema["csv_columns"] = ["churn", "a", "b", "c"]
    write(channels / "schema" / "schema.json", json.dumps(schema))
    run = run_main(train.main, [*argv(channels, "--num_round", "5"), "--schema", channels / "schema"])
    assert run.code == 0, run.err
    assert json.loads((channels / "model" / "schema.json").read_text()) == schema


def test_without_the_schema_channel_the_model_takes_encoded_rows_only(channels, run_main):
    run = run_main(train.main, [*argv(channels, "--num_round", "5"), "--schema", channels / "absent"])
    assert run.code == 0, run.err
    assert not (channels / "model" / "schema.json").exists()
    assert "no schema channel: the model will take encoded rows only" in run.out


def test_a_schema_of_another_preprocess_run_is_refused(channels, run_main):
    from raw_model import write_raw_model

    write_raw_model(channels / "schema")  # five encoded columns; the channels have three
    run = run_main(train.main, [*argv(channels, "--num_round", "5"), "--schema", channels / "schema"])
    assert run.code == 2
    assert run.error_lines == [
        f"error: {channels / 'schema'}: schema.json describes 5 encoded features but the train channel has "
        "3: pass the schema of the Preprocess run that wrote the channels"
    ]
    assert not (channels / "model").exists()

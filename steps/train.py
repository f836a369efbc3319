"""Training step, script mode in the SageMaker XGBoost framework container: trains a booster on the train
channel with early stopping on the validation channel and saves it as ``xgboost-model.json``.

SageMaker treats that image as a built-in algorithm: it refuses custom MetricDefinitions and reads the
container's own ``validation:<metric>`` from the log, so each round is logged as the built-in algorithm logs
it and the last such line is the best (kept) round's, the value a tuning job ranks this trial by.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from steps import label_csv
from steps.encoding import SCHEMA_FILENAME, encoding_from_schema

MODEL_FILENAME = "xgboost-model.json"
CHANNELS = ("train", "validation")
#: The optional channel holding Preprocess's schema.json. It is copied beside the model so that the
#: encoding travels inside model.tar.gz with every trained model, tuning trials included: the XGBoost
#: container in script mode extracts model.tar.gz into the directory its model_fn receives
#: (steps/inference.py), so the handler finds it there on SageMaker as on the local endpoint.
SCHEMA_CHANNEL = "schema"

# Objective families and the eval metrics that fit them. The lists are short on purpose: each objective
# here takes any 0/1 label (binary) or any finite number (reg), so a label check can be exact.
OBJECTIVES = {
    "binary": ("binary:logistic", "binary:logitraw", "binary:hinge"),
    "reg": ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror"),
}
EVAL_METRICS = {"binary": ("auc", "aucpr", "logloss", "error"), "reg": ("rmse", "mae")}

DEFAULT_HYPERPARAMETERS = {
    "num_round": 200,
    "max_depth": 6,
    "eta": 0.1,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "gamma": 0.0,
    "lambda": 1.0,
    "alpha": 0.0,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "early_stopping_rounds": 20,
    "seed": 0,
}


class TrainingError(ValueError):
    """Bad hyperparameters or channel data; a one-line message, and ``source`` naming the file."""

    def __init__(self, message: str, source: str | None = None):
        super().__init__(message)
        self.source = source


def format_round(iteration: int, metric: str, train_value: float, validation_value: float) -> str:
    """One round as the built-in XGBoost algorithm logs it: ``[i]<tab>train-<m>:<v><tab>validation-<m>:<v>``.

    CloudWatch shows each tab as ``#011``, which is what the container's metric regexes match
    (aws/sagemaker-xgboost-container, src/sagemaker_xgboost_container/algorithm_mode/metrics.py).
    """
    return f"[{iteration}]\ttrain-{metric}:{train_value:.5f}\tvalidation-{metric}:{validation_value:.5f}"


# ------------------------------------------------------------------------------------ hyperparameters


def objective_family(objective: str) -> str | None:
    return next((family for family, names in OBJECTIVES.items() if objective in names), None)


def check_hyperparameters(hp: dict) -> None:
    """Raise one TrainingError naming every bad value."""
    problems = []

    def need(name: str, ok: bool, rule: str) -> None:
        if not ok:
            problems.append(f"{name}={hp[name]!r} must be {rule}")

    need("num_round", hp["num_round"] >= 1, ">= 1")
    need("max_depth", hp["max_depth"] >= 1, ">= 1")
    need("eta", 0 < hp["eta"] <= 1, "in (0, 1]")
    need("min_child_weight", hp["min_child_weight"] >= 0, ">= 0")
    need("subsample", 0 < hp["subsample"] <= 1, "in (0, 1]")
    need("colsample_bytree", 0 < hp["colsample_bytree"] <= 1, "in (0, 1]")
    for name in ("gamma", "lambda", "alpha"):
        need(name, hp[name] >= 0, ">= 0")
    need("early_stopping_rounds", hp["early_stopping_rounds"] >= 1, ">= 1")
    need("nthread", hp["nthread"] >= 0, ">= 0 (0: all cores)")
    family = objective_family(hp["objective"])
    if family is None:
        known = ", ".join(name for names in OBJECTIVES.values() for name in names)
        problems.append(f"unknown objective {hp['objective']!r} (allowed: {known})")
    elif hp["eval_metric"] not in EVAL_METRICS[family]:
        problems.append(
            f"eval_metric {hp['eval_metric']!r} does not fit objective {hp['objective']!r} "
            f"(allowed: {', '.join(EVAL_METRICS[family])})"
        )
    if problems:
        raise TrainingError("; ".join(problems))


# ----------------------------------------------------------------------------------------- data


def parse_label_first(raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Headerless label-first CSV cells (text, missing = NaN) -> (labels, features) as float64."""
    try:
        return label_csv.parse_label_first(raw, "channel")
    except label_csv.LabelFirstError as err:
        raise TrainingError(str(err)) from None


def check_labels(labels: np.ndarray, objective: str) -> None:
    if objective_family(objective) != "binary":
        return
    unexpected = sorted(set(np.unique(labels).tolist()) - {0.0, 1.0})
    if unexpected:
        shown = ", ".join(f"{v:g}" for v in unexpected[:5])
        raise TrainingError(f"labels must be 0 or 1 for objective {objective!r}; found {shown}")


# ------------------------------------------------------------------------------------------ training


class _LogRounds(xgb.callback.TrainingCallback):
    def __init__(self, metric: str, log: Callable[[str], None]):
        super().__init__()
        self.metric = metric
        self.log = log

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        self.log(
            format_round(
                epoch,
                self.metric,
                evals_log["train"][self.metric][-1],
                evals_log["validation"][self.metric][-1],
            )
        )
        return False


def train_booster(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    hp: dict,
    log: Callable[[str], None] = print,
) -> tuple[xgb.Booster, dict]:
    """Train with early stopping on the validation metric; return the booster cut at its best round."""
    metric = hp["eval_metric"]
    params = {
        "objective": hp["objective"],
        "eval_metric": metric,
        "max_depth": hp["max_depth"],
        "eta": hp["eta"],
        "min_child_weight": hp["min_child_weight"],
        "subsample": hp["subsample"],
        "colsample_bytree": hp["colsample_bytree"],
        "gamma": hp["gamma"],
        "lambda": hp["lambda"],
        "alpha": hp["alpha"],
        "seed": hp["seed"],
        "tree_method": "hist",
    }
    if hp.get("nthread"):
        params["nthread"] = hp["nthread"]
    dtrain = xgb.DMatrix(train[1], label=train[0])
    dvalidation = xgb.DMatrix(validation[1], label=validation[0])
    history: dict = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=hp["num_round"],
        evals=[(dtrain, "train"), (dvalidation, "validation")],
        early_stopping_rounds=hp["early_stopping_rounds"],
        evals_result=history,
        verbose_eval=False,
        callbacks=[_LogRounds(metric, log)],
    )
    best = int(booster.best_iteration)
    result = {
        "best_iteration": best,
        "rounds": len(history["train"][metric]),
        "train": float(history["train"][metric][best]),
        "validation": float(history["validation"][metric][best]),
    }
    log(f"best iteration {best} of {result['rounds']} rounds")
    # Last, and in the rounds' own form: SageMaker reports a trial's latest value of the objective
    # metric (FinalHyperParameterTuningJobObjectiveMetric), so the tuner ranks the model that is kept.
    log(format_round(best, metric, result["train"], result["validation"]))
    return booster[: best + 1], result


# ---------------------------------------------------------------------------------------------- main


def _int(text: str) -> int:
    # The tuner may send an integer range's value as "6.0".
    number = float(text)
    if not number.is_integer():
        raise ValueError(text)
    return int(number)


_int.__name__ = "int"  # argparse names the type in its message


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # reported as one line by main, like every other error of this step
        raise TrainingError(message)


def _parser() -> _Parser:
    parser = _Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    types = {int: _int, float: float, str: str}
    for name, default in DEFAULT_HYPERPARAMETERS.items():
        parser.add_argument(f"--{name}", type=types[type(default)], default=default)
    return parser


def _unknown_arguments(rest: list[str]) -> list[str]:
    """Names of leftover options, ignoring SageMaker's own ``--_name value`` (e.g. the tuning objective)."""
    unknown, i = [], 0
    while i < len(rest):
        token = rest[i]
        takes_value = "=" not in token and i + 1 < len(rest) and not rest[i + 1].startswith("--")
        if not token.startswith("--_"):
            unknown.append(token.split("=", 1)[0])
        i += 2 if takes_value else 1
    return unknown


def _read_channel(path: Path, objective: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        return label_csv.read_label_first(path, "channel", lambda labels: check_labels(labels, objective))
    except label_csv.LabelFirstError as err:
        raise TrainingError(str(err), source=err.source) from None


def read_schema(folder: Path, n_features: int) -> str | None:
    """The schema channel's schema.json text, checked against the training data; None without the channel."""
    if not folder.is_dir():
        return None
    path = folder / SCHEMA_FILENAME
    try:
        text = path.read_text(encoding="utf-8")
        encoding = encoding_from_schema(json.loads(text))
    except FileNotFoundError:
        raise TrainingError(f"no {SCHEMA_FILENAME} in the {SCHEMA_CHANNEL} channel") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TrainingError(f"{SCHEMA_FILENAME} is not Preprocess's schema: {err}") from None
    if len(encoding.columns) != n_features:
        raise TrainingError(
            f"{SCHEMA_FILENAME} describes {len(encoding.columns)} encoded features but the train channel "
            f"has {n_features}: pass the schema of the Preprocess run that wrote the channels"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    parser.add_argument("--nthread", type=_int, default=os.environ.get("SM_NUM_CPUS", "0"))
    parser.add_argument("--model-dir", type=Path, default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument(
        "--train", type=Path, default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    )
    parser.add_argument(
        "--validation",
        type=Path,
        default=os.environ.get("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"),
    )
    parser.add_argument(
        "--schema",
        type=Path,
        default=os.environ.get("SM_CHANNEL_SCHEMA", f"/opt/ml/input/data/{SCHEMA_CHANNEL}"),
    )
    source = "hyperparameters"
    try:
        args, rest = parser.parse_known_args(argv)
        unknown = _unknown_arguments(rest)
        if unknown:
            known = ", ".join([*DEFAULT_HYPERPARAMETERS, "nthread"])
            raise TrainingError(f"unknown hyperparameter(s) {', '.join(unknown)} (known: {known})")
        hp = {name: getattr(args, name) for name in [*DEFAULT_HYPERPARAMETERS, "nthread"]}
        check_hyperparameters(hp)
        data = {}
        for channel in CHANNELS:
            source = str(getattr(args, channel))
            data[channel] = _read_channel(getattr(args, channel), hp["objective"])
        source = str(args.validation)
        n_train, n_validation = data["train"][1].shape[1], data["validation"][1].shape[1]
        if n_train != n_validation:
            raise TrainingError(f"has {n_validation} feature columns but the train channel has {n_train}")
        if objective_family(hp["objective"]) == "binary" and len(np.unique(data["train"][0])) < 2:
            source = str(args.train)
            raise TrainingError("the labels are all one class: both 0 and 1 must occur")
        source = str(args.schema)
        schema = read_schema(args.schema, n_train)
    except TrainingError as err:
        print(f"error: {err.source or source}: {err}", file=sys.stderr)
        return 2

    if schema is None:  # before training: the log's last line is the kept round's, for the tuner
        print(f"no {SCHEMA_CHANNEL} channel: the model will take encoded rows only", flush=True)
    print(
        f"training on {len(data['train'][0])} rows, validating on {len(data['validation'][0])}, "
        f"{n_train} features",
        flush=True,
    )
    booster, _ = train_booster(
        data["train"], data["validation"], hp, log=lambda line: print(line, flush=True)
    )
    args.model_dir.mkdir(parents=True, exist_ok=True)
    # The partial name still ends in .json, which is what makes save_model write JSON.
    partial = args.model_dir / f".partial-{MODEL_FILENAME}"
    booster.save_model(str(partial))
    os.replace(partial, args.model_dir / MODEL_FILENAME)
    if schema is not None:
        partial = args.model_dir / f".partial-{SCHEMA_FILENAME}"
        partial.write_text(schema, encoding="utf-8")
        os.replace(partial, args.model_dir / SCHEMA_FILENAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())

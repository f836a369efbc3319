"""Training step, script mode in the SageMaker XGBoost framework container: trains a booster on the train
channel with early stopping on the validation channel and saves it as ``xgboost-model.json``.

SageMaker treats that image as a built-in algorithm: it refuses custom MetricDefinitions and reads the
container's own ``validation:<metric>`` from the log, so each round is logged as the built-in algorithm logs
it and the last such line is the best (kept) round's, the value a tuning job ranks this trial by.

With several instances (``resourceconfig.json`` names more than one host) each trains on its shard of
the train channel in one XGBoost collective; the first host starts the tracker, logs the rounds and
saves the model (docs/scale.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from steps import label_csv, resource_config
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


# ------------------------------------------------------------------------------------------ cluster

#: The tracker port of the XGBoost container's own distributed helper
#: (aws/sagemaker-xgboost-container, src/sagemaker_xgboost_container/distributed.py: Rabit, 9099).
DEFAULT_TRACKER_PORT = 9099
#: How long an instance keeps trying to reach the tracker, which the first host may start later.
CONNECT_SECONDS = 120


@dataclass(frozen=True)
class Cluster:
    """The job's hosts in the order ranks are given (sorted, as the container's helper sorts them)
    and this instance's host."""

    hosts: tuple[str, ...]
    current: str

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current)

    @property
    def master(self) -> str:
        return self.hosts[0]

    @property
    def is_master(self) -> bool:
        return self.current == self.master


SINGLE = Cluster(("algo-1",), "algo-1")


def parse_resource_config(text: str) -> Cluster:
    """The cluster from SageMaker's ``/opt/ml/input/config/resourceconfig.json``."""
    try:
        current, hosts = resource_config.parse(text)
    except resource_config.ResourceConfigError as err:
        raise TrainingError(str(err)) from None
    return Cluster(tuple(sorted(hosts)), current)


def tracker_address(cluster: Cluster, environ: dict | None = None) -> tuple[str, int]:
    """Where the tracker listens: the first host, on the container helper's port, unless the dmlc
    launchers' variables say otherwise (the local runner sets them: loopback, a free port)."""
    environ = os.environ if environ is None else environ
    port = int(environ.get("DMLC_TRACKER_PORT", DEFAULT_TRACKER_PORT))
    uri = environ.get("DMLC_TRACKER_URI")
    if not uri:
        uri = _resolve(cluster.master)
    return uri, port


def _resolve(host: str) -> str:
    # Instances come up at different times; a host's name may resolve only a little later.
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() > deadline:
                raise TrainingError(f"cannot resolve host {host!r} of the cluster") from None
            time.sleep(2)


@contextlib.contextmanager
def tracker(cluster: Cluster, address: tuple[str, int]) -> Iterator[None]:
    """On the first host, the collective's tracker for the block (started before anything else, so
    the other instances find it when they join); nothing on the others."""
    if not cluster.is_master:
        yield
        return
    from xgboost.tracker import RabitTracker

    uri, port = address
    running = RabitTracker(n_workers=cluster.size, host_ip=uri, port=port, sortby="task")
    running.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            running.wait_for(timeout=30)
        with contextlib.suppress(Exception):
            running.free()


@contextlib.contextmanager
def collective(cluster: Cluster, address: tuple[str, int]) -> Iterator[None]:
    """This instance in the XGBoost collective for the block, with its rank (what the container's
    ``distributed.Rabit`` does, with xgboost's own API so that it also runs outside the container)."""
    from xgboost import collective as xgb_collective

    uri, port = address
    args = {"dmlc_tracker_uri": uri, "dmlc_tracker_port": port, "dmlc_task_id": str(cluster.rank)}
    deadline = time.monotonic() + CONNECT_SECONDS
    context = None
    while context is None:
        try:
            context = xgb_collective.CommunicatorContext(**args)
            context.__enter__()
        except xgb.core.XGBoostError as err:
            context = None
            if time.monotonic() > deadline:
                raise TrainingError(f"cannot join the tracker at {uri}:{port}: {err}") from None
            time.sleep(1)
    try:
        yield
    finally:
        context.__exit__(None, None, None)


#: Bytes of a failure message every instance receives from the first instance that failed.
_MESSAGE_BYTES = 2048


def agree(cluster: Cluster, problem: TrainingError | None, shape: tuple[int, int, int], binary: bool) -> None:
    """Every instance learns whether any instance failed to read its data, whether the shards'
    feature counts differ or the labels over all shards are one class, and all stop with the same
    message; otherwise the others would wait in the first round until the collective timed out."""
    from xgboost import collective as xgb_collective

    features, rows, ones = shape
    failed = np.zeros(cluster.size)
    failed[cluster.rank] = 1.0 if problem else 0.0
    failed = xgb_collective.allreduce(failed, xgb_collective.Op.SUM)
    widths = xgb_collective.allreduce(
        np.array([features, -features], dtype=np.float64), xgb_collective.Op.MAX
    )
    counts = xgb_collective.allreduce(np.array([rows, ones], dtype=np.float64), xgb_collective.Op.SUM)
    if failed.any():
        # The first failed instance's message, summed into a buffer the others leave at zero (no
        # pickled objects cross the network).
        first = int(np.flatnonzero(failed)[0])
        buffer = np.zeros(_MESSAGE_BYTES, dtype=np.float64)
        if cluster.rank == first:
            text = f"{cluster.current}: {problem.source}\0{problem}".encode()[:_MESSAGE_BYTES]
            buffer[: len(text)] = np.frombuffer(text, dtype=np.uint8)
        buffer = xgb_collective.allreduce(buffer, xgb_collective.Op.SUM)
        where, _, message = (
            bytes(buffer.astype(np.uint8)).rstrip(b"\0").decode(errors="replace").partition("\0")
        )
        raise TrainingError(message, source=where)
    if widths[0] != -widths[1]:
        raise TrainingError(
            f"the instances' train shards have different feature counts "
            f"({int(-widths[1])} to {int(widths[0])}): they are not parts of one encoded table"
        )
    if binary and counts[1] in (0, counts[0]):
        raise TrainingError("the labels of all shards are one class: both 0 and 1 must occur")


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
    parser.add_argument(
        "--resource-config",
        type=Path,
        default=Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")) / "resourceconfig.json",
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
        source = str(args.resource_config)
        cluster = _cluster(args.resource_config)
        if cluster.size == 1:
            data = _load(args, hp, cluster)
            _train_and_save(args, hp, data, cluster)
            return 0
        source = cluster.current
        address = tracker_address(cluster)
        with tracker(cluster, address):
            # Read before joining: a bad shard is reported through the collective, to every instance.
            data, problem = None, None
            try:
                data = _load(args, hp, cluster)
            except TrainingError as err:
                problem = err
            with collective(cluster, address):
                agree(cluster, problem, _shape(data), objective_family(hp["objective"]) == "binary")
                _train_and_save(args, hp, data, cluster)
    except TrainingError as err:
        print(f"error: {err.source or source}: {err}", file=sys.stderr)
        return 2
    return 0


def _say(line: str) -> None:
    # One write per line: the instances of a local job share one log, and print's separate write
    # of the newline lets another instance's line in between.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _cluster(path: Path) -> Cluster:
    """The cluster SageMaker describes in resourceconfig.json; one host when there is no such file
    (the script run outside a training container)."""
    if not path.exists():
        return SINGLE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TrainingError(f"cannot read the resource config: {getattr(err, 'strerror', err)}") from None
    return parse_resource_config(text)


def _load(args, hp: dict, cluster: Cluster) -> dict:
    """Both channels, checked; with several instances the train channel is this instance's shard."""
    data = {}
    for channel in CHANNELS:
        path = getattr(args, channel)
        try:
            data[channel] = _read_channel(path, hp["objective"])
        except TrainingError as err:
            if channel == "train" and cluster.size > 1 and str(err).startswith("no *.csv"):
                raise TrainingError(_empty_shard(cluster), source=str(path)) from None
            raise TrainingError(str(err), source=err.source or str(path)) from None
    n_train, n_validation = data["train"][1].shape[1], data["validation"][1].shape[1]
    if n_train != n_validation:
        raise TrainingError(
            f"has {n_validation} feature columns but the train channel has {n_train}",
            source=str(args.validation),
        )
    if (
        cluster.size == 1
        and objective_family(hp["objective"]) == "binary"
        and len(np.unique(data["train"][0])) < 2
    ):
        raise TrainingError("the labels are all one class: both 0 and 1 must occur", source=str(args.train))
    try:
        data["schema"] = read_schema(args.schema, n_train)
    except TrainingError as err:
        raise TrainingError(str(err), source=str(args.schema)) from None
    return data


def _empty_shard(cluster: Cluster) -> str:
    # ShardedByS3Key hands out whole objects: with more instances than objects "some nodes won't get
    # any data" (SageMaker API reference, S3DataSource.S3DataDistributionType).
    return (
        f"the shard of {cluster.current} ({cluster.rank + 1} of {cluster.size} instances) of the "
        f"ShardedByS3Key train channel holds no file: write the train split as at least "
        f"{cluster.size} part files (one or more per instance)"
    )


def _shape(data: dict | None) -> tuple[int, int, int]:
    """(features, train rows, train rows labelled 1) of this instance's data; zeros without data."""
    if data is None:
        return 0, 0, 0
    labels, features = data["train"]
    return features.shape[1], len(labels), int(np.count_nonzero(labels == 1))


def _train_and_save(args, hp: dict, data: dict, cluster: Cluster) -> None:
    rows = len(data["train"][0])
    scope = (
        "" if cluster.size == 1 else f" on {cluster.current}'s shard ({cluster.rank + 1} of {cluster.size})"
    )
    if data["schema"] is None:  # before training: the log's last line is the kept round's, for the tuner
        _say(f"no {SCHEMA_CHANNEL} channel: the model will take encoded rows only")
    _say(
        f"training on {rows} rows{scope}, validating on {len(data['validation'][0])}, "
        f"{data['train'][1].shape[1]} features"
    )

    def log(line: str) -> None:
        # One instance logs the rounds: its lines are the metrics the job reports.
        if cluster.is_master:
            _say(line)

    booster, _ = train_booster(data["train"], data["validation"], hp, log=log)
    if not cluster.is_master:
        return
    args.model_dir.mkdir(parents=True, exist_ok=True)
    # The partial name still ends in .json, which is what makes save_model write JSON.
    partial = args.model_dir / f".partial-{MODEL_FILENAME}"
    booster.save_model(str(partial))
    os.replace(partial, args.model_dir / MODEL_FILENAME)
    if data["schema"] is not None:
        partial = args.model_dir / f".partial-{SCHEMA_FILENAME}"
        partial.write_text(data["schema"], encoding="utf-8")
        os.replace(partial, args.model_dir / SCHEMA_FILENAME)


if __name__ == "__main__":
    sys.exit(main())

"""Processing step: check a raw table against its dataset spec, split it, encode it for XGBoost, and write
its schema and a data-quality baseline.

The dataset spec (``dataset.json``, parsed by :func:`load_spec`) is the only place a table's shape is
configured: label, problem type, classes for binary classification, and each feature as numeric or
categorical.

Outputs, one folder each under ``--output-dir`` (one ProcessingOutput per folder)::

    train/train.csv, validation/validation.csv, test/test.csv
        Label first (0/1 for binary classification, the number for regression), then the encoded features;
        no header, no index. An empty cell is a missing value, which XGBoost reads as NaN.
    schema/schema.json
        ``csv_columns`` (the encoded column order, label first), per raw feature its type, encoding and the
        categories learned from the train split, the label with its classes, problem type, rows per split.
    baseline/statistics.json, baseline/constraints.json
        Model Monitor data-quality baseline over the encoded training features (label excluded). Feature
        ``_c<i>`` is ``csv_columns[i + 1]``, the i-th value of an inference request row: Model Monitor names
        the columns of headerless CSV that way, so a data-quality monitor can use these files as they are.
    features/features.csv
        The encoded training features alone, as a request carries them (no label, no header): what the
        pipeline's QualityCheck step baselines with Model Monitor itself, sketches included.

The input is read in chunks, in two passes (``--stage all``). The pipeline runs the passes as two
processing jobs of N instances over a ShardedByS3Key input: ``--stage profile`` writes
``profile/profile-<host>.json`` per instance, and ``--stage encode`` merges every profile and writes
``<split>/<split>-<host>.csv`` and ``features/features-<host>.csv`` per instance; the first host also
writes schema and baseline (docs/pipeline.md, "Larger tables").
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from hashlib import blake2b
from itertools import compress
from pathlib import Path

import numpy as np
import pandas as pd

from steps import resource_config
from steps.encoding import (
    FEATURE_TYPES,
    MISSING_TOKENS,
    PROBLEM_TYPES,
    SCHEMA_FILENAME,
    DatasetSpec,
    Encoding,
    encode_features,
    fit_encoding,
    schema_document,
    to_float,
    unseen_rows,
)
from steps.monitoring_config import default_monitoring_config

SPEC_KEYS = ("label", "problem_type", "classes", "features")

SPLITS = ("train", "validation", "test")
SCHEMA_DIR = "schema"
BASELINE_DIR = "baseline"
# The baseline dataset has a folder of its own: sharded, it is one file per instance, and a
# QualityCheck reads every object under the prefix it is given.
FEATURES_DIR = "features"
OUTPUT_DIRS = (*SPLITS, SCHEMA_DIR, BASELINE_DIR, FEATURES_DIR)
STATISTICS_FILENAME = "statistics.json"
CONSTRAINTS_FILENAME = "constraints.json"
BASELINE_DATASET_FILENAME = "features.csv"

_MAX_NAMED = 5


class SpecError(ValueError):
    """The dataset spec is unreadable or invalid; the message names the file and every problem."""


class DataError(ValueError):
    """The raw data does not fit the dataset spec; the message is one line naming the problem."""


# ---------------------------------------------------------------------------------------------- spec


def parse_spec(obj: object, source: str) -> DatasetSpec:
    """Validate a decoded dataset spec; raise one SpecError listing every problem found."""
    if not isinstance(obj, dict):
        raise SpecError(f"{source}: invalid dataset spec: expected a JSON object, got {_json_type(obj)}")
    problems = []
    unknown = [key for key in obj if key not in SPEC_KEYS]
    if unknown:
        problems.append(f"unknown key(s) {_names(unknown)} (allowed: {_names(SPEC_KEYS)})")

    label = obj.get("label")
    if label is None:
        problems.append("'label' is missing")
    elif not isinstance(label, str) or not label:
        problems.append(f"'label' must be a non-empty string, got {label!r}")
        label = None

    problem_type = obj.get("problem_type")
    if problem_type is None:
        problems.append(f"'problem_type' is missing (allowed: {_names(PROBLEM_TYPES)})")
    elif problem_type not in PROBLEM_TYPES:
        problems.append(f"unknown problem_type {problem_type!r} (allowed: {_names(PROBLEM_TYPES)})")

    classes = None
    if problem_type == "binary_classification":
        if "classes" not in obj:
            problems.append("'classes' is required for binary_classification: [negative, positive]")
        else:
            classes, problem = _parse_classes(obj["classes"])
            if problem:
                problems.append(problem)
    elif problem_type == "regression" and "classes" in obj:
        problems.append("'classes' is only allowed for binary_classification")

    features: tuple[tuple[str, str], ...] = ()
    raw_features = obj.get("features")
    if raw_features is None:
        problems.append("'features' is missing")
    elif not isinstance(raw_features, dict):
        problems.append(
            f"'features' must be an object mapping column name to one of {_names(FEATURE_TYPES)}, "
            f"got {_json_type(raw_features)}"
        )
    elif not raw_features:
        problems.append("'features' is empty")
    else:
        for name, ftype in raw_features.items():
            if not name:
                problems.append("a feature has an empty name")
            if ftype not in FEATURE_TYPES:
                problems.append(
                    f"feature {name!r} has unknown type {ftype!r} (allowed: {_names(FEATURE_TYPES)})"
                )
        if label is not None and label in raw_features:
            problems.append(f"label {label!r} is also listed as a feature")
        features = tuple((str(name), str(ftype)) for name, ftype in raw_features.items())

    if problems:
        raise SpecError(f"{source}: invalid dataset spec: " + "; ".join(problems))
    return DatasetSpec(label=label, problem_type=problem_type, features=features, classes=classes)


def load_spec(path: str | os.PathLike) -> DatasetSpec:
    """Read and validate a dataset.json file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"{source}: cannot read dataset spec: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{source}: dataset spec is not UTF-8 text") from None

    def no_duplicate_keys(pairs: list) -> dict:
        seen = [key for key, _ in pairs]
        duplicates = sorted({key for key in seen if seen.count(key) > 1})
        if duplicates:
            raise SpecError(f"{source}: invalid dataset spec: duplicate key(s) {_names(duplicates)}")
        return dict(pairs)

    try:
        obj = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise SpecError(
            f"{source}: dataset spec is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    return parse_spec(obj, source)


def _parse_classes(value: object) -> tuple[tuple[str, str] | None, str | None]:
    if not isinstance(value, list) or len(value) != 2:
        return (
            None,
            f"'classes' must be a list of exactly two label values [negative, positive], got {value!r}",
        )
    # Labels are read as text, so classes compare as text; JSON numbers are accepted for 0/1-style labels.
    if not all(isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in value):
        return None, f"'classes' values must be strings or integers, got {value!r}"
    negative, positive = (str(v) for v in value)
    if negative == positive:
        return None, f"'classes' must be two different values, got {value!r}"
    return (negative, positive), None


# ------------------------------------------------------------------------------------- raw table


def check_header(names: list[str]) -> None:
    """Refuse a header row that names a column more than once, naming each repeated name."""
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    if duplicates:
        raise DataError(f"duplicate column(s) {_names(duplicates)} in the header row: name each column once")


def check_table(raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Check one raw table (all cells text, missing = NaN) against the spec and return it typed.

    The result has the label first (0/1 for binary classification, float for regression), numeric features
    as float64 and categorical features as object columns of str; columns follow the spec order.
    """
    expected = [spec.label, *spec.feature_names]
    columns = [str(c) for c in raw.columns]
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    problems = []
    if missing:
        problems.append(f"missing column(s) {_names(missing)}")
    if extra:
        problems.append(
            f"unexpected column(s) {_names(extra)}: every column must be the label or a spec feature"
        )
    if missing and len(missing) == len(expected):
        if len(columns) == 1 and ";" in columns[0]:
            problems.append("the header row is one column holding ';': save the file comma-separated")
        else:
            problems.append("no expected column name in the first row: is the header row missing?")
    if problems:
        raise DataError("; ".join(problems))
    if len(raw) == 0:
        raise DataError("no data rows (header only)")

    typed: dict[str, pd.Series] = {}
    for name, ftype in spec.features:
        cells = _cells(raw[name])
        if ftype == "numeric":
            values, bad = _to_float(cells)
            if bad:
                problems.append(f"numeric column {name!r} has non-numeric value(s) {_values(bad)}")
            typed[name] = pd.Series(values, dtype="float64")
        else:
            typed[name] = pd.Series(cells, dtype=object)

    label_cells = _cells(raw[spec.label])
    codes, uniques = pd.factorize(label_cells)  # each distinct label looked at once; missing: -1
    n_missing = int(np.count_nonzero(codes < 0))
    if spec.problem_type == "binary_classification":
        allowed = spec.classes
        unexpected = sorted({str(v) for v in uniques if v not in allowed})
        if unexpected or n_missing:
            found = [f"unexpected value(s) {_values(unexpected)}"] if unexpected else []
            found += [f"{n_missing} missing value(s)"] if n_missing else []
            problems.append(f"label {spec.label!r} has {', and '.join(found)} (allowed: {_names(allowed)})")
        label = pd.Series(np.append(uniques == allowed[1], False)[codes].astype("int64"))
    else:
        values, bad = _to_float(label_cells)
        if bad:
            problems.append(f"label {spec.label!r} must be numeric for regression; got {_values(bad)}")
        if n_missing:
            problems.append(f"label {spec.label!r} is missing in {n_missing} row(s)")
        label = pd.Series(values, dtype="float64")
    if problems:
        raise DataError("; ".join(problems))
    return pd.DataFrame({spec.label: label, **typed})


def check_dataset(table: pd.DataFrame, spec: DatasetSpec) -> None:
    """Checks that need every input file at once (the output of check_table, concatenated)."""
    problems = []
    empty = [name for name in spec.feature_names if table[name].isna().all()]
    if empty:
        problems.append(f"column(s) {_names(empty)} have no values (all missing)")
    if spec.problem_type == "binary_classification":
        counts = table[spec.label].value_counts()
        absent = [spec.classes[code] for code in (0, 1) if counts.get(code, 0) == 0]
        if absent:
            problems.append(
                f"label {spec.label!r} never takes the value(s) {_names(absent)}: both classes must occur"
            )
    if problems:
        raise DataError("; ".join(problems))


def check_fractions(train_fraction: float, validation_fraction: float) -> None:
    if not (0 < train_fraction < 1 and 0 < validation_fraction < 1):
        raise DataError(
            f"train and validation fractions must each be between 0 and 1 (exclusive), "
            f"got {train_fraction} and {validation_fraction}"
        )
    if train_fraction + validation_fraction >= 1:
        raise DataError(
            f"train fraction {train_fraction} + validation fraction {validation_fraction} "
            f"leaves no test set; their sum must be below 1"
        )


def split_codes(
    table: pd.DataFrame, spec: DatasetSpec, train_fraction: float, validation_fraction: float, seed: int
) -> np.ndarray:
    """The split of each row of a checked table: 0 train, 1 validation, 2 test.

    A row's split is a keyed hash of its values alone, so it does not depend on where the row sits:
    the same in any chunking, any order, any division into files or instance shards (a row number would
    need every earlier row, which a shard does not see). Equal rows land in the same split, so a
    duplicated row never sits in both train and test. The hash is spelled out here (blake2b of each
    distinct category, splitmix64 to mix the columns) rather than pandas' hashing, so that the
    container and a laptop agree whatever their pandas versions.
    """
    check_fractions(train_fraction, validation_fraction)
    state = np.full(len(table), _digest(f"seed={seed}"), dtype="uint64")
    for name, ftype in ((spec.label, "numeric"), *spec.features):
        if ftype == "numeric":
            values = table[name].to_numpy(dtype="float64", copy=True)
            values[np.isnan(values)] = np.nan  # one NaN bit pattern
            words = values.view("uint64")
        else:
            codes, uniques = pd.factorize(table[name].to_numpy(dtype=object), use_na_sentinel=True)
            digests = np.array([_digest(str(u)) for u in uniques] + [_digest("")], dtype="uint64")
            words = digests[codes]  # code -1 (missing) takes the last entry
        state = _mix(state ^ words)
    uniform = (state >> np.uint64(11)).astype("float64") * 2.0**-53
    return np.where(
        uniform < train_fraction, 0, np.where(uniform < train_fraction + validation_fraction, 1, 2)
    ).astype("int8")


def _digest(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(words: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (Steele et al. 2014), element-wise; uint64 arithmetic wraps."""
    z = words + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


# -------------------------------------------------------------------------------------- encoding


def to_csv(label: pd.Series, features: pd.DataFrame) -> str:
    frame = pd.concat([label.reset_index(drop=True), features.reset_index(drop=True)], axis=1)
    return frame.to_csv(header=False, index=False, na_rep="", lineterminator="\n")


# -------------------------------------------------------------------------------------- baseline


@dataclass(frozen=True)
class Moments:
    """What the baseline needs of one encoded column, mergeable across chunks and instances.

    Merging uses Chan et al.'s pairwise update of the squared deviations, so the standard deviation
    of a column read in pieces agrees with numpy's over the whole column to the 12 significant
    digits the baseline keeps.
    """

    present: int = 0
    missing: int = 0
    total: float = 0.0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    low: float = math.inf
    high: float = -math.inf
    integral: bool = True

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        values = np.asarray(values, dtype="float64")
        present = values[~np.isnan(values)]
        if not present.size:
            return cls(missing=int(values.size))
        mean = float(present.mean())
        return cls(
            present=int(present.size),
            missing=int(values.size - present.size),
            total=float(present.sum()),
            mean=mean,
            m2=float(np.square(present - mean).sum()),
            low=float(present.min()),
            high=float(present.max()),
            integral=bool(np.all(present == np.round(present))),
        )

    @classmethod
    def of_indicator(cls, rows: int, ones: int) -> Moments:
        """A one-hot column of ``rows`` values, ``ones`` of them 1, the rest 0 (missing encodes as 0)."""
        if not rows:
            return cls()
        mean = ones / rows
        return cls(
            present=rows,
            total=float(ones),
            mean=mean,
            m2=ones * (1 - mean) ** 2 + (rows - ones) * mean**2,
            low=0.0 if ones < rows else 1.0,
            high=1.0 if ones else 0.0,
        )

    def merge(self, other: Moments) -> Moments:
        if not other.present:
            return Moments(**{**self.__dict__, "missing": self.missing + other.missing})
        if not self.present:
            return Moments(**{**other.__dict__, "missing": self.missing + other.missing})
        n = self.present + other.present
        delta = other.mean - self.mean
        return Moments(
            present=n,
            missing=self.missing + other.missing,
            total=self.total + other.total,
            mean=self.mean + delta * other.present / n,
            m2=self.m2 + other.m2 + delta * delta * self.present * other.present / n,
            low=min(self.low, other.low),
            high=max(self.high, other.high),
            integral=self.integral and other.integral,
        )

    @property
    def inferred_type(self) -> str:
        return "Integral" if self.present and self.integral else "Fractional"

    def statistics_entry(self, name: str) -> dict:
        numerical: dict = {"common": {"num_present": self.present, "num_missing": self.missing}}
        if self.present:
            numerical.update(
                mean=_stat(self.total / self.present),
                sum=_stat(self.total),
                std_dev=_stat(math.sqrt(self.m2 / self.present)),
                min=_stat(self.low),
                max=_stat(self.high),
            )
        return {"name": name, "inferred_type": self.inferred_type, "numerical_statistics": numerical}

    def constraints_entry(self, name: str) -> dict:
        count = self.present + self.missing
        entry = {
            "name": name,
            "inferred_type": self.inferred_type,
            "completeness": _stat(self.present / count) if count else 0.0,
        }
        if self.present:
            entry["num_constraints"] = {"is_non_negative": bool(self.low >= 0)}
        return entry


def baseline_statistics(features: pd.DataFrame) -> dict:
    """Model Monitor statistics.json over the encoded training features."""
    return statistics_of([Moments.of(features[c].to_numpy(dtype="float64")) for c in features.columns])


def baseline_constraints(features: pd.DataFrame) -> dict:
    """Model Monitor constraints.json over the encoded training features, default monitoring config."""
    return constraints_of([Moments.of(features[c].to_numpy(dtype="float64")) for c in features.columns])


def statistics_of(columns: list[Moments]) -> dict:
    rows = columns[0].present + columns[0].missing if columns else 0
    entries = [moments.statistics_entry(f"_c{i}") for i, moments in enumerate(columns)]
    return {"version": 0.0, "dataset": {"item_count": rows}, "features": entries}


def constraints_of(columns: list[Moments]) -> dict:
    return {
        "version": 0.0,
        "features": [moments.constraints_entry(f"_c{i}") for i, moments in enumerate(columns)],
        "monitoring_config": default_monitoring_config(),
    }


# ---------------------------------------------------------------------------------------- whole step


def preprocess(
    table: pd.DataFrame,
    spec: DatasetSpec,
    train_fraction: float = 0.7,
    validation_fraction: float = 0.15,
    seed: int = 42,
) -> dict[str, str]:
    """Split, encode and describe a checked table held whole in memory; every output file's text by
    relative path. ``main`` streams instead (:class:`Profile`, :func:`encode_chunk`) and writes the same
    bytes; this is the reference it is tested against."""
    check_dataset(table, spec)
    codes = split_codes(table, spec, train_fraction, validation_fraction, seed)
    splits = {split: table[codes == i].reset_index(drop=True) for i, split in enumerate(SPLITS)}
    _check_splits({split: len(frame) for split, frame in splits.items()}, train_fraction, validation_fraction)
    encoding = fit_encoding(splits["train"], spec)
    _check_columns(encoding)
    encoded = {split: encode_features(frame, encoding) for split, frame in splits.items()}

    outputs = {f"{split}/{split}.csv": to_csv(splits[split][spec.label], encoded[split]) for split in SPLITS}
    unseen = {split: unseen_rows(splits[split], encoding) for split in ("validation", "test")}
    rows = {split: len(frame) for split, frame in splits.items()}
    schema = schema_document(spec, encoding, rows, unseen, train_fraction, validation_fraction, seed)
    outputs[f"{SCHEMA_DIR}/{SCHEMA_FILENAME}"] = _json(schema)
    outputs[f"{BASELINE_DIR}/{STATISTICS_FILENAME}"] = _json(baseline_statistics(encoded["train"]))
    outputs[f"{BASELINE_DIR}/{CONSTRAINTS_FILENAME}"] = _json(baseline_constraints(encoded["train"]))
    outputs[f"{FEATURES_DIR}/{BASELINE_DATASET_FILENAME}"] = encoded["train"].to_csv(
        header=False, index=False, na_rep="", lineterminator="\n"
    )
    return outputs


class Profile:
    """The first pass over the raw data, chunk by chunk: everything the outputs need besides the rows
    themselves (category levels and baseline moments of the train split, counts for the checks and the
    schema). Its size grows with the number of distinct categories, not with the rows; profiles of
    separate chunks or instance shards merge into the profile of all of them."""

    def __init__(self, spec: DatasetSpec, train_fraction: float, validation_fraction: float, seed: int):
        self.spec = spec
        self.fractions = (train_fraction, validation_fraction)
        self.seed = seed
        self.rows = [0, 0, 0]
        self.label_counts = [0, 0]  # rows labelled with each class (binary classification)
        self.present = dict.fromkeys(spec.feature_names, 0)  # non-missing cells, every split
        # categorical feature -> per split, value -> rows (missing cells are not counted)
        self.values: dict[str, list[Counter]] = {
            name: [Counter(), Counter(), Counter()] for name, t in spec.features if t == "categorical"
        }
        self.numeric = {name: Moments() for name, t in spec.features if t == "numeric"}  # train split

    def add(self, table: pd.DataFrame, codes: np.ndarray) -> None:
        """Count one checked chunk whose rows have the given split codes."""
        spec = self.spec
        for i in range(3):
            self.rows[i] += int(np.count_nonzero(codes == i))
        if spec.problem_type == "binary_classification":
            ones = int(table[spec.label].sum())
            self.label_counts[0] += len(table) - ones
            self.label_counts[1] += ones
        train = codes == 0
        for name, ftype in spec.features:
            column = table[name]
            self.present[name] += int(column.notna().sum())
            if ftype == "numeric":
                self.numeric[name] = self.numeric[name].merge(Moments.of(column.to_numpy()[train]))
            else:
                for i in range(3):
                    self.values[name][i].update(column[codes == i].value_counts(dropna=True).to_dict())

    def merge(self, other: Profile) -> None:
        for i in range(3):
            self.rows[i] += other.rows[i]
        for i in range(2):
            self.label_counts[i] += other.label_counts[i]
        for name in self.present:
            self.present[name] += other.present[name]
        for name, counters in self.values.items():
            for mine, theirs in zip(counters, other.values[name], strict=True):
                mine.update(theirs)
        for name in self.numeric:
            self.numeric[name] = self.numeric[name].merge(other.numeric[name])

    def check(self) -> None:
        """The checks that need every row at once (see check_dataset), and that no split is empty."""
        spec = self.spec
        empty = [name for name in spec.feature_names if self.present[name] == 0]
        problems = [f"column(s) {_names(empty)} have no values (all missing)"] if empty else []
        if spec.problem_type == "binary_classification":
            absent = [spec.classes[code] for code in (0, 1) if self.label_counts[code] == 0]
            if absent:
                problems.append(
                    f"label {spec.label!r} never takes the value(s) {_names(absent)}: both classes must occur"
                )
        if problems:
            raise DataError("; ".join(problems))
        _check_splits(dict(zip(SPLITS, self.rows, strict=True)), *self.fractions)
        _check_columns(self.encoding)

    @property
    def encoding(self) -> Encoding:
        categories = tuple((name, tuple(sorted(counters[0]))) for name, counters in self.values.items())
        return Encoding(spec=self.spec, categories=categories)

    def outputs(self) -> dict[str, str]:
        """schema.json, statistics.json and constraints.json, by relative path."""
        encoding = self.encoding
        known = dict(encoding.categories)
        unseen = {
            split: {
                name: sum(n for value, n in counters[i].items() if value not in counters[0])
                for name, counters in self.values.items()
            }
            for i, split in enumerate(SPLITS)
            if split != "train"
        }
        rows = dict(zip(SPLITS, self.rows, strict=True))
        schema = schema_document(self.spec, encoding, rows, unseen, *self.fractions, self.seed)
        columns: list[Moments] = []
        for name, ftype in self.spec.features:
            if ftype == "numeric":
                columns.append(self.numeric[name])
            else:
                train = self.values[name][0]
                columns.extend(Moments.of_indicator(self.rows[0], train[c]) for c in known[name])
        return {
            f"{SCHEMA_DIR}/{SCHEMA_FILENAME}": _json(schema),
            f"{BASELINE_DIR}/{STATISTICS_FILENAME}": _json(statistics_of(columns)),
            f"{BASELINE_DIR}/{CONSTRAINTS_FILENAME}": _json(constraints_of(columns)),
        }

    def to_json(self) -> dict:
        return {
            "fractions": list(self.fractions),
            "seed": self.seed,
            "rows": self.rows,
            "label_counts": self.label_counts,
            "present": self.present,
            "values": {name: [dict(c) for c in counters] for name, counters in self.values.items()},
            "numeric": {name: m.__dict__ for name, m in self.numeric.items()},
        }

    @classmethod
    def from_json(cls, obj: dict, spec: DatasetSpec) -> Profile:
        """A profile written by :meth:`to_json` for the same spec (KeyError or TypeError if it is not)."""
        profile = cls(spec, *obj["fractions"], obj["seed"])
        profile.rows = [int(n) for n in obj["rows"]]
        profile.label_counts = [int(n) for n in obj["label_counts"]]
        profile.present = {name: int(obj["present"][name]) for name in spec.feature_names}
        profile.values = {name: [Counter(c) for c in obj["values"][name]] for name in profile.values}
        profile.numeric = {name: Moments(**obj["numeric"][name]) for name in profile.numeric}
        return profile


def encode_chunk(table: pd.DataFrame, codes: np.ndarray, encoding: Encoding) -> list[str]:
    """The CSV text each split gets from one checked chunk, in SPLITS order, then the train rows'
    features alone (the baseline dataset): the bytes :func:`to_csv` writes for the same rows.

    Each row is put together from cell texts made once per distinct value (see :func:`_cell_texts`,
    :func:`_indicator_texts`): formatting every cell through ``DataFrame.to_csv`` was most of the
    step's time, and a column holds far fewer distinct values than rows.
    """
    blocks = []  # one list of cell texts per encoded column group, in CSV order
    categories = dict(encoding.categories)
    for name, ftype in encoding.spec.features:
        values = table[name].to_numpy()
        if ftype == "numeric":
            blocks.append(_cell_texts(values.astype("float64", copy=False)))
        elif categories[name]:  # a feature with no train category has no column at all
            blocks.append(_indicator_texts(values, categories[name]))
    features = list(map(",".join, zip(*blocks, strict=True)))
    labels = _cell_texts(table[encoding.spec.label].to_numpy())
    rows = list(map(",".join, zip(labels, features, strict=True)))
    texts = [_lines(compress(rows, (codes == i).tolist())) for i in range(3)]
    if len(encoding.columns) == 1:
        # csv.writer quotes a row that is one empty field, so that it is not read as no field.
        features = ['""' if cell == "" else cell for cell in features]
    return [*texts, _lines(compress(features, (codes == 0).tolist()))]


def _cell_texts(values: np.ndarray) -> list[str]:
    """Each value of a float64 or int64 column as ``DataFrame.to_csv`` writes it (numpy's str, a
    missing value as the empty cell), formatted once per distinct bit pattern (so -0.0 keeps its sign)."""
    codes, uniques = pd.factorize(values.view(f"u{values.itemsize}"))
    uniques = uniques.view(values.dtype)
    texts = uniques.astype(str).astype(object)
    if values.dtype.kind == "f":
        texts[np.isnan(uniques)] = ""
    return texts[codes].tolist()


def _indicator_texts(values: np.ndarray, levels: tuple[str, ...]) -> list[str]:
    """The one-hot cells of a categorical column as CSV text ("0,1,0"), one per row; an unseen or
    missing category is all zeros, as :func:`steps.encoding.encode_features` encodes it."""
    width = len(levels)
    patterns = [",".join("1" if j == k else "0" for j in range(width)) for k in range(width)]
    patterns = np.array([*patterns, ",".join("0" * width)], dtype=object)  # last: no category
    position = {level: k for k, level in enumerate(levels)}
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))  # a missing cell: -1
    found = np.array([position.get(value, width) for value in uniques] + [width], dtype="int64")
    return patterns[found[codes]].tolist()


def _lines(rows) -> str:
    rows = list(rows)
    return "\n".join(rows) + "\n" if rows else ""


def _check_splits(rows: dict[str, int], train_fraction: float, validation_fraction: float) -> None:
    empty = [split for split, n in rows.items() if n == 0]
    if empty:
        raise DataError(
            f"{sum(rows.values())} row(s) are too few to split with fractions "
            f"{train_fraction}/{validation_fraction}: the {' and '.join(empty)} split would be empty"
        )


def _check_columns(encoding: Encoding) -> None:
    if not encoding.columns:
        raise DataError(
            f"every feature is missing in every train row ({_names(encoding.spec.feature_names)}): "
            f"the model would have no column to learn from"
        )


# ------------------------------------------------------------------------------------------ helpers


def _cells(column: pd.Series) -> np.ndarray:
    # An object array of str and NaN looks the same for a column read as object or as pandas 3's str.
    return column.to_numpy(dtype=object)


def _to_float(cells: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Parse text cells to float; return the values and the distinct cells that are not finite numbers.

    Each distinct cell is parsed once (a column repeats few values; parsing every cell was most of
    check_table's time). The missing cell stays among the distinct ones, because pandas parses a
    column of integers alone as int64 and otherwise as float64: the same context gives the same values.
    """
    codes, uniques = pd.factorize(cells)  # in order of first appearance; a missing cell: -1
    if (codes < 0).any():
        uniques = np.append(uniques, np.nan)  # where code -1 finds it
    values, bad_mask = to_float(uniques)
    return values[codes], [str(v) for v in uniques[bad_mask]]


def _stat(value: float) -> float:
    # 12 significant digits: stable across numpy's summation orders, still exact for the data's precision.
    return float(f"{float(value):.12g}")


def _json(obj: dict) -> str:
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def _json_type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:_MAX_NAMED])
    return f"[{shown}{f', ... {len(items) - _MAX_NAMED} more' if len(items) > _MAX_NAMED else ''}]"


def _values(values: list[str]) -> str:
    shown = ", ".join(repr(v) for v in values[:_MAX_NAMED])
    return shown + (f" and {len(values) - _MAX_NAMED} more" if len(values) > _MAX_NAMED else "")


# ---------------------------------------------------------------------------------------------- main

# Rows read at a time: peak memory follows this, not the size of the input.
CHUNK_ROWS = 100_000
PROFILE_DIR = "profile"
STAGES = ("all", "profile", "encode")
# ProcessingClusterConfig.InstanceCount is 1 to 100 (botocore's service model for sagemaker).
MAX_INSTANCES = 100
#: Train part files one run may write (a part per training instance, or a few).
MAX_TRAIN_PARTS = 1000


class _Reader:
    """Checked chunks of every input file, remembering which file it is in for error messages and
    how many rows each file held (by file name, for the profiles of a sharded run)."""

    def __init__(self, files: list[Path], spec: DatasetSpec, chunk_rows: int, fractions, seed: int):
        self.files, self.spec, self.chunk_rows = files, spec, chunk_rows
        self.fractions, self.seed = fractions, seed
        self.source = ""
        self.rows: dict[str, int] = {}
        self.sizes = {path.name: path.stat().st_size for path in files}  # bytes, as listed

    def chunks(self):
        """(checked chunk, split codes) for every chunk of every file, in file-name order."""
        for path in self.files:
            self.source = str(path)
            self.rows[path.name] = 0
            for raw in _read_raw_csv(path, self.chunk_rows):
                table = check_table(raw, self.spec)
                self.rows[path.name] += len(table)
                yield table, split_codes(table, self.spec, *self.fractions, self.seed)
        self.source = ""


def _read_raw_csv(path: Path, chunk_rows: int):
    """The raw table in chunks of ``chunk_rows`` (all cells text, missing = NaN); a header-only file
    gives one empty chunk so that its columns are still checked."""
    try:
        # pandas renames a repeated header name ('x', 'x.1'), so duplicates are looked for first.
        with open(path, encoding="utf-8-sig", newline="") as handle:
            check_header(next(csv.reader(handle), []))
        # dtype=object, not str: the cells are the same Python str and NaN, without pandas 3 building
        # an Arrow string array that check_table turns straight back into objects.
        with pd.read_csv(
            path, dtype=object, keep_default_na=False, na_values=list(MISSING_TOKENS), chunksize=chunk_rows
        ) as reader:
            any_rows = False
            for chunk in reader:
                any_rows = True
                yield chunk
        if not any_rows:
            yield pd.read_csv(path, dtype=str, nrows=0)
    except csv.Error as err:
        raise DataError(f"cannot parse CSV: {err}") from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty") from None
    except pd.errors.ParserError as err:
        raise DataError(f"cannot parse CSV: {str(err).strip().splitlines()[-1]}") from None
    except UnicodeDecodeError:
        raise DataError("file is not UTF-8 text") from None


def _input_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir() if p.suffix == ".csv" and p.is_file()), key=lambda p: p.name
        )
        if not files:
            raise DataError("no *.csv file in this directory")
        return files
    if path.is_file():
        return [path]
    raise DataError("no such file or directory")


def read_resource_config(text: str) -> tuple[str, list[str]]:
    """This instance's host name and every host of the job, from SageMaker's resourceconfig.json."""
    try:
        current, hosts = resource_config.parse(text)
    except resource_config.ResourceConfigError as err:
        raise DataError(str(err)) from None
    if len(hosts) > MAX_INSTANCES:
        raise DataError(
            f"{len(hosts)} hosts, but a processing job runs at most {MAX_INSTANCES} instances "
            f"(ProcessingClusterConfig.InstanceCount); use {MAX_INSTANCES} or fewer"
        )
    return current, hosts


def _load_profiles(directory: Path, spec: DatasetSpec, fractions, seed: int) -> tuple[Profile, dict]:
    """Merge the profile job's per-instance profiles; the merged profile, and every profiled input
    file by name: (host, bytes, rows)."""
    paths = sorted(directory.glob("profile-*.json")) if directory.is_dir() else []
    if not paths:
        raise DataError("no profile-*.json from the profile stage")
    loaded = {}
    for path in paths:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            hosts = list(obj["hosts"])
            files = {str(name): (int(f["bytes"]), int(f["rows"])) for name, f in obj["files"].items()}
            loaded[obj["host"]] = (hosts, files, Profile.from_json(obj["profile"], spec))
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
        ):
            raise DataError(f"{path.name}: not a profile written by --stage profile for this spec") from None
    hosts = next(iter(loaded.values()))[0]
    absent = [h for h in hosts if h not in loaded]
    if absent or any(h != hosts for h, _, _ in loaded.values()) or len(loaded) != len(hosts):
        raise DataError(
            f"the profiles are not one complete set: hosts {_names(hosts)}, "
            f"profiles from {_names(sorted(loaded))}; pass every profile of one profile job"
        )
    merged, profiled = Profile(spec, *fractions, seed), {}
    for host in hosts:  # one fixed order, so every instance merges to the same figures
        _, files, profile = loaded[host]
        if (profile.fractions, profile.seed) != (tuple(fractions), seed):
            raise DataError(
                f"profile of {host} used fractions {list(profile.fractions)} and seed "
                f"{profile.seed}, this stage {list(fractions)} and {seed}; pass the same to both"
            )
        for name, figures in files.items():
            if name in profiled:
                raise DataError(
                    f"{name} was profiled by both {profiled[name][0]} and {host}, so its rows would count "
                    f"twice: give the profile job its raw input ShardedByS3Key, one object per instance"
                )
            profiled[name] = (host, *figures)
        merged.merge(profile)
    return merged, profiled


_STALE_INPUT = (
    "the input changed between the profile and encode stages; run both again "
    "(in a pipeline: with caching off, or a new input location)"
)


def _check_shard(sizes: dict[str, int], rows: dict[str, int] | None, profiled: dict) -> None:
    """Every file of this instance's shard was profiled as it is now. Which instance profiled it does
    not matter: SageMaker does not say that two jobs shard the same objects to the same hosts."""
    for name, size in sizes.items():
        if name not in profiled:
            raise DataError(f"{name} is in this shard but in no profile: {_STALE_INPUT}")
        _, profiled_size, profiled_rows = profiled[name]
        if size != profiled_size or (rows is not None and rows[name] != profiled_rows):
            now = f"{size} bytes" if rows is None else f"{size} bytes, {rows[name]} rows"
            raise DataError(
                f"{name} has {now}, its profile {profiled_size} bytes, {profiled_rows} rows: {_STALE_INPUT}"
            )


def _write_outputs(output_dir: Path, outputs: dict[str, str]) -> None:
    for relative, text in outputs.items():
        target = output_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename, so a reader never sees a half-written file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files; outputs are meant to be shared
        os.replace(tmp, target)


def train_part_names(name: str, parts: int) -> list[str]:
    """The train split's file names: ``name`` itself, or ``<stem>-part-<i>.csv`` for several parts
    (zero-padded, so the keys sort in part order)."""
    if parts == 1:
        return [name]
    stem = name.removesuffix(".csv")
    return [f"{stem}-part-{index:04d}.csv" for index in range(parts)]


def _write_splits(
    output_dir: Path,
    names: list[str],
    reader: _Reader,
    encoding: Encoding,
    verify: Callable[[], None] | None = None,
    train_parts: int = 1,
) -> list[int]:
    """Stream every chunk's encoded rows into the split files; return rows per split. The files
    appear only once complete, each renamed into place from a temporary file beside it, and not at
    all when ``verify`` (called once every row is read) raises; a file that would hold no row is
    not written (an instance's shard may hold no test row, or fewer train rows than parts). With
    ``train_parts`` > 1 the train rows are dealt round-robin into that many files, the objects a
    ShardedByS3Key channel hands out to the instances of a distributed training job."""
    train_names = train_part_names(names[0], train_parts)
    folders = [SPLITS[0]] * train_parts + [*SPLITS[1:], FEATURES_DIR]
    targets = [
        output_dir / folder / name for folder, name in zip(folders, [*train_names, *names[1:]], strict=True)
    ]
    temporaries = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            temporaries.append((os.fdopen(fd, "w", encoding="utf-8", newline=""), tmp))
        rows = [0, 0, 0]
        for table, codes in reader.chunks():
            for i, text in enumerate(encode_chunk(table, codes, encoding)):
                if i == 0 and train_parts > 1:
                    lines = text.splitlines(keepends=True)
                    for part in range(train_parts):  # train row r goes to part r % train_parts
                        temporaries[part][0].write(
                            "".join(lines[(part - rows[0]) % train_parts :: train_parts])
                        )
                else:
                    temporaries[i + train_parts - 1 if i else 0][0].write(text)
                if i < 3:
                    rows[i] += int(np.count_nonzero(codes == i))
        if verify is not None:
            verify()
        for handle, tmp in temporaries:
            handle.close()
            os.chmod(tmp, 0o644)
    except BaseException:
        for handle, tmp in temporaries:
            handle.close()
            os.unlink(tmp)
        raise
    for (_, tmp), target in zip(temporaries, targets, strict=True):
        if os.path.getsize(tmp):
            os.replace(tmp, target)
        else:  # no rows of this split here: an empty CSV is no table to the readers downstream
            os.unlink(tmp)
    return rows


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # reported as one line by main, like every other error of this step
        raise DataError(message)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=Path("/opt/ml/processing/input/raw"))
    parser.add_argument("--spec", type=Path, default=Path("/opt/ml/processing/input/spec/dataset.json"))
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/output"))
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument(
        "--stage",
        choices=STAGES,
        default="all",
        help="all: both passes on this instance's input; profile: the first pass on this instance's "
        "shard, written to profile/profile-<host>.json; encode: merge --profiles, then split and encode "
        "this instance's shard into part files named by host",
    )
    parser.add_argument("--profiles", type=Path, help="folder of every profile-<host>.json (--stage encode)")
    parser.add_argument("--resource-config", type=Path, default=Path("/opt/ml/config/resourceconfig.json"))
    parser.add_argument(
        "--train-parts",
        type=int,
        default=1,
        help="write the train split as this many files (at least one per instance of a distributed "
        "training job reading it ShardedByS3Key)",
    )

    source, reader = "arguments", None
    try:
        args = parser.parse_args(argv)
        check_fractions(args.train_fraction, args.validation_fraction)
        if args.chunk_rows < 1:
            raise DataError(f"--chunk-rows must be at least 1, got {args.chunk_rows}")
        if not 1 <= args.train_parts <= MAX_TRAIN_PARTS:
            raise DataError(f"--train-parts must be 1 to {MAX_TRAIN_PARTS}, got {args.train_parts}")
        if (args.stage == "encode") != (args.profiles is not None):
            raise DataError("--profiles goes with --stage encode, and only with it")
        spec = load_spec(args.spec)
        fractions = (args.train_fraction, args.validation_fraction)
        host, hosts = None, None
        if args.stage != "all":
            source = str(args.resource_config)
            try:
                text = args.resource_config.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise DataError(f"cannot read the resource config: {getattr(err, 'strerror', err)}") from None
            host, hosts = read_resource_config(text)
            source = "arguments"
        source = str(args.input)
        # What SageMaker gives an instance whose shard holds no object is not documented: an empty
        # folder, or none at all.
        if host is not None and (
            not args.input.exists() or (args.input.is_dir() and not any(args.input.glob("*.csv")))
        ):
            raise DataError(_empty_shard(host, hosts))
        reader = _Reader(_input_files(args.input), spec, args.chunk_rows, fractions, args.seed)
        if args.stage == "encode":
            source = str(args.profiles)
            profile, profiled = _load_profiles(args.profiles, spec, fractions, args.seed)
            source = str(args.input)
            _check_shard(reader.sizes, None, profiled)  # before the long pass, on sizes alone
            if 1 < len(hosts) <= len(profiled) and set(reader.sizes) == set(profiled):
                # Every file, though there are enough for every instance to get one: this input is
                # not sharded, and each instance would encode every row again.
                raise DataError(
                    f"this instance holds all {len(profiled)} profiled files, though the job has "
                    f"{len(hosts)} instances: give the encode job its raw input ShardedByS3Key too"
                )
        else:
            profile = Profile(spec, *fractions, args.seed)
            for table, codes in reader.chunks():
                profile.add(table, codes)
        if args.stage == "profile":
            if sum(profile.rows) == 0:
                raise DataError(_empty_shard(host, hosts))
            files = {name: {"bytes": size, "rows": reader.rows[name]} for name, size in reader.sizes.items()}
            body = {"host": host, "hosts": hosts, "files": files, "profile": profile.to_json()}
            _write_outputs(args.output_dir, {f"{PROFILE_DIR}/profile-{host}.json": _json(body)})
            print(f"profiled {sum(profile.rows)} rows of {host}'s shard to {args.output_dir / PROFILE_DIR}")
            return 0
        profile.check()
        stems = [*SPLITS, BASELINE_DATASET_FILENAME.removesuffix(".csv")]
        names = [f"{stem}.csv" if host is None else f"{stem}-{host}.csv" for stem in stems]
        # Encoding: once every row is read, each file's rows against its profile (reader.rows fills up).
        verify = (
            partial(_check_shard, reader.sizes, reader.rows, profiled) if args.stage == "encode" else None
        )
        rows = _write_splits(args.output_dir, names, reader, profile.encoding, verify, args.train_parts)
        if host is None or host == hosts[0]:  # one instance writes what every instance shares
            _write_outputs(args.output_dir, profile.outputs())
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DataError as err:
        where = reader.source if reader is not None and reader.source else source
        print(f"error: {where}: {err}", file=sys.stderr)
        return 2

    counts = ", ".join(f"{split} {n} rows" for split, n in zip(SPLITS, rows, strict=True))
    print(f"wrote {counts} to {args.output_dir}")
    return 0


def _empty_shard(host: str, hosts: list[str]) -> str:
    # ShardedByS3Key hands out whole objects: with more instances than objects "some nodes won't get
    # any data" (SageMaker API reference, S3DataSource.S3DataDistributionType).
    return (
        f"the shard of {host} ({hosts.index(host) + 1} of {len(hosts)} instances) holds no data rows: "
        f"give the job at most as many instances as there are input files with rows"
    )


if __name__ == "__main__":
    sys.exit(main())

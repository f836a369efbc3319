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
    baseline/features.csv
        The encoded training features alone, as a request carries them (no label, no header): what the
        pipeline's QualityCheck step baselines with Model Monitor itself, sketches included.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROBLEM_TYPES = ("binary_classification", "regression")
FEATURE_TYPES = ("numeric", "categorical")
SPEC_KEYS = ("label", "problem_type", "classes", "features")

SPLITS = ("train", "validation", "test")
SCHEMA_DIR = "schema"
BASELINE_DIR = "baseline"
OUTPUT_DIRS = (*SPLITS, SCHEMA_DIR, BASELINE_DIR)
SCHEMA_FILENAME = "schema.json"
STATISTICS_FILENAME = "statistics.json"
CONSTRAINTS_FILENAME = "constraints.json"
BASELINE_DATASET_FILENAME = "features.csv"

# Cells that mean "missing" in the raw table. Fixed here rather than pandas' default list, which
# differs between pandas versions and would make the container and a laptop disagree.
MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "NULL", "null")

_MAX_NAMED = 5


class SpecError(ValueError):
    """The dataset spec is unreadable or invalid; the message names the file and every problem."""


class DataError(ValueError):
    """The raw data does not fit the dataset spec; the message is one line naming the problem."""


@dataclass(frozen=True)
class DatasetSpec:
    label: str
    problem_type: str
    features: tuple[tuple[str, str], ...]  # (raw column name, "numeric" | "categorical"), in spec order
    classes: tuple[str, str] | None = None  # raw label values [negative, positive], encoded as 0 and 1

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)

    @property
    def feature_types(self) -> dict[str, str]:
        return dict(self.features)


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
    n_missing = int(pd.isna(label_cells).sum())
    if spec.problem_type == "binary_classification":
        allowed = spec.classes
        present = label_cells[pd.notna(label_cells)]
        unexpected = sorted({str(v) for v in present if v not in allowed})
        if unexpected or n_missing:
            found = [f"unexpected value(s) {_values(unexpected)}"] if unexpected else []
            found += [f"{n_missing} missing value(s)"] if n_missing else []
            problems.append(f"label {spec.label!r} has {', and '.join(found)} (allowed: {_names(allowed)})")
        label = pd.Series((label_cells == allowed[1]).astype("int64"))
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


def split_indices(
    n_rows: int,
    train_fraction: float,
    validation_fraction: float,
    seed: int,
    strata: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Row positions of each split, in input order; stratified on ``strata`` when given.

    Uses numpy's legacy RandomState, whose stream numpy keeps stable across releases, so the same seed
    gives the same split in the container and on a laptop.
    """
    check_fractions(train_fraction, validation_fraction)
    rng = np.random.RandomState(seed)
    groups = (
        [np.arange(n_rows)] if strata is None else [np.flatnonzero(strata == v) for v in np.unique(strata)]
    )
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for group in groups:
        shuffled = rng.permutation(group)
        n_train = math.floor(len(group) * train_fraction + 0.5)
        n_validation = math.floor(len(group) * validation_fraction + 0.5)
        parts["train"].append(shuffled[:n_train])
        parts["validation"].append(shuffled[n_train : n_train + n_validation])
        parts["test"].append(shuffled[n_train + n_validation :])
    result = {split: np.sort(np.concatenate(parts[split])) for split in SPLITS}
    empty = [split for split in SPLITS if len(result[split]) == 0]
    if empty:
        raise DataError(
            f"{n_rows} row(s) are too few to split with fractions {train_fraction}/{validation_fraction}: "
            f"the {' and '.join(empty)} split would be empty"
        )
    return result


# -------------------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Encoding:
    """How raw features become XGBoost columns; categories are learned from the train split only."""

    spec: DatasetSpec
    categories: tuple[tuple[str, tuple[str, ...]], ...]  # (categorical feature, sorted categories)

    @property
    def columns(self) -> tuple[str, ...]:
        """Encoded feature column names, in CSV order after the label."""
        categories = dict(self.categories)
        names: list[str] = []
        for name, ftype in self.spec.features:
            names.extend([name] if ftype == "numeric" else [f"{name}={c}" for c in categories[name]])
        return tuple(names)


def fit_encoding(train: pd.DataFrame, spec: DatasetSpec) -> Encoding:
    categories = tuple(
        (name, tuple(sorted({str(v) for v in train[name] if not pd.isna(v)})))
        for name, ftype in spec.features
        if ftype == "categorical"
    )
    return Encoding(spec=spec, categories=categories)


def encode_features(table: pd.DataFrame, encoding: Encoding) -> pd.DataFrame:
    """One-hot categoricals (unseen or missing category: all zeros), numeric features as float64."""
    categories = dict(encoding.categories)
    blocks: dict[str, np.ndarray] = {}
    for name, ftype in encoding.spec.features:
        if ftype == "numeric":
            blocks[name] = table[name].to_numpy(dtype="float64")
            continue
        values = table[name].to_numpy(dtype=object)
        for category in categories[name]:
            blocks[f"{name}={category}"] = (values == category).astype("int64")
    return pd.DataFrame(blocks, columns=list(encoding.columns))


def unseen_rows(table: pd.DataFrame, encoding: Encoding) -> dict[str, int]:
    """Per categorical feature, how many rows hold a value the train split never had."""
    result = {}
    for name, known in encoding.categories:
        values = table[name]
        result[name] = int((values.notna() & ~values.isin(known)).sum())
    return result


def to_csv(label: pd.Series, features: pd.DataFrame) -> str:
    frame = pd.concat([label.reset_index(drop=True), features.reset_index(drop=True)], axis=1)
    return frame.to_csv(header=False, index=False, na_rep="", lineterminator="\n")


# -------------------------------------------------------------------------------------- baseline


def baseline_statistics(features: pd.DataFrame) -> dict:
    """Model Monitor statistics.json over the encoded training features."""
    entries = []
    for i, column in enumerate(features.columns):
        values = features[column].to_numpy(dtype="float64")
        present = values[~np.isnan(values)]
        numerical: dict = {
            "common": {"num_present": int(present.size), "num_missing": int(values.size - present.size)}
        }
        if present.size:
            numerical.update(
                mean=_stat(present.mean()),
                sum=_stat(present.sum()),
                std_dev=_stat(present.std()),
                min=_stat(present.min()),
                max=_stat(present.max()),
            )
        entries.append(
            {"name": f"_c{i}", "inferred_type": _inferred_type(present), "numerical_statistics": numerical}
        )
    return {"version": 0.0, "dataset": {"item_count": int(len(features))}, "features": entries}


def baseline_constraints(features: pd.DataFrame) -> dict:
    """Model Monitor constraints.json over the encoded training features, default monitoring config."""
    entries = []
    for i, column in enumerate(features.columns):
        values = features[column].to_numpy(dtype="float64")
        present = values[~np.isnan(values)]
        entry = {
            "name": f"_c{i}",
            "inferred_type": _inferred_type(present),
            "completeness": _stat(present.size / values.size) if values.size else 0.0,
        }
        if present.size:
            entry["num_constraints"] = {"is_non_negative": bool(present.min() >= 0)}
        entries.append(entry)
    return {
        "version": 0.0,
        "features": entries,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 0.1,
            "domain_content_threshold": 0.1,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": 0.1,
                "comparison_method": "Robust",
            },
        },
    }


# ---------------------------------------------------------------------------------------- whole step


def preprocess(
    table: pd.DataFrame,
    spec: DatasetSpec,
    train_fraction: float = 0.7,
    validation_fraction: float = 0.15,
    seed: int = 42,
) -> dict[str, str]:
    """Split, encode and describe a checked table; return every output file's text by relative path."""
    check_dataset(table, spec)
    label = table[spec.label]
    stratified = spec.problem_type == "binary_classification"
    indices = split_indices(
        len(table), train_fraction, validation_fraction, seed, label.to_numpy() if stratified else None
    )
    splits = {split: table.iloc[rows].reset_index(drop=True) for split, rows in indices.items()}
    encoding = fit_encoding(splits["train"], spec)
    encoded = {split: encode_features(frame, encoding) for split, frame in splits.items()}

    outputs = {f"{split}/{split}.csv": to_csv(splits[split][spec.label], encoded[split]) for split in SPLITS}
    schema = _schema(spec, encoding, splits, train_fraction, validation_fraction, seed, stratified)
    outputs[f"{SCHEMA_DIR}/{SCHEMA_FILENAME}"] = _json(schema)
    outputs[f"{BASELINE_DIR}/{STATISTICS_FILENAME}"] = _json(baseline_statistics(encoded["train"]))
    outputs[f"{BASELINE_DIR}/{CONSTRAINTS_FILENAME}"] = _json(baseline_constraints(encoded["train"]))
    outputs[f"{BASELINE_DIR}/{BASELINE_DATASET_FILENAME}"] = encoded["train"].to_csv(
        header=False, index=False, na_rep="", lineterminator="\n"
    )
    return outputs


def _schema(spec, encoding, splits, train_fraction, validation_fraction, seed, stratified) -> dict:
    categories = dict(encoding.categories)
    unseen = {split: unseen_rows(splits[split], encoding) for split in ("validation", "test")}
    features = []
    for name, ftype in spec.features:
        if ftype == "numeric":
            features.append({"name": name, "type": ftype, "encoding": "float", "columns": [name]})
        else:
            features.append(
                {
                    "name": name,
                    "type": ftype,
                    "encoding": "one_hot",
                    "categories": list(categories[name]),
                    "columns": [f"{name}={c}" for c in categories[name]],
                    "unseen_rows": {split: unseen[split][name] for split in unseen},
                }
            )
    label: dict = {"name": spec.label}
    if spec.classes:
        label.update(classes=list(spec.classes), encoding={spec.classes[0]: 0, spec.classes[1]: 1})
    return {
        "problem_type": spec.problem_type,
        "label": label,
        "features": features,
        "csv_columns": [spec.label, *encoding.columns],
        "num_features": len(encoding.columns),
        "rows": {split: int(len(splits[split])) for split in SPLITS},
        "split": {
            "train_fraction": train_fraction,
            "validation_fraction": validation_fraction,
            "seed": seed,
            "stratified": stratified,
        },
    }


# ------------------------------------------------------------------------------------------ helpers


def _cells(column: pd.Series) -> np.ndarray:
    # An object array of str and NaN looks the same under pandas 2 (object) and 3 (str dtype).
    return column.to_numpy(dtype=object)


def _to_float(cells: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Parse text cells to float; return the values and the distinct cells that are not finite numbers."""
    values = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(dtype="float64")
    bad_mask = pd.notna(cells) & ~np.isfinite(values)
    bad = list(dict.fromkeys(str(v) for v in cells[bad_mask]))
    return values, bad


def _inferred_type(present: np.ndarray) -> str:
    return "Integral" if present.size and bool(np.all(present == np.round(present))) else "Fractional"


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


def _read_raw_csv(path: Path) -> pd.DataFrame:
    try:
        # pandas renames a repeated header name ('x', 'x.1'), so duplicates are looked for first.
        with open(path, encoding="utf-8-sig", newline="") as handle:
            check_header(next(csv.reader(handle), []))
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=list(MISSING_TOKENS))
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

    source = "arguments"
    try:
        args = parser.parse_args(argv)
        check_fractions(args.train_fraction, args.validation_fraction)
        spec = load_spec(args.spec)
        source = str(args.input)
        tables = []
        for path in _input_files(args.input):
            source = str(path)
            tables.append(check_table(_read_raw_csv(path), spec))
        source = str(args.input)
        outputs = preprocess(
            pd.concat(tables, ignore_index=True),
            spec,
            args.train_fraction,
            args.validation_fraction,
            args.seed,
        )
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DataError as err:
        print(f"error: {source}: {err}", file=sys.stderr)
        return 2

    _write_outputs(args.output_dir, outputs)
    rows = json.loads(outputs[f"{SCHEMA_DIR}/{SCHEMA_FILENAME}"])["rows"]
    print(f"wrote {', '.join(f'{split} {n} rows' for split, n in rows.items())} to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How a table's raw features become the numeric columns XGBoost reads, and ``schema.json`` that carries it:
the one definition that Preprocess (training data) and the serving handler (raw records) both use.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PROBLEM_TYPES = ("binary_classification", "regression")
FEATURE_TYPES = ("numeric", "categorical")
SCHEMA_FILENAME = "schema.json"

# Cells that mean "missing" in the raw table. Fixed here rather than pandas' default list, which
# differs between pandas versions and would make the container and a laptop disagree.
MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "NULL", "null")
_MISSING = frozenset(MISSING_TOKENS)


class SchemaError(ValueError):
    """A schema.json that is not one Preprocess writes; the message is one line naming the problem."""


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

    @property
    def is_identity(self) -> bool:
        """Every feature numeric: a raw record and its encoded row are the same numbers."""
        return all(ftype == "numeric" for _, ftype in self.spec.features)


def fit_encoding(train: pd.DataFrame, spec: DatasetSpec) -> Encoding:
    categories = tuple(
        (name, tuple(sorted({str(v) for v in train[name] if not pd.isna(v)})))
        for name, ftype in spec.features
        if ftype == "categorical"
    )
    return Encoding(spec=spec, categories=categories)


def _blocks(columns: Mapping[str, np.ndarray], encoding: Encoding) -> Iterator[tuple[str, np.ndarray]]:
    """Each encoded column by name: a numeric feature as float64, each learned category of a categorical
    feature as a 0/1 int64 indicator (an unseen or missing category: all zeros)."""
    categories = dict(encoding.categories)
    for name, ftype in encoding.spec.features:
        if ftype == "numeric":
            yield name, np.asarray(columns[name], dtype="float64")
            continue
        values = np.asarray(columns[name], dtype=object)
        for category in categories[name]:
            yield f"{name}={category}", (values == category).astype("int64")


def encode_features(table: pd.DataFrame, encoding: Encoding) -> pd.DataFrame:
    """One-hot categoricals (unseen or missing category: all zeros), numeric features as float64."""
    columns = {name: table[name].to_numpy(dtype=object) for name in encoding.spec.feature_names}
    return pd.DataFrame(dict(_blocks(columns, encoding)), columns=list(encoding.columns))


def encode_matrix(columns: Mapping[str, np.ndarray], encoding: Encoding) -> np.ndarray:
    """Typed raw columns (see :func:`typed_columns`) -> the float64 rows the model reads: the values
    :func:`encode_features` gives the same rows, without building a DataFrame for one request."""
    blocks = [block for _, block in _blocks(columns, encoding)]
    return np.column_stack(blocks).astype("float64", copy=False)


def unseen_rows(table: pd.DataFrame, encoding: Encoding) -> dict[str, int]:
    """Per categorical feature, how many rows hold a value the train split never had."""
    result = {}
    for name, known in encoding.categories:
        values = table[name]
        result[name] = int((values.notna() & ~values.isin(known)).sum())
    return result


# ------------------------------------------------------------------------------------- raw values


def to_float(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse cells (text, numbers or NaN) to float; return the values and a mask of the cells that are
    present but not finite numbers."""
    values = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(dtype="float64")
    return values, pd.notna(cells) & ~np.isfinite(values)


def missing_to_nan(cells: Sequence[object]) -> np.ndarray:
    """Request cells as Preprocess reads the table's cells: a missing token (or None) becomes NaN."""
    return np.array(
        [
            math.nan if cell is None or (isinstance(cell, str) and cell in _MISSING) else cell
            for cell in cells
        ],
        dtype=object,
    )


def typed_columns(
    columns: Mapping[str, np.ndarray], spec: DatasetSpec
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Raw cells per feature (missing = NaN) -> typed columns as training had them (numeric float64,
    categorical object of str), and per numeric feature the mask of cells that are not numbers."""
    typed, bad = {}, {}
    for name, ftype in spec.features:
        cells = columns[name]
        if ftype == "numeric":
            typed[name], mask = to_float(cells)
            if mask.any():
                bad[name] = mask
        else:
            typed[name] = np.array([c if isinstance(c, float) else str(c) for c in cells], dtype=object)
    return typed, bad


def decode_rows(features: np.ndarray, encoding: Encoding) -> list[list[object]]:
    """Encoded rows -> raw records in spec order (a number or None per numeric feature, the category or
    None per categorical one): records that encode back to the same rows. A row whose category was
    unseen or missing decodes to None, which encodes to the same all-zero indicators."""
    categories = dict(encoding.categories)
    records: list[list[object]] = [[] for _ in range(len(features))]
    position = 0
    for name, ftype in encoding.spec.features:
        if ftype == "numeric":
            for record, value in zip(records, features[:, position], strict=True):
                record.append(None if math.isnan(value) else _plain(float(value)))
            position += 1
            continue
        levels = categories[name]
        block = features[:, position : position + len(levels)]
        for record, indicators in zip(records, block, strict=True):
            hot = np.flatnonzero(indicators == 1)
            record.append(levels[int(hot[0])] if len(hot) == 1 else None)
        position += len(levels)
    return records


def csv_line(values: Sequence[object]) -> str:
    """One raw record as a CSV line (no line end): None as an empty cell, quoted where CSV needs it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(["" if v is None else v for v in values])
    return out.getvalue()


def _plain(value: float) -> int | float:
    # 128.0 -> 128: the raw table's own spelling of a whole number; both parse to the same float.
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# ------------------------------------------------------------------------------------------- schema


def schema_document(
    spec: DatasetSpec,
    encoding: Encoding,
    rows: Mapping[str, int],
    unseen: Mapping[str, Mapping[str, int]],
    train_fraction: float,
    validation_fraction: float,
    seed: int,
) -> dict:
    """The schema.json Preprocess writes: what :func:`encoding_from_schema` reads back."""
    categories = dict(encoding.categories)
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
        "rows": {split: int(n) for split, n in rows.items()},
        "split": {
            "train_fraction": train_fraction,
            "validation_fraction": validation_fraction,
            "seed": seed,
            "stratified": False,
            "assignment": "keyed hash of the row's values",
        },
    }


def encoding_from_schema(document: object) -> Encoding:
    """The Encoding a schema.json describes; SchemaError naming the first thing that does not fit."""
    if not isinstance(document, dict):
        raise SchemaError("schema.json is not a JSON object")
    problem_type = document.get("problem_type")
    if problem_type not in PROBLEM_TYPES:
        raise SchemaError(f"schema.json: unknown problem_type {problem_type!r}")
    label = document.get("label")
    if not isinstance(label, dict) or not isinstance(label.get("name"), str):
        raise SchemaError("schema.json: 'label' has no name")
    classes = label.get("classes")
    if classes is not None and not (isinstance(classes, list) and len(classes) == 2):
        raise SchemaError("schema.json: label 'classes' is not a list of two values")
    features, categories = [], []
    entries = document.get("features")
    if not isinstance(entries, list) or not entries:
        raise SchemaError("schema.json: 'features' is not a non-empty list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SchemaError("schema.json: a feature has no name")
        name, ftype = entry["name"], entry.get("type")
        if ftype not in FEATURE_TYPES:
            raise SchemaError(f"schema.json: feature {name!r} has unknown type {ftype!r}")
        features.append((name, ftype))
        if ftype == "categorical":
            levels = entry.get("categories")
            if not isinstance(levels, list) or not all(isinstance(c, str) for c in levels):
                raise SchemaError(f"schema.json: feature {name!r} has no list of categories")
            categories.append((name, tuple(levels)))
    spec = DatasetSpec(
        label=label["name"],
        problem_type=problem_type,
        features=tuple(features),
        classes=tuple(str(c) for c in classes) if classes else None,
    )
    encoding = Encoding(spec=spec, categories=tuple(categories))
    if document.get("csv_columns") != [spec.label, *encoding.columns]:
        raise SchemaError("schema.json: 'csv_columns' does not follow from its features and categories")
    return encoding

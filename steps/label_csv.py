"""The label-first CSV that Preprocess writes and Train and Evaluate read: no header, the label, then the
encoded features; an empty cell is a missing value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


class LabelFirstError(ValueError):
    """A file or folder that is not label-first CSV; a one-line message, and ``source`` naming the file."""

    def __init__(self, message: str, source: str | None = None):
        super().__init__(message)
        self.source = source


def parse_label_first(raw: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Headerless label-first CSV cells (text, missing = NaN) -> (labels, features) as float64.

    ``what`` names the files in messages ("channel", "test")."""
    cells = raw.to_numpy(dtype=object)
    values = np.column_stack(
        [
            pd.to_numeric(pd.Series(cells[:, j], dtype=object), errors="coerce").to_numpy(dtype="float64")
            for j in range(cells.shape[1])
        ]
    )
    bad = pd.notna(cells) & ~np.isfinite(values)
    if bad[0].any():
        first = ", ".join([repr(str(v)) for v in cells[0, :4]] + (["..."] if cells.shape[1] > 4 else []))
        raise LabelFirstError(f"the first row looks like a header row ({first}): {what} CSVs have no header")
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise LabelFirstError(
            f"row {row + 1} column {col + 1} has non-numeric value {str(cells[row, col])!r}"
        )
    return split_label_first(values)


def split_label_first(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numeric label-first cells (missing = NaN) -> (labels, features), with the checks that need the
    numbers: a label and at least one feature, no missing label, no feature column missing throughout."""
    if values.shape[1] < 2:
        raise LabelFirstError(f"expected the label and at least one feature, found {values.shape[1]} column")
    labels, features = values[:, 0], values[:, 1:]
    problems = []
    if np.isnan(labels).any():
        problems.append(f"the label (column 1) is missing in {int(np.isnan(labels).sum())} row(s)")
    empty = [int(j) + 2 for j in np.flatnonzero(np.isnan(features).all(axis=0))]
    if empty:
        problems.append(f"feature column(s) {empty[:5]} have no values (all missing)")
    if problems:
        raise LabelFirstError("; ".join(problems))
    return labels, features


def _read_numbers(file: Path) -> np.ndarray | None:
    """The file's cells as float64 when every one is a finite number or empty; None otherwise, and
    the text path then finds and names the problem. pandas' own numeric parsing accepts what
    ``pd.to_numeric`` does and gives the same values, tens of times faster than parsing text
    cells, without holding a Python string per cell (gigabytes for a million encoded rows)."""
    try:
        values = pd.read_csv(file, header=None, dtype="float64", keep_default_na=False, na_values=[""])
    except ValueError:  # a header row, a non-number, ragged rows, an empty file: the text path says which
        return None
    values = values.to_numpy()
    return None if np.isinf(values).any() else values


def read_label_first(
    path: Path, what: str, check: Callable[[np.ndarray], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every ``*.csv`` of the folder ``path``, in name order, as one (labels, features) pair.

    ``check(labels)`` runs on each file's labels; a ValueError it raises is reported against that file.
    LabelFirstError carries the file in ``source`` when one file is at fault."""
    if not path.is_dir():
        raise LabelFirstError(f"{what} directory not found")
    files = sorted((p for p in path.iterdir() if p.suffix == ".csv" and p.is_file()), key=lambda p: p.name)
    if not files:
        raise LabelFirstError(f"no *.csv file in the {what} directory")
    parts = []
    for file in files:
        try:
            numbers = _read_numbers(file)
            if numbers is not None:
                labels, features = split_label_first(numbers)
            else:
                raw = pd.read_csv(file, header=None, dtype=str, keep_default_na=False, na_values=[""])
                labels, features = parse_label_first(raw, what)
            if check is not None:
                check(labels)
        except pd.errors.EmptyDataError:
            raise LabelFirstError("file is empty", source=str(file)) from None
        except pd.errors.ParserError as err:
            message = f"cannot parse CSV: {str(err).strip().splitlines()[-1]}"
            raise LabelFirstError(message, source=str(file)) from None
        except ValueError as err:
            raise LabelFirstError(str(err), source=str(file)) from None
        if parts and features.shape[1] != parts[0][1].shape[1]:
            raise LabelFirstError(
                f"has {features.shape[1]} feature columns but {files[0].name} has {parts[0][1].shape[1]}",
                source=str(file),
            )
        parts.append((labels, features))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

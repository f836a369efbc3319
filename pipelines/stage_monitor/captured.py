"""Captured requests as a table of features: SageMaker's capture files (JSON Lines, see
``pipelines.serving.capture``) to one DataFrame whose columns ``_c0.._cN`` are the request's CSV
columns, as Model Monitor names the columns of headerless CSV."""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from pipelines.errors import ConfigError

ENCODINGS = ("CSV", "JSON", "BASE64")


class CaptureError(ConfigError):
    """A capture file that is not SageMaker capture, or not of the model that is monitored."""

    exit_code = 1


def _fail(path: Path, line: int, field: str, problem: str) -> CaptureError:
    return CaptureError(f"capture file {path}, line {line}: {field} {problem}")


#: Reads one capture record (its JSON object) as Model Monitor's record preprocessor does: the CSV rows
#: of the encoded features, none for a request it skips.
RecordReader = Callable[[dict], list[str]]


def _rows_of(record: dict, path: Path, number: int, preprocess: RecordReader | None = None) -> list[str]:
    """The CSV rows of one record's request (a JSON request's rows written as CSV); with ``preprocess``,
    the rows the record preprocessor returns for it."""
    capture = record.get("captureData")
    if not isinstance(capture, dict):
        raise _fail(path, number, "captureData", "is missing; this is not SageMaker data capture")
    payload = capture.get("endpointInput")
    if not isinstance(payload, dict):
        raise _fail(
            path,
            number,
            "captureData.endpointInput",
            "is missing: capture the endpoint's input (CaptureMode Input)",
        )
    data, encoding = payload.get("data"), payload.get("encoding")
    if not isinstance(data, str):
        raise _fail(path, number, "captureData.endpointInput.data", "is missing or not text")
    if encoding not in ENCODINGS:
        raise _fail(
            path,
            number,
            "captureData.endpointInput.encoding",
            f"is {encoding!r}; expected one of {', '.join(ENCODINGS)}",
        )
    if preprocess is not None:
        return preprocess(record)
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _fail(
                path, number, "captureData.endpointInput.data", "is not base64 of UTF-8 text"
            ) from None
    media_type = str(payload.get("observedContentType", "")).split(";", 1)[0].strip().lower()
    if encoding == "JSON" or media_type == "application/json":
        return _json_rows(data, path, number)
    if media_type not in ("text/csv", ""):
        raise _fail(
            path,
            number,
            "captureData.endpointInput.observedContentType",
            f"is {media_type!r}; the monitors read text/csv or application/json",
        )
    return data.splitlines()


def _json_rows(text: str, path: Path, number: int) -> list[str]:
    try:
        document = json.loads(text)
    except ValueError:
        raise _fail(
            path, number, "captureData.endpointInput.data", "is not JSON although its encoding says so"
        ) from None
    rows = document.get("instances") if isinstance(document, dict) else document
    if isinstance(rows, list) and rows and all(not isinstance(r, list) for r in rows):
        rows = [rows]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise _fail(
            path, number, "captureData.endpointInput.data", 'is not {"instances": [[...]]} or a list of rows'
        )
    return [",".join("" if v is None else str(v) for v in row) for row in rows]


CHUNK_ROWS = 100_000  # rows parsed at a time: memory stays bounded whatever the capture's size


def iter_capture(
    files: Iterable[Path],
    num_features: int,
    chunk_rows: int = CHUNK_ROWS,
    preprocess: RecordReader | None = None,
) -> Iterator[pd.DataFrame]:
    """Every request row in ``files``, as DataFrames of at most ``chunk_rows`` rows and
    ``num_features`` columns ``_c0..``. With ``preprocess``, each record is read through it, as Model
    Monitor reads capture through the job's record preprocessor.

    Raises CaptureError naming the file, the line and the field for a line that is not JSON (a
    truncated file), a record that is not capture, or a row whose column count is not the model's
    (capture of another model)."""
    names = [f"_c{i}" for i in range(num_features)]
    rows: list[str] = []
    loads = json.loads
    commas = num_features - 1
    for path in files:
        try:
            with open(path, "rb") as handle:
                lines = handle.read().splitlines()
        except OSError as err:
            raise CaptureError(f"capture file {path}: cannot be read: {err.strerror}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = loads(line)
            except ValueError as err:
                raise _fail(
                    path, number, "the line", f"is not JSON ({err}): the file is truncated or not capture"
                ) from None
            if not isinstance(record, dict):
                raise _fail(path, number, "the line", "is not a JSON object")
            if record.get("eventVersion") != "0":
                version = record.get("eventVersion")
                raise _fail(path, number, "eventVersion", f'is {version!r}; SageMaker capture has "0"')
            for row in _rows_of(record, path, number, preprocess):
                if row.count(",") != commas:
                    raise _fail(
                        path, number, "captureData.endpointInput.data",
                        f"has {row.count(',') + 1} columns; the baseline has {num_features} features "
                        "(capture of another model?)",
                    )  # fmt: skip
                rows.append(row)
            if len(rows) >= chunk_rows:
                yield _parse(rows, names)
                rows = []
    if rows:
        yield _parse(rows, names)


def _parse(rows: list[str], names: list[str]) -> pd.DataFrame:
    # One pass of pandas' C parser over many rows: far cheaper than parsing record by record.
    return pd.read_csv(
        io.StringIO("\n".join(rows)),
        header=None,
        names=names,
        skip_blank_lines=False,
        na_values=[""],
        keep_default_na=False,
    )


def read_capture(files: Iterable[Path], num_features: int) -> pd.DataFrame:
    """Every request row in ``files`` as one DataFrame (see :func:`iter_capture`)."""
    chunks = list(iter_capture(files, num_features))
    if not chunks:
        return pd.DataFrame({f"_c{i}": pd.Series(dtype="float64") for i in range(num_features)})
    return pd.concat(chunks, ignore_index=True)

"""Serving handlers for the SageMaker XGBoost framework container (script mode): load
``xgboost-model.json`` and answer CSV or JSON rows of encoded features with one prediction per row.

Requests: ``text/csv`` (rows of numbers, no label, no header; an empty cell is a missing value) or
``application/json`` (``{"instances": [[...], ...]}``, a list of rows, or one flat row; null is missing).
Responses: ``text/csv`` (one value per line) or ``application/json`` (``{"predictions": [...]}``).
Every refusal is an :class:`InferenceError` with an HTTP-like ``status_code`` and a one-line message.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os

import numpy as np
import xgboost as xgb

MODEL_FILENAME = "xgboost-model.json"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's real-time invocation limit
CSV = "text/csv"
JSON = "application/json"
CONTENT_TYPES = (CSV, JSON)
ACCEPT_TYPES = (CSV, JSON)


class InferenceError(ValueError):
    """A request the model cannot answer; ``status_code`` is the HTTP status that fits it."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


def model_fn(model_dir: str) -> xgb.Booster:
    path = os.path.join(model_dir, MODEL_FILENAME)
    if not os.path.isfile(path):
        raise InferenceError(500, f"no {MODEL_FILENAME} in the model directory {model_dir}")
    booster = xgb.Booster()
    booster.load_model(path)
    return booster


def input_fn(request_body: str | bytes, request_content_type: str | None) -> np.ndarray:
    """Request body -> 2-D float64 array of feature rows (NaN = missing)."""
    media_type, params = _media_type(request_content_type)
    if media_type not in CONTENT_TYPES:
        raise InferenceError(
            415, f"unsupported content type {request_content_type!r} (supported: {', '.join(CONTENT_TYPES)})"
        )
    size = (
        len(request_body)
        if isinstance(request_body, (bytes, bytearray))
        else len(request_body.encode("utf-8"))
    )
    if size > MAX_PAYLOAD_BYTES:
        raise InferenceError(413, f"payload of {size} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    text = _decode(request_body, params.get("charset", "utf-8"))
    rows = _csv_rows(text) if media_type == CSV else _json_rows(text)
    return _to_array(rows)


def predict_fn(input_data: np.ndarray, model: xgb.Booster) -> np.ndarray:
    expected = model.num_features()
    if input_data.ndim != 2 or input_data.shape[1] != expected:
        got = input_data.shape[1] if input_data.ndim == 2 else f"an array of shape {input_data.shape}"
        raise InferenceError(400, f"each row must have {expected} features, got {got}")
    return model.predict(xgb.DMatrix(input_data)).reshape(-1)


def output_fn(prediction: np.ndarray, accept: str | None) -> str:
    media_type = _choose_accept(accept)
    values = [_number(v) for v in np.asarray(prediction).reshape(-1)]
    if media_type == JSON:
        return json.dumps({"predictions": values})
    return "".join(f"{'' if v is None else v}\n" for v in values)


# ---------------------------------------------------------------------------------------------- parsing


def _media_type(header: str | None) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in (header or "").split(";")]
    params = {}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return parts[0].lower(), params


def _decode(body: str | bytes, charset: str) -> str:
    if isinstance(body, str):
        return body
    try:
        codecs.lookup(charset)
    except LookupError:
        raise InferenceError(415, f"unsupported charset {charset!r}") from None
    try:
        return bytes(body).decode(charset)
    except UnicodeDecodeError as err:
        raise InferenceError(400, f"body is not valid {charset}: byte {err.start}") from None


def _csv_rows(text: str) -> list[list[float]]:
    rows = []
    try:
        for line_number, cells in enumerate(csv.reader(io.StringIO(text), strict=True), start=1):
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            rows.append([_csv_cell(cell, line_number, column) for column, cell in enumerate(cells, start=1)])
    except csv.Error as err:
        raise InferenceError(400, f"malformed CSV: {err}") from None
    return rows


def _csv_cell(cell: str, line: int, column: int) -> float:
    cell = cell.strip()
    if not cell:
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        hint = " (rows are numbers only: no header, no label)" if line == 1 else ""
        raise InferenceError(
            400, f"line {line} column {column}: {cell[:40]!r} is not a number{hint}"
        ) from None
    if math.isinf(value):
        raise InferenceError(400, f"line {line} column {column}: {cell!r} is not a finite number")
    return value


def _json_rows(text: str) -> list[list[float]]:
    try:
        document = json.loads(text)
    except ValueError as err:
        raise InferenceError(400, f"malformed JSON: {err}") from None
    rows = document.get("instances") if isinstance(document, dict) else document
    if not isinstance(rows, list):
        raise InferenceError(400, 'JSON body must be {"instances": [[...], ...]}, a list of rows, or one row')
    if rows and all(not isinstance(r, list) for r in rows):
        rows = [rows]  # one flat row
    result = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, list):
            raise InferenceError(400, f"row {i} is not a list of numbers")
        result.append([_json_value(v, i, j) for j, v in enumerate(row, start=1)])
    return result


def _json_value(value: object, row: int, column: int) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InferenceError(400, f"row {row} column {column}: {value!r} is not a number")
    if math.isinf(value):
        raise InferenceError(400, f"row {row} column {column}: {value!r} is not a finite number")
    return float(value)


def _to_array(rows: list[list[float]]) -> np.ndarray:
    if not rows:
        raise InferenceError(400, "no rows in the request")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        first = len(rows[0])
        bad = next(i for i, r in enumerate(rows, start=1) if len(r) != first)
        raise InferenceError(
            400, f"rows differ in length: row 1 has {first} values, row {bad} has {len(rows[bad - 1])}"
        )
    return np.asarray(rows, dtype="float64")


def _choose_accept(accept: str | None) -> str:
    """First supported media type in the Accept header; text/csv for none, */* or an empty header."""
    for entry in (accept or "").split(","):
        media_type, _ = _media_type(entry)
        if media_type in ("", "*/*", "text/*"):
            return CSV
        if media_type == "application/*":
            return JSON
        if media_type in ACCEPT_TYPES:
            return media_type
    raise InferenceError(406, f"unsupported accept type {accept!r} (supported: {', '.join(ACCEPT_TYPES)})")


def _number(value: float) -> float | None:
    # float32 predictions printed at their own precision: 0.1, not 0.10000000149011612.
    return None if math.isnan(value) else float(str(np.float32(value)))

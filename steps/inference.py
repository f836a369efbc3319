"""Serving handlers (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``) that the SageMaker XGBoost
container loads in script mode: CSV or JSON rows of encoded features in, one prediction per row out.

Requests: ``text/csv`` (rows of numbers, no label, no header; an empty cell is a missing value) or
``application/json`` (``{"instances": [[...], ...]}``, a list of rows, or one flat row; null is missing).
Responses: ``text/csv`` (one value per line) or ``application/json`` (``{"predictions": [...]}``).

Three habits of the container's ``sagemaker_inference`` toolkit shape this module:

- it sends the raw Accept header as the response Content-Type unless ``output_fn`` returns
  ``(body, content_type)``, so ``output_fn`` returns the type it actually chose;
- it replaces a missing or ``*/*`` Accept with ``application/json`` before ``output_fn`` sees it unless
  ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` is set, which is why the pipeline sets that variable to
  :data:`DEFAULT_ACCEPT` in the registered container;
- it keeps the HTTP status only of its own ``BaseInferenceToolkitError`` (anything else is a 500), so in
  the container :class:`InferenceError` derives from its ``GenericInferenceToolkitError``.
"""

from __future__ import annotations

import codecs
import csv
import http
import io
import json
import math
import os

import numpy as np
import xgboost as xgb

try:
    from sagemaker_inference import errors as _toolkit_errors
except ImportError:  # outside the serving container: tests and the local endpoint
    _toolkit_errors = None

MODEL_FILENAME = "xgboost-model.json"  # steps/train.py writes it; a test ties the two names together
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's real-time invocation limit
CSV = "text/csv"
JSON = "application/json"
CONTENT_TYPES = (CSV, JSON)
ACCEPT_TYPES = (CSV, JSON)
DEFAULT_ACCEPT = CSV  # the pipeline sets SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT to this
_ACCEPT_RANGES = {"*/*": DEFAULT_ACCEPT, "text/*": CSV, "application/*": JSON}


class _LocalToolkitError(Exception):
    """Outside the container: the attributes of the toolkit's GenericInferenceToolkitError, nothing more."""

    def __init__(self, status_code: int, message: str | None = None, phrase: str | None = None):
        self.status_code = status_code
        self.message = message or "Invalid Request"
        self.phrase = phrase or self.message
        super().__init__(status_code, self.message, self.phrase)


# A toolkit too old to have GenericInferenceToolkitError keeps no status codes at all; the local base
# then at least lets the module import.
_ErrorBase = getattr(_toolkit_errors, "GenericInferenceToolkitError", None) or _LocalToolkitError


class InferenceError(_ErrorBase, ValueError):
    """A request the model cannot answer: ``status_code`` is the HTTP status, ``message`` one line for
    the response body; the HTTP reason phrase is the standard one for the status."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message, http.HTTPStatus(status_code).phrase)

    def __str__(self) -> str:
        # The toolkit's base passes (status_code, message, phrase) as args; logs want the message.
        return self.message


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
    # inplace_predict skips building a DMatrix: the same values (NaN read as missing, as DMatrix
    # does), in well under half the time of a single-row request.
    return np.asarray(model.inplace_predict(input_data)).reshape(-1)


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[str, str]:
    """Predictions -> ``(body, media_type)``; the toolkit sends ``media_type`` as the Content-Type."""
    media_type = _choose_accept(accept)
    values = [_number(v) for v in np.asarray(prediction).reshape(-1)]
    if media_type == JSON:
        return json.dumps({"predictions": values}), JSON
    return "".join(f"{'' if v is None else v}\n" for v in values), CSV


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
    """The type for the first media range in the Accept header that we can answer, in header order.

    Parameters do not rank the ranges (the first one we support wins), except that ``q=0`` means
    "not this one". An empty or missing header means :data:`DEFAULT_ACCEPT`.
    """
    if not (accept or "").strip():
        return DEFAULT_ACCEPT
    for entry in accept.split(","):
        media_range, params = _media_type(entry)
        if not media_range or _refused(params.get("q")):
            continue
        chosen = _ACCEPT_RANGES.get(media_range, media_range)
        if chosen in ACCEPT_TYPES:
            return chosen
    raise InferenceError(
        406, f"no type in Accept {accept!r} can be answered (supported: {', '.join(ACCEPT_TYPES)})"
    )


def _refused(quality: str | None) -> bool:
    try:
        return quality is not None and float(quality) == 0
    except ValueError:
        return False  # a malformed q-value is ignored like any other parameter


def _number(value: float) -> float | None:
    # float32 predictions printed at their own precision: 0.1, not 0.10000000149011612.
    return None if math.isnan(value) else float(str(np.float32(value)))

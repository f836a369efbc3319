"""Serving handler for the SageMaker XGBoost container in script mode (``SAGEMAKER_PROGRAM``):
``model_fn`` loads the booster once, ``transform_fn`` answers one request.

Requests: ``text/csv`` (rows of numbers, no label, no header; an empty cell is a missing value) or
``application/json`` (``{"instances": [[...], ...]}``, a list of rows, or one flat row; null is missing).
Responses: ``text/csv`` (one value per line) or ``application/json`` (``{"predictions": [...]}``).
"""

# How the container calls this module (aws/sagemaker-xgboost-container src/sagemaker_xgboost_container/
# serving.py on aws/sagemaker-containers' Flask worker, sagemaker-containers 2.8.6 in that image):
# - every function of this module it calls is wrapped so that any exception becomes its ClientError, which
#   Flask answers with a 500 (_transformer.py Transformer.__init__, _functions.py error_wrapper); a request
#   the model cannot answer is therefore *returned* as a response carrying its 4xx status, never raised;
# - it refuses to start a module that defines transform_fn beside input_fn, predict_fn or output_fn
#   (serving.py _user_module_transformer), hence the other names of the three steps below;
# - a (body, content_type) tuple from transform_fn is sent as a 200 of that type; any other return value,
#   such as its worker Response, is sent as it is (_transformer.py Transformer.transform);
# - a missing or exactly ``*/*`` Accept is replaced by $SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, else by
#   application/json, and a missing Content-Type by application/json (_worker.py Request, _env.py
#   ServingEnv): the pipeline sets that variable to DEFAULT_ACCEPT in the registered container;
# - a body whose Content-Type is exactly text/csv or application/json arrives as text decoded from UTF-8,
#   any other as bytes (_worker.py Request.content).

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

try:  # in the serving container
    from sagemaker_containers.beta.framework.worker import Response as _WorkerResponse
except ImportError:  # tests and the local endpoint
    _WorkerResponse = None

MODEL_FILENAME = "xgboost-model.json"  # steps/train.py writes it; a test ties the two names together
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's real-time invocation limit
CSV = "text/csv"
JSON = "application/json"
TEXT = "text/plain"
CONTENT_TYPES = (CSV, JSON)
ACCEPT_TYPES = (CSV, JSON)
DEFAULT_ACCEPT = CSV  # the pipeline sets SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT to this
_ACCEPT_RANGES = {"*/*": DEFAULT_ACCEPT, "text/*": CSV, "application/*": JSON}


class InferenceError(ValueError):
    """A request the model cannot answer: ``status_code`` is the HTTP status, ``message`` one line for
    the response body."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.phrase = http.HTTPStatus(status_code).phrase


class LocalResponse:
    """Outside the container, what :func:`transform_fn` returns for a refused request: the part of the
    worker's (werkzeug) Response that a server reads, ``status_code``, ``headers`` and ``get_data()``."""

    __slots__ = ("status_code", "mimetype", "_data")

    def __init__(self, response: str, status: int, mimetype: str):
        self.status_code = status
        self.mimetype = mimetype
        self._data = response.encode("utf-8")

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": f"{self.mimetype}; charset=utf-8"}  # werkzeug's rule for text/* types

    def get_data(self) -> bytes:
        return self._data


def model_fn(model_dir: str) -> xgb.Booster:
    path = os.path.join(model_dir, MODEL_FILENAME)
    if not os.path.isfile(path):
        raise InferenceError(500, f"no {MODEL_FILENAME} in the model directory {model_dir}")
    booster = xgb.Booster()
    booster.load_model(path)
    return booster


def transform_fn(model: xgb.Booster, request_body: str | bytes, content_type: str, accept: str):
    """One request -> ``(body, media_type)``, or, for a request the model cannot answer, a response with
    its 4xx status and a one-line message. Any exception raised here is a 500 in the container."""
    try:
        rows = parse_request(request_body, content_type)
        media_type = choose_accept(accept)
        return format_predictions(predict(model, rows), media_type), media_type
    except InferenceError as err:
        return error_response(err.status_code, err.message)


def error_response(status: int, message: str):
    """A plain-text response with ``status``: the container's worker Response there, else a LocalResponse."""
    if _WorkerResponse is not None:
        return _WorkerResponse(response=message, status=status, mimetype=TEXT)
    return LocalResponse(message, status, TEXT)


def parse_request(request_body: str | bytes, request_content_type: str | None) -> np.ndarray:
    """Request body -> 2-D float64 array of feature rows (NaN = missing)."""
    media_type, params = _media_type(request_content_type)
    if media_type not in CONTENT_TYPES:
        raise InferenceError(
            415, f"unsupported content type {request_content_type!r} (supported: {', '.join(CONTENT_TYPES)})"
        )
    if isinstance(request_body, (bytes, bytearray)) or request_body.isascii():
        size = len(request_body)  # isascii() is a flag check: most bodies are not encoded again here
    else:
        size = len(request_body.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise InferenceError(413, f"payload of {size} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    text = _decode(request_body, params.get("charset", "utf-8"))
    rows = _csv_rows(text) if media_type == CSV else _json_rows(text)
    return _to_array(rows)


def predict(model: xgb.Booster, input_data: np.ndarray) -> np.ndarray:
    expected = model.num_features()
    if input_data.ndim != 2 or input_data.shape[1] != expected:
        got = input_data.shape[1] if input_data.ndim == 2 else f"an array of shape {input_data.shape}"
        raise InferenceError(400, f"each row must have {expected} features, got {got}")
    # inplace_predict skips building a DMatrix: the same values (NaN read as missing, as DMatrix
    # does), in well under half the time of a single-row request.
    return np.asarray(model.inplace_predict(input_data)).reshape(-1)


def format_predictions(prediction: np.ndarray, media_type: str) -> str:
    """Predictions -> the response body in ``media_type`` (one of :data:`ACCEPT_TYPES`)."""
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
    except RecursionError:
        # json.loads recurses once per nesting level: '[' * 100_000 would otherwise be a 500.
        raise InferenceError(400, "malformed JSON: nested too deeply") from None
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


def choose_accept(accept: str | None) -> str:
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

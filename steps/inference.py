"""Serving handler for the SageMaker XGBoost container in script mode (``SAGEMAKER_PROGRAM``):
``model_fn`` loads the booster and its encoding once, ``transform_fn`` answers one request.

Requests are raw records in the dataset spec's columns (CSV with or without a header row, JSON records)
or the encoded rows Preprocess writes; docs/serving.md has the formats and how the two are told apart.
Responses: ``text/csv`` (one value per line) or ``application/json`` (``{"predictions": [...]}``).
"""

# Why the encoding travels inside model.tar.gz and not as the first container of an inference pipeline:
# the XGBoost container in script mode extracts the model artifact into the directory model_fn receives
# (SM_MODEL_DIR, /opt/ml/model; sagemaker_containers _env.py ServingEnv.model_dir) and every training
# job, tuning trials included, tars /opt/ml/model into its model.tar.gz, so train.py copying schema.json
# there makes one artifact that SageMaker serves, batch-transforms and registers as it is, with one
# container and one image. A preprocessing container in front would be a second image and model per
# version, a hop per request, and a model package of two containers (the local registry takes one).
# The handler's own code (this module and steps/encoding.py) travels in sourcedir.tar.gz
# (SAGEMAKER_SUBMIT_DIRECTORY), which sagemaker_containers _modules.import_module extracts into
# /opt/ml/code and pip-installs with a generated setup.py (packages=[''], MANIFEST.in
# "recursive-include . *"), so steps/encoding.py is installed beside inference.py.
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
import difflib
import http
import io
import json
import math
import os
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from steps.encoding import (
    SCHEMA_FILENAME,
    Encoding,
    encode_matrix,
    encoding_from_schema,
    missing_to_nan,
    typed_columns,
)

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


@dataclass(frozen=True)
class Model:
    """What model_fn loads: the booster, and the encoding of raw records (None for a model version
    trained without schema.json, which takes encoded rows only)."""

    booster: xgb.Booster
    encoding: Encoding | None


def model_fn(model_dir: str) -> Model:
    path = os.path.join(model_dir, MODEL_FILENAME)
    if not os.path.isfile(path):
        raise InferenceError(500, f"no {MODEL_FILENAME} in the model directory {model_dir}")
    booster = xgb.Booster()
    booster.load_model(path)
    schema_path = os.path.join(model_dir, SCHEMA_FILENAME)
    if not os.path.isfile(schema_path):
        return Model(booster, None)
    # A schema that does not describe this booster is a broken artifact: refuse to serve it at all.
    try:
        with open(schema_path, encoding="utf-8") as handle:
            encoding = encoding_from_schema(json.load(handle))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InferenceError(500, f"{SCHEMA_FILENAME} in {model_dir} cannot be read: {err}") from None
    if len(encoding.columns) != booster.num_features():
        raise InferenceError(
            500,
            f"{SCHEMA_FILENAME} in {model_dir} describes {len(encoding.columns)} encoded features, "
            f"the model takes {booster.num_features()}",
        )
    return Model(booster, encoding)


def transform_fn(model: Model, request_body: str | bytes, content_type: str, accept: str):
    """One request -> ``(body, media_type)``, or, for a request the model cannot answer, a response with
    its 4xx status and a one-line message. Any exception raised here is a 500 in the container."""
    try:
        rows = parse_request(request_body, content_type, model.encoding)
        media_type = choose_accept(accept)
        return format_predictions(predict(model, rows), media_type), media_type
    except InferenceError as err:
        return error_response(err.status_code, err.message)


def error_response(status: int, message: str):
    """A plain-text response with ``status``: the container's worker Response there, else a LocalResponse."""
    if _WorkerResponse is not None:
        return _WorkerResponse(response=message, status=status, mimetype=TEXT)
    return LocalResponse(message, status, TEXT)


def parse_request(
    request_body: str | bytes, request_content_type: str | None, encoding: Encoding | None = None
) -> np.ndarray:
    """Request body -> 2-D float64 array of encoded feature rows (NaN = missing). With ``encoding``,
    raw records are accepted too and encoded as Preprocess encoded the training data."""
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
    if media_type == CSV:
        return _csv_request(text, encoding)
    return _json_request(text, encoding)


def predict(model: Model, input_data: np.ndarray) -> np.ndarray:
    booster = model.booster
    expected = booster.num_features()
    if input_data.ndim != 2 or input_data.shape[1] != expected:
        got = input_data.shape[1] if input_data.ndim == 2 else f"an array of shape {input_data.shape}"
        raise InferenceError(400, f"each row must have {expected} features, got {got}")
    # inplace_predict skips building a DMatrix: the same values (NaN read as missing, as DMatrix
    # does), in well under half the time of a single-row request.
    return np.asarray(booster.inplace_predict(input_data)).reshape(-1)


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


def _csv_cells(text: str) -> tuple[list[list[str]], list[int]]:
    """The rows of cells, blank lines left out, and the line number of each (for messages)."""
    rows, lines = [], []
    try:
        for line_number, cells in enumerate(csv.reader(io.StringIO(text), strict=True), start=1):
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            rows.append(cells)
            lines.append(line_number)
    except csv.Error as err:
        raise InferenceError(400, f"malformed CSV: {err}") from None
    return rows, lines


def _csv_request(text: str, encoding: Encoding | None) -> np.ndarray:
    """CSV rows: raw records (with or without a header row) or encoded rows, told apart by the header
    row, else by the number of values per row, which differs between the two unless every categorical
    feature has one category; that case needs the header row."""
    rows, lines = _csv_cells(text)
    if encoding is None or not rows:
        return _to_array(_csv_numbers(rows, lines, _NO_SCHEMA_CSV))
    names = encoding.spec.feature_names
    order = _header_order(rows[0], encoding)
    if order is not None:
        if len(rows) == 1:
            raise InferenceError(400, "no rows after the header row")
        return _raw_csv(rows[1:], lines[1:], order, encoding, header=True)
    width, raw_width, encoded_width = len(rows[0]), len(names), len(encoding.columns)
    if width == encoded_width and (raw_width != encoded_width or encoding.is_identity):
        return _to_array(_csv_numbers(rows, lines))
    if width == raw_width == encoded_width:
        raise InferenceError(
            400,
            f"rows of {width} values could be raw records or encoded rows for this model: start the "
            f"request with the header row ({','.join(names[:3])},...) or send JSON records",
        )
    if width == raw_width:
        return _raw_csv(rows, lines, list(range(raw_width)), encoding, header=False)
    label = encoding.spec.label
    hint = f" (drop the label {label!r})" if width == raw_width + 1 else ""
    raise InferenceError(
        400,
        f"line 1 has {width} values: a raw record has {raw_width} ({_shown(names)}; no label), "
        f"an encoded row {encoded_width}{hint}",
    )


def _header_order(cells: list[str], encoding: Encoding) -> list[int] | None:
    """The position of each feature in the header row ``cells``, or None when ``cells`` is not a header
    row (it names no column of the dataset spec); InferenceError when it is one that does not match."""
    spec = encoding.spec
    features = spec.feature_types
    if not any(cell in features or cell == spec.label for cell in cells):
        return None
    problem = _column_problem(cells, features, spec.label, "the header row", missing="an empty cell")
    if problem:
        raise InferenceError(400, problem)
    return [cells.index(name) for name in features]


def _column_problem(
    columns: Collection[str], features: Mapping[str, str], label: str, where: str, missing: str
) -> str | None:
    """What is wrong with the columns that a header row or a JSON record names, or None when they are the
    features, each once; ``where`` names the row or record, ``missing`` how it writes a missing value."""
    if len(columns) == len(features) and all(name in columns for name in features):
        return None  # every feature, so nothing else and none twice: the common case, checked per record
    if len(set(columns)) < len(columns):
        repeated = sorted(name for name, count in Counter(columns).items() if count > 1)
        return f"{where} names {_shown(repeated)} more than once: name each feature once"
    if label in columns:
        return f"{where} names the label {label!r}: send the features only"
    unknown = [name for name in columns if name not in features]
    if unknown:
        return f"{where} names unknown column(s) {_shown(unknown)}{_did_you_mean(unknown, tuple(features))}"
    absent = [name for name in features if name not in columns]
    if absent:
        return f"{where} lacks {_shown(absent)}: name every feature, {missing} for a missing value"
    return None


def _raw_csv(
    rows: list[list[str]], lines: list[int], order: list[int], encoding: Encoding, header: bool
) -> np.ndarray:
    names = encoding.spec.feature_names
    width = len(order)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise InferenceError(
                400, f"line {lines[index]} has {len(row)} values, expected {width} (one per feature)"
            )
    columns = {
        name: missing_to_nan([row[position] for row in rows])
        for name, position in zip(names, order, strict=True)
    }
    typed, bad = typed_columns(columns, encoding.spec)
    if bad:
        name, index = _first_bad(bad, names)
        cell = rows[index][order[names.index(name)]]
        hint = ""
        if not header and index == 0:
            hint = f" (a header row names the dataset spec's features: {_shown(names)})"
        raise InferenceError(400, f"line {lines[index]} column {name!r}: {cell[:40]!r} is not a number{hint}")
    return encode_matrix(typed, encoding)


def _first_bad(bad: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple[str, int]:
    """The feature and row of the first bad cell, reading row by row."""
    return min(
        ((name, int(np.flatnonzero(mask)[0])) for name, mask in bad.items()),
        key=lambda found: (found[1], names.index(found[0])),
    )


def _csv_numbers(rows: list[list[str]], lines: list[int], hint: str = "") -> list[list[float]]:
    return [
        [_csv_cell(cell, line_number, column, hint) for column, cell in enumerate(cells, start=1)]
        for line_number, cells in zip(lines, rows, strict=True)
    ]


def _csv_cell(cell: str, line: int, column: int, hint: str) -> float:
    cell = cell.strip()
    if not cell:
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        hint = f" ({hint})" if line == 1 and hint else ""
        raise InferenceError(
            400, f"line {line} column {column}: {cell[:40]!r} is not a number{hint}"
        ) from None
    if math.isinf(value):
        raise InferenceError(400, f"line {line} column {column}: {cell!r} is not a finite number")
    return value


def _json_request(text: str, encoding: Encoding | None) -> np.ndarray:
    try:
        document = json.loads(text)
    except ValueError as err:
        raise InferenceError(400, f"malformed JSON: {err}") from None
    except RecursionError:
        # json.loads recurses once per nesting level: '[' * 100_000 would otherwise be a 500.
        raise InferenceError(400, "malformed JSON: nested too deeply") from None
    if isinstance(document, dict) and "instances" in document:
        rows = document["instances"]
    elif isinstance(document, dict) and encoding is not None:
        rows = [document]  # one record
    else:
        rows = document
    if not isinstance(rows, list):
        records = (
            " (or records: objects keyed by column name)"
            if encoding is not None
            else f"; records (objects keyed by column name) need a model version with {SCHEMA_FILENAME}"
        )
        raise InferenceError(
            400, f'JSON body must be {{"instances": [[...], ...]}}, a list of rows, or one row{records}'
        )
    records = [isinstance(row, dict) for row in rows]
    if rows and all(records):
        if encoding is None:
            raise InferenceError(400, _NO_SCHEMA)
        return _json_records(rows, encoding)
    if any(records):
        raise InferenceError(400, "the rows mix records (objects) with other values: send one kind")
    return _to_array(_json_rows(rows))


_NO_SCHEMA_CSV = (
    f"rows are numbers only: no header, no label; raw records need a model version with {SCHEMA_FILENAME}"
)
_NO_SCHEMA = (
    f"this model version carries no {SCHEMA_FILENAME} (trained before raw records were served), so it "
    "takes encoded rows only: send those, or deploy a version trained since"
)


def _json_rows(rows: list) -> list[list[float]]:
    if rows and all(not isinstance(r, list) for r in rows):
        rows = [rows]  # one flat row
    result = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, list):
            raise InferenceError(400, f"row {i} is not a list of numbers")
        result.append([_json_value(v, i, j) for j, v in enumerate(row, start=1)])
    return result


def _json_records(records: list[dict], encoding: Encoding) -> np.ndarray:
    spec = encoding.spec
    names = spec.feature_names
    types = spec.feature_types
    columns: dict[str, list] = {name: [] for name in names}
    for i, record in enumerate(records, start=1):
        problem = _column_problem(record, types, spec.label, f"record {i}", missing="null")
        if problem:
            raise InferenceError(400, problem)
        for name in names:
            columns[name].append(_record_value(record[name], types[name], i, name))
    typed, _ = typed_columns({name: missing_to_nan(cells) for name, cells in columns.items()}, spec)
    return encode_matrix(typed, encoding)


def _record_value(value: object, ftype: str, record: int, name: str) -> object:
    if value is None:
        return None
    if ftype == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InferenceError(400, f"record {record} {name!r}: {_clip(value)} is not a number")
        if math.isinf(value):
            raise InferenceError(400, f"record {record} {name!r}: {value!r} is not a finite number")
        return float(value)
    # Training read categories as text, so an integer category such as 415 is its digits.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InferenceError(400, f"record {record} {name!r}: {_clip(value)} is not a category (a string)")


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shown(names) -> str:
    names = list(names)
    text = ", ".join(repr(n) for n in names[:5])
    return text + (f", ... {len(names) - 5} more" if len(names) > 5 else "")


def _did_you_mean(unknown: list[str], names: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(unknown[0]), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; the features are {_shown(names)}"


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

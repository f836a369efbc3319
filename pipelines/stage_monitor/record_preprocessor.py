"""Model Monitor's record preprocessor for a model version that serves raw records: one captured request
to the encoded feature rows the data-quality baseline holds. ``preprocessor.render`` fills in SCHEMA.

Standard library only: the analyzer image's Python packages are not documented.
"""

# The contract, from the AWS guide "Preprocessing and Postprocessing" for Model Monitor
# (docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-pre-and-post-processing.html;
# awsdocs/amazon-sagemaker-developer-guide doc_source/model-monitor-pre-and-post-processing.md):
# - the analyzer calls ``preprocess_handler(inference_record)`` once per captured record (the current
#   guide adds an optional ``logger`` argument, hence the default);
# - ``inference_record.endpoint_input`` is an EventData with ``data``, ``encoding`` (CSV, JSON or BASE64)
#   and ``observedContentType`` (the guide's class spells it in camel case);
# - it returns flattened JSON: a dict of one row, or a list of such dicts, one per row of the request; an
#   empty list contributes no row (the guide's custom-sampling example drops records that way).
# Keys are the names Model Monitor gives the columns of a headerless CSV (``_c0``, ``_c1``, ...): the
# baseline was computed on Preprocess's headerless features/ files, so the columns line up by name.
# What the analyzer does when the handler raises is not documented: a request that cannot be read is
# logged and skipped (an empty list) rather than risk failing the whole monitoring job.

import base64
import csv
import io
import json
import math

SCHEMA = None  # replaced with the version's encoding (label, features, categories) at deploy time

MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "NULL", "null")  # steps/encoding.py MISSING_TOKENS


class Unreadable(ValueError):
    """A captured request the endpoint could not have scored; the message says why."""


def preprocess_handler(inference_record, logger=None):
    try:
        return [_flatten(row) for row in encoded_rows(inference_record.endpoint_input)]
    except Unreadable as err:
        event = getattr(getattr(inference_record, "event_metadata", None), "event_id", None)
        message = f"record preprocessor: skipped captured request {event}: {err}"
        if logger is not None:
            logger.warning(message)
        else:
            print(message)
        return []


def _flatten(row):
    return {f"_c{i}": value for i, value in enumerate(row)}


def columns():
    """The encoded column names, in the order Preprocess writes them after the label."""
    names = []
    for feature in SCHEMA["features"]:
        if feature["type"] == "numeric":
            names.append(feature["name"])
        else:
            names.extend(f"{feature['name']}={c}" for c in feature["categories"])
    return names


def encoded_rows(endpoint_input):
    """The request's rows as the model scored them: a float (None when missing) per numeric column,
    0 or 1 per category indicator (passed-through encoded rows: their numbers)."""
    if endpoint_input is None:
        raise Unreadable("the record holds no endpoint input")
    data, encoding = endpoint_input.data, endpoint_input.encoding
    content_type = getattr(endpoint_input, "observedContentType", None)
    if content_type is None:
        content_type = getattr(endpoint_input, "observed_content_type", None)
    media_type = str(content_type or "").split(";", 1)[0].strip().lower()
    if not isinstance(data, str):
        raise Unreadable("the endpoint input holds no data")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise Unreadable("BASE64 data that is not base64 of UTF-8 text") from None
    if encoding == "JSON" or media_type == "application/json":
        return _json_request(data)
    if media_type not in ("text/csv", ""):
        raise Unreadable(f"content type {media_type!r} (the endpoint reads text/csv and application/json)")
    return _csv_request(data)


# ------------------------------------------------------------------------------------------------ CSV


def _csv_request(text):
    try:
        rows = [
            cells
            for cells in csv.reader(io.StringIO(text), strict=True)
            if cells and not (len(cells) == 1 and not cells[0].strip())
        ]
    except csv.Error as err:
        raise Unreadable(f"malformed CSV: {err}") from None
    if not rows:
        raise Unreadable("no rows")
    names = [f["name"] for f in SCHEMA["features"]]
    encoded = columns()
    identity = all(f["type"] == "numeric" for f in SCHEMA["features"])
    header = rows[0]
    if any(cell in names or cell == SCHEMA["label"] for cell in header):
        if sorted(header) != sorted(names) or len(set(header)) != len(header):
            raise Unreadable("a header row that does not name each feature once (and not the label)")
        order = [header.index(name) for name in names]
        if len(rows) == 1:
            raise Unreadable("no rows after the header row")
        return [_raw([row[i] for i in order]) for row in _same_width(rows[1:], len(names))]
    width = len(header)
    if width == len(encoded) and (len(names) != len(encoded) or identity):
        return [[_number(cell, csv_cell=True) for cell in row] for row in _same_width(rows, width)]
    if width == len(names) and width != len(encoded):
        return [_raw(row) for row in _same_width(rows, width)]
    raise Unreadable(f"rows of {width} values (a raw record has {len(names)}, an encoded row {len(encoded)})")


def _same_width(rows, width):
    for row in rows:
        if len(row) != width:
            raise Unreadable(f"a row of {len(row)} values among rows of {width}")
    return rows


def _raw(cells):
    """Raw CSV cells in feature order -> the encoded row."""
    values = []
    for feature, cell in zip(SCHEMA["features"], cells, strict=True):
        missing = cell in MISSING_TOKENS
        if feature["type"] == "numeric":
            if not missing and not cell.strip():
                raise Unreadable(f"{cell!r} is not a number")  # only the missing tokens are missing
            values.append(None if missing else _number(cell, csv_cell=True))
        else:
            values.extend(_indicators(feature, None if missing else cell))
    return values


def _number(cell, csv_cell):
    if cell is None:
        return None
    if csv_cell:
        cell = cell.strip()
        if not cell:
            return None
        try:
            value = float(cell)
        except ValueError:
            raise Unreadable(f"{cell[:40]!r} is not a number") from None
    else:
        if isinstance(cell, bool) or not isinstance(cell, (int, float)):
            raise Unreadable(f"{str(cell)[:40]!r} is not a number")
        value = float(cell)
    if math.isinf(value):
        raise Unreadable(f"{cell!r} is not a finite number")
    return None if math.isnan(value) else value


def _indicators(feature, category):
    # An unseen or missing category: every indicator 0, as steps/encoding.py encodes it.
    return [1 if category == level else 0 for level in feature["categories"]]


# ----------------------------------------------------------------------------------------------- JSON


def _json_request(text):
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise Unreadable("malformed JSON") from None
    if isinstance(document, dict) and "instances" in document:
        rows = document["instances"]
    elif isinstance(document, dict):
        rows = [document]
    else:
        rows = document
    if not isinstance(rows, list) or not rows:
        raise Unreadable("JSON that is not rows or records")
    if all(isinstance(row, dict) for row in rows):
        return [_record(row) for row in rows]
    if any(isinstance(row, dict) for row in rows):
        raise Unreadable("records mixed with other rows")
    if all(not isinstance(row, list) for row in rows):
        rows = [rows]
    width = len(columns())
    result = []
    for row in rows:
        if not isinstance(row, list) or len(row) != width:
            raise Unreadable(f"a row that is not a list of {width} numbers")
        result.append([_number(value, csv_cell=False) for value in row])
    return result


def _record(record):
    names = {f["name"] for f in SCHEMA["features"]}
    if SCHEMA["label"] in record or set(record) != names:
        raise Unreadable("a record that does not name each feature (and not the label)")
    values = []
    for feature in SCHEMA["features"]:
        value = record[feature["name"]]
        if feature["type"] == "numeric":
            values.append(_number(value, csv_cell=False))
            continue
        if isinstance(value, str) and value in MISSING_TOKENS:
            value = None  # as the handler reads a record's category (steps/encoding.py missing_to_nan)
        elif isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # training read categories as text
        elif value is not None and not isinstance(value, str):
            raise Unreadable(f"{feature['name']!r}: {str(value)[:40]!r} is not a category")
        values.extend(_indicators(feature, value))
    return values

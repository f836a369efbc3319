"""The record preprocessor of a model version: ``record_preprocessor.py`` with the version's schema.json
written into it, one file that Model Monitor (on AWS) and ``monitor run`` (locally) both load."""

from __future__ import annotations

import json
import tarfile
import types
from pathlib import Path
from typing import IO

from steps.encoding import SCHEMA_FILENAME, encoding_from_schema

TEMPLATE = Path(__file__).with_name("record_preprocessor.py")
SCRIPT_NAME = "record_preprocessor.py"
_PLACEHOLDER = (
    "SCHEMA = None  # replaced with the version's encoding (label, features, categories) at deploy time\n"
)


def render(schema: object) -> str:
    """The script for the version whose schema.json is ``schema``: the same bytes for the same schema.
    Raises steps.encoding.SchemaError for a schema.json Preprocess would not write."""
    encoding = encoding_from_schema(schema)
    categories = dict(encoding.categories)
    embedded = {
        "label": encoding.spec.label,
        "features": [
            {
                "name": name,
                "type": ftype,
                **({"categories": list(categories[name])} if ftype == "categorical" else {}),
            }
            for name, ftype in encoding.spec.features
        ],
    }
    template = TEMPLATE.read_text(encoding="utf-8")
    if template.count(_PLACEHOLDER) != 1:
        raise RuntimeError(f"{TEMPLATE} lost its SCHEMA placeholder line")
    text = json.dumps(embedded, sort_keys=True, ensure_ascii=True)
    return template.replace(_PLACEHOLDER, f"SCHEMA = json.loads({text!r})\n")


def load(script: str) -> types.ModuleType:
    """The script as a module of its own, as the analyzer loads it from S3."""
    module = types.ModuleType("record_preprocessor")
    exec(compile(script, SCRIPT_NAME, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    return module


def schema_from_artifact(archive: IO[bytes]) -> dict | None:
    """schema.json from a model.tar.gz, or None for a version trained without it. Raises OSError or
    ValueError (one line) for an archive or schema.json that cannot be read."""
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            member = next((m for m in tar.getmembers() if m.name.removeprefix("./") == SCHEMA_FILENAME), None)
            if member is None or not member.isfile():
                return None
            data = tar.extractfile(member).read()
    except tarfile.TarError:
        # tarfile's own message lists every compression it tried, one line each.
        raise ValueError("not a tar archive (gzip, bzip2, xz or plain)") from None
    try:
        return json.loads(data)
    except ValueError as err:
        raise ValueError(f"its {SCHEMA_FILENAME} is not JSON: {err}") from None


class EventData:
    """One side of a captured request, with the attribute names of Model Monitor's EventData (the AWS
    guide "Preprocessing and Postprocessing" prints the class)."""

    def __init__(self, data: dict):
        self.encoding = data.get("encoding")
        self.data = data.get("data")
        self.observedContentType = data.get("observedContentType")  # noqa: N815 - the guide's spelling
        self.mode = data.get("mode")


class EventMetadata:
    def __init__(self, metadata: dict):
        self.event_id = metadata.get("eventId")
        self.event_time = metadata.get("inferenceTime")


class CapturedData:
    """The ``inference_record`` Model Monitor passes to ``preprocess_handler``: a capture line's object."""

    def __init__(self, event: dict):
        capture = event.get("captureData") or {}
        self.event_dict = event
        self.event_version = event.get("eventVersion")
        self.event_metadata = EventMetadata(event["eventMetadata"]) if "eventMetadata" in event else None
        self.endpoint_input = EventData(capture["endpointInput"]) if "endpointInput" in capture else None
        self.endpoint_output = EventData(capture["endpointOutput"]) if "endpointOutput" in capture else None


class LocalReader:
    """Capture records through a version's record preprocessor, as the analyzer reads them: each record's
    rows as CSV lines of ``_c0..`` in order; ``skipped`` counts the records it returned no rows for."""

    def __init__(self, script: str):
        self.module = load(script)
        self.skipped = 0
        self.messages: list[str] = []

    def __call__(self, record: dict) -> list[str]:
        returned = self.module.preprocess_handler(CapturedData(record), self)
        rows = [returned] if isinstance(returned, dict) else list(returned)
        if not rows:
            self.skipped += 1
        return [",".join("" if v is None else repr(v) for v in _ordered(row)) for row in rows]

    def warning(self, message: str) -> None:  # the handler's logger
        self.messages.append(message)


def _ordered(row: dict) -> list:
    return [row[f"_c{i}"] for i in range(len(row))]

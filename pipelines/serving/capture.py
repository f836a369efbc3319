"""Data capture for the local endpoint: sampled requests and responses as SageMaker writes them, so
that the monitors read local capture exactly as they read an endpoint's capture in S3.

Format and layout follow SageMaker's "Capture data from real-time endpoint" guide
(docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html): JSON Lines, one
record per invocation, under ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/`` (UTC):

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "1,2,3", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "0.1", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-11-30T13:00:00Z"},
     "eventVersion": "0"}

A body whose content type is listed in CaptureContentTypeHeader is kept as text (``CSV`` / ``JSON``);
any other is base64 (``BASE64``), as DataCaptureConfig's API reference says for unlisted types.

Nothing is written on the request path: :meth:`CaptureWriter.record` samples and queues, and one
thread turns the queue into files. Each file is written under a ``.tmp-`` name and renamed whole, so
a reader sees complete files only (SageMaker likewise uploads whole files).
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment of the endpoint's server process (set by the local deployer from the stage config).
DIR_ENV = "MLOPS_CAPTURE_DIR"
PERCENT_ENV = "MLOPS_CAPTURE_PERCENT"
#: What the stage's endpoint config lists in CaptureContentTypeHeader (pipelines/promotion/aws.py).
CSV_CONTENT_TYPES = ("text/csv",)
JSON_CONTENT_TYPES = ("application/json",)
FLUSH_INTERVAL_S = 1.0  # how long a record may wait in memory before it is in a file
MAX_QUEUED = 200_000  # beyond this, records are dropped (and counted) rather than memory grown
TMP_PREFIX = ".tmp-"  # the local object store's "upload in progress" prefix: listings skip it


def encoding_for(content_type: str | None) -> str:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in CSV_CONTENT_TYPES:
        return "CSV"
    if media_type in JSON_CONTENT_TYPES:
        return "JSON"
    return "BASE64"


def _payload(body: bytes, content_type: str | None, mode: str) -> dict:
    encoding = encoding_for(content_type)
    if encoding == "BASE64":
        data = base64.b64encode(body).decode("ascii")
    else:
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding, data = "BASE64", base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


def capture_record(
    when: float,
    event_id: str,
    request: bytes,
    request_type: str | None,
    response: bytes,
    response_type: str | None,
) -> dict:
    """One capture record, as SageMaker writes it, for an invocation at ``when`` (epoch seconds)."""
    stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "captureData": {
            "endpointInput": _payload(request, request_type, "INPUT"),
            "endpointOutput": _payload(response, response_type, "OUTPUT"),
        },
        "eventMetadata": {"eventId": event_id, "inferenceTime": stamp},
        "eventVersion": "0",
    }


def hour_folder(when: float) -> str:
    """``yyyy/mm/dd/hh`` (UTC) of ``when``: the folder SageMaker files a record in."""
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y/%m/%d/%H")


def file_name(when: float) -> str:
    """``MM-SS-mmm-<uuid>.jsonl`` as SageMaker names capture files: sorted names are in time order."""
    moment = datetime.fromtimestamp(when, timezone.utc)
    return f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"


class CaptureWriter:
    """Samples invocations at ``percent`` and writes them under ``directory`` from its own thread."""

    def __init__(self, directory: Path, percent: int, flush_interval: float = FLUSH_INTERVAL_S):
        self.directory = Path(directory)
        self.percent = percent
        self.flush_interval = flush_interval
        self.dropped = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def record(self, request: bytes, request_type: str | None, response: bytes, response_type: str | None):
        """Queue one invocation if the sample takes it; cheap enough for the request path."""
        if self.percent < 100 and random.random() * 100 >= self.percent:  # noqa: S311 - sampling only
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.put((time.time(), request, request_type, response, response_type))

    def close(self) -> None:
        """Write what is queued and stop the thread (at exit, or when the endpoint stops)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.flush_interval)
            self._flush()
        self._flush()

    def _flush(self) -> None:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not items:
            return
        by_hour: dict[str, list[str]] = {}
        first: dict[str, float] = {}
        for when, request, request_type, response, response_type in items:
            folder = hour_folder(when)
            record = capture_record(when, str(uuid.uuid4()), request, request_type, response, response_type)
            by_hour.setdefault(folder, []).append(json.dumps(record, separators=(",", ":")))
            first.setdefault(folder, when)
        for folder, lines in by_hour.items():
            try:
                self._write(self.directory / folder, file_name(first[folder]), lines)
            except OSError as err:
                # Capture never fails an invocation (SageMaker stops capturing instead); say so in the log.
                self.dropped += len(lines)
                log.error("data capture: cannot write %d records under %s: %s", len(lines), folder, err)

    @staticmethod
    def _write(folder: Path, name: str, lines: list[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{TMP_PREFIX}{name}"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))
            handle.write("\n")
        os.replace(tmp, folder / name)


def writer_from_environment(environ: Mapping[str, str] | None = None) -> CaptureWriter | None:
    """The writer the endpoint's environment asks for, or None when capture is off."""
    environ = os.environ if environ is None else environ
    directory = environ.get(DIR_ENV)
    percent_text = environ.get(PERCENT_ENV, "0")
    try:
        percent = int(percent_text)
    except ValueError:
        percent = -1
    if not 0 <= percent <= 100:
        from pipelines.errors import ConfigError

        raise ConfigError(f"${PERCENT_ENV} {percent_text!r} is not a whole number from 0 to 100")
    if not directory or percent == 0:
        return None
    return CaptureWriter(Path(directory), percent)


def capture_environment(directory: Path, percent: int) -> dict[str, str]:
    """What the local deployer adds to an endpoint's environment to turn capture on."""
    return {DIR_ENV: str(directory), PERCENT_ENV: str(percent)} if percent else {}

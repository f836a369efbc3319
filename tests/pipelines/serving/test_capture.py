"""Data capture: SageMaker's record format and folder layout, sampling, whole files only, and an
endpoint that captures what it answered without answering any differently."""

import base64
import json
from datetime import datetime, timezone

import pytest

from pipelines.errors import ConfigError
from pipelines.serving.app import create_app
from pipelines.serving.capture import (
    DIR_ENV,
    PERCENT_ENV,
    CaptureWriter,
    capture_record,
    hour_folder,
    writer_from_environment,
)

WHEN = datetime(2026, 11, 30, 13, 5, 7, 250000, tzinfo=timezone.utc).timestamp()


def read_capture(directory):
    files = sorted(p for p in directory.rglob("*.jsonl"))
    return files, [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_a_record_has_exactly_sagemakers_fields():
    record = capture_record(WHEN, "id-1", b"1,2,3", "text/csv", b"0.25\n", "text/csv; charset=utf-8")
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": "1,2,3",
                "encoding": "CSV",
            },
            "endpointOutput": {
                "observedContentType": "text/csv; charset=utf-8",
                "mode": "OUTPUT",
                "data": "0.25\n",
                "encoding": "CSV",
            },
        },
        "eventMetadata": {"eventId": "id-1", "inferenceTime": "2026-11-30T13:05:07Z"},
        "eventVersion": "0",
    }


def test_json_stays_text_and_other_types_are_base64():
    record = capture_record(
        WHEN, "id", b'{"instances": [[1]]}', "application/json", b"\x00\x01", "application/x-npy"
    )
    assert record["captureData"]["endpointInput"]["encoding"] == "JSON"
    output = record["captureData"]["endpointOutput"]
    assert output["encoding"] == "BASE64"
    assert base64.b64decode(output["data"]) == b"\x00\x01"


def test_records_land_in_the_hour_folder_of_their_inference_time(tmp_path):
    assert hour_folder(WHEN) == "2026/11/30/13"
    writer = CaptureWriter(tmp_path, 100, flush_interval=60)
    for i in range(5):
        writer.record(f"{i},1".encode(), "text/csv", b"0.5", "text/csv")
    writer.close()
    files, records = read_capture(tmp_path)
    assert [r["captureData"]["endpointInput"]["data"] for r in records] == [f"{i},1" for i in range(5)]
    now = datetime.now(timezone.utc)
    assert files[0].parent.relative_to(tmp_path).as_posix() in {
        now.strftime("%Y/%m/%d/%H"),
        datetime.fromtimestamp(now.timestamp() - 3600, timezone.utc).strftime("%Y/%m/%d/%H"),
    }
    assert len({r["eventMetadata"]["eventId"] for r in records}) == 5
    assert not list(tmp_path.rglob(".tmp-*"))


def test_sampling_keeps_about_the_configured_share(tmp_path):
    writer = CaptureWriter(tmp_path, 20, flush_interval=60)
    for _ in range(5000):
        writer.record(b"1", "text/csv", b"0", "text/csv")
    writer.close()
    _, records = read_capture(tmp_path)
    assert 800 < len(records) < 1200


def test_the_environment_turns_capture_on_and_a_bad_percentage_is_refused(tmp_path):
    assert writer_from_environment({}) is None
    assert writer_from_environment({DIR_ENV: str(tmp_path), PERCENT_ENV: "0"}) is None
    writer = writer_from_environment({DIR_ENV: str(tmp_path), PERCENT_ENV: "100"})
    assert writer.percent == 100
    writer.close()
    with pytest.raises(ConfigError, match=r"\$MLOPS_CAPTURE_PERCENT '150' is not a whole number"):
        writer_from_environment({DIR_ENV: str(tmp_path), PERCENT_ENV: "150"})


def test_the_endpoint_captures_what_it_answered_and_not_its_refusals(call, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    monkeypatch.setenv(PERCENT_ENV, "100")
    app = create_app(model_dir, default_accept="")
    answer = call(app, "POST", "/invocations", body=b"0.5,-1.2,3.3", headers={"Content-Type": "text/csv"})
    refused = call(app, "POST", "/invocations", body=b"1,2", headers={"Content-Type": "text/csv"})
    app.capture.close()
    assert answer.status == 200 and refused.status == 400
    _, records = read_capture(tmp_path)
    assert len(records) == 1
    assert records[0]["captureData"]["endpointInput"]["data"] == "0.5,-1.2,3.3"
    assert records[0]["captureData"]["endpointOutput"]["data"] == answer.text

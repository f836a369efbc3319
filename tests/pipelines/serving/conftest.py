"""Fixtures for the local endpoint: a tiny XGBoost model and its model.tar.gz, free ports, and a small
driver that calls the ASGI application in-process the way a server would."""

from __future__ import annotations

import asyncio
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from support import free_port

FEATURES = 3


def train_tiny(seed: int = 0) -> xgb.Booster:
    rng = np.random.RandomState(seed)
    features = rng.normal(size=(50, FEATURES))
    labels = (features[:, 0] - 0.5 * features[:, 1] > 0).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "seed": seed}
    return xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=5)


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as handle:
        for path in sorted(folder.iterdir()):
            handle.add(path, arcname=path.name)
    return archive


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A folder holding a 3-feature binary:logistic xgboost-model.json."""
    folder = tmp_path_factory.mktemp("model")
    train_tiny().save_model(str(folder / "xgboost-model.json"))
    return folder


@pytest.fixture(scope="session")
def booster(model_dir) -> xgb.Booster:
    loaded = xgb.Booster()
    loaded.load_model(str(model_dir / "xgboost-model.json"))
    return loaded


@pytest.fixture(scope="session")
def expected(booster):
    """The model's prediction for rows, as the handler prints it (float32 precision)."""

    def predict(rows: list[list[float]]) -> list[float]:
        values = booster.predict(xgb.DMatrix(np.asarray(rows, dtype="float64")))
        return [float(str(np.float32(v))) for v in values]

    return predict


@pytest.fixture(scope="session")
def model_archive(model_dir, tmp_path_factory) -> Path:
    """model.tar.gz with xgboost-model.json at its root, as SageMaker's training writes it."""
    return tar_folder(model_dir, tmp_path_factory.mktemp("artifact") / "model.tar.gz")


@pytest.fixture(scope="session")
def other_model_archive(tmp_path_factory) -> Path:
    """A second model (another seed): predictions that differ from model_archive's."""
    folder = tmp_path_factory.mktemp("other-model")
    train_tiny(seed=7).save_model(str(folder / "xgboost-model.json"))
    return tar_folder(folder, tmp_path_factory.mktemp("other-artifact") / "model.tar.gz")


@pytest.fixture(scope="session")
def broken_archive(tmp_path_factory) -> Path:
    """A well-formed archive whose model file is not a model: the server exits at start."""
    folder = tmp_path_factory.mktemp("broken-model")
    (folder / "xgboost-model.json").write_text('{"not": "a model"}')
    return tar_folder(folder, tmp_path_factory.mktemp("broken-artifact") / "model.tar.gz")


# ---------------------------------------------------------------------------------------------- ASGI driver


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    messages_read: int  # how many http.request messages the app took from receive()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def call_app(app, method: str, path: str, body: bytes = b"", headers=None, chunks=None) -> Answer:
    """One request through the ASGI callable. ``chunks`` sends the body in pieces without a
    Content-Length (as a chunked upload arrives); otherwise Content-Length is set unless given."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if chunks is None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        if method == "POST":
            headers.setdefault("content-length", str(len(body)))
    else:
        messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    sent = []
    taken = 0

    async def receive():
        nonlocal taken
        if taken < len(messages):
            taken += 1
            return messages[taken - 1]
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    assert start["type"] == "http.response.start"
    response_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    assert int(response_headers["content-length"]) == len(payload)
    return Answer(start["status"], response_headers, payload, taken)


@pytest.fixture
def call():
    """The in-process driver: call(app, method, path, body=..., headers=..., chunks=...) -> Answer."""
    return call_app


@pytest.fixture
def port() -> int:
    """A port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    return free_port()

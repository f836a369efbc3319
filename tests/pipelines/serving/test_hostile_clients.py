"""Regression tests for hostile clients of the local endpoint, each with its reproduction."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import free_port

REPO = Path(__file__).resolve().parents[3]
HEADER_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(model_dir):
    """The real server process (uvicorn, httptools) on a free port with a 1 s header timeout."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable, "-m", "pipelines.serving.server", "--model-dir", str(model_dir), "--port", str(port),
        "--header-timeout", str(HEADER_TIMEOUT_S),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the server did not start")
                time.sleep(0.2)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def read_response(client: socket.socket) -> bytes:
    """One whole response (its headers and Content-Length bytes of body) from a kept-alive connection."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += client.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:]
    )
    while len(body) < length:
        body += client.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_client_that_never_finishes_its_headers_is_answered_408_and_disconnected(server):
    """Reproduction (issue 14, defect 11): open a connection to a running endpoint, send
    ``POST /invocations HTTP/1.1`` and one header line, then nothing. Before the fix the connection
    stayed open for ever (uvicorn arms no timer before a first response); many such clients exhaust the
    server. Now the endpoint answers 408 and closes the connection once the header timeout passes."""
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b"\r\n\r\nrequest headers not received in time")
    assert HEADER_TIMEOUT_S * 0.8 <= waited < HEADER_TIMEOUT_S + 5


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        started = time.monotonic()
        answer = client.recv(4096)
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 5
    assert answer.startswith(b"HTTP/1.1 408")


def test_a_prompt_client_on_a_kept_alive_connection_is_answered_every_time(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        for _ in range(2):
            client.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
                b"Accept: text/csv\r\nContent-Length: 5\r\n\r\n1,2,3"
            )
            answer = read_response(client)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            time.sleep(HEADER_TIMEOUT_S * 1.5)  # idle between requests: the keep-alive timeout's business


def test_deeply_nested_json_is_a_400_not_a_500(server):
    """Reproduction (issue 14, defect 9): ``curl -H 'Content-Type: application/json' --data
    "$(python -c 'print("[" * 100000)')" http://127.0.0.1:PORT/invocations`` answered 500 with a
    RecursionError in the server log. Now it is a one-line 400, on SageMaker too (the handler returns it)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server}/invocations",
        data=b"[" * 100_000,
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert caught.value.read() == b"malformed JSON: nested too deeply"

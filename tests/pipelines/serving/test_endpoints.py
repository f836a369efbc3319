"""Local endpoints as real server processes on 127.0.0.1: start, invoke over HTTP, list, replace, stop.
Every server a test starts is stopped in the module fixture's teardown."""

import http.client
import io
import json
import os
import signal
import socket
import tarfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import free_port

from pipelines.errors import ConfigError, NotFoundError
from pipelines.local.store import ObjectStore
from pipelines.serving.artifacts import ArtifactError
from pipelines.serving.endpoints import FAILED, IN_SERVICE, STOPPED, EndpointError, LocalEndpoints


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    manager = LocalEndpoints(tmp_path_factory.mktemp("home"), stop_timeout=5)
    yield manager
    for endpoint in manager.list():
        manager.stop(endpoint.name)


@pytest.fixture(scope="module")
def serving(endpoints, model_archive):
    """One endpoint shared by the tests that only send it requests, with the default Accept the pipeline
    registers (without it the container answers JSON to a request without Accept)."""
    environment = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
    return endpoints.start("reader", str(model_archive), free_port(), environment)


def post(url: str, body: bytes, content_type: str = "text/csv", accept: str | None = None):
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    request = urllib.request.Request(f"{url}/invocations", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def ping(url: str) -> int:
    with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
        return response.status


def csv(row) -> bytes:
    return ",".join(map(str, row)).encode()


# ------------------------------------------------------------------------------------------ serving


def test_a_started_endpoint_is_in_service_on_loopback_and_answers_ping(serving):
    assert serving.status == IN_SERVICE
    assert serving.url == f"http://127.0.0.1:{serving.port}"
    assert serving.pid and serving.started_at and serving.failure_reason is None
    assert ping(serving.url) == 200


def test_it_answers_csv_and_json_over_http(serving, expected):
    assert post(serving.url, b"0.5,-1.2,3.3") == (200, f"{expected([[0.5, -1.2, 3.3]])[0]}\n")
    status, body = post(serving.url, b"[[1, 2, 3]]", "application/json", accept="application/json")
    assert (status, json.loads(body)) == (200, {"predictions": expected([[1, 2, 3]])})


def test_16_concurrent_requests_each_get_their_own_prediction(serving, expected):
    rows = [[i / 4, -i / 8, (i % 5) - 2.0] for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda row: post(serving.url, csv(row)), rows))
    assert [status for status, _ in answers] == [200] * 16
    assert [float(body) for _, body in answers] == expected(rows)


def test_list_shows_the_endpoint_in_service(endpoints, serving):
    listed = {endpoint.name: endpoint for endpoint in endpoints.list()}
    assert listed["reader"] == serving


def test_over_6_mb_is_refused_over_http_whole_or_chunked_and_the_server_keeps_serving(serving, expected):
    too_big = b"1" * (6 * 1024 * 1024 + 1)
    status, body = post(serving.url, too_big)
    assert status == 413 and "over the 6291456-byte limit" in body

    connection = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=10)
    chunks = iter([b"1" * (1024 * 1024)] * 7)
    connection.request(
        "POST", "/invocations", body=chunks, headers={"Content-Type": "text/csv"}, encode_chunked=True
    )
    response = connection.getresponse()
    assert (response.status, response.read()) == (
        413,
        b"payload of more than 6291456 bytes is over the 6291456-byte limit",
    )
    connection.close()

    assert post(serving.url, b"1,2,3") == (200, f"{expected([[1, 2, 3]])[0]}\n")


# ------------------------------------------------------------------------------------------ lifecycle


def test_replacing_with_a_broken_model_keeps_the_old_one_serving_then_a_good_one_replaces_it(
    endpoints, model_archive, broken_archive, other_model_archive, expected
):
    port = free_port()
    first = endpoints.start("replaced", str(model_archive), port)
    before = post(first.url, b"1,2,3")

    with pytest.raises(EndpointError) as caught:
        endpoints.start("replaced", str(broken_archive), port)
    message = str(caught.value)
    assert "\n" not in message
    assert (
        f"the server exited with code 2 before /ping answered; its log {first.log} ends with: Error: "
        in message
    )
    assert message.endswith(f"the previous model {model_archive} serves again on port {port}")
    again = endpoints.get("replaced")
    assert (again.status, again.model_data_url, again.port) == (IN_SERVICE, str(model_archive), port)
    assert post(again.url, b"1,2,3") == before

    newer = endpoints.start("replaced", str(other_model_archive), port)
    assert newer.status == IN_SERVICE and newer.model_data_url == str(other_model_archive)
    assert post(newer.url, b"1,2,3") != before
    models = sorted(p.name for p in (endpoints.root / "replaced").glob("model-*"))
    assert models == [os.path.basename(newer.model_dir)]  # the old model is gone once the new one serves

    stopped = endpoints.stop("replaced")
    assert (stopped.status, stopped.pid) == (STOPPED, None)
    with pytest.raises(urllib.error.URLError):
        ping(newer.url)
    assert endpoints.get("replaced").status == STOPPED
    assert endpoints.stop("replaced").status == STOPPED  # stopping a stopped endpoint does nothing


def test_a_model_from_the_local_object_store_gets_its_environment_and_shows_failed_when_it_dies(
    endpoints, model_archive
):
    store = ObjectStore(endpoints.home / "s3")
    store.put_file(model_archive, "s3://bucket/models/model.tar.gz")
    environment = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}
    endpoint = endpoints.start("from-s3", "s3://bucket/models/model.tar.gz", free_port(), environment)
    assert endpoint.model_data_url == "s3://bucket/models/model.tar.gz"
    status, body = post(endpoint.url, b"1,2,3")  # no Accept: the environment's default answers
    assert status == 200 and "predictions" in json.loads(body)

    os.kill(endpoint.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while endpoints.get("from-s3").status == IN_SERVICE and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = endpoints.get("from-s3")
    assert failed.status == FAILED  # it died on its own: not Stopped
    assert failed.failure_reason == (
        f"the server process (pid {endpoint.pid}) is no longer running; see {failed.log}"
    )
    assert endpoints.stop("from-s3").status == STOPPED


def test_two_starts_of_one_name_at_once_take_turns_and_leave_one_server(endpoints, model_archive):
    port = free_port()
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = list(pool.map(lambda _: endpoints.start("raced", str(model_archive), port), range(2)))
    assert [endpoint.status for endpoint in started] == [IN_SERVICE, IN_SERVICE]
    final = endpoints.get("raced")
    pids = {endpoint.pid for endpoint in started}
    assert final.status == IN_SERVICE and final.pid in pids and len(pids) == 2
    with pytest.raises(ProcessLookupError):
        os.kill((pids - {final.pid}).pop(), 0)  # the first was stopped and reaped when the second replaced it
    assert post(final.url, b"1,2,3")[0] == 200


def test_a_first_start_that_never_becomes_healthy_is_recorded_as_failed(endpoints, broken_archive):
    with pytest.raises(EndpointError, match="could not load the model"):
        endpoints.start("broken", str(broken_archive), free_port())
    endpoint = endpoints.get("broken")
    assert endpoint.status == FAILED
    assert "could not load the model" in endpoint.failure_reason


# ------------------------------------------------------------------------------------------ refusals


def test_a_port_held_by_another_process_is_an_error_naming_it(endpoints, model_archive, port):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(EndpointError) as caught:
            endpoints.start("blocked", str(model_archive), port)
    assert (
        str(caught.value)
        == f"port {port} on 127.0.0.1 is already in use by another process; pick another port"
    )
    assert not (endpoints.root / "blocked").exists()


def test_a_port_held_by_another_endpoint_names_that_endpoint(endpoints, serving, model_archive):
    with pytest.raises(
        EndpointError, match=f"port {serving.port} on 127.0.0.1 is already in use by local endpoint 'reader'"
    ):
        endpoints.start("squatter", str(model_archive), serving.port)


def test_a_hostile_archive_is_refused_before_anything_starts(endpoints, tmp_path, port):
    hostile = tmp_path / "model.tar.gz"
    with tarfile.open(hostile, "w:gz") as archive:
        info = tarfile.TarInfo("../../escape.py")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArtifactError, match="member '../../escape.py' has a '..' component"):
        endpoints.start("hostile", str(hostile), port)
    assert not (endpoints.root / "hostile").exists()


@pytest.mark.parametrize("name", ["has_underscore", "-leading", "trailing-", "x" * 64, ""])
def test_an_invalid_name_is_refused(endpoints, model_archive, port, name):
    with pytest.raises(ConfigError, match="letters, digits and '-'"):
        endpoints.start(name, str(model_archive), port)


def test_unknown_endpoints_and_missing_models_are_not_found(endpoints, serving, tmp_path, port):
    with pytest.raises(NotFoundError, match="no local endpoint named 'readr'.* Did you mean 'reader'"):
        endpoints.get("readr")
    with pytest.raises(NotFoundError):
        endpoints.stop("nobody")
    with pytest.raises(NotFoundError, match="neither an s3:// URI in the local object store nor a file"):
        endpoints.start("nomodel", str(tmp_path / "missing.tar.gz"), port)
    with pytest.raises(NotFoundError, match="no object at s3://bucket/absent.tar.gz"):
        endpoints.start("nomodel", "s3://bucket/absent.tar.gz", port)

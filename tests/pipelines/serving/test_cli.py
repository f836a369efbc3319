"""``local-endpoint`` as a user types it: an endpoint started by one command outlives it and answers the
next ones; errors are one line with the documented exit codes."""

import json
import os
import subprocess
import sys
import urllib.request

import pytest
from support import free_port, invoke

from pipelines.local_home import ACCOUNTS
from pipelines.serving import cli
from pipelines.serving.endpoints import LocalEndpoints


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("home")
    yield folder
    endpoints = LocalEndpoints(folder)
    for endpoint in endpoints.list():
        endpoints.stop(endpoint.name)


@pytest.fixture
def run(home, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(home))
    return lambda *argv: invoke(cli.main, argv, capsys)


@pytest.fixture(scope="module")
def started(home, model_archive):
    """An endpoint started by a separate `local-endpoint start` process, which has exited since."""
    port = free_port()
    argv = ["start", "churn-dev", "--model-data-url", str(model_archive), "--port", str(port)]
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.serving.cli", *argv],
        env={**os.environ, "MLOPS_LOCAL_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return port, done.stdout


def test_an_endpoint_outlives_the_command_that_started_it(started, expected):
    port, out = started
    assert out.startswith(f"churn-dev: InService at http://127.0.0.1:{port} (pid ")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=b"1,2,3",
        headers={"Content-Type": "text/csv", "Accept": "text/csv"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert float(response.read()) == expected([[1, 2, 3]])[0]


def test_invoke_prints_the_answer(started, run, expected):
    code, out, err = run("invoke", "churn-dev", "--body", "1,2,3", "--accept", "application/json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"predictions": expected([[1, 2, 3]])}


def test_list_shows_the_endpoint_as_a_table_and_as_json(started, run, model_archive):
    port, _ = started
    code, out, _ = run("list")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "URL", "STARTED", "MODEL", "DATA"]
    # By name: a stage account's endpoint that another test of this module started may be listed too.
    rows = {line.split()[0]: line.split()[:3] for line in out.splitlines()[1:]}
    assert rows["churn-dev"] == ["churn-dev", "InService", f"http://127.0.0.1:{port}"]
    code, out, _ = run("list", "--json")
    (listed,) = [e for e in json.loads(out) if (e["account"], e["name"]) == (None, "churn-dev")]
    assert (listed["name"], listed["status"], listed["model_data_url"]) == (
        "churn-dev",
        "InService",
        str(model_archive),
    )


def test_list_shows_the_endpoints_promote_started_in_each_stage_account(started, run, home, model_archive):
    """Reproduction: after ``promote deploy --stage dev`` (local backend), ``local-endpoint list``
    showed only the endpoints it had started itself, never the stage's endpoint."""
    account = "111111111111-us-east-1"
    stage = LocalEndpoints(home / ACCOUNTS / account)  # where promote's local deployer keeps a stage's
    port = free_port()
    stage.start("churn-staging", str(model_archive), port)
    try:
        code, out, _ = run("list")
        assert code == 0
        rows = [line.split()[:3] for line in out.splitlines()[1:]]
        assert rows == [
            ["churn-dev", "InService", f"http://127.0.0.1:{started[0]}"],
            [f"{account}/churn-staging", "InService", f"http://127.0.0.1:{port}"],
        ]
        code, out, _ = run("list", "--json")
        assert [(e["account"], e["name"]) for e in json.loads(out)] == [
            (None, "churn-dev"),
            (account, "churn-staging"),
        ]
    finally:
        stage.stop("churn-staging")


def test_a_refused_request_is_one_error_line_with_the_endpoints_answer(started, run):
    code, out, err = run("invoke", "churn-dev", "--body", "1,2")
    assert (code, out) == (1, "")
    assert err == "Error: endpoint 'churn-dev' answered 400: each row must have 3 features, got 2\n"


@pytest.mark.parametrize(
    ("argv", "exit_code", "message"),
    [
        (["invoke", "nope", "--body", "1"], 4, "Error: no local endpoint named 'nope'"),
        (["stop", "nope"], 4, "Error: no local endpoint named 'nope'"),
        (["start", "bad_name", "--model-data-url", "x", "--port", "1"], 2, "Error: endpoint name 'bad_name'"),
        (
            ["start", "ok", "--model-data-url", "x", "--port", "http"],
            2,
            "Error: argument --port: invalid int",
        ),
        (["start", "ok", "--model-data-url", "x", "--port", "1", "--env", "NOEQUALS"], 2, "Error: --env"),
        (["invoke", "churn-dev"], 2, "Error: one of the arguments --body --body-file is required"),
    ],
    ids=["invoke-unknown", "stop-unknown", "bad-name", "bad-port", "bad-env", "no-body"],
)
def test_errors_are_one_line_with_their_exit_code(started, run, argv, exit_code, message):
    code, _, err = run(*argv)
    assert code == exit_code
    assert err.startswith(message) and err.count("\n") == 1


def test_stop_stops_it_and_invoke_then_says_how_to_start_it(tmp_path, monkeypatch, capsys, model_archive):
    # An endpoint of its own: the module's shared one must stay InService for the other tests.
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(home))
    port = free_port()
    argv = ["start", "churn-dev", "--model-data-url", str(model_archive), "--port", str(port)]
    try:
        assert invoke(cli.main, argv, capsys)[0] == 0
        assert invoke(cli.main, ["stop", "churn-dev"], capsys)[:2] == (0, "churn-dev: Stopped\n")
        code, _, err = invoke(cli.main, ["invoke", "churn-dev", "--body", "1,2,3"], capsys)
        assert code == 1
        assert err == (
            "Error: endpoint 'churn-dev' is Stopped, not InService; start it with: "
            f"local-endpoint start churn-dev --model-data-url ... --port {port}\n"
        )
        assert json.loads(invoke(cli.main, ["list", "--json"], capsys)[1])[0]["status"] == "Stopped"
    finally:
        endpoints = LocalEndpoints(home)
        for endpoint in endpoints.list():
            endpoints.stop(endpoint.name)

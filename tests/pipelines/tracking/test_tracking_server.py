"""The SageMaker MLflow tracking server's ARN: a get_pipeline argument that leaves the definition as
it is, and what run-pipeline --wait does with it: log the ended execution from outside the jobs,
through the sagemaker-mlflow plugin, where a refusing server is one warning."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws
from support import BUCKET, MODULE, REGION, ROLE, invoke

from pipelines import run_pipeline
from pipelines.churn import pipeline as churn
from pipelines.errors import ConfigError
from pipelines.run_pipeline import LOCAL_DEFAULTS

SERVER = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team-tracking"


def test_the_tracking_server_leaves_the_definition_byte_identical():
    without = churn.get_pipeline(**LOCAL_DEFAULTS).definition()
    with_server = churn.get_pipeline(**LOCAL_DEFAULTS, mlflow_tracking_server_arn=SERVER).definition()
    assert with_server == without
    assert SERVER not in with_server


def test_get_tracking_server_arn_answers_the_validated_argument():
    assert churn.get_tracking_server_arn(**LOCAL_DEFAULTS, mlflow_tracking_server_arn=SERVER) == SERVER
    assert churn.get_tracking_server_arn(**LOCAL_DEFAULTS) is None


@pytest.mark.parametrize(
    "bad",
    [
        "arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-1",  # the plugin takes it; the IAM differs
        "arn:aws:sagemaker:us-east-1:1234:mlflow-tracking-server/team",
        "https://team.mlflow.example.com",
        "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team_tracking",
    ],
)
def test_a_malformed_tracking_server_arn_is_refused_with_every_other_problem(bad):
    with pytest.raises(ConfigError) as caught:
        churn.get_pipeline(
            **{**LOCAL_DEFAULTS, "default_bucket": "Bad_Bucket"}, mlflow_tracking_server_arn=bad
        )
    message = str(caught.value)
    assert "\n" not in message
    assert f"mlflow_tracking_server_arn={bad!r} is not a SageMaker MLflow tracking server ARN" in message
    assert "default_bucket='Bad_Bucket'" in message


class RefusingServer:
    """A loopback HTTP server that refuses every MLflow call as an unauthorised role would, and
    records what it was sent."""

    def __init__(self):
        requests = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self):
                requests.append((self.command, self.path, self.headers.get("Authorization", "")))
                body = json.dumps(
                    {"error_code": "PERMISSION_DENIED", "message": "not authorized: sagemaker-mlflow:*"}
                ).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = _refuse

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def refusing(monkeypatch):
    server = RefusingServer()
    # The plugin's own switch for where an ARN's requests go (sagemaker-mlflow 0.5.0,
    # mlflow_sagemaker_helpers.py), so its URI handling and signing run unchanged.
    monkeypatch.setenv("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", server.url)
    yield server
    server.close()


class WithExecutionSteps:
    """moto's SageMaker client plus ListPipelineExecutionSteps (missing in moto 5.2.5): none reported."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def list_pipeline_execution_steps(self, **kwargs):
        return {"PipelineExecutionSteps": []}


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        sm = WithExecutionSteps(boto3.client("sagemaker", region_name=REGION))
        s3 = boto3.client("s3", region_name=REGION)
        monkeypatch.setattr(run_pipeline, "aws_clients", lambda region: (sm, s3))
        monkeypatch.setattr(run_pipeline.time, "sleep", lambda _: None)
        yield sm


def run(capsys, kwargs, *extra):
    return invoke(
        run_pipeline.main,
        ["--module-name", MODULE, "--role-arn", ROLE, "--kwargs", json.dumps(kwargs), *extra],
        capsys,
    )


def test_wait_logs_the_ended_execution_through_the_plugin_and_a_refusal_is_one_warning(aws, refusing, capsys):
    code, out, err = run(
        capsys, {"region": REGION, "default_bucket": BUCKET, "mlflow_tracking_server_arn": SERVER}, "--wait"
    )
    assert code == 0, err
    assert "execution status: Succeeded" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: MLflow tracking at {SERVER} failed"), lines
    assert "PERMISSION_DENIED" in lines[0] or "403" in lines[0], lines
    method, path, authorization = refusing.requests[0]
    assert path.startswith("/api/2.0/mlflow/experiments/get-by-name?experiment_name=ChurnPipeline")
    # Signed with SigV4 for the sagemaker-mlflow service in the server's region (us-east-1, not the
    # pipeline's): the IAM actions are sagemaker-mlflow:<call> on the server.
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/us-east-1/sagemaker-mlflow/aws4_request" in authorization


def test_without_wait_it_says_the_execution_is_not_logged_yet(aws, refusing, capsys):
    code, out, err = run(
        capsys, {"region": REGION, "default_bucket": BUCKET, "mlflow_tracking_server_arn": SERVER}
    )
    assert code == 0, err
    assert f"not logged to MLflow tracking server {SERVER}" in out
    assert refusing.requests == []


def test_with_no_server_nothing_is_logged_and_nothing_warns(aws, refusing, capsys):
    code, out, err = run(capsys, {"region": REGION, "default_bucket": BUCKET}, "--wait")
    assert code == 0, err
    assert err == "" and "MLflow" not in out
    assert refusing.requests == []


def test_execution_report_refuses_a_malformed_tracking_server_arn_before_any_aws_call(capsys, tmp_path):
    from pipelines.report import cli

    execution = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/churn/execution/abc"
    code, out, err = invoke(
        cli.main,
        [
            execution,
            "--backend",
            "aws",
            "--output",
            str(tmp_path / "r.html"),
            "--tracking-server-arn",
            "team",
        ],
        capsys,
    )
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "Error: --tracking-server-arn 'team' is not a SageMaker MLflow tracking server ARN "
        "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)"
    ]

"""``get-pipeline-definition``: output, files, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest
from support import BUCKET, MODULE, REGION, ROLE, invoke

from pipelines.get_pipeline_definition import main

KWARGS = json.dumps({"region": REGION, "role": ROLE, "default_bucket": BUCKET})


def run_cli(capsys, *argv):
    return invoke(main, argv, capsys)


def test_prints_the_definition_json_on_stdout(capsys):
    code, out, err = run_cli(capsys, "--module-name", MODULE, "--kwargs", KWARGS)
    assert code == 0
    types = {step["Type"] for step in json.loads(out)["Steps"]}
    assert {"Processing", "Training", "Tuning", "Condition"} <= types
    assert err == ""


def test_writes_the_definition_to_a_file(tmp_path, capsys):
    target = tmp_path / "definition.json"
    code, out, _ = run_cli(capsys, "--module-name", MODULE, "--kwargs", KWARGS, "--file-name", str(target))
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["Version"] == "2020-12-01"
    assert [p.name for p in tmp_path.iterdir()] == ["definition.json"]


@pytest.mark.slow
def test_works_with_no_aws_credentials_and_no_network(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # Any connection attempt goes to a closed local port and fails fast.
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
        }
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.get_pipeline_definition",
            "--module-name",
            MODULE,
            "--kwargs",
            KWARGS,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # the SDK's own log lines stay out of the way unless --verbose
    types = sorted(s["Type"] for s in json.loads(done.stdout)["Steps"])
    assert types == [
        "Condition",
        "Processing",
        "Processing",
        "Processing",
        "QualityCheck",
        "Training",
        "Tuning",
    ]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--module-name", MODULE, "--kwargs", "{region: eu}"], ["--kwargs is not valid JSON", "pass e.g."]),
        (["--module-name", MODULE, "--kwargs", "[1]"], ["--kwargs must be a JSON object, got list"]),
        (
            ["--module-name", "pipelines.chrn.pipeline"],
            ["no such module", "Did you mean 'pipelines.churn.pipeline'?"],
        ),
        (["--module-name", "pipelines.errors"], ["does not define get_pipeline"]),
        (
            ["--module-name", MODULE, "--kwargs", '{"regoin": "eu-west-1"}'],
            ["unknown argument(s) 'regoin'", "Did you mean 'region'?"],
        ),
        (
            ["--module-name", MODULE, "--kwargs", json.dumps({"region": REGION, "default_bucket": BUCKET})],
            ["role is required"],
        ),
        (["--kwargs", "{}"], ["the following arguments are required: --module-name"]),
    ],
)
def test_bad_input_is_one_error_line_and_exit_code_2(capsys, argv, fragments):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err
    assert "Traceback" not in err


def test_a_missing_output_directory_is_reported_and_nothing_is_written(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "--module-name", MODULE, "--kwargs", KWARGS, "--file-name", str(tmp_path / "nope" / "d.json")
    )
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []

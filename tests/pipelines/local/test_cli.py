"""``local-pipeline`` and ``run-pipeline --local`` on the command line: exit codes, the one-line
``Error:``, what is staged and recorded, and the progress and summary a run prints."""

import json
import re

import pytest
from step_definitions import definition, processing_step
from support import MODULE, invoke

from pipelines import _cli, run_pipeline
from pipelines.errors import UsageError
from pipelines.local import cli
from pipelines.local.engine import LocalRunner

SCRIPT_URI = "s3://bkt/code/s.py"
GOOD_SCRIPT = 'import sys\nprint("hello from the step")\nprint("done", file=sys.stderr)\n'
FAILING_SCRIPT = 'import sys\nprint("loading rows")\nprint("ValueError: no rows in the input")\nsys.exit(1)\n'


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(home))
    return home


@pytest.fixture
def tiny(tmp_path):
    """(definition file, script file) of a one-step pipeline whose script succeeds."""
    script = tmp_path / "s.py"
    script.write_text(GOOD_SCRIPT)
    path = tmp_path / "tiny.json"
    # One Processing step running the script at SCRIPT_URI.
    hello = processing_step("Hello", "s.py", SCRIPT_URI)
    path.write_text(definition(hello, parameters=[{"Name": "Rows", "Type": "Integer", "DefaultValue": 3}]))
    return path, script


def local_pipeline(capsys, *argv):
    return invoke(cli.main, argv, capsys)


def run_tiny(capsys, tiny, *extra):
    path, script = tiny
    return local_pipeline(
        capsys,
        "run",
        "--definition-file",
        str(path),
        "--pipeline-name",
        "Tiny",
        "--upload",
        f"{script}={SCRIPT_URI}",
        *extra,
    )


def assert_one_error_line(err, *fragments):
    assert err.startswith("Error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def executions(home):
    return LocalRunner(home).records.list_executions()


# --- local-pipeline: bad command lines


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        (["{not json"], "--parameters is not valid JSON"),
        (['{"Rows": 4'], "--parameters is not valid JSON"),
        (["Rows"], "'Rows' is not Name=Value"),
        (["Rows=4", "=5"], "'=5' is not Name=Value"),
        (["Rows=4", "Rows=5"], "'Rows' is given twice"),
    ],
)
def test_malformed_parameters_exit_2_with_one_error_line_and_run_nothing(
    capsys, home, tiny, parameters, fragment
):
    code, out, err = run_tiny(capsys, tiny, "--parameters", *parameters)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert "started" not in out
    assert executions(home) == []


def test_a_parameter_the_definition_does_not_declare_exits_2_naming_it(capsys, home, tiny):
    code, _, err = run_tiny(capsys, tiny, "--parameters", "Rowz=4")
    assert code == 2
    assert_one_error_line(err, "Rowz", "Rows")
    assert executions(home) == []


def test_a_parameter_value_of_the_wrong_type_exits_2_naming_it(capsys, home, tiny):
    code, _, err = run_tiny(capsys, tiny, "--parameters", "Rows=4.5")
    assert code == 2
    assert_one_error_line(err, "Rows", "4.5")
    assert executions(home) == []
    assert not LocalRunner(home).store.exists(SCRIPT_URI), "a run that cannot start staged its uploads"


def test_a_definition_file_that_does_not_exist_exits_2_naming_it(capsys, home, tmp_path):
    missing = tmp_path / "nowhere" / "pipeline.json"
    code, _, err = local_pipeline(capsys, "run", "--definition-file", str(missing), "--pipeline-name", "Tiny")
    assert code == 2
    assert_one_error_line(err, str(missing), "No such file")


def test_a_definition_file_that_is_not_json_exits_2_naming_it(capsys, home, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"Steps": [')
    code, _, err = local_pipeline(capsys, "run", "--definition-file", str(broken), "--pipeline-name", "Tiny")
    assert code == 2
    assert_one_error_line(err, str(broken), "not valid JSON")


def test_a_definition_file_that_is_not_text_exits_2_naming_it(capsys, home, tmp_path):
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = local_pipeline(capsys, "run", "--definition-file", str(binary), "--pipeline-name", "Tiny")
    assert code == 2
    assert_one_error_line(err, str(binary), "UTF-8")


@pytest.mark.parametrize(
    ("upload", "fragment"),
    [
        ("{tmp}/missing.py=s3://bkt/code/s.py", "does not exist"),
        ("{script}=https://bkt/code/s.py", "is not PATH=s3://bucket/key"),
        ("{script}=/tmp/elsewhere", "is not PATH=s3://bucket/key"),
        ("{script}", "is not PATH=s3://bucket/key"),
        ("{script}=s3://bkt/../escape", "'..'"),
        ("{script}=s3://Bad_Bucket/key", "not a valid bucket name"),
    ],
)
def test_a_bad_upload_exits_2_and_runs_nothing(capsys, home, tiny, tmp_path, upload, fragment):
    path, script = tiny
    item = upload.format(tmp=tmp_path, script=script)
    code, out, err = local_pipeline(
        capsys, "run", "--definition-file", str(path), "--pipeline-name", "Tiny", "--upload", item
    )
    assert code == 2
    assert_one_error_line(err, fragment)
    assert executions(home) == []
    assert "staged" not in out


def test_an_invalid_pipeline_name_exits_2(capsys, home, tiny):
    path, script = tiny
    code, _, err = local_pipeline(
        capsys, "run", "--definition-file", str(path), "--pipeline-name", "no spaces allowed"
    )
    assert code == 2
    assert_one_error_line(err, "pipeline name 'no spaces allowed' is not valid")


@pytest.mark.parametrize("command", ["describe-execution", "list-steps", "retry"])
def test_an_unknown_execution_exits_4_naming_it(capsys, home, command):
    code, out, err = local_pipeline(capsys, command, "no-such-execution")
    assert code == 4
    assert_one_error_line(err, "no local execution 'no-such-execution'", "list-executions")
    assert out == ""


def test_a_missing_subcommand_or_option_is_an_argparse_error_with_exit_2(capsys, home):
    code, _, err = local_pipeline(capsys)
    assert code == 2
    assert_one_error_line(err, "local-pipeline --help")
    code, _, err = local_pipeline(capsys, "run", "--pipeline-name", "Tiny")
    assert code == 2
    assert_one_error_line(err, "--definition-file")


# --- local-pipeline upload


def test_upload_puts_a_file_at_the_uri(capsys, home, tmp_path):
    source = tmp_path / "rows.csv"
    source.write_text("a,b\n1,2\n")
    code, out, err = local_pipeline(capsys, "upload", str(source), "s3://bkt/data/rows.csv")
    assert (code, err) == (0, "")
    assert out == "1 object at s3://bkt/data/rows.csv\n"
    assert LocalRunner(home).store.get_bytes("s3://bkt/data/rows.csv") == b"a,b\n1,2\n"


def test_upload_to_a_prefix_keeps_the_file_name_and_a_directory_keeps_its_tree(capsys, home, tmp_path):
    source = tmp_path / "rows.csv"
    source.write_text("x")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")

    assert local_pipeline(capsys, "upload", str(source), "s3://bkt/in/")[0] == 0
    code, out, _ = local_pipeline(capsys, "upload", str(tree), "s3://bkt/tree")
    assert code == 0
    assert out == "2 objects at s3://bkt/tree\n"
    store = LocalRunner(home).store
    assert store.get_bytes("s3://bkt/in/rows.csv") == b"x"
    assert [key for key, _ in store.list("s3://bkt/tree/")] == ["tree/a.txt", "tree/sub/b.txt"]


@pytest.mark.parametrize(
    ("source", "uri", "fragment"),
    [
        ("missing.csv", "s3://bkt/k", "does not exist"),
        ("rows.csv", "file:///tmp/k", "is not an s3:// URI"),
        ("rows.csv", "s3://bkt/a/../../k", "'..'"),
    ],
)
def test_a_bad_upload_command_exits_2_and_writes_nothing(capsys, home, tmp_path, source, uri, fragment):
    (tmp_path / "rows.csv").write_text("x")
    code, out, err = local_pipeline(capsys, "upload", str(tmp_path / source), uri)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert not (home / "s3").exists() or not any((home / "s3").rglob("*.csv"))


# --- local-pipeline run, and the inspection commands


def test_a_run_succeeds_with_plain_progress_lines_and_a_summary(capsys, home, tiny):
    code, out, err = run_tiny(capsys, tiny)
    assert code == 0, err
    assert err == ""
    assert "\x1b[" not in out, "stdout is not a terminal: no live redraw"

    lines = out.splitlines()
    assert lines[0] == f"staged {tiny[1]} at {SCRIPT_URI} (1 object)"
    (execution,) = executions(home)
    assert lines[1] == f"execution {execution.execution_id} started: 1 steps"
    assert re.fullmatch(r"\d\d:\d\d:\d\d  Hello\s+Executing", lines[2])
    assert re.fullmatch(r"\d\d:\d\d:\d\d  Hello\s+Succeeded", lines[3])
    assert re.fullmatch(rf"execution {execution.execution_id} Succeeded in \d+\.\d s", lines[4])
    assert execution.status == "Succeeded"
    assert execution.pipeline_name == "Tiny"
    assert execution.parameters == {"Rows": 3}

    log = (home / "jobs").glob("*/log.txt")
    assert any("hello from the step" in path.read_text() for path in log)


def test_the_inspection_commands_print_json_about_the_run(capsys, home, tiny):
    assert run_tiny(capsys, tiny, "--parameters", "Rows=5")[0] == 0
    (execution,) = executions(home)

    code, out, err = local_pipeline(capsys, "list-executions")
    assert (code, err) == (0, "")
    (summary,) = json.loads(out)["PipelineExecutionSummaries"]
    assert summary["PipelineExecutionArn"] == execution.arn
    assert summary["PipelineExecutionStatus"] == "Succeeded"
    assert summary["PipelineName"] == "Tiny"

    code, out, _ = local_pipeline(capsys, "list-executions", "--pipeline-name", "Other")
    assert code == 0
    assert json.loads(out) == {"PipelineExecutionSummaries": []}

    for reference in (execution.execution_id, execution.arn):
        code, out, err = local_pipeline(capsys, "describe-execution", reference)
        assert (code, err) == (0, "")
        described = json.loads(out)
        assert described["PipelineExecutionArn"] == execution.arn
        assert described["PipelineExecutionStatus"] == "Succeeded"
        assert described["PipelineParameters"] == [{"Name": "Rows", "Value": "5"}]
        assert "FailureReason" not in described

    code, out, err = local_pipeline(capsys, "list-steps", execution.execution_id)
    assert (code, err) == (0, "")
    (step,) = json.loads(out)["PipelineExecutionSteps"]
    assert step["StepName"] == "Hello"
    assert step["StepStatus"] == "Succeeded"
    assert step["AttemptCount"] == 1
    assert step["Metadata"]["ProcessingJob"]["Arn"].startswith("arn:aws:sagemaker:local:")


def test_retrying_a_succeeded_execution_exits_2_saying_why(capsys, home, tiny):
    assert run_tiny(capsys, tiny)[0] == 0
    (execution,) = executions(home)
    code, _, err = local_pipeline(capsys, "retry", execution.execution_id)
    assert code == 2
    assert_one_error_line(err, f"execution {execution.execution_id} is Succeeded")


def test_a_failing_script_fails_the_run_with_exit_1_and_its_last_output_line(capsys, home, tiny):
    path, script = tiny
    script.write_text(FAILING_SCRIPT)
    code, out, err = run_tiny(capsys, tiny)

    assert code == 1
    (execution,) = executions(home)
    assert execution.status == "Failed"
    assert_one_error_line(
        err,
        f"Error: execution {execution.execution_id} Failed: step 'Hello' failed:",
        "exited with status 1: ValueError: no rows in the input",
    )
    assert re.search(r"Hello\s+Failed", out)
    assert "    | ValueError: no rows in the input" in out, "the log's tail is shown"
    assert f"execution {execution.execution_id} Failed in" in out

    code, out, _ = local_pipeline(capsys, "describe-execution", execution.execution_id)
    assert code == 0
    assert "ValueError: no rows in the input" in json.loads(out)["FailureReason"]


def test_a_definition_whose_inputs_were_never_staged_fails_saying_how_to_stage_them(capsys, home, tiny):
    path, _ = tiny
    code, _, err = local_pipeline(capsys, "run", "--definition-file", str(path), "--pipeline-name", "Tiny")
    assert code == 1
    assert_one_error_line(
        err,
        f"no object at {SCRIPT_URI} in the local object store",
        "`run-pipeline --local --no-start --definition-file F` writes it and stages its code and sample data",
        "--upload PATH=S3URI",
    )


def test_a_failed_execution_retried_after_the_fix_succeeds(capsys, home, tiny):
    path, script = tiny
    script.write_text(FAILING_SCRIPT)
    assert run_tiny(capsys, tiny)[0] == 1
    (execution,) = executions(home)

    LocalRunner(home).store.put_bytes(SCRIPT_URI, GOOD_SCRIPT.encode())
    code, out, err = local_pipeline(capsys, "retry", execution.execution_id)
    assert code == 0, err
    assert f"execution {execution.execution_id} Succeeded in" in out
    assert [e.status for e in executions(home)] == ["Succeeded"]


# --- run-pipeline: the local options


def run_pipeline_cli(capsys, *argv):
    return invoke(run_pipeline.main, argv, capsys)


def test_run_pipeline_without_local_needs_a_role_arn(capsys, home, monkeypatch):
    monkeypatch.setattr(run_pipeline, "aws_clients", lambda region: pytest.fail("AWS reached"))
    code, _, err = run_pipeline_cli(capsys, "--module-name", MODULE)
    assert code == 2
    assert_one_error_line(err, "--role-arn is required", "--local")


@pytest.mark.parametrize("option", [("--upload", "x.csv=s3://bkt/x.csv"), ("--no-cache",)])
def test_local_only_options_without_local_exit_2(capsys, home, monkeypatch, option):
    monkeypatch.setattr(run_pipeline, "aws_clients", lambda region: pytest.fail("AWS reached"))
    role = "arn:aws:iam::111122223333:role/R"
    code, _, err = run_pipeline_cli(capsys, "--module-name", MODULE, "--role-arn", role, *option)
    assert code == 2
    assert_one_error_line(err, "apply to local runs only: add --local")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--parameters", "{oops"), "--parameters is not valid JSON"),
        (("--parameters", "MaxTuningJobs"), "'MaxTuningJobs' is not Name=Value"),
        (("--upload", "/no/such/file.csv=s3://bkt/x.csv"), "does not exist"),
        (("--upload", "{script}=ftp://bkt/x.csv"), "is not PATH=s3://bucket/key"),
        (("--wait", "--no-start"), "--wait and --no-start contradict"),
    ],
)
def test_run_pipeline_local_refuses_a_bad_command_line_before_building(
    capsys, home, monkeypatch, tiny, extra, fragment
):
    import pipelines.churn.pipeline as churn

    monkeypatch.setattr(churn, "get_pipeline", lambda **kwargs: pytest.fail("the pipeline was built"))
    extra = tuple(item.replace("{script}", str(tiny[1])) for item in extra)
    code, _, err = run_pipeline_cli(capsys, "--local", "--module-name", MODULE, *extra)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert executions(home) == []


def test_run_pipeline_local_no_start_stages_code_and_sample_data_and_runs_nothing(capsys, home):
    from pipelines.churn import pipeline as churn

    code, out, err = run_pipeline_cli(capsys, "--local", "--no-start", "--module-name", MODULE)

    assert code == 0, err
    assert "pipeline ChurnPipeline: definition checked" in out and "not started" in out
    store = LocalRunner(home).store
    staged = {key: path.read_bytes() for key, path in store.list("s3://sagemaker-local/ChurnPipeline/code/")}
    upload = churn.get_code_upload(**run_pipeline.LOCAL_DEFAULTS)
    expected = {
        f"{bundle.key_prefix(upload.key_prefix)}/{name}": body
        for bundle in upload.bundles
        for name, body in bundle.objects().items()
    }
    assert staged == expected
    # Preprocess 4 (with steps/encoding.py, resource_config and monitoring_config), the spec 1, Train 4
    # (with label_csv, encoding and resource_config), Evaluate 4 (with tar_guard, label_csv and
    # encoding), and the serving code as one sourcedir.tar.gz.
    assert len(staged) == 14
    assert store.get_bytes("s3://sagemaker-local/churn/input/churn.csv") == churn.SAMPLE_DATA.read_bytes()
    assert executions(home) == []
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())


def test_run_pipeline_local_with_a_bad_parameter_value_exits_2_naming_it_and_runs_nothing(capsys, home):
    code, out, err = run_pipeline_cli(
        capsys, "--local", "--module-name", MODULE, "--parameters", "MaxTuningJobs=abc"
    )
    assert code == 2
    assert_one_error_line(err, "MaxTuningJobs", "'abc'", "Integer")
    assert executions(home) == []
    assert not LocalRunner(home).store.exists("s3://sagemaker-local/"), "nothing is staged for it"


# --- run-pipeline: parameter values given as text


PARAMETER_DEFINITION = json.dumps(
    {
        "Parameters": [
            {"Name": "MaxTuningJobs", "Type": "Integer", "DefaultValue": 8},
            {"Name": "AucThreshold", "Type": "Float", "DefaultValue": 0.75},
            {"Name": "UseGpu", "Type": "Boolean", "DefaultValue": False},
            {"Name": "ModelApprovalStatus", "Type": "String", "DefaultValue": "PendingManualApproval"},
            {"Name": "Note", "Type": "String", "DefaultValue": ""},
        ],
        "Steps": [
            {
                "Name": "Register",
                "Type": "RegisterModel",
                "Arguments": {"ModelApprovalStatus": {"Get": "Parameters.ModelApprovalStatus"}},
            }
        ],
    }
)


def parse_text_parameters(*items):
    return run_pipeline.parse_parameters(_cli.parameter_options(list(items)), PARAMETER_DEFINITION)


def test_name_value_parameters_are_read_as_the_declared_types():
    sent = parse_text_parameters(
        "MaxTuningJobs=4",
        "AucThreshold=0.8",
        "UseGpu=TRUE",
        "ModelApprovalStatus=Approved",
        "Note=a=b c",
    )
    assert sent == [
        {"Name": "MaxTuningJobs", "Value": "4"},
        {"Name": "AucThreshold", "Value": "0.8"},
        {"Name": "UseGpu", "Value": "true"},
        {"Name": "ModelApprovalStatus", "Value": "Approved"},
        {"Name": "Note", "Value": "a=b c"},
    ]


def test_a_text_integer_is_sent_as_the_same_value_as_a_json_integer():
    assert parse_text_parameters("MaxTuningJobs=4") == run_pipeline.parse_parameters(
        {"MaxTuningJobs": 4}, PARAMETER_DEFINITION
    )
    assert parse_text_parameters("MaxTuningJobs= 4 ") == [{"Name": "MaxTuningJobs", "Value": "4"}]


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("MaxTuningJobs=4.5", 'MaxTuningJobs="4.5" is not an Integer'),
        ("MaxTuningJobs=four", 'MaxTuningJobs="four" is not an Integer'),
        ("MaxTuningJobs=", 'MaxTuningJobs="" is not an Integer'),
        ("AucThreshold=high", 'AucThreshold="high" is not a Float'),
        ("AucThreshold=1e999", 'AucThreshold="1e999" is not a Float'),
        ("AucThreshold=nan", 'AucThreshold="nan" is not a Float'),
        ("UseGpu=yes", 'UseGpu="yes" is not a Boolean'),
        ("ModelApprovalStatus=Approvd", "is not one of PendingManualApproval, Approved, Rejected"),
        ("MaxTuningJob=4", "Did you mean 'MaxTuningJobs'?"),
    ],
)
def test_a_text_value_the_declared_type_refuses_is_a_usage_error(item, fragment):
    with pytest.raises(UsageError) as caught:
        parse_text_parameters(item)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("--parameters")


def test_every_bad_text_value_is_reported_at_once():
    with pytest.raises(UsageError) as caught:
        parse_text_parameters("MaxTuningJobs=4.5", "AucThreshold=high", "ModelApprovalStatus=Approvd")
    message = str(caught.value)
    assert "MaxTuningJobs" in message and "AucThreshold" in message and "Approvd" in message

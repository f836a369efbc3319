"""``run-pipeline`` against moto: upload, create / unchanged / update, tags, start, wait, errors."""

import json
import shutil
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from support import BUCKET, MODULE, REGION, ROLE, invoke

from pipelines import run_pipeline
from pipelines.churn import pipeline as churn
from pipelines.local.engine import LocalRunner

REPO = Path(__file__).resolve().parents[2]
KWARGS = json.dumps({"region": REGION, "default_bucket": BUCKET})


@pytest.fixture
def aws():
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield boto3.client("sagemaker", region_name=REGION), boto3.client("s3", region_name=REGION)


def run(capsys, *extra):
    return invoke(
        run_pipeline.main, ["--module-name", MODULE, "--role-arn", ROLE, "--kwargs", KWARGS, *extra], capsys
    )


def tags_of(sm, name):
    arn = sm.describe_pipeline(PipelineName=name)["PipelineArn"]
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def test_creates_then_skips_unchanged_then_updates_on_a_changed_script(aws, capsys, monkeypatch, tmp_path):
    sm, s3 = aws
    tags = json.dumps([{"Key": "team", "Value": "churn"}])
    common = ("--project-name", "churn-proj", "--project-id", "p-abc123", "--tags", tags, "--no-start")

    code, out, err = run(capsys, *common)
    assert (code, err) == (0, ""), err
    assert "pipeline ChurnPipeline: created" in out
    assert "14 object(s) uploaded, 0 already in place" in out
    deployed = sm.describe_pipeline(PipelineName="ChurnPipeline")
    assert deployed["RoleArn"] == ROLE
    assert tags_of(sm, "ChurnPipeline") == {
        "team": "churn",
        "sagemaker:project-name": "churn-proj",
        "sagemaker:project-id": "p-abc123",
    }
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="ChurnPipeline/code/")["Contents"]]
    assert len(keys) == 14  # each script with the steps modules it imports, and the serving archive
    for key in keys:  # every uploaded object is referenced by the definition
        assert f"s3://{BUCKET}/{key}" in deployed["PipelineDefinition"] or (
            f"s3://{BUCKET}/{'/'.join(key.split('/')[:3])}/" in deployed["PipelineDefinition"]
        )

    code, out, _ = run(capsys, *common)
    assert code == 0
    assert "definition unchanged, not updated (step cache kept)" in out
    assert "0 object(s) uploaded, 14 already in place" in out
    assert (
        sm.describe_pipeline(PipelineName="ChurnPipeline")["PipelineDefinition"]
        == deployed["PipelineDefinition"]
    )

    steps_copy = tmp_path / "steps"
    shutil.copytree(REPO / "steps", steps_copy)
    (steps_copy / "train.py").write_text((REPO / "steps" / "train.py").read_text() + "\n# tuned\n")
    monkeypatch.setattr(churn, "STEPS_DIR", steps_copy)
    code, out, _ = run(capsys, *common)
    assert code == 0
    assert "pipeline ChurnPipeline: updated" in out
    # The train bundle moves to a new key whole: its script and the three steps modules it imports.
    assert "4 object(s) uploaded, 10 already in place" in out
    assert (
        sm.describe_pipeline(PipelineName="ChurnPipeline")["PipelineDefinition"]
        != deployed["PipelineDefinition"]
    )
    assert len(tags_of(sm, "ChurnPipeline")) == 3


def test_project_tags_come_from_the_sagemaker_project_environment(aws, capsys, monkeypatch):
    sm, _ = aws
    monkeypatch.setenv("SAGEMAKER_PROJECT_NAME", "from-env")
    monkeypatch.setenv("SAGEMAKER_PROJECT_ID", "p-env")
    code, _, err = run(capsys, "--no-start")
    assert code == 0, err
    assert tags_of(sm, "ChurnPipeline") == {
        "sagemaker:project-name": "from-env",
        "sagemaker:project-id": "p-env",
    }


def test_starts_an_execution_with_parameters_and_waits_for_it(aws, capsys, monkeypatch):
    sm, _ = aws
    monkeypatch.setattr(run_pipeline.time, "sleep", lambda _: None)
    code, out, err = run(capsys, "--parameters", '{"MaxTuningJobs": 4}', "--wait")
    assert code == 0, err
    assert "execution started: arn:aws:sagemaker" in out
    assert "execution status: Succeeded" in out
    (summary,) = sm.list_pipeline_executions(PipelineName="ChurnPipeline")["PipelineExecutionSummaries"]
    assert summary["PipelineExecutionStatus"] == "Succeeded"


def test_without_wait_it_starts_and_returns(aws, capsys):
    code, out, _ = run(capsys)
    assert code == 0
    assert "execution started" in out and "execution status" not in out


def test_waiting_reports_each_status_change_until_the_execution_ends():
    class FakeSageMaker:
        def __init__(self):
            self.statuses = iter(["Executing", "Executing", "Failed"])

        def describe_pipeline_execution(self, PipelineExecutionArn):
            status = next(self.statuses)
            return {"PipelineExecutionStatus": status, "FailureReason": "Step Evaluate failed"}

    seen = []
    final = run_pipeline.wait_for_execution(
        FakeSageMaker(), "arn:x", report=seen.append, sleep=lambda _: None
    )
    assert seen == ["execution status: Executing", "execution status: Failed"]
    assert final["FailureReason"] == "Step Evaluate failed"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--kwargs", "{not json"), "--kwargs is not valid JSON"),
        (("--tags", '[{"Key": "a"}]'), "--tags: item 0 is not"),
        (("--tags", "{'a': 1}"), "--tags is not valid JSON"),
        (("--tags", '[{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]'), "key 'a' is given twice"),
        (("--module-name", "pipelines.nothing.pipeline"), "no such module"),
        (("--role-arn", "admin"), "--role-arn 'admin' is not an IAM role ARN"),
        (("--parameters", '{"MaxTuningJob": 2}'), "Did you mean 'MaxTuningJobs'?"),
        (("--wait", "--no-start"), "--wait and --no-start contradict"),
        (("--parameters", '{"MaxTuningJobs": 4.5}'), "MaxTuningJobs=4.5 is not an Integer"),
        (("--parameters", '{"AucThreshold": "high"}'), 'AucThreshold="high" is not a Float'),
        (
            ("--parameters", '{"ModelApprovalStatus": "Approvd"}'),
            "is not one of PendingManualApproval, Approved",
        ),
        (("--definition-file", "/no/such/dir/d.json"), "directory '/no/such/dir' does not exist"),
        (("--kwargs", '{"default_bucket": "b", "regin": "x"}'), "unknown argument(s) 'regin'"),
    ],
)
def test_bad_input_fails_with_one_line_and_exit_code_2_before_any_aws_call(
    capsys, monkeypatch, extra, fragment
):
    monkeypatch.setattr(run_pipeline, "aws_clients", lambda region: pytest.fail("AWS reached"))
    code, out, err = run(capsys, *extra)
    assert code == 2, err
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert fragment in err
    assert "Traceback" not in err


def test_a_missing_role_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr(run_pipeline, "aws_clients", lambda region: pytest.fail("AWS reached"))
    code, _, err = invoke(run_pipeline.main, ["--module-name", MODULE, "--kwargs", KWARGS], capsys)
    assert code == 2
    assert "--role-arn" in err and err.count("\n") == 1


def test_an_aws_refusal_is_one_line_naming_what_was_being_done(capsys):
    with mock_aws():  # no bucket: the upload is refused
        code, _, err = run(capsys, "--no-start")
    assert code == 3
    assert err.startswith("Error: uploading the step code: NoSuchBucket") and err.count("\n") == 1


def test_a_failed_execution_with_wait_exits_3_with_its_reason(aws, capsys, monkeypatch):
    failed = {"PipelineExecutionStatus": "Failed", "FailureReason": "Step Evaluate failed: no test rows"}
    monkeypatch.setattr(run_pipeline, "wait_for_execution", lambda sm, arn: failed)
    code, _, err = run(capsys, "--wait")
    assert code == 3
    assert err.startswith("Error: execution arn:aws:sagemaker:") and err.count("\n") == 1
    assert "ended Failed: Step Evaluate failed: no test rows" in err


def test_the_region_comes_from_aws_region_when_kwargs_name_none(aws, capsys, monkeypatch):
    # boto3 itself reads only AWS_DEFAULT_REGION; the pipeline's region must win.
    monkeypatch.setenv("AWS_REGION", REGION)
    args = ["--module-name", MODULE, "--role-arn", ROLE, "--kwargs", json.dumps({"default_bucket": BUCKET})]
    code, out, err = invoke(run_pipeline.main, [*args, "--no-start"], capsys)
    assert code == 0, err
    assert f"arn:aws:sagemaker:{REGION}:" in out


def test_the_definition_file_holds_exactly_what_was_sent(aws, capsys, tmp_path):
    sm, _ = aws
    target = tmp_path / "pipeline-definition.json"
    code, _, err = run(capsys, "--no-start", "--definition-file", str(target))
    assert code == 0, err
    assert target.read_text() == sm.describe_pipeline(PipelineName="ChurnPipeline")["PipelineDefinition"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_parameter_values_are_sent_as_sagemaker_expects_them():
    definition = json.dumps(
        {
            "Parameters": [
                {"Name": "Jobs", "Type": "Integer"},
                {"Name": "Flag", "Type": "Boolean"},
                {"Name": "T", "Type": "Float"},
            ]
        }
    )
    sent = run_pipeline.parse_parameters('{"Jobs": 4, "Flag": true, "T": 0.85}', definition)
    assert sent == [
        {"Name": "Jobs", "Value": "4"},
        {"Name": "Flag", "Value": "true"},
        {"Name": "T", "Value": "0.85"},
    ]


# ---- what the build starts: only what changed, and on the sample while no data has arrived


def executions(sm) -> list[dict]:
    summaries = sm.list_pipeline_executions(PipelineName="ChurnPipeline")["PipelineExecutionSummaries"]
    return sorted(summaries, key=lambda s: s["StartTime"])


def execution_input(sm, execution: dict) -> str:
    parameters = sm.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=execution["PipelineExecutionArn"]
    )["PipelineParameters"]
    return {p["Name"]: p["Value"] for p in parameters}.get("InputDataUrl", "<default>")


def test_with_start_if_changed_an_unchanged_definition_starts_nothing_and_says_so(
    aws, capsys, monkeypatch, tmp_path
):
    sm, _ = aws
    code, out, err = run(capsys, "--start-if-changed")
    assert (code, err) == (0, ""), err
    assert "created" in out and "execution started" in out
    assert len(executions(sm)) == 1

    code, out, err = run(capsys, "--start-if-changed")
    assert (code, err) == (0, ""), err
    assert "definition unchanged: no execution started" in out
    assert "execution started:" not in out
    assert len(executions(sm)) == 1

    steps_copy = tmp_path / "steps"
    shutil.copytree(REPO / "steps", steps_copy)
    (steps_copy / "evaluate.py").write_text((REPO / "steps" / "evaluate.py").read_text() + "\n# changed\n")
    monkeypatch.setattr(churn, "STEPS_DIR", steps_copy)
    code, out, _ = run(capsys, "--start-if-changed")
    assert code == 0 and "updated" in out and "execution started" in out
    assert len(executions(sm)) == 2

    # Asked for (no --start-if-changed), an unchanged definition starts as before.
    code, out, _ = run(capsys)
    assert code == 0 and "definition unchanged" in out and "execution started" in out
    assert len(executions(sm)) == 3


@pytest.mark.parametrize(
    ("no_start", "if_changed", "changed", "expected"),
    [
        (False, False, False, True),
        (False, True, True, True),
        (False, True, False, False),
        (True, False, True, False),
        (True, True, True, False),
    ],
)
def test_the_start_decision(no_start, if_changed, changed, expected):
    result = run_pipeline.UpsertResult(
        "updated" if changed else "unchanged", "arn", definition_changed=changed
    )
    start, why_not = run_pipeline.should_start(no_start, if_changed, result)
    assert start is expected
    assert bool(why_not) is not expected


def test_a_role_or_description_change_alone_is_not_a_changed_definition(aws, capsys):
    sm, _ = aws
    assert run(capsys, "--no-start")[0] == 0
    code, out, _ = run(capsys, "--start-if-changed", "--description", "another description")
    assert code == 0 and "updated" in out and "no execution started" in out
    assert executions(sm) == []


def test_an_empty_input_location_runs_on_the_staged_sample_and_says_so(aws, capsys):
    sm, s3 = aws
    code, out, err = run(capsys, "--sample-if-empty")
    assert (code, err) == (0, ""), err
    input_url = f"s3://{BUCKET}/churn/input/"
    sample_url = f"s3://{BUCKET}/ChurnPipeline/sample/churn.csv"
    assert f"input {input_url} is empty" in out and sample_url in out
    staged = s3.get_object(Bucket=BUCKET, Key="ChurnPipeline/sample/churn.csv")["Body"].read()
    assert staged == churn.SAMPLE_DATA.read_bytes()
    # Staged beside the code, not in the input location: real data is never mixed with it.
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="churn/input/")["KeyCount"] == 0
    (first,) = executions(sm)
    assert execution_input(sm, first) == sample_url

    # Data arrives: the next execution reads the input location, and nothing is said about a sample.
    s3.put_object(Bucket=BUCKET, Key="churn/input/2026-11.csv", Body=churn.SAMPLE_DATA.read_bytes())
    code, out, _ = run(capsys, "--sample-if-empty")
    assert code == 0 and "is empty" not in out
    assert execution_input(sm, executions(sm)[-1]) == "<default>"


def test_an_input_given_as_a_parameter_is_the_location_checked(aws, capsys):
    sm, s3 = aws
    s3.put_object(Bucket=BUCKET, Key="elsewhere/data.csv", Body=b"1,2\n")
    given = f"s3://{BUCKET}/elsewhere/"
    code, out, _ = run(capsys, "--sample-if-empty", "--parameters", json.dumps({"InputDataUrl": given}))
    assert code == 0 and "is empty" not in out
    assert execution_input(sm, executions(sm)[-1]) == given
    empty = f"s3://{BUCKET}/nothing-here/"
    code, out, _ = run(capsys, "--sample-if-empty", "--parameters", json.dumps({"InputDataUrl": empty}))
    assert code == 0 and f"input {empty} is empty" in out
    assert execution_input(sm, executions(sm)[-1]) == f"s3://{BUCKET}/ChurnPipeline/sample/churn.csv"


def test_the_aws_only_start_options_are_refused_with_local(capsys):
    code, _, err = invoke(
        run_pipeline.main, ["--local", "--module-name", MODULE, "--start-if-changed"], capsys
    )
    assert code == 2 and "apply to SageMaker runs only" in err


@pytest.mark.parametrize("module_name", ["", ".churn", "pipelines..churn", "pipelines.churn.pipeline."])
@pytest.mark.parametrize("cli", ["run-pipeline", "run-pipeline --local", "get-pipeline-definition"])
def test_a_module_name_that_is_not_an_absolute_dotted_name_is_one_error_line(capsys, cli, module_name):
    """Reproduction: ``run-pipeline --module-name ''`` (ValueError: Empty module name) and
    ``get-pipeline-definition --module-name .churn`` (TypeError: the 'package' argument is required
    to perform a relative import) ended in tracebacks."""
    from pipelines import get_pipeline_definition

    main, *flags = {
        "run-pipeline": (run_pipeline.main, "--role-arn", ROLE),
        "run-pipeline --local": (run_pipeline.main, "--local"),
        "get-pipeline-definition": (get_pipeline_definition.main,),
    }[cli]
    code, out, err = invoke(main, ["--module-name", module_name, *flags], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"Error: --module-name {module_name!r} is not an absolute module name")
    assert err.count("\n") == 1 and "pipelines.churn.pipeline" in err


@pytest.mark.parametrize("tables", [[], ["a.csv", "b.csv"]])
def test_a_local_run_says_why_it_stages_no_table_beside_a_dataset_spec(tmp_path, monkeypatch, capsys, tables):
    """Reproduction: ``run-pipeline --local --kwargs '{"dataset_spec": "my/dataset.json"}'`` with no
    CSV file (or two) beside the spec staged nothing and said nothing; the run then failed at
    Preprocess on a missing input."""
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path / "home"))
    # Only the staging is under test here, not the definition's own checks.
    monkeypatch.setattr(LocalRunner, "check", lambda self, definition, source, parameters: None)
    spec = tmp_path / "my" / "dataset.json"
    spec.parent.mkdir()
    shutil.copy(REPO / "pipelines" / "churn" / "dataset.json", spec)
    for name in tables:
        (spec.parent / name).write_text("x\n")
    argv = [
        "--local",
        "--no-start",
        "--module-name",
        MODULE,
        "--kwargs",
        json.dumps({"dataset_spec": str(spec)}),
    ]

    code, out, err = invoke(run_pipeline.main, argv, capsys)

    found = "no" if not tables else "2 (a.csv, b.csv)"
    assert (code, out) == (2, "")
    assert err.startswith(f"Error: dataset spec {spec}: {found} CSV file(s) beside it, so no sample table")
    # The table is named after the spec's folder, so its input prefix is its own, not churn's.
    assert err.rstrip().endswith("or stage the table with --upload PATH=s3://sagemaker-local/my/input/")
    assert err.count("\n") == 1
    # With the table given by --upload, the run goes ahead.
    upload = f"{spec.parent / 'a.csv'}=s3://sagemaker-local/my/input/a.csv"
    (spec.parent / "a.csv").write_text("x\n")
    code, out, err = invoke(run_pipeline.main, [*argv, "--upload", upload], capsys)
    assert code == 0, err
    assert "staged" in out

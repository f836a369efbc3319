"""``model-registry`` as the shell runs it: output, exit codes and one-line errors."""

import json

import pytest
from support import REGION, invoke

from pipelines.registry import APPROVED, LocalModelRegistry
from pipelines.registry import cli as registry_cli
from pipelines.registry.aws import AwsModelRegistry

IMAGE = "xgboost:3.2-0"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """The local registry the CLI opens: three versions of churn, version 2 approved."""
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry_cli.getpass, "getuser", lambda: "tester")
    registry = LocalModelRegistry()
    registry.create_group("churn", "churn classifier")
    registry.create_group("fraud")
    for version in (1, 2, 3):
        registry.register("churn", model_data_url=f"s3://b/{version}/model.tar.gz", image_uri=IMAGE)
    registry.update_approval("churn", 2, APPROVED, by="alice", reason="AUC 0.91")
    return registry


def run(capsys, *argv):
    return invoke(registry_cli.main, argv, capsys)


def test_list_groups_prints_an_aligned_table(registry, capsys):
    code, out, err = run(capsys, "list-groups")
    assert (code, err) == (0, "")
    header, churn, fraud = out.splitlines()
    assert header.split() == ["NAME", "CREATED", "DESCRIPTION"]
    assert churn.startswith("churn  ") and churn.endswith("churn classifier")
    assert fraud.startswith("fraud  ")
    assert header.index("CREATED") == churn.index("20") == fraud.index("20")


def test_list_groups_as_json(registry, capsys):
    code, out, _ = run(capsys, "list-groups", "--json")
    assert code == 0
    assert [g["ModelPackageGroupName"] for g in json.loads(out)] == ["churn", "fraud"]


def test_list_versions_shows_each_status_and_filters(registry, capsys):
    code, out, _ = run(capsys, "list-versions", "churn")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["VERSION", "STATUS", "CREATED", "GATE", "METRICS", "MODEL", "DATA"]
    assert [(r[0], r[1], r[-1]) for r in rows[1:]] == [
        ("1", "PendingManualApproval", "s3://b/1/model.tar.gz"),
        ("2", "Approved", "s3://b/2/model.tar.gz"),
        ("3", "PendingManualApproval", "s3://b/3/model.tar.gz"),
    ]
    code, out, _ = run(capsys, "list-versions", "churn", "--status", "Approved", "--json")
    assert code == 0
    assert [p["ModelPackageVersion"] for p in json.loads(out)] == [2]
    code, out, _ = run(capsys, "list-versions", "fraud")
    assert (code, out) == (0, "No versions in fraud.\n")


def test_describe_prints_the_describe_model_package_json(registry, capsys):
    code, out, _ = run(capsys, "describe", "churn", "2")
    assert code == 0
    described = json.loads(out)
    evaluation = described.pop("Evaluation")
    assert described == registry.get_version("churn", 2).to_describe()
    assert evaluation["Problem"] == "the version records no ModelQuality statistics"
    assert described["ModelPackageArn"] == "arn:aws:sagemaker:local:000000000000:model-package/churn/2"


def test_approve_and_reject_print_the_change_and_land_in_the_history(registry, capsys):
    code, out, err = run(capsys, "approve", "churn", "3", "--reason", "AUC 0.93", "--by", "carol")
    assert (code, err) == (0, "")
    assert out.startswith("churn/3: PendingManualApproval -> Approved (by carol) arn:aws:sagemaker:local:")
    code, out, _ = run(capsys, "reject", "churn", "3", "--reason", "leak found")
    assert code == 0
    assert "Approved -> Rejected (by tester)" in out  # --by defaults to the OS user

    code, out, _ = run(capsys, "history", "churn", "3")
    assert code == 0
    history = json.loads(out)
    assert [(h["By"], h["FromStatus"], h["ToStatus"], h["Reason"]) for h in history] == [
        ("pipeline", None, "PendingManualApproval", "registered"),
        ("carol", "PendingManualApproval", "Approved", "AUC 0.93"),
        ("tester", "Approved", "Rejected", "leak found"),
    ]
    assert registry.latest_approved("churn").version == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ("list-versions", "chrun"),
            "Error: Model package group 'chrun' does not exist. Did you mean 'churn'? "
            "Existing groups: churn, fraud\n",
        ),
        (("describe", "churn", "9"), "Error: Model package churn/9 does not exist; it has versions 1-3\n"),
        (("approve", "churn", "9"), "Error: Model package churn/9 does not exist; it has versions 1-3\n"),
    ],
)
def test_a_missing_group_or_version_exits_4_with_one_line(registry, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (4, "", message)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (("list-versions", "churn", "--status", "approved"), "invalid choice: 'approved' (choose from"),
        (("describe", "churn", "two"), "invalid int value: 'two'"),
        (("describe", "churn", "0"), "model package version 0 is invalid"),
        (("promote", "churn", "1"), "invalid choice: 'promote'"),
        ((), "the following arguments are required: COMMAND"),
        (("list-groups", "--region", REGION), "--region eu-west-1 applies to --backend aws only"),
        (("--backend", "gcp", "list-groups"), "invalid choice: 'gcp'"),
    ],
)
def test_bad_input_exits_2_with_one_error_line(registry, capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert fragment in err


def test_the_aws_backend_reads_sagemaker_with_options_before_or_after_the_command(
    sagemaker, capsys, monkeypatch
):
    registry = AwsModelRegistry(sagemaker)
    registry.create_group("churn")
    registry.register("churn", model_data_url="s3://b/model.tar.gz", image_uri=IMAGE)

    code, out, _ = run(capsys, "--backend", "aws", "--region", REGION, "list-versions", "churn")
    assert code == 0 and "PendingManualApproval" in out
    code, out, _ = run(capsys, "approve", "churn", "1", "--backend", "aws", "--region", REGION)
    assert code == 0 and "-> Approved" in out
    code, out, _ = run(capsys, "history", "churn", "1", "--backend", "aws", "--region", REGION)
    assert code == 0 and json.loads(out)[0]["ToStatus"] == "Approved"


def test_the_aws_backend_without_a_region_exits_3_saying_how_to_give_one(capsys):
    code, out, err = run(capsys, "list-groups", "--backend", "aws")
    assert (code, out) == (3, "")
    assert err == "Error: no AWS region for the registry; pass --region or set AWS_REGION\n"

"""Model cards: filled from the version and its execution, valid in SageMaker's model card schema,
rendered as HTML, and created in SageMaker with --backend aws."""

import json

import boto3
import execution_fixture
import pytest
from botocore.stub import ANY, Stubber

from pipelines.registry import cli as registry_cli
from pipelines.registry.local import FILE_NAME, LocalModelRegistry
from pipelines.report import card
from pipelines.report.card_command import create_in_sagemaker


@pytest.fixture
def built(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path))
    return execution_fixture.build(tmp_path)


def test_the_vendored_schema_is_the_sdks_model_card_schema():
    assert json.loads(card.SCHEMA_PATH.read_text()) == card.sdk_schema()


def test_the_schema_check_refuses_unknown_fields_and_wrong_values():
    problems = card.schema_problems(
        {"model_overview": {"model_name": "x"}, "intended_uses": {"risk_rating": "Severe"}}
    )
    assert any("model_overview" in p and "model_name" in p for p in problems)
    assert any("intended_uses/risk_rating" in p for p in problems)
    assert card.schema_problems({"model_overview": {"model_creator": "me"}}) == []


def test_a_card_is_filled_from_the_version_its_evaluation_tuning_and_gate(built, capsys):
    assert registry_cli.main(["card", "ChurnModelPackageGroup", "1"]) == 0
    out = capsys.readouterr().out
    assert "gap:" not in out
    content = json.loads((built.home / "model-cards" / "ChurnModelPackageGroup-1.json").read_text())
    assert card.schema_problems(content) == []
    assert content["model_overview"]["model_artifact"] == [built.outputs["model"]]
    assert content["model_overview"]["problem_type"] == "Binary Classification"
    training = content["training_details"]
    assert training["objective_function"] == {
        "function": "Maximize",
        "facet": "AUC",
        "condition": "validation:auc on the validation split",
    }
    assert {"name": "eta", "value": "0.2"} in training["training_job_details"]["hyper_parameters"]
    assert training["training_job_details"]["training_metrics"] == [{"name": "validation:auc", "value": 0.88}]
    evaluation = content["evaluation_details"][0]
    assert "Gate CheckAuc" in evaluation["evaluation_observation"]
    kinds = {m["type"] for m in evaluation["metric_groups"][0]["metric_data"]}
    assert kinds == {"number", "matrix", "linear_graph"}
    custom = content["additional_information"]["custom_details"]
    assert custom["approval_status"] == "PendingManualApproval"
    assert "registered" in custom["approval.1"]
    html = (built.home / "model-cards" / "ChurnModelPackageGroup-1.html").read_text()
    assert 'data-plot="confusion"' in html and 'data-plot="roc"' in html


def test_promotion_records_reach_the_card(built):
    registry = LocalModelRegistry(built.home / FILE_NAME)
    registry.update_metadata("ChurnModelPackageGroup", 1, {"stage.dev.deployed-at": "2026-11-30T11:00:00Z"})
    assert registry_cli.main(["card", "ChurnModelPackageGroup", "1"]) == 0
    content = json.loads((built.home / "model-cards" / "ChurnModelPackageGroup-1.json").read_text())
    assert (
        content["additional_information"]["custom_details"]["stage.dev.deployed-at"] == "2026-11-30T11:00:00Z"
    )
    assert "stage.dev.deployed-at" in content["additional_information"]["caveats_and_recommendations"]


def test_a_version_with_no_evaluation_gets_a_valid_card_with_a_marked_gap(built, capsys, tmp_path):
    registry = LocalModelRegistry(built.home / FILE_NAME)
    registry.register("ChurnModelPackageGroup", model_data_url=built.outputs["model"], image_uri="img:1")
    assert (
        registry_cli.main(["card", "ChurnModelPackageGroup", "2", "--output-dir", str(tmp_path / "c")]) == 0
    )
    out = capsys.readouterr().out
    assert "gap: no evaluation report: the version records none" in out
    content = json.loads((tmp_path / "c" / "ChurnModelPackageGroup-2.json").read_text())
    assert content["evaluation_details"] == [] and card.schema_problems(content) == []
    assert 'id="no-evaluation"' in (tmp_path / "c" / "ChurnModelPackageGroup-2.html").read_text()


def test_an_unknown_version_is_one_line_with_exit_4(built, capsys):
    assert registry_cli.main(["card", "ChurnModelPackageGroup", "9"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_aws_creates_the_card_and_attaches_it_to_the_model_package(built):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    content = {
        "model_overview": {
            "model_creator": "pipeline",
            "model_artifact": ["s3://b/m.tar.gz"],
            "algorithm_type": "XGBoost",
        }
    }
    package_arn = "arn:aws:sagemaker:us-east-1:111122223333:model-package/churn/3"
    card_arn = "arn:aws:sagemaker:us-east-1:111122223333:model-card/churn-3"
    with Stubber(sm) as stub:
        stub.add_response(
            "create_model_card",
            {"ModelCardArn": card_arn},
            {"ModelCardName": "churn-3", "Content": ANY, "ModelCardStatus": "Draft"},
        )
        stub.add_response(
            "update_model_package",
            {"ModelPackageArn": package_arn},
            {
                "ModelPackageArn": package_arn,
                "ModelCard": {"ModelCardContent": ANY, "ModelCardStatus": "Draft"},
            },
        )
        assert create_in_sagemaker(sm, "churn-3", package_arn, content) == card_arn
        stub.assert_no_pending_responses()


def test_aws_package_card_keeps_only_creator_and_artifact_in_the_overview():
    content = {
        "model_overview": {"model_creator": "p", "model_artifact": ["a"], "algorithm_type": "XGBoost"},
        "x": 1,
    }
    assert card.package_card(content) == {
        "model_overview": {"model_creator": "p", "model_artifact": ["a"]},
        "x": 1,
    }


def test_aws_refusal_is_one_aws_error_line(built):
    from pipelines.errors import AwsError

    sm = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(sm) as stub:
        stub.add_client_error(
            "create_model_card", "AccessDeniedException", "not authorized to CreateModelCard"
        )
        with pytest.raises(
            AwsError, match="creating model card churn-3: AccessDeniedException: not authorized"
        ):
            create_in_sagemaker(sm, "churn-3", "arn:aws:sagemaker:us-east-1:1:model-package/churn/3", {})

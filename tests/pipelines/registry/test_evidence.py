"""What ``model-registry`` shows a reviewer: the gate, its threshold and the evaluation's metrics."""

import json

import boto3
import pytest
from support import REGION, invoke

from pipelines.local.store import ObjectStore
from pipelines.registry import LocalModelRegistry
from pipelines.registry import cli as registry_cli
from pipelines.registry.aws import AwsModelRegistry
from pipelines.registry.evidence import Evidence, headline_metrics

EVALUATION_URI = "s3://artifacts/ChurnPipeline/abc/Evaluate/evaluation/evaluation.json"
EVALUATION = {
    "binary_classification_metrics": {
        "auc": {"value": 0.9123, "standard_deviation": 0.01},
        "accuracy": {"value": 0.88, "standard_deviation": 0.02},
        "recall": {"value": 0.61, "standard_deviation": 0.03},
        "confusion_matrix": {"0": {"0": 10, "1": 1}, "1": {"0": 2, "1": 5}},
    }
}
METADATA = {"ProblemType": "binary_classification", "GateMetric": "auc", "GateThreshold": "0.75"}
METRICS = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": EVALUATION_URI}}}


def run(capsys, *argv):
    return invoke(registry_cli.main, argv, capsys)


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(home))
    registry = LocalModelRegistry()
    registry.create_group("churn")
    registry.register(
        "churn",
        model_data_url="s3://b/1/model.tar.gz",
        image_uri="xgboost:3.2-0",
        model_metrics=METRICS,
        customer_metadata=METADATA,
    )
    return home


def test_list_versions_shows_the_gate_its_threshold_and_the_other_metrics(home, capsys):
    ObjectStore(home / "s3").put_bytes(EVALUATION_URI, json.dumps(EVALUATION).encode())
    code, out, err = run(capsys, "list-versions", "churn")
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.index("GATE") == row.index("auc 0.9123 (threshold 0.75)")
    assert header.index("METRICS") == row.index("accuracy 0.88, recall 0.61")
    assert "confusion" not in row

    code, out, _ = run(capsys, "list-versions", "churn", "--json")
    assert json.loads(out)[0]["Evaluation"]["Metrics"] == {"auc": 0.9123, "accuracy": 0.88, "recall": 0.61}


def test_describe_adds_the_evaluation_to_the_describe_answer(home, capsys):
    ObjectStore(home / "s3").put_bytes(EVALUATION_URI, json.dumps(EVALUATION).encode())
    code, out, _ = run(capsys, "describe", "churn", "1")
    assert code == 0
    evaluation = json.loads(out)["Evaluation"]
    assert evaluation == {
        "GateMetric": "auc",
        "GateThreshold": "0.75",
        "GateValue": 0.9123,
        "EvaluationUri": EVALUATION_URI,
        "Metrics": {"auc": 0.9123, "accuracy": 0.88, "recall": 0.61},
    }


def test_approve_prints_the_evidence_it_approves_on(home, capsys):
    ObjectStore(home / "s3").put_bytes(EVALUATION_URI, json.dumps(EVALUATION).encode())
    code, out, _ = run(capsys, "approve", "churn", "1", "--by", "carol")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("churn/1: PendingManualApproval -> Approved (by carol)")
    assert lines[1] == "  gate: auc 0.9123 (threshold 0.75); evaluation: accuracy 0.88, recall 0.61"
    assert lines[2] == "  model: s3://b/1/model.tar.gz"


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, f"no object at {EVALUATION_URI} in the local object store"),
        (b"{not json", f"{EVALUATION_URI} is not JSON"),
    ],
)
def test_an_unreadable_evaluation_is_shown_and_the_listing_still_answers(home, capsys, content, problem):
    if content is not None:
        ObjectStore(home / "s3").put_bytes(EVALUATION_URI, content)
    code, out, err = run(capsys, "list-versions", "churn")
    assert (code, err) == (0, "")
    row = out.splitlines()[1]
    assert "auc ? (threshold 0.75)" in row
    assert f"evaluation unreadable: {problem}" in row


def test_a_version_registered_before_thresholds_were_recorded_says_so():
    evidence = Evidence("auc", None, EVALUATION_URI, metrics={"auc": 0.8})
    assert evidence.gate_text() == "auc 0.8 (threshold not recorded)"


def test_headline_metrics_take_the_problem_types_section_and_only_numeric_values():
    document = {
        "regression_metrics": {"rmse": {"value": 3.5}, "r2": {"value": True}, "mse": {"value": "12"}},
        "binary_classification_metrics": {"auc": {"value": 0.9}},
    }
    assert headline_metrics(document, "regression") == {"rmse": 3.5}
    assert headline_metrics(document, None) == {"rmse": 3.5}
    assert headline_metrics(["not", "a", "mapping"], "regression") == {}


def test_the_aws_backend_reads_the_evaluation_from_s3(sagemaker, capsys):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="artifacts", Key=EVALUATION_URI.split("/", 3)[3], Body=json.dumps(EVALUATION))
    registry = AwsModelRegistry(sagemaker)
    registry.create_group("churn")
    registry.register(
        "churn",
        model_data_url="s3://b/model.tar.gz",
        image_uri="xgboost:3.2-0",
        model_metrics=METRICS,
        customer_metadata=METADATA,
    )
    code, out, err = run(capsys, "list-versions", "churn", "--backend", "aws", "--region", REGION)
    assert (code, err) == (0, "")
    assert "auc 0.9123 (threshold 0.75)" in out and "accuracy 0.88, recall 0.61" in out

"""The local deployer's edges that the end-to-end flow does not reach."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipelines.promotion.config import load_promotion
from pipelines.promotion.flow import PromotionError
from pipelines.promotion.local import LocalDeployer
from pipelines.registry.base import ModelPackage

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


@pytest.fixture
def stage():
    return load_promotion(DEPLOY / "promotion.json").stage("staging")


def test_undeploy_where_nothing_was_ever_deployed_is_a_no_op(tmp_path, stage):
    deployer = LocalDeployer(tmp_path)
    other = tmp_path / "accounts" / "333333333333" / "us-east-1" / "keep.txt"
    other.parent.mkdir(parents=True)
    other.write_text("another account's state")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    deployer.undeploy(stage)
    deployer.undeploy(stage)

    # Nothing was created, removed or rewritten, here or in another stage's account.
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert other.read_text() == "another account's state"


def test_each_stage_account_is_its_own_namespace(tmp_path, stage):
    deployer = LocalDeployer(tmp_path)
    prod = load_promotion(DEPLOY / "promotion.json").stage("prod")
    assert deployer.endpoints(stage).root != deployer.endpoints(prod).root
    assert deployer.endpoints(stage).root.parent.parent == tmp_path / "accounts"


def test_deploying_a_model_missing_from_the_store_names_it(tmp_path, stage):
    package = ModelPackage(
        group="ChurnModelPackageGroup",
        version=3,
        arn="arn:aws:sagemaker:us-east-1:111111111111:model-package/churnmodelpackagegroup/3",
        approval_status="Approved",
        created=datetime.now(timezone.utc),
        model_data_url="s3://bucket/nowhere/model.tar.gz",
        image_uri="image",
    )
    with pytest.raises(PromotionError, match="s3://bucket/nowhere/model.tar.gz is not in the local store"):
        LocalDeployer(tmp_path).deploy(stage, package)


def test_a_stage_without_an_endpoint_answers_status_0(tmp_path, stage):
    status, body = LocalDeployer(tmp_path).invoke(stage, b"1,2", "text/csv", "text/csv")
    assert status == 0 and b"no answer from" in body

"""The promotion flow over the local registry and a deployer double: selection, gates, smoke tests,
rollback, rejection, and the what-runs-where records."""

import json
import shutil
from pathlib import Path

import pytest

from pipelines.errors import ConfigError, UsageError
from pipelines.promotion.config import load_promotion
from pipelines.promotion.flow import SAMPLE_FILENAME, Deployer, Promotion, PromotionError
from pipelines.registry.local import LocalModelRegistry
from steps import evaluate

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
GROUP = "ChurnModelPackageGroup"
ROWS = ["1.0,2.0", "3.0,4.0", "5.0,"]
PREDICTIONS = [0.1, 0.2, 0.3]


class FakeDeployer(Deployer):
    """Serves each version's recorded predictions; can be told to fail a deploy or to answer wrong."""

    def __init__(self):
        self.serving = {}
        self.fail_deploy = False
        self.skew = 0.0
        self.deploys = []
        self.sample = {"content_type": "text/csv", "rows": ROWS, "predictions": PREDICTIONS}
        self.requests = []

    def deploy(self, stage, package):
        if self.fail_deploy:
            raise PromotionError(f"{stage.name}: the endpoint did not become healthy")
        self.serving[stage.name] = package
        self.deploys.append((stage.name, package.version))
        return f"http://127.0.0.1:{stage.endpoint.local_port}"

    def undeploy(self, stage):
        self.serving.pop(stage.name, None)

    def invoke(self, stage, body, content_type, accept):
        if stage.name not in self.serving:
            return 0, b"no endpoint"
        self.requests.append((content_type, body.decode()))
        predictions = self.sample["predictions"]
        if content_type == "application/json":
            return 200, json.dumps({"predictions": [predictions[0] + self.skew]}).encode()
        row = body.decode().splitlines()[-1]  # after the header row, when there is one
        return 200, str(predictions[self.sample["rows"].index(row)] + self.skew).encode()

    def read(self, uri):
        assert uri.endswith(f"/{SAMPLE_FILENAME}")
        return json.dumps(self.sample).encode()


@pytest.fixture
def registry(tmp_path):
    registry = LocalModelRegistry(tmp_path / "registry.sqlite")
    registry.ensure_group(GROUP)
    return registry


def register(registry, approve=True, metadata=None):
    metrics = {
        "ModelQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/e/evaluation.json"}
        }
    }
    package = registry.register(
        GROUP,
        model_data_url="s3://b/m/model.tar.gz",
        image_uri="img",
        model_metrics=metrics,
        customer_metadata=metadata,
    )
    if approve:
        registry.update_approval(GROUP, package.version, "Approved", by="tester")
    return package.version


@pytest.fixture
def deployer():
    return FakeDeployer()


@pytest.fixture
def flow(registry, deployer):
    lines = []
    promotion = Promotion(load_promotion(DEPLOY / "promotion.json"), registry, deployer, say=lines.append)
    promotion.lines = lines
    return promotion


def test_the_sample_file_name_is_the_one_the_evaluate_step_writes():
    assert SAMPLE_FILENAME == evaluate.SAMPLE_FILENAME


def test_raw_records_are_sent_with_their_header_row_and_one_as_a_json_record(flow, registry, deployer):
    deployer.sample = {
        "content_type": "text/csv",
        "columns": ["state", "international plan"],
        "rows": ["KS,no", '"OH, east",yes'],
        "records": [
            {"state": "KS", "international plan": "no"},
            {"state": "OH, east", "international plan": "yes"},
        ],
        "predictions": [0.125, 0.75],
    }
    register(registry)
    assert flow.promote("dev").rows == 2
    csv_bodies = [body for content_type, body in deployer.requests if content_type == "text/csv"]
    assert csv_bodies == ["state,international plan\nKS,no"] * 2 + [
        'state,international plan\n"OH, east",yes'
    ]
    (json_body,) = [body for content_type, body in deployer.requests if content_type == "application/json"]
    assert json.loads(json_body) == {"instances": [{"state": "KS", "international plan": "no"}]}


def test_a_raw_sample_whose_records_do_not_go_with_its_rows_is_malformed(flow, registry, deployer):
    deployer.sample = {"content_type": "text/csv", "columns": ["a"], "rows": ["1"], "predictions": [0.5]}
    register(registry)
    with pytest.raises(PromotionError, match="is malformed: columns or records do not go with the rows"):
        flow.promote("dev")


def test_the_latest_approved_version_is_selected_by_default(flow, registry):
    register(registry)
    register(registry)
    register(registry, approve=False)
    assert flow.select().version == 2


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_a_pinned_version_that_is_not_approved_is_refused(flow, registry, status):
    version = register(registry, approve=False)
    if status == "Rejected":
        registry.update_approval(GROUP, version, "Rejected", by="tester")
    with pytest.raises(PromotionError, match=f"is {status}, not Approved"):
        flow.select(version)


def test_a_version_pinned_by_arn_must_be_in_the_configured_group(flow, registry):
    register(registry)
    assert flow.select(f"arn:aws:sagemaker:local:000000000000:model-package/{GROUP.lower()}/1").version == 1
    with pytest.raises(ConfigError, match="not 'ChurnModelPackageGroup'"):
        flow.select("arn:aws:sagemaker:local:000000000000:model-package/other/1")


def test_no_approved_version_is_a_clear_error(flow, registry):
    register(registry, approve=False)
    with pytest.raises(PromotionError, match="no Approved version"):
        flow.promote("dev")


def test_dev_deploys_smoke_tests_and_records_where_the_version_serves(flow, registry, deployer):
    version = register(registry)

    report = flow.promote("dev")

    assert report.passed and report.rows == 3
    assert deployer.serving["dev"].version == version
    assert flow.status() == {"dev": version, "staging": None, "prod": None}
    where = flow.where(version)
    assert set(where) == {"dev"}
    assert where["dev"]["serving"] == "yes"
    assert {"deployed-at", "tests-passed-at"} <= set(where["dev"])


def test_staging_needs_the_smoke_tests_of_dev_to_have_passed(flow, registry):
    register(registry)
    with pytest.raises(PromotionError, match="has not passed the smoke tests in dev"):
        flow.promote("staging")
    flow.promote("dev")
    flow.promote("staging")
    assert flow.status()["staging"] == 1


def test_prod_needs_a_manual_approval_and_the_prompt_can_give_it(flow, registry):
    register(registry)
    flow.promote("dev")
    flow.promote("staging")
    with pytest.raises(PromotionError, match="promote approve --stage prod --version 1"):
        flow.promote("prod")
    flow.confirm = lambda question: "prod" in question
    flow.promote("prod")
    meta = registry.get_version(GROUP, 1).customer_metadata
    assert "stage.prod.approved-by" in meta


def test_an_explicit_approval_opens_the_prod_gate(flow, registry):
    register(registry)
    flow.approve_gate("prod", 1, by="alice", reason="reviewed the evaluation")
    meta = registry.get_version(GROUP, 1).customer_metadata
    assert meta["stage.prod.approved-by"] == "alice"
    assert meta["stage.prod.approval-reason"] == "reviewed the evaluation"
    with pytest.raises(UsageError, match="automatic gate"):
        flow.approve_gate("dev", 1, by="alice")


def test_a_smoke_test_that_gets_other_predictions_fails_the_promotion(flow, registry, deployer):
    register(registry)
    deployer.skew = 0.01
    with pytest.raises(
        PromotionError, match="smoke tests of ChurnModelPackageGroup/1 failed: row 0: predicted"
    ):
        flow.promote("dev")
    assert "stage.dev.tests-passed-at" not in registry.get_version(GROUP, 1).customer_metadata


def test_a_version_failing_its_smoke_tests_gives_the_stage_back_to_the_one_before(flow, registry, deployer):
    register(registry)
    flow.promote("dev")
    register(registry)
    deployer.skew = 0.01
    with pytest.raises(PromotionError, match="ChurnModelPackageGroup/1 serves dev again$"):
        flow.promote("dev", 2)
    assert flow.status()["dev"] == 1 and deployer.serving["dev"].version == 1
    assert "stage.dev.rolled-back-at" in registry.get_version(GROUP, 2).customer_metadata


def test_a_first_version_failing_its_smoke_tests_says_it_serves_untested(flow, registry, deployer):
    register(registry)
    deployer.skew = 0.01
    with pytest.raises(PromotionError, match="serves in dev untested; `promote undeploy --stage dev`"):
        flow.promote("dev")


def test_a_failed_deploy_leaves_the_records_as_they_were(flow, registry, deployer):
    register(registry)
    flow.promote("dev")
    register(registry)
    deployer.fail_deploy = True
    with pytest.raises(PromotionError, match="did not become healthy"):
        flow.promote("dev")
    assert flow.status()["dev"] == 1


def test_the_whole_flow_then_reject_in_prod_rolls_back_to_the_previous_version(flow, registry, deployer):
    for version in (register(registry), register(registry)):
        flow.promote("dev", version)
        flow.promote("staging", version)
        flow.approve_gate("prod", version, by="alice")
        flow.promote("prod", version)
    assert flow.status() == {"dev": 2, "staging": 2, "prod": 2}

    touched = flow.reject(2, by="alice", reason="complaints")

    assert touched == ["dev", "staging", "prod"]
    assert flow.status() == {"dev": 1, "staging": 1, "prod": 1}
    assert registry.get_version(GROUP, 2).approval_status == "Rejected"
    assert flow.where(2)["prod"]["serving"] == "no"
    assert deployer.serving["prod"].version == 1
    with pytest.raises(PromotionError, match="is Rejected"):
        flow.promote("dev", 2)


def test_rollbacks_go_back_one_version_at_a_time_not_back_and_forth(flow, registry):
    for version in (1, 2, 3):
        register(registry)
        flow.promote("dev", version)

    flow.rollback("dev")
    assert flow.status()["dev"] == 2
    flow.rollback("dev")
    assert flow.status()["dev"] == 1
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        flow.rollback("dev")
    # Promoted again, a rolled-back version is a rollback target once more.
    flow.promote("dev", 3)
    flow.rollback("dev")
    assert flow.status()["dev"] == 1


def test_rollback_with_nothing_before_is_an_error(flow, registry):
    register(registry)
    flow.promote("dev")
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        flow.rollback("dev")


def test_rejecting_the_only_version_stops_the_endpoint(flow, registry, deployer):
    register(registry)
    flow.promote("dev")
    flow.reject(1, by="alice", reason="wrong data")
    assert "dev" not in deployer.serving
    assert flow.status()["dev"] is None


def test_an_unknown_stage_is_refused_with_the_known_ones(flow, registry):
    register(registry)
    with pytest.raises(ConfigError, match="no stage 'prd'.*Did you mean 'prod'"):
        flow.promote("prd")


# ---- stage configuration


def copy_config(tmp_path):
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    return target


def test_the_shipped_stage_configs_load_in_order():
    config = load_promotion(DEPLOY / "promotion.json")
    assert [s.name for s in config.stages] == ["dev", "staging", "prod"]
    assert [s.gate for s in config.stages] == ["automatic", "tests-passed", "manual-approval"]
    assert len({s.endpoint.local_port for s in config.stages}) == 3


def test_a_missing_stage_file_is_an_error_not_a_fallback(tmp_path):
    target = copy_config(tmp_path)
    (target / "stages" / "staging.json").unlink()
    with pytest.raises(ConfigError, match=r"staging\.json does not exist"):
        load_promotion(target / "promotion.json")


def test_every_problem_of_a_stage_file_is_named_with_its_field(tmp_path):
    target = copy_config(tmp_path)
    path = target / "stages" / "prod.json"
    document = json.loads(path.read_text())
    document["account_id"] = "12345"
    document["gate"] = "manual"
    document["endpoint"]["autoscaling"]["min_capacity"] = 9
    document["endpoint"]["data_capture_percent"] = 150
    document["smoke_tests"]["max_latency"] = 5
    path.write_text(json.dumps(document))

    with pytest.raises(ConfigError) as error:
        load_promotion(target / "promotion.json")

    message = str(error.value)
    assert message.startswith(f"invalid stage config {path}: ")
    for fragment in (
        "account_id is '12345'",
        "gate 'manual' is not one of",
        "min_capacity 9 is above max_capacity 6",
        "data_capture_percent is 150",
        "smoke_tests.max_latency is not a known field. Did you mean 'max_latency_ms'?",
    ):
        assert fragment in message


def test_malformed_json_in_a_stage_file_names_the_file(tmp_path):
    target = copy_config(tmp_path)
    (target / "stages" / "dev.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"dev\.json: not valid JSON"):
        load_promotion(target / "promotion.json")


def test_variants_and_serverless_are_exclusive(tmp_path):
    target = copy_config(tmp_path)
    path = target / "stages" / "dev.json"
    document = json.loads(path.read_text())
    document["endpoint"]["variants"] = [{"name": "A", "instance_type": "ml.m5.large"}]
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="either variants .* or serverless"):
        load_promotion(target / "promotion.json")


def test_a_deploy_role_from_another_account_is_refused(tmp_path):
    target = copy_config(tmp_path)
    path = target / "stages" / "staging.json"
    document = json.loads(path.read_text())
    document["deploy_role_arn"] = "arn:aws:iam::333333333333:role/ModelDeployRole"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="is not in the stage's account 222222222222"):
        load_promotion(target / "promotion.json")


def test_a_missing_promotion_config_says_to_pass_config(tmp_path):
    with pytest.raises(ConfigError, match="promotion config .* does not exist; pass --config"):
        load_promotion(tmp_path / "promotion.json")


def test_environment_variables_set_the_accounts_and_the_defaults_serve_a_laptop():
    environ = {
        "STAGING_ACCOUNT_ID": "444455556666",
        "TARGET_REGION": "eu-west-1",
        "SAGEMAKER_PROJECT_NAME": "fraud",
    }
    staging = load_promotion(DEPLOY / "promotion.json", environ).stage("staging")
    assert (staging.account_id, staging.region) == ("444455556666", "eu-west-1")
    assert staging.deploy_role_arn == "arn:aws:iam::444455556666:role/MlopsModelDeployRole"
    assert staging.endpoint.name == "fraud-staging"
    assert staging.aws.model_execution_role_arn == "arn:aws:iam::444455556666:role/MlopsModelExecutionRole"
    assert staging.aws.kms_key_arn == "arn:aws:kms:eu-west-1:444455556666:alias/sagemaker-mlops-endpoint"
    assert staging.aws.data_capture_s3_uri == (
        "s3://sagemaker-mlops-capture-444455556666-eu-west-1/fraud-staging/"
    )
    laptop = load_promotion(DEPLOY / "promotion.json", {})
    assert laptop.model_package_group == GROUP
    assert laptop.stage("staging").account_id == "222222222222"


def test_an_unset_variable_without_default_names_file_field_and_variable(tmp_path):
    target = copy_config(tmp_path)
    path = target / "stages" / "prod.json"
    document = json.loads(path.read_text())
    document["account_id"] = "${PROD_ACCOUNT}"
    document["endpoint"]["name"] = "x-${NOT_SET:-}"  # an empty default is a default
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as error:
        load_promotion(target / "promotion.json", {})
    message = str(error.value)
    assert message.startswith(f"invalid stage config {path}: ")
    assert "account_id reads ${PROD_ACCOUNT}, which is not set and has no default" in message
    assert "NOT_SET" not in message


def test_the_aws_settings_can_be_given_and_are_checked(tmp_path):
    target = copy_config(tmp_path)
    path = target / "stages" / "prod.json"
    document = json.loads(path.read_text())
    document["aws"] = {"kms_key_arn": "arn:aws:kms:us-east-1:333333333333:key/abc", "capture": "s3://b/"}
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="aws.capture is not a known field"):
        load_promotion(target / "promotion.json", {})
    document["aws"] = {
        "kms_key_arn": "arn:aws:kms:us-east-1:333333333333:key/abc",
        "data_capture_s3_uri": "b/x",
    }
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="aws.data_capture_s3_uri is 'b/x'; expected an s3:// URI"):
        load_promotion(target / "promotion.json", {})
    del document["aws"]["data_capture_s3_uri"]
    path.write_text(json.dumps(document))
    prod = load_promotion(target / "promotion.json", {}).stage("prod")
    assert prod.aws.kms_key_arn == "arn:aws:kms:us-east-1:333333333333:key/abc"


def test_serverless_with_data_capture_is_refused(tmp_path):
    target = copy_config(tmp_path)
    path = target / "stages" / "dev.json"
    document = json.loads(path.read_text())
    document["endpoint"]["data_capture_percent"] = 10
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="data_capture_percent must be 0 for serverless"):
        load_promotion(target / "promotion.json", {})


def test_promoting_what_already_serves_changes_nothing_unless_forced(flow, registry, deployer):
    register(registry)
    flow.promote("dev")
    before = registry.get_version(GROUP, 1).customer_metadata
    assert flow.promote("dev").rows == 0
    assert deployer.deploys == [("dev", 1)]
    assert registry.get_version(GROUP, 1).customer_metadata == before
    assert flow.promote("dev", force=True).rows == len(ROWS)
    assert deployer.deploys == [("dev", 1), ("dev", 1)]


def test_a_version_serving_untested_is_deployed_again(flow, registry, deployer):
    register(registry)
    deployer.skew = 0.01
    with pytest.raises(PromotionError):
        flow.promote("dev")
    deployer.skew = 0.0
    flow.promote("dev")  # it serves, but never passed: this is not a no-op
    assert deployer.deploys == [("dev", 1), ("dev", 1)]
    assert "stage.dev.tests-passed-at" in registry.get_version(GROUP, 1).customer_metadata


CHURN = {"ProblemType": "binary_classification", "DatasetSpecSha256": "a" * 64}


@pytest.mark.parametrize(
    "other, fragment",
    [
        (
            {**CHURN, "ProblemType": "regression"},
            "has problem type regression but ChurnModelPackageGroup/1, serving there, "
            "has binary_classification",
        ),
        (
            {**CHURN, "DatasetSpecSha256": "b" * 64},
            "has dataset spec sha256 bbbbbbbbbbbb but ChurnModelPackageGroup/1, serving there, "
            "has sha256 aaaa",
        ),
    ],
)
def test_a_version_of_another_problem_type_or_spec_is_refused_unless_forced(
    flow, registry, deployer, other, fragment
):
    register(registry, metadata=CHURN)
    flow.promote("dev")
    register(registry, metadata=other)
    with pytest.raises(PromotionError) as refused:
        flow.promote("dev")
    assert fragment in str(refused.value)
    assert str(refused.value).endswith("deploy it anyway with --force")
    assert deployer.deploys == [("dev", 1)]
    flow.promote("dev", force=True)
    assert deployer.deploys == [("dev", 1), ("dev", 2)]


def test_a_version_of_the_same_problem_type_and_spec_is_promoted_over_the_serving_one(
    flow, registry, deployer
):
    register(registry, metadata=CHURN)
    flow.promote("dev")
    register(registry, metadata=dict(CHURN))
    flow.promote("dev")
    assert deployer.deploys == [("dev", 1), ("dev", 2)]


def test_the_compared_keys_are_those_the_pipeline_registers():
    from pipelines.promotion import flow as promotion_flow

    builders = (Path(__file__).resolve().parents[3] / "pipelines" / "churn" / "builders.py").read_text()
    for name in (promotion_flow.PROBLEM_TYPE, promotion_flow.DATASET_SPEC_SHA256):
        assert f'"{name}": ' in builders


# ---- the chain of stages, and the records it is derived from


def test_prod_refuses_an_approved_version_that_never_passed_staging(flow, registry):
    """`promote approve --stage prod --version N` then `promote deploy --stage prod` once deployed a
    version that had never run in dev or staging; the manual gate now holds the chain too."""
    register(registry)
    flow.approve_gate("prod", 1, by="alice")
    with pytest.raises(
        PromotionError,
        match=r"not passed the smoke tests in staging.*promote deploy --stage staging --version 1",
    ):
        flow.promote("prod", 1)
    flow.promote("dev", 1)
    flow.promote("staging", 1)
    flow.promote("prod", 1)
    assert flow.status()["prod"] == 1


def test_an_approval_given_outside_the_tool_does_not_skip_staging(flow, registry):
    register(registry)
    flow.promote("dev", 1)
    with pytest.raises(PromotionError, match="in staging"):
        flow.promote("prod", 1, approved_by="codepipeline-approver")
    assert "stage.prod.approved-by" not in registry.get_version(GROUP, 1).customer_metadata


def test_a_record_that_is_not_a_time_is_one_clear_error(flow, registry):
    register(registry)
    registry.update_metadata(GROUP, 1, {"stage.dev.deployed-at": "yesterday"})
    with pytest.raises(PromotionError, match=r"stage.dev.deployed-at='yesterday' is not an ISO 8601 time"):
        flow.status()


def test_times_are_compared_as_times_not_as_text(flow, registry):
    """The same instant written with another offset is still later than a UTC stamp before it."""
    register(registry)
    registry.update_metadata(
        GROUP,
        1,
        {
            "stage.dev.deployed-at": "2026-01-01T10:00:00+02:00",  # 08:00 UTC
            "stage.dev.retired-at": "2026-01-01T09:00:00+00:00",
        },
    )
    # As text "10:00+02:00" sorts after "09:00+00:00", which would call it serving.
    assert flow.status()["dev"] is None


def test_status_reads_the_registry_once_for_every_stage(flow, registry, monkeypatch):
    register(registry)
    flow.promote("dev")
    calls = []
    original = registry.list_versions
    monkeypatch.setattr(registry, "list_versions", lambda *a, **k: calls.append(a) or original(*a, **k))
    assert flow.status() == {"dev": 1, "staging": None, "prod": None}
    assert len(calls) == 1

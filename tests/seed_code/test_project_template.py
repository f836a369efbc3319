"""The project template: what starts what, what is encrypted, who may do what, in which account."""

import fnmatch
import json
import re
from pathlib import Path

import pytest
from moto.events.models import EventPattern
from seed_support import (
    ACCOUNT,
    BUCKET,
    GROUP,
    NAME,
    PIPELINE_ARN,
    PROD,
    PROJECT,
    PROJECT_ID,
    REGION,
    STAGING,
    as_list,
    assert_least_privilege,
    of_type,
    resource_policies,
    role_statements,
    statements,
)

from pipelines.promotion import flow, policies

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DEFINITION = ROOT / "tests" / "pipelines" / "churn" / "golden" / "definition.json"


def matches(rule: dict, event: dict) -> bool:
    return EventPattern.load(json.dumps(rule["Properties"]["EventPattern"])).matches_event(event)


def codecommit_push(branch: str, repository_arn: str, kind: str = "branch") -> dict:
    return {
        "source": "aws.codecommit",
        "detail-type": "CodeCommit Repository State Change",
        "resources": [repository_arn],
        "detail": {
            "event": "referenceUpdated",
            "referenceType": kind,
            "referenceName": branch,
            "commitId": "abc",
        },
    }


def package_state_change(group: str, status: str, **metadata) -> dict:
    detail = {"ModelPackageGroupName": group, "ModelPackageVersion": 3, "ModelApprovalStatus": status}
    if metadata:
        detail["CustomerMetadataProperties"] = metadata
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "detail": detail,
    }


def only_target(rule: dict) -> dict:
    (target,) = rule["Properties"]["Targets"]
    return target


# ---- what starts what


def test_a_push_to_main_starts_the_build_pipeline_and_nothing_else_does(project):
    rule = project["PushToMainRule"]
    repository = f"arn:aws:codecommit:{REGION}:{ACCOUNT}:{GROUP}-modelbuild"
    assert matches(rule, codecommit_push("main", repository))
    assert not matches(rule, codecommit_push("feature/x", repository))
    assert not matches(rule, codecommit_push("main", repository, kind="tag"))
    assert not matches(rule, codecommit_push("main", f"arn:aws:codecommit:{REGION}:{ACCOUNT}:another-repo"))
    build_pipeline = f"sagemaker-mlops-{PROJECT_ID}-build"
    assert only_target(rule)["Arn"] == f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:{build_pipeline}"
    assert project["BuildPipeline"]["Properties"]["Name"] == build_pipeline


def test_a_push_to_another_branch_runs_the_tests_on_that_commit(project):
    rule = project["PushToBranchRule"]
    repository = f"arn:aws:codecommit:{REGION}:{ACCOUNT}:{GROUP}-modelbuild"
    assert matches(rule, codecommit_push("feature/x", repository))
    assert not matches(rule, codecommit_push("main", repository))
    target = only_target(rule)
    assert target["Arn"] == f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/sagemaker-mlops-{PROJECT_ID}-test"
    assert target["InputTransformer"]["InputPathsMap"] == {"commit": "$.detail.commitId"}
    assert json.loads(target["InputTransformer"]["InputTemplate"].replace("<commit>", '"abc"')) == {
        "sourceVersion": "abc"
    }


def test_only_an_approval_in_this_projects_group_starts_the_deploy_pipeline(project):
    rule = project["ModelApprovedRule"]
    assert matches(rule, package_state_change(GROUP, "Approved"))
    assert not matches(rule, package_state_change(GROUP, "Rejected"))
    assert not matches(rule, package_state_change(GROUP, "PendingManualApproval"))
    assert not matches(rule, package_state_change("another-group", "Approved"))
    deploy_pipeline = f"sagemaker-mlops-{PROJECT_ID}-deploy"
    assert only_target(rule)["Arn"] == f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:{deploy_pipeline}"


def test_what_a_deploy_records_on_the_version_does_not_start_another_deploy(project, render_project):
    rule = project["ModelApprovedRule"]
    first_stage = json.loads((ROOT / "deploy" / "promotion.json").read_text())["stages"][0]
    deployed = {flow.key(first_stage, "deployed-at"): "2026-11-30T00:00:00+00:00"}
    assert not matches(rule, package_state_change(GROUP, "Approved", **deployed))
    # Other metadata (the build's, a reviewer's) does not hide an approval.
    assert matches(rule, package_state_change(GROUP, "Approved", note="reviewed"))


# ---- retraining: each trigger names its data, so new data is a new input and retrains


def transformed_input(target: dict, event: dict) -> dict:
    """What EventBridge passes a target with an InputTransformer: each <name> in the template
    replaced by the value at its JSON path (a string inside quotes as is)."""
    transformer = target["InputTransformer"]
    text = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        value = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        text = text.replace(f"<{name}>", value)
    return json.loads(text)


def scheduler_input(target: dict, scheduled_time: str) -> dict:
    """What EventBridge Scheduler passes its target: the Input with its context attributes replaced."""
    return json.loads(target["Input"].replace("<aws.scheduler.scheduled-time>", scheduled_time))


def _path(document: dict, path: str):
    value = document
    for part in path.removeprefix("$").strip(".").split("."):
        if part:
            value = value[part]
    return value


def _intrinsic(expression: str, document: dict):
    """The few Step Functions intrinsic functions the state machine uses, nested as it uses them."""
    expression = expression.strip()
    if expression.startswith("$"):
        return _path(document, expression)
    if expression.startswith("'"):
        return expression[1:-1]
    if expression.isdigit():
        return int(expression)
    name, _, rest = expression.partition("(")
    assert name.startswith("States.") and rest.endswith(")"), expression
    args, depth, current = [], 0, ""
    for char in rest[:-1]:
        if char == "," and depth == 0:
            args.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    args.append(current)
    values = [_intrinsic(arg, document) for arg in args]
    if name == "States.Format":
        template, *fields = values
        return template.replace("{}", "%s") % tuple(fields)
    if name == "States.StringSplit":
        return values[0].split(values[1])
    if name == "States.ArrayGetItem":
        return values[0][int(values[1])]
    raise AssertionError(f"unexpected intrinsic {name}")


def _parameters(parameters, document: dict):
    if isinstance(parameters, list):
        return [_parameters(item, document) for item in parameters]
    if not isinstance(parameters, dict):
        return parameters
    out = {}
    for key, value in parameters.items():
        if key.endswith(".$"):
            out[key[:-2]] = _intrinsic(value, document)
        else:
            out[key] = _parameters(value, document)
    return out


def run_state_machine(machine: dict, document: dict, keys_in_bucket: list[str]) -> list[dict]:
    """Walk the retraining state machine over one input; the S3 listing answers from
    ``keys_in_bucket``. Returns the StartPipelineExecution requests it would make."""
    properties = machine["Properties"]
    definition = json.loads(
        json.dumps(properties["Definition"]).replace(
            "${PipelineName}", properties["DefinitionSubstitutions"]["PipelineName"]
        )
    )
    started, name = [], definition["StartAt"]
    while True:
        state = definition["States"][name]
        if state["Type"] == "Choice":
            name = state["Default"]
            for choice in state["Choices"]:
                try:
                    value = _path(document, choice["Variable"])
                except KeyError:
                    present = False
                else:
                    present = True
                if ("IsPresent" in choice and present == choice["IsPresent"]) or (
                    "NumericGreaterThan" in choice and present and value > choice["NumericGreaterThan"]
                ):
                    name = choice["Next"]
                    break
            continue
        if state["Type"] == "Succeed":
            return started
        result = _parameters(state.get("Parameters", {}), document)
        if state["Type"] == "Task":
            action = state["Resource"].rsplit(":", 1)[1]
            if action == "listObjectsV2":
                count = sum(key.startswith(result["Prefix"]) for key in keys_in_bucket)
                result = {"KeyCount": min(count, result["MaxKeys"])}
            else:
                assert action == "startPipelineExecution", action
                started.append(result)
        if state.get("ResultPath"):
            document = {**document, state["ResultPath"].removeprefix("$."): result}
        elif state["Type"] == "Pass":
            document = result
        if state.get("End"):
            return started
        name = state["Next"]


def test_new_data_starts_the_pipeline_on_the_new_object_itself(project):
    rule = project["DataArrivedRule"]
    key = f"{NAME}/input/churn-2026-11.csv"
    event = s3_object_created(BUCKET, key)
    assert matches(rule, event)
    assert not matches(rule, s3_object_created(BUCKET, f"{GROUP}/tuning/model.tar.gz"))  # its own output
    assert not matches(rule, s3_object_created(BUCKET, f"{GROUP}/sample/churn.csv"))  # the build's sample
    assert not matches(rule, s3_object_created("another-bucket", f"{NAME}/input/churn.csv"))
    assert project["ArtifactBucket"]["Properties"]["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    target = only_target(rule)
    machine = project["RetrainingStarter"]
    assert (
        target["Arn"]
        == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:sagemaker-mlops-{PROJECT_ID}-retraining"
    )
    assert target["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/sagemaker-mlops-{PROJECT_ID}-events"
    (start,) = run_state_machine(machine, transformed_input(target, event), keys_in_bucket=[key])
    assert start["PipelineName"] == GROUP
    assert start["PipelineParameters"] == [{"Name": "InputDataUrl", "Value": f"s3://{BUCKET}/{key}"}]
    # Another object is another input string: SageMaker's cache cannot hand back the last model.
    other = s3_object_created(BUCKET, f"{NAME}/input/churn-2026-12.csv")
    (again,) = run_state_machine(machine, transformed_input(target, other), keys_in_bucket=[])
    assert again["PipelineParameters"][0]["Value"] != start["PipelineParameters"][0]["Value"]


def test_the_schedule_retrains_on_its_days_snapshot_and_skips_a_day_without_one(project):
    schedule = project["RetrainingScheduleTrigger"]["Properties"]
    assert schedule["ScheduleExpression"] == "cron(0 3 ? * MON *)"
    target, machine = schedule["Target"], project["RetrainingStarter"]
    assert target["Arn"] == only_target(project["DataArrivedRule"])["Arn"]
    assert target["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/sagemaker-mlops-{PROJECT_ID}-scheduler"
    document = scheduler_input(target, "2026-11-30T03:00:00Z")
    snapshot = [f"{NAME}/input/2026-11-30/churn.csv", f"{NAME}/input/2026-11-23/churn.csv"]
    (start,) = run_state_machine(machine, document, keys_in_bucket=snapshot)
    assert start["PipelineParameters"] == [
        {"Name": "InputDataUrl", "Value": f"s3://{BUCKET}/{NAME}/input/2026-11-30/"}
    ]
    # The snapshot prefix is under the data prefix, so its objects also fit the data-arrival rule.
    assert matches(project["DataArrivedRule"], s3_object_created(BUCKET, snapshot[0]))
    # No snapshot for the day: nothing starts (the same data would register the same model again).
    assert run_state_machine(machine, scheduler_input(target, "2026-12-07T03:00:00Z"), snapshot) == []


def test_the_retraining_parameter_is_one_the_pipeline_declares(project):
    declared = {p["Name"] for p in json.loads(GOLDEN_DEFINITION.read_text())["Parameters"]}
    steps = project["RetrainingStarter"]["Properties"]["Definition"]["States"]
    (parameter,) = steps["StartPipeline"]["Parameters"]["PipelineParameters"]
    assert parameter["Name"] in declared


def test_the_build_and_the_triggers_read_the_same_data_location(project, render_project):
    variables = project_variables(project["BuildProject"])
    assert variables["INPUT_DATA_URL"] == f"s3://{BUCKET}/{NAME}/input/"
    resources = render_project(DataPrefix="landing/churn/")["Resources"]
    assert project_variables(resources["BuildProject"])["INPUT_DATA_URL"] == f"s3://{BUCKET}/landing/churn/"
    assert matches(resources["DataArrivedRule"], s3_object_created(BUCKET, "landing/churn/2026-11.csv"))


def test_a_data_prefix_and_no_schedule_are_honoured(render_project):
    resources = render_project(DataPrefix="landing/churn/", RetrainingSchedule="")["Resources"]
    assert "RetrainingScheduleTrigger" not in resources and "SchedulerRole" not in resources
    rule = resources["DataArrivedRule"]
    event = s3_object_created(BUCKET, "landing/churn/2026-11.csv")
    assert matches(rule, event)
    assert not matches(rule, s3_object_created(BUCKET, f"{NAME}/input/churn.csv"))
    (start,) = run_state_machine(
        resources["RetrainingStarter"], transformed_input(only_target(rule), event), []
    )
    assert start["PipelineParameters"][0]["Value"] == f"s3://{BUCKET}/landing/churn/2026-11.csv"
    with_schedule = render_project(DataPrefix="landing/churn/")["Resources"]
    document = scheduler_input(
        with_schedule["RetrainingScheduleTrigger"]["Properties"]["Target"], "2026-11-30T03:00:00Z"
    )
    (start,) = run_state_machine(
        with_schedule["RetrainingStarter"], document, ["landing/churn/2026-11-30/a.csv"]
    )
    assert start["PipelineParameters"][0]["Value"] == f"s3://{BUCKET}/landing/churn/2026-11-30/"


def test_the_state_machine_may_start_only_this_pipeline_and_list_only_the_data_prefix(project):
    statements_ = {s["Sid"]: s for s in role_statements(project["RetrainingStarterRole"])}
    assert statements_["StartTheSageMakerPipeline"]["Resource"] == PIPELINE_ARN
    listing = statements_["LookForTheSnapshot"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"]["StringLike"]["s3:prefix"] == f"{NAME}/input/*"
    for role in ("EventsRole", "SchedulerRole"):
        starts = [s for s in role_statements(project[role]) if s["Action"] == "states:StartExecution"]
        assert [s["Resource"] for s in starts] == [only_target(project["DataArrivedRule"])["Arn"]]
        assert not [s for s in role_statements(project[role]) if "sagemaker:" in json.dumps(s["Action"])]


def test_every_trigger_retries_and_keeps_what_it_could_not_deliver(project):
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:sagemaker-mlops-{PROJECT_ID}-trigger-dlq"
    targets = [only_target(rule) for rule in of_type(project, "AWS::Events::Rule").values()]
    targets.append(project["RetrainingScheduleTrigger"]["Properties"]["Target"])
    assert len(targets) == 6
    for target in targets:
        assert target["DeadLetterConfig"] == {"Arn": queue_arn}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    # EventBridge may write to the queue, for this project's rules only (their names fit the pattern).
    (allow,) = statements(project["TriggerDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"])
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    pattern = allow["Condition"]["ArnLike"]["aws:SourceArn"]
    for name, rule in of_type(project, "AWS::Events::Rule").items():
        arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule['Properties']['Name']}"
        assert fnmatch.fnmatchcase(arn, pattern), name
    assert project["TriggerDeadLetterQueue"]["Properties"]["KmsMasterKeyId"] == key_arn()


def drift_alarm(account: str, alarm: str, state: str = "ALARM") -> dict:
    """A CloudWatch alarm state change as EventBridge delivers it (what a stage forwards)."""
    return {
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "account": account,
        "detail": {"alarmName": alarm, "state": {"value": state}},
    }


def test_a_drift_alarm_of_any_stage_starts_the_pipeline_on_the_data_prefix(project):
    from pipelines.promotion.aws import endpoint_template
    from pipelines.promotion.config import load_promotion
    from pipelines.registry.base import ModelPackage
    from pipelines.stage_monitor.aws import ALARM_PREFIX

    rule = project["DriftRule"]
    alarm = f"{ALARM_PREFIX}churn-prod-_c3"
    for account in (ACCOUNT, STAGING, PROD):
        assert matches(rule, drift_alarm(account, alarm))
    assert not matches(rule, drift_alarm(PROD, alarm, state="OK"))  # recovering starts nothing
    assert not matches(rule, drift_alarm("444444444444", alarm))
    assert not matches(rule, drift_alarm(PROD, "TargetTracking-endpoint/churn-prod-AlarmHigh"))
    target = only_target(rule)
    assert target["Arn"] == PIPELINE_ARN
    (parameter,) = target["SageMakerPipelineParameters"]["PipelineParameterList"]
    assert parameter["Name"] == "InputDataUrl"
    # The stage's own rule forwards exactly the alarms its stack creates, which this rule takes.
    config = load_promotion(ROOT / "deploy" / "promotion.json", {"PROD_ACCOUNT_ID": PROD})
    package = ModelPackage.from_describe(
        {
            "ModelPackageGroupName": GROUP,
            "ModelPackageVersion": 1,
            "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP.lower()}/1",
            "CreationTime": "2026-01-01T00:00:00+00:00",
        }
    )
    stage_rule = endpoint_template(config.stage("prod"), package, ["_c3"])["Resources"]["ViolationRule"]
    assert matches(stage_rule, drift_alarm(PROD, alarm))
    bus = {t["Id"]: t for t in stage_rule["Properties"]["Targets"]}["retrain"]["Arn"]
    assert bus == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    # ...and the tooling bus accepts them from the stage accounts only.
    policy = project["StageEventsPolicy"]["Properties"]["Statement"]
    assert set(policy["Principal"]["AWS"]) == {f"arn:aws:iam::{a}:root" for a in (STAGING, PROD)}
    assert policy["Action"] == "events:PutEvents"


def s3_object_created(bucket: str, key: str) -> dict:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key}},
    }


# ---- the deploy pipeline: the contract with codebuild/buildspec-deploy.yml


def actions(pipeline: dict) -> list[tuple[str, dict]]:
    return [
        (stage["Name"], action) for stage in pipeline["Properties"]["Stages"] for action in stage["Actions"]
    ]


def action_variables(action: dict) -> dict:
    return {
        v["name"]: v["value"] for v in json.loads(action["Configuration"].get("EnvironmentVariables", "[]"))
    }


def test_the_deploy_pipeline_runs_select_dev_staging_a_manual_approval_then_prod(project):
    found = actions(project["DeployPipeline"])
    assert [action["Name"] for _, action in found] == [
        "Source",
        "Select",
        "DeployDev",
        "DeployStaging",
        "ManualApproval",
        "DeployProd",
    ]
    # One action per stage: nothing runs beside the approval, and prod only after it.
    assert len({stage for stage, _ in found}) == len(found)
    approval = dict((a["Name"], a) for _, a in found)["ManualApproval"]
    assert approval["ActionTypeId"] == {
        "Category": "Approval",
        "Owner": "AWS",
        "Provider": "Manual",
        "Version": "1",
    }


def test_each_deploy_action_tells_the_buildspec_its_stage_and_the_selected_version(project):
    by_name = {a["Name"]: a for _, a in actions(project["DeployPipeline"])}
    deploy_project = project["DeployProject"]["Properties"]["Name"]
    assert by_name["Select"]["Namespace"] == "Select"
    assert action_variables(by_name["Select"]) == {
        "STAGE": "select",
        "MODEL_PACKAGE_VERSION": "#{variables.ModelPackageVersion}",
    }
    # Started by an approval it takes the latest Approved version; by hand, the version it is given.
    (variable,) = project["DeployPipeline"]["Properties"]["Variables"]
    assert (variable["Name"], variable["DefaultValue"]) == ("ModelPackageVersion", "latest")
    selected = "#{Select.MODEL_PACKAGE_ARN}"
    assert action_variables(by_name["DeployDev"]) == {"STAGE": "dev", "MODEL_PACKAGE_ARN": selected}
    assert action_variables(by_name["DeployStaging"]) == {"STAGE": "staging", "MODEL_PACKAGE_ARN": selected}
    assert action_variables(by_name["DeployProd"]) == {
        "STAGE": "prod",
        "MODEL_PACKAGE_ARN": selected,
        "APPROVED_BY": "CodePipeline manual approval in execution #{codepipeline.PipelineExecutionId}",
    }
    # SageMaker refuses commas in the model package metadata where promote records it.
    assert "," not in action_variables(by_name["DeployProd"])["APPROVED_BY"]
    for name in ("Select", "DeployDev", "DeployStaging", "DeployProd"):
        assert by_name[name]["Configuration"]["ProjectName"] == deploy_project
        assert by_name[name]["InputArtifacts"] == [{"Name": "Source"}]


def test_the_stage_names_are_those_of_the_promotion_config(project):
    stages = json.loads((ROOT / "deploy" / "promotion.json").read_text())["stages"]
    by_name = {a["Name"]: a for _, a in actions(project["DeployPipeline"])}
    assert [action_variables(by_name[f"Deploy{s.capitalize()}"])["STAGE"] for s in stages] == stages


def test_pushes_do_not_start_the_deploy_pipeline(project, render_project):
    (source_stage, source), *_ = actions(project["DeployPipeline"])
    assert source["Configuration"]["PollForSourceChanges"] is False
    assert "Triggers" not in project["DeployPipeline"]["Properties"]
    github = render_project(SourceProvider="GitHub", ConnectionArn=CONNECTION, RepositoryId="my-org/churn")
    (_, source), *_ = actions(github["Resources"]["DeployPipeline"])
    assert source["Configuration"]["DetectChanges"] is False


# ---- CodeBuild: the variables the buildspecs read


def documented_variables() -> dict[str, bool]:
    """codebuild/README.md's table: variable -> required."""
    rows = re.findall(
        r"^\| `([A-Z_][A-Z0-9_]*)` \| (yes|no) \|", (ROOT / "codebuild" / "README.md").read_text(), re.M
    )
    return {name: required == "yes" for name, required in rows}


def project_variables(codebuild_project: dict) -> dict:
    return {
        v["Name"]: v["Value"]
        for v in codebuild_project["Properties"]["Environment"].get("EnvironmentVariables", [])
    }


def buildspec_reads(path: Path) -> set[str]:
    import yaml

    spec = yaml.safe_load(path.read_text())
    text = "\n".join(cmd for phase in spec["phases"].values() for cmd in phase.get("commands", []))
    assigned = set(re.findall(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", text, re.M))
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text)) - assigned


#: Set by CodeBuild itself, not by the project.
CODEBUILD_VARIABLES = {"AWS_REGION", "AWS_DEFAULT_REGION"}


@pytest.mark.parametrize("logical", ["BuildProject", "DeployProject"])
def test_every_variable_a_buildspec_reads_is_set_by_the_project_or_codebuild(project, logical):
    codebuild_project = project[logical]
    buildspec = ROOT / codebuild_project["Properties"]["Source"]["BuildSpec"]
    assert buildspec.exists(), f"{logical} runs {buildspec.relative_to(ROOT)}, which does not exist"
    provided = set(project_variables(codebuild_project)) | CODEBUILD_VARIABLES
    for _, action in actions(project["DeployPipeline"]) + actions(project["BuildPipeline"]):
        if action["Configuration"].get("ProjectName") == codebuild_project["Properties"]["Name"]:
            provided |= set(action_variables(action))
    optional = {name for name, required in documented_variables().items() if not required}
    missing = (
        buildspec_reads(buildspec)
        - provided
        - optional
        - {name for name in buildspec_reads(buildspec) if name.startswith("CODEBUILD_")}
    )
    assert not missing, f"{buildspec.name} reads {sorted(missing)}, which nothing sets"


def test_the_build_gets_the_projects_names_roles_bucket_and_key(project):
    variables = project_variables(project["BuildProject"])
    assert variables == {
        "SAGEMAKER_PROJECT_NAME": NAME,
        "SAGEMAKER_PROJECT_ID": PROJECT_ID,
        "SAGEMAKER_PROJECT_ARN": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:project/{NAME}",
        "SAGEMAKER_PIPELINE_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/sagemaker-mlops-{PROJECT_ID}-pipeline",
        "ARTIFACT_BUCKET": BUCKET,
        "ARTIFACT_KMS_KEY_ARN": key_arn(),
        "MODEL_PACKAGE_GROUP_NAME": GROUP,
        "INPUT_DATA_URL": f"s3://{BUCKET}/{NAME}/input/",
    }
    assert set(variables) <= set(documented_variables())


def test_the_deploy_gets_the_three_accounts_and_the_projects_region(project):
    assert project_variables(project["DeployProject"]) == {
        "MODEL_PACKAGE_GROUP_NAME": GROUP,
        "SAGEMAKER_PROJECT_NAME": NAME,
        "SAGEMAKER_PROJECT_ID": PROJECT_ID,
        "DEV_ACCOUNT_ID": ACCOUNT,
        "STAGING_ACCOUNT_ID": STAGING,
        "PROD_ACCOUNT_ID": PROD,
        "TARGET_REGION": REGION,
        "ARTIFACT_BUCKET": BUCKET,
        "ARTIFACT_KMS_KEY_ARN": key_arn(),
    }


def test_no_parameter_offers_a_region_that_promotion_would_refuse(project_source):
    # SageMaker reads a model's artifact only in the endpoint's region, and promotion refuses a stage
    # in another region than the model package: staging and prod serve in the project's region.
    assert not [name for name in project_source["Parameters"] if "region" in name.lower()]
    variables = project_source["Resources"]["DeployProject"]["Properties"]["Environment"][
        "EnvironmentVariables"
    ]
    (target,) = [v["Value"] for v in variables if v["Name"] == "TARGET_REGION"]
    assert target == {"Ref": "AWS::Region"}


def test_the_names_are_those_the_build_derives(project):
    # codebuild/buildspec-build.yml names the pipeline and the group <project name>-<project id>.
    buildspec = (ROOT / "codebuild" / "buildspec-build.yml").read_text()
    assert 'NAME="${SAGEMAKER_PROJECT_NAME}-${SAGEMAKER_PROJECT_ID}"' in buildspec
    assert project["ModelPackageGroup"]["Properties"]["ModelPackageGroupName"] == GROUP


# ---- storage and encryption


def key_arn() -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/ArtifactKey-id"


def test_the_artifact_bucket_is_kms_encrypted_versioned_private_and_expires_old_versions(project):
    bucket = project["ArtifactBucket"]["Properties"]
    assert bucket["BucketName"] == BUCKET
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn()}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireOldVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0
    assert rules["ExpireOldVersions"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] > 0
    assert project["ArtifactKey"]["Properties"]["EnableKeyRotation"] is True


def test_the_artifact_bucket_refuses_requests_without_tls(project):
    policy = project["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]
    (deny,) = [s for s in statements(policy) if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert set(deny["Resource"]) == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_codebuild_pipelines_and_logs_use_the_projects_key(project):
    for name, codebuild_project in of_type(project, "AWS::CodeBuild::Project").items():
        assert codebuild_project["Properties"]["EncryptionKey"] == key_arn(), name
    for name, pipeline in of_type(project, "AWS::CodePipeline::Pipeline").items():
        assert pipeline["Properties"]["ArtifactStore"]["EncryptionKey"] == {"Id": key_arn(), "Type": "KMS"}, (
            name
        )
    log_group = project["BuildLogGroup"]["Properties"]
    assert log_group["KmsKeyId"] == key_arn()
    # The key lets CloudWatch Logs use it for exactly this log group.
    (logs,) = [s for s in key_policy(project) if s["Sid"] == "CodeBuildLogsAreEncrypted"]
    context = logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"]
    assert context == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group['LogGroupName']}"


def key_policy(project: dict) -> list[dict]:
    return statements(project["ArtifactKey"]["Properties"]["KeyPolicy"])


# ---- cross-account access: exactly what pipelines/promotion/policies.py says


def normalised(statement_list: list[dict]) -> list[dict]:
    """Principals and single actions in a canonical form, so equivalent statements compare equal."""
    out = []
    for statement in statement_list:
        statement = dict(statement)
        principal = statement.get("Principal")
        if isinstance(principal, dict) and "AWS" in principal:
            statement["Principal"] = {"AWS": sorted(set(as_list(principal["AWS"])))}
        statement["Action"] = sorted(as_list(statement["Action"]))
        statement["Resource"] = sorted(as_list(statement["Resource"]))
        out.append(statement)
    return out


def cross_account(statement_list: list[dict]) -> list[dict]:
    """The statements whose principals include another account."""
    found = []
    for statement in statement_list:
        principal = statement.get("Principal")
        arns = as_list(principal.get("AWS", [])) if isinstance(principal, dict) else []
        if any(f"::{ACCOUNT}:" not in arn for arn in arns):
            found.append(statement)
    return found


def test_the_model_package_group_policy_is_the_promotions(project):
    group_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{GROUP}"
    expected = policies.model_package_group_policy(group_arn, [STAGING, PROD])
    written = project["ModelPackageGroup"]["Properties"]["ModelPackageGroupPolicy"]
    assert written["Version"] == expected["Version"]
    assert normalised(statements(written)) == normalised(expected["Statement"])


def test_the_bucket_lets_staging_and_prod_read_models_and_code_only(project):
    policy = project["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]
    expected = policies.artifact_bucket_statements(BUCKET, GROUP, [STAGING, PROD])
    assert normalised(cross_account(statements(policy))) == normalised(expected)


def test_the_key_lets_staging_and_prod_decrypt_through_s3_only(project):
    expected = policies.kms_key_statements(REGION, [STAGING, PROD])
    assert normalised(cross_account(key_policy(project))) == normalised(expected)


def promotion_actions() -> set[str]:
    """Every action pipelines/promotion/policies.py grants the other accounts."""
    granted = [
        *policies.model_package_group_policy(
            f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/g", [PROD]
        )["Statement"],
        *policies.artifact_bucket_statements(BUCKET, GROUP, [PROD]),
        *policies.kms_key_statements(REGION, [PROD]),
    ]
    return {action for statement in granted for action in as_list(statement["Action"])}


def test_cross_account_statements_name_only_the_staging_and_prod_accounts(project):
    for document in resource_policies(project):
        for statement in cross_account(statements(document)):
            accounts = {arn.split(":")[4] for arn in as_list(statement["Principal"]["AWS"])}
            assert accounts == {STAGING, PROD}
            assert statement["Effect"] == "Allow"
            assert set(as_list(statement["Action"])) <= promotion_actions()


# ---- least privilege


def test_no_role_has_wildcard_actions_managed_policies_or_unscoped_resources(project, render_project):
    assert_least_privilege(project)
    assert_least_privilege(
        render_project(SourceProvider="GitLab", ConnectionArn=CONNECTION, RepositoryId="my-org/churn")[
            "Resources"
        ]
    )


def test_every_role_is_named_for_the_project_so_the_key_policy_covers_it(project):
    (use,) = [s for s in key_policy(project) if s["Sid"] == "ProjectRolesUseTheKey"]
    pattern = use["Condition"]["ArnLike"]["aws:PrincipalArn"]
    for name, role in of_type(project, "AWS::IAM::Role").items():
        arn = f"arn:aws:iam::{ACCOUNT}:role/{role['Properties']['RoleName']}"
        assert fnmatch.fnmatchcase(arn, pattern), name
        assert role["Properties"]["RoleName"].startswith(f"sagemaker-mlops-{PROJECT_ID}-")


def test_the_build_may_upsert_and_start_only_this_projects_pipeline(project):
    by_sid = {s["Sid"]: s for s in role_statements(project["BuildRole"])}
    assert set(as_list(by_sid["UpsertAndStartThePipeline"]["Resource"])) == {
        PIPELINE_ARN,
        f"{PIPELINE_ARN}/execution/*",
    }
    assert (
        by_sid["PassThePipelineRole"]["Resource"]
        == f"arn:aws:iam::{ACCOUNT}:role/sagemaker-mlops-{PROJECT_ID}-pipeline"
    )
    assert by_sid["PassThePipelineRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }


def test_the_deploy_may_assume_the_deploy_role_of_the_three_stage_accounts_only(project):
    (assume,) = [s for s in role_statements(project["DeployRole"]) if s["Action"] == "sts:AssumeRole"]
    assert set(assume["Resource"]) == {
        f"arn:aws:iam::{account}:role/MlopsModelDeployRole" for account in (ACCOUNT, STAGING, PROD)
    }
    updates = [
        s
        for s in role_statements(project["DeployRole"])
        if "sagemaker:UpdateModelPackage" in as_list(s["Action"])
    ]
    (update,) = updates
    assert set(update["Resource"]) == {
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{GROUP}",
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/*",
    }


# ---- Studio: source providers, visibility, parameters

CONNECTION = "arn:aws:codeconnections:eu-west-1:111111111111:connection/0a1b2c3d-0000-1111-2222-333344445555"


def test_studio_lists_the_codecommit_repository(project):
    repository = project["StudioCodeRepository"]["Properties"]
    assert repository["GitConfig"] == {
        "Branch": "main",
        "RepositoryUrl": f"https://git-codecommit.{REGION}.amazonaws.com/v1/repos/{GROUP}-modelbuild",
    }


def test_a_seeded_codecommit_repository_starts_from_the_published_zip(render_project, project):
    assert "Code" not in project["Repository"]["Properties"]  # nothing published: an empty repository
    seeded = render_project(SeedCodeBucket="templates", SeedCodeKey="t/seed-code-0123.zip")["Resources"]
    assert seeded["Repository"]["Properties"]["Code"] == {
        "BranchName": "main",
        "S3": {"Bucket": "templates", "Key": "t/seed-code-0123.zip"},
    }


@pytest.mark.parametrize(
    ("provider", "host"),
    [
        ("GitHub", "https://github.com/"),
        ("GitLab", "https://gitlab.com/"),
        ("Bitbucket", "https://bitbucket.org/"),
    ],
)
def test_a_codeconnections_repository_builds_on_pushes_to_main_through_the_connection(
    render_project, provider, host
):
    resources = render_project(
        SourceProvider=provider, ConnectionArn=CONNECTION, RepositoryId="my-org/churn"
    )["Resources"]
    for absent in ("Repository", "PushToMainRule", "PushToBranchRule", "TestProject", "TestRole"):
        assert absent not in resources
    pipeline = resources["BuildPipeline"]["Properties"]
    assert pipeline["Triggers"] == [
        {
            "ProviderType": "CodeStarSourceConnection",
            "GitConfiguration": {
                "SourceActionName": "Source",
                "Push": [{"Branches": {"Includes": ["main"]}}],
            },
        }
    ]
    source = pipeline["Stages"][0]["Actions"][0]
    assert source["Name"] == "Source"
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"] == {
        "ConnectionArn": CONNECTION,
        "FullRepositoryId": "my-org/churn",
        "BranchName": "main",
        "DetectChanges": True,
    }
    (use,) = [s for s in role_statements(resources["CodePipelineRole"]) if s["Sid"] == "UseTheConnection"]
    assert use["Resource"] == CONNECTION
    assert (
        resources["StudioCodeRepository"]["Properties"]["GitConfig"]["RepositoryUrl"]
        == f"{host}my-org/churn.git"
    )


def test_a_connection_needs_its_arn_and_repository(project_source):
    (assertion_arn, assertion_repo) = project_source["Rules"]["ConnectionNeedsItsRepository"]["Assertions"]
    assert assertion_arn["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ConnectionArn"}, ""]}]}
    assert assertion_repo["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RepositoryId"}, ""]}]}


def test_every_resource_that_takes_tags_carries_the_project_tags(project):
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    expected = [
        {"Key": "sagemaker:project-name", "Value": NAME},
        {"Key": "sagemaker:project-id", "Value": PROJECT_ID},
    ]
    taggable = 0
    for name, resource in project.items():
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource["Type"]).schema
        if "Tags" in schema["properties"]:
            taggable += 1
            assert resource["Properties"].get("Tags") == expected, name
    assert taggable >= 20


def test_studio_shows_every_parameter_with_a_description_and_a_label(project_source):
    parameters = project_source["Parameters"]
    interface = project_source["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for group in interface["ParameterGroups"] for p in group["Parameters"]]
    filled_by_sagemaker = {"SageMakerProjectName", "SageMakerProjectId"}
    assert sorted(grouped) == sorted(set(parameters) - filled_by_sagemaker)
    for name, spec in parameters.items():
        assert spec.get("Description"), name
        if "AllowedPattern" in spec:
            assert spec.get("ConstraintDescription"), name
    assert set(interface["ParameterLabels"]) <= set(parameters)


@pytest.mark.parametrize(
    ("parameter", "good", "bad"),
    [
        ("SageMakerProjectName", ["churn", "churn-model-2"], ["Churn", "-churn", "churn_model", "c" * 33]),
        ("SageMakerProjectId", ["p-abc123def456"], ["P-ABC", "p_1"]),
        ("StagingAccountId", ["222222222222"], ["2222", "22222222222a"]),
        ("DataPrefix", ["", "churn/input/", "a/b/"], ["churn/input", "/churn/", "a//b/", "a b/"]),
        ("RetrainingSchedule", ["", "cron(0 3 ? * MON *)", "rate(7 days)"], ["weekly"]),
        (
            "MlflowTrackingServerArn",
            ["", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/team-1"],
            [
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-app/app-1",
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/",
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/team_1",
                "team-1",
            ],
        ),
    ],
)
def test_parameters_refuse_what_would_break_the_project(project_source, parameter, good, bad):
    pattern = re.compile(project_source["Parameters"][parameter]["AllowedPattern"])
    for value in good:
        assert pattern.fullmatch(value), value
    for value in bad:
        assert not pattern.fullmatch(value), value


def test_rendering_the_defaults_uses_the_project_parameters():
    assert set(PROJECT) == {"SageMakerProjectName", "SageMakerProjectId", "StagingAccountId", "ProdAccountId"}


# ---- experiment tracking

TRACKING_SERVER = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/team"


def mlflow_statements(resources: dict) -> list[dict]:
    return [
        statement
        for role in of_type(resources, "AWS::IAM::Role").values()
        for statement in role_statements(role)
        if any(action.startswith("sagemaker-mlflow:") for action in as_list(statement["Action"]))
    ]


def execution_status_change(status: str, pipeline_arn: str = PIPELINE_ARN) -> dict:
    """As SageMaker sends it (SageMaker Developer Guide, "Automating SageMaker with EventBridge")."""
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "resources": [pipeline_arn, f"{pipeline_arn}/execution/abc123"],
        "detail": {
            "pipelineArn": pipeline_arn,
            "pipelineExecutionArn": f"{pipeline_arn}/execution/abc123",
            "pipelineExecutionDisplayName": "execution-1",
            "currentPipelineExecutionStatus": status,
            "previousPipelineExecutionStatus": "Executing",
        },
    }


def test_without_a_tracking_server_nothing_tracks_nor_may_call_mlflow(project):
    assert mlflow_statements(project) == []
    assert "MLFLOW_TRACKING_SERVER_ARN" not in project_variables(project["BuildProject"])
    assert project["BuildProject"]["Properties"]["TimeoutInMinutes"] == 60
    assert {"TrackerRole", "TrackerProject", "ExecutionEndedRule"}.isdisjoint(project)
    assert not [s for s in role_statements(project["EventsRole"]) if s["Sid"] == "StartTheTracker"]


@pytest.fixture(scope="module")
def tracked(render_project):
    return render_project(MlflowTrackingServerArn=TRACKING_SERVER)["Resources"]


def test_every_ended_execution_of_this_pipeline_starts_the_tracker(tracked):
    rule = tracked["ExecutionEndedRule"]
    for status in ("Succeeded", "Failed", "Stopped"):
        assert matches(rule, execution_status_change(status)), status
    for status in ("Executing", "Stopping"):
        assert not matches(rule, execution_status_change(status)), status
    other = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/someone-elses"
    assert not matches(rule, execution_status_change("Succeeded", other))
    step_event = execution_status_change("Succeeded")
    step_event["detail-type"] = "SageMaker Model Building Pipeline Execution Step Status Change"
    assert not matches(rule, step_event)


def test_the_tracker_gets_the_ended_executions_arn_as_a_start_build_override(tracked):
    target = only_target(tracked["ExecutionEndedRule"])
    project = tracked["TrackerProject"]["Properties"]
    assert target["Arn"] == f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/{project['Name']}"
    transformer = target["InputTransformer"]
    event = execution_status_change("Failed")
    # EventBridge's substitution: each <name> becomes the JSON value at its path.
    body = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        value = event
        for key in path.removeprefix("$.").split("."):
            value = value[key]
        body = body.replace(f"<{name}>", json.dumps(value))
    # The StartBuild request (CodeBuild API): environmentVariablesOverride.
    assert json.loads(body) == {
        "environmentVariablesOverride": [
            {
                "name": "PIPELINE_EXECUTION_ARN",
                "value": event["detail"]["pipelineExecutionArn"],
                "type": "PLAINTEXT",
            }
        ]
    }
    (start,) = [s for s in role_statements(tracked["EventsRole"]) if s["Sid"] == "StartTheTracker"]
    assert as_list(start["Action"]) == ["codebuild:StartBuild"]
    assert start["Resource"] == target["Arn"]
    assert target["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/sagemaker-mlops-{PROJECT_ID}-events"
    assert "DeadLetterConfig" in target and "RetryPolicy" in target


def test_the_tracker_runs_its_buildspec_from_main_with_every_variable_it_reads(tracked):
    project = tracked["TrackerProject"]["Properties"]
    assert project["Source"]["BuildSpec"] == "codebuild/buildspec-track.yml"
    assert project["Source"]["Type"] == "CODECOMMIT"
    assert project["SourceVersion"] == "refs/heads/main"
    assert project["ServiceRole"] == f"arn:aws:iam::{ACCOUNT}:role/sagemaker-mlops-{PROJECT_ID}-tracker"
    provided = set(project_variables(tracked["TrackerProject"])) | CODEBUILD_VARIABLES
    provided.add("PIPELINE_EXECUTION_ARN")  # the rule's override (the test above)
    assert buildspec_reads(ROOT / project["Source"]["BuildSpec"]) <= provided
    assert project_variables(tracked["TrackerProject"]) == {"MLFLOW_TRACKING_SERVER_ARN": TRACKING_SERVER}


def test_with_a_connection_the_tracker_clones_through_it(render_project):
    resources = render_project(
        MlflowTrackingServerArn=TRACKING_SERVER,
        SourceProvider="GitLab",
        ConnectionArn=CONNECTION,
        RepositoryId="my-org/churn",
    )["Resources"]
    source = resources["TrackerProject"]["Properties"]["Source"]
    assert source["Type"] == "GITLAB"
    assert source["Location"] == "https://gitlab.com/my-org/churn.git"
    assert source["Auth"] == {"Type": "CODECONNECTIONS", "Resource": CONNECTION}
    (clone,) = [
        s for s in role_statements(resources["TrackerRole"]) if s["Sid"] == "CloneThroughTheConnection"
    ]
    assert clone["Resource"] == CONNECTION
    assert_least_privilege(resources)


def test_the_build_neither_waits_nor_may_call_mlflow_with_a_tracking_server(tracked):
    assert project_variables(tracked["BuildProject"])["MLFLOW_TRACKING_SERVER_ARN"] == TRACKING_SERVER
    assert tracked["BuildProject"]["Properties"]["TimeoutInMinutes"] == 60
    assert not [
        s
        for s in role_statements(tracked["BuildRole"])
        if any(a.startswith("sagemaker-mlflow:") for a in as_list(s["Action"]))
    ]


def test_only_the_tracker_may_call_mlflow_and_on_that_server_only(tracked):
    (statement,) = mlflow_statements(tracked)
    assert statement in role_statements(tracked["TrackerRole"])
    assert statement["Resource"] == TRACKING_SERVER
    # What MlflowLogger calls: get_experiment_by_name, create_experiment, search_runs, create_run,
    # update_run / set_terminated, log_batch, set_tag.
    assert set(as_list(statement["Action"])) == {
        f"sagemaker-mlflow:{name}"
        for name in (
            "GetExperimentByName",
            "CreateExperiment",
            "SearchRuns",
            "CreateRun",
            "UpdateRun",
            "LogBatch",
            "SetTag",
        )
    }
    assert_least_privilege(tracked)
    reads = {s["Sid"]: s for s in role_statements(tracked["TrackerRole"])}
    assert reads["ReadTheExecutionToTrackIt"]["Resource"] == f"{PIPELINE_ARN}/execution/*"
    assert reads["DescribeTheExecution"]["Resource"] == f"{PIPELINE_ARN}/execution/*"
    assert reads["ReadTheTrainingLogs"]["Resource"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:*"
    )
    assert reads["UseTheArtifactKey"]["Resource"] == key_arn()
    assert not [s for s in reads.values() if "s3:PutObject" in as_list(s["Action"])]

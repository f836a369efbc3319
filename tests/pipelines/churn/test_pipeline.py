"""The churn pipeline definition: its steps, wiring, parameters and the arguments it accepts."""

import json
import re
import shutil
from pathlib import Path

import pytest
from support import BUCKET, REGION, ROLE, all_steps, container_metric

from pipelines.churn import pipeline as churn
from pipelines.errors import ConfigError
from steps import evaluate, train

REPO = Path(__file__).resolve().parents[3]


def get(expr_path: str) -> dict:
    return {"Get": expr_path}


def test_definition_has_every_step_type_of_the_template(churn_definition):
    types = sorted(step["Type"] for step in all_steps(churn_definition).values())
    assert types == sorted(
        [
            "Processing",
            "Processing",
            "QualityCheck",
            "Training",
            "Tuning",
            "Processing",
            "Condition",
            "RegisterModel",
            "Fail",
        ]
    )


def test_the_version_carries_model_monitors_baseline_of_the_training_features(churn_definition):
    steps = all_steps(churn_definition)
    check = steps["DataQualityBaseline"]
    assert (check["CheckType"], check["SkipCheck"], check["RegisterNewBaseline"]) == (
        "DATA_QUALITY",
        True,
        True,
    )
    (dataset,) = [
        i for i in check["Arguments"]["ProcessingInputs"] if i["InputName"] == "baseline_dataset_input"
    ]
    # The features alone, as requests carry them: every file of Preprocess's features folder (one per
    # instance), and nothing else.
    assert dataset["S3Input"]["S3Uri"] == get(
        "Steps.Preprocess.ProcessingOutputConfig.Outputs['features'].S3Output.S3Uri"
    )
    assert dataset["S3Input"]["S3DataType"] == "S3Prefix"
    register = next(s for s in steps.values() if s["Type"] == "RegisterModel")
    arguments = register["Arguments"]
    quality = arguments["ModelMetrics"]["ModelDataQuality"]
    assert quality["Statistics"]["S3Uri"] == get("Steps.DataQualityBaseline.CalculatedBaselineStatistics")
    assert quality["Constraints"]["S3Uri"] == get("Steps.DataQualityBaseline.CalculatedBaselineConstraints")
    drift = arguments["DriftCheckBaselines"]["ModelDataQuality"]
    assert drift["Statistics"]["S3Uri"] == get(
        "Steps.DataQualityBaseline.BaselineUsedForDriftCheckStatistics"
    )


def test_processing_instances_share_the_raw_input_and_evaluate_runs_on_one(churn_definition):
    """ProcessingInstanceCount divides Profile's and Preprocess's work: the raw input is their only
    ShardedByS3Key input, Preprocess gets every profile whole, and Evaluate, whose metric needs every
    test row at once, keeps one instance whatever the parameter says."""
    steps = all_steps(churn_definition)
    for name in ("Profile", "Preprocess"):
        arguments = steps[name]["Arguments"]
        count = arguments["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
        assert count == get("Parameters.ProcessingInstanceCount"), name
        distribution = {
            i["InputName"]: i["S3Input"]["S3DataDistributionType"] for i in arguments["ProcessingInputs"]
        }
        assert distribution.pop("raw") == "ShardedByS3Key", name
        assert set(distribution.values()) == {"FullyReplicated"}, name
        assert arguments["ProcessingInputs"][0]["S3Input"]["S3Uri"] == get("Parameters.InputDataUrl")
        stage = arguments["AppSpecification"]["ContainerArguments"]
        assert stage[:2] == ["--stage", name.lower().replace("preprocess", "encode")], name
    profiles = {i["InputName"]: i for i in steps["Preprocess"]["Arguments"]["ProcessingInputs"]}["profiles"]
    assert profiles["S3Input"]["S3Uri"] == get(
        "Steps.Profile.ProcessingOutputConfig.Outputs['profile'].S3Output.S3Uri"
    )
    evaluate_cluster = steps["Evaluate"]["Arguments"]["ProcessingResources"]["ClusterConfig"]
    assert evaluate_cluster["InstanceCount"] == 1


def test_profile_and_preprocess_are_reused_or_rerun_together(churn_definition):
    """A Processing step's cache key is its AppSpecification, Environment and ProcessingInputs: were
    one of Profile's to stay put while Preprocess's changed (TrainingInstanceCount sets
    --train-parts), a cached Profile of older data at the same InputDataUrl would meet a fresh
    Preprocess. Their arguments differ only in the stage and where the profiles are."""
    steps = all_steps(churn_definition)

    def common(name):
        arguments = list(steps[name]["Arguments"]["AppSpecification"]["ContainerArguments"])
        for flag in ("--stage", "--profiles"):
            if flag in arguments:
                index = arguments.index(flag)
                del arguments[index : index + 2]
        return arguments

    assert common("Profile") == common("Preprocess")
    assert "--train-parts" in common("Profile")
    assert steps["Profile"]["Arguments"].get("Environment") == steps["Preprocess"]["Arguments"].get(
        "Environment"
    )


def test_training_and_tuning_read_the_splits_that_preprocess_writes(churn_definition):
    steps = all_steps(churn_definition)
    for name, channels in (
        ("Train", steps["Train"]["Arguments"]["InputDataConfig"]),
        ("Tune", steps["Tune"]["Arguments"]["TrainingJobDefinition"]["InputDataConfig"]),
    ):
        uris = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in channels}
        assert uris["train"] == get(
            "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"
        ), name
        assert uris["validation"] == get(
            "Steps.Preprocess.ProcessingOutputConfig.Outputs['validation'].S3Output.S3Uri"
        ), name
        assert re.fullmatch(rf"s3://{BUCKET}/ChurnPipeline/code/[0-9a-f]{{64}}/", uris["code"]), name


def test_the_best_tuning_trial_is_the_model_that_is_evaluated_and_registered(churn_definition):
    steps = all_steps(churn_definition)
    best = get("Steps.Tune.TrainingJobSummaries[0].TrainingJobName")
    model_input = next(
        i for i in steps["Evaluate"]["Arguments"]["ProcessingInputs"] if i["InputName"] == "model"
    )
    assert best in model_input["S3Input"]["S3Uri"]["Std:Join"]["Values"]
    container = steps["RegisterModel"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == model_input["S3Input"]["S3Uri"]
    test_input = next(
        i for i in steps["Evaluate"]["Arguments"]["ProcessingInputs"] if i["InputName"] == "test"
    )
    assert test_input["S3Input"]["S3Uri"] == get(
        "Steps.Preprocess.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"
    )


def test_tuning_searches_at_least_three_hyperparameters_on_the_validation_metric(churn_definition):
    config = all_steps(churn_definition)["Tune"]["Arguments"]["HyperParameterTuningJobConfig"]
    ranges = config["ParameterRanges"]
    names = [r["Name"] for kind in ranges.values() for r in kind]
    assert len(names) >= 3
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:auc"}
    assert config["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": get("Parameters.MaxTuningJobs"),
        "MaxParallelTrainingJobs": get("Parameters.MaxParallelTuningJobs"),
    }


def test_training_and_tuning_send_no_metric_definitions_for_the_built_in_algorithm_image(churn_definition):
    # SageMaker refuses custom MetricDefinitions on the sagemaker-xgboost images ("You can't
    # override the metric definitions for Amazon SageMaker algorithms"), script mode included.
    steps = all_steps(churn_definition)
    train_job = steps["Train"]["Arguments"]
    tuning_job = steps["Tune"]["Arguments"]["TrainingJobDefinition"]
    for job in (train_job, tuning_job):
        assert "/sagemaker-xgboost:" in job["AlgorithmSpecification"]["TrainingImage"]
        assert "MetricDefinitions" not in job["AlgorithmSpecification"]
    assert "MetricDefinitions" not in json.dumps(churn_definition)
    # The objective is one of the container's own metrics, the one the training script optimises.
    objective = steps["Tune"]["Arguments"]["HyperParameterTuningJobConfig"][
        "HyperParameterTuningJobObjective"
    ]
    assert objective["MetricName"] == f"validation:{tuning_job['StaticHyperParameters']['eval_metric']}"
    log = train.format_round(4, "auc", 0.91, 0.87)
    assert container_metric(log, "auc") == ["0.87000"]


def test_training_runs_the_project_script_in_script_mode_from_the_code_channel(churn_definition):
    hyperparameters = all_steps(churn_definition)["Train"]["Arguments"]["HyperParameters"]
    assert hyperparameters["sagemaker_program"] == "train.py"
    # A directory, not a tar.gz: every version of the training toolkit copies a local directory.
    assert hyperparameters["sagemaker_submit_directory"] == "/opt/ml/input/data/code"
    assert hyperparameters["eval_metric"] == "auc"
    assert hyperparameters["objective"] == "binary:logistic"


def test_gate_compares_the_evaluation_report_metric_with_the_threshold_parameter(churn_definition):
    steps = all_steps(churn_definition)
    (condition,) = steps["CheckAuc"]["Arguments"]["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"] == {
        "PropertyFile": get("Steps.Evaluate.PropertyFiles.EvaluationReport"),
        "Path": evaluate.metric_json_path("binary_classification", "auc"),
    }
    assert condition["RightValue"] == get("Parameters.AucThreshold")
    assert [s["Name"] for s in steps["CheckAuc"]["Arguments"]["IfSteps"]] == ["RegisterModel"]
    assert [s["Name"] for s in steps["CheckAuc"]["Arguments"]["ElseSteps"]] == ["MetricBelowThreshold"]


def test_property_file_names_the_report_that_evaluate_writes(churn_definition):
    (report,) = all_steps(churn_definition)["Evaluate"]["PropertyFiles"]
    assert report == {
        "PropertyFileName": "EvaluationReport",
        "OutputName": "evaluation",
        "FilePath": "evaluation.json",
    }
    assert report["FilePath"] == evaluate.EVALUATION_FILENAME


def test_fail_message_states_the_metric_value_and_the_threshold(churn_definition):
    message = all_steps(churn_definition)["MetricBelowThreshold"]["Arguments"]["ErrorMessage"]["Std:Join"]
    values = message["Values"]
    assert {
        "Std:JsonGet": {
            "PropertyFile": get("Steps.Evaluate.PropertyFiles.EvaluationReport"),
            "Path": "binary_classification_metrics.auc.value",
        }
    } in values
    assert get("Parameters.AucThreshold") in values


def test_registration_takes_approval_status_from_a_parameter_defaulting_to_pending(churn_definition):
    args = all_steps(churn_definition)["RegisterModel"]["Arguments"]
    assert args["ModelApprovalStatus"] == get("Parameters.ModelApprovalStatus")
    params = {p["Name"]: p for p in churn_definition["Parameters"]}
    assert params["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    assert args["ModelPackageGroupName"] == "ChurnModelPackageGroup"
    quality = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert quality["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"
    container = args["InferenceSpecification"]["Containers"][0]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == "text/csv"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"].endswith("/sourcedir.tar.gz")
    assert set(args["InferenceSpecification"]["SupportedContentTypes"]) == {"text/csv", "application/json"}


def test_parameters_and_their_defaults(churn_definition):
    params = {p["Name"]: (p["Type"], p.get("DefaultValue")) for p in churn_definition["Parameters"]}
    assert params == {
        "InputDataUrl": ("String", f"s3://{BUCKET}/churn/input/"),
        "ProcessingInstanceType": ("String", "ml.m5.xlarge"),
        "ProcessingInstanceCount": ("Integer", 1),
        "TrainingInstanceType": ("String", "ml.m5.xlarge"),
        "TrainingInstanceCount": ("Integer", 1),
        "MaxTuningJobs": ("Integer", 8),
        "MaxParallelTuningJobs": ("Integer", 2),
        "AucThreshold": ("Float", 0.8),
        "ModelApprovalStatus": ("String", "PendingManualApproval"),
        "InferenceInstanceType": ("String", "ml.m5.large"),
    }


def test_expensive_steps_are_cached_and_retried_on_capacity_and_throttling(churn_definition):
    steps = all_steps(churn_definition)
    for name in ("Preprocess", "Train", "Tune", "Evaluate"):
        assert steps[name]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}, name
        kinds = {t for policy in steps[name]["RetryPolicies"] for t in policy["ExceptionType"]}
        assert {"SageMaker.CAPACITY_ERROR", "Step.THROTTLING"} <= kinds, name
    assert {t for p in steps["RegisterModel"]["RetryPolicies"] for t in p["ExceptionType"]} >= {
        "Step.THROTTLING"
    }


def test_code_is_referenced_by_content_addressed_keys_under_the_pipeline_prefix(churn_definition):
    steps = all_steps(churn_definition)
    code = next(i for i in steps["Preprocess"]["Arguments"]["ProcessingInputs"] if i["InputName"] == "code")
    uri = code["S3Input"]["S3Uri"]
    prefix = f"s3://{BUCKET}/ChurnPipeline/code/"
    assert uri.startswith(prefix)
    digest = uri[len(prefix) :].split("/")[0]
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert steps["Preprocess"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"] == [
        "python3",
        "/opt/ml/processing/input/code/preprocess.py",
    ]


def test_changing_one_step_script_changes_only_that_steps_code_reference(monkeypatch, tmp_path):
    def build():
        return all_steps(
            json.loads(churn.get_pipeline(region=REGION, role=ROLE, default_bucket=BUCKET).definition())
        )

    steps_copy = tmp_path / "steps"
    shutil.copytree(REPO / "steps", steps_copy)
    monkeypatch.setattr(churn, "STEPS_DIR", steps_copy)
    before = build()
    with (steps_copy / "evaluate.py").open("a") as handle:
        handle.write("\n# a change to the evaluation code\n")
    after = build()

    changed = sorted(name for name in before if before[name] != after[name])
    # The Condition holds RegisterModel and the Fail step; evaluate's code is in neither.
    assert changed == ["Evaluate"]


def test_security_options_reach_every_job(pipeline_kwargs):
    key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    definition = json.loads(
        churn.get_pipeline(
            **pipeline_kwargs,
            kms_key_id=key,
            subnets=["subnet-0a"],
            security_group_ids=["sg-0b"],
            enable_network_isolation=True,
            encrypt_inter_container_traffic=True,
        ).definition()
    )
    steps = all_steps(definition)
    vpc = {"SecurityGroupIds": ["sg-0b"], "Subnets": ["subnet-0a"]}
    for name in ("Preprocess", "Evaluate"):
        args = steps[name]["Arguments"]
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == key
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == key
        assert args["NetworkConfig"] == {
            "EnableInterContainerTrafficEncryption": True,
            "EnableNetworkIsolation": True,
            "VpcConfig": vpc,
        }
    jobs = [steps["Train"]["Arguments"], steps["Tune"]["Arguments"]["TrainingJobDefinition"]]
    for job in jobs:
        assert job["ResourceConfig"]["VolumeKmsKeyId"] == key
        assert job["OutputDataConfig"]["KmsKeyId"] == key
        assert job["VpcConfig"] == vpc
        assert job["EnableNetworkIsolation"] is True
        assert job["EnableInterContainerTrafficEncryption"] is True


def test_a_regression_table_needs_only_its_dataset_spec(pipeline_kwargs):
    spec = REPO / "data" / "concrete" / "dataset.json"
    definition = json.loads(churn.get_pipeline(**pipeline_kwargs, dataset_spec=str(spec)).definition())
    steps = all_steps(definition)
    hyperparameters = steps["Train"]["Arguments"]["HyperParameters"]
    assert (hyperparameters["objective"], hyperparameters["eval_metric"]) == ("reg:squarederror", "rmse")
    objective = steps["Tune"]["Arguments"]["HyperParameterTuningJobConfig"][
        "HyperParameterTuningJobObjective"
    ]
    assert objective == {"Type": "Minimize", "MetricName": "validation:rmse"}
    (condition,) = steps["CheckRmse"]["Arguments"]["Conditions"]
    assert condition["Type"] == "LessThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"]["Path"] == "regression_metrics.rmse.value"
    assert "MetricAboveThreshold" in steps


def test_building_the_definition_makes_no_aws_call(monkeypatch, pipeline_kwargs):
    import threading

    import botocore.client

    calls = []
    original = botocore.client.BaseClient._make_api_call

    def record(self, operation, params):
        # The SDK's telemetry runs on its own daemon thread and swallows its failures.
        if threading.current_thread() is threading.main_thread():
            calls.append(operation)
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    churn.get_pipeline(**pipeline_kwargs).definition()
    assert calls == []


def test_every_invalid_argument_is_reported_in_one_error():
    with pytest.raises(ConfigError) as caught:
        churn.get_pipeline(
            region="Europe",
            role="admin",
            default_bucket="Not_A_Bucket",
            pipeline_name="bad name!",
            kms_key_id="my key",
            subnets=["subnet-1"],
            cache_expire_after="30 days",
            dataset_spec="/no/such/spec.json",
        )
    message = str(caught.value)
    for fragment in (
        "region='Europe'",
        "role='admin'",
        "default_bucket='Not_A_Bucket'",
        "pipeline_name='bad name!'",
        "kms_key_id='my key'",
        "subnets and security_group_ids go together",
        "cache_expire_after='30 days'",
        "dataset_spec='/no/such/spec.json' is not a file",
    ):
        assert fragment in message
    assert "\n" not in message


def test_role_and_bucket_are_required_because_finding_them_needs_aws():
    with pytest.raises(ConfigError, match="role is required .* default_bucket is required"):
        churn.get_pipeline(region=REGION)


def test_region_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    definition = json.loads(churn.get_pipeline(role=ROLE, default_bucket=BUCKET).definition())
    image = all_steps(definition)["Train"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"]
    assert ".us-west-2." in image


def test_a_broken_dataset_spec_is_a_config_error_naming_the_file(tmp_path, pipeline_kwargs):
    spec = tmp_path / "dataset.json"
    spec.write_text('{"label": "y", "problem_type": "clustering", "features": {}}')
    with pytest.raises(ConfigError, match="dataset.json"):
        churn.get_pipeline(**pipeline_kwargs, dataset_spec=str(spec))


def test_code_upload_lists_the_objects_the_definition_refers_to(churn_definition_text, pipeline_kwargs):
    upload = churn.get_code_upload(**pipeline_kwargs)
    assert upload.bucket == BUCKET and upload.key_prefix == "ChurnPipeline"
    for bundle in upload.bundles:
        for name in bundle.objects():
            uri = bundle.uri(BUCKET, "ChurnPipeline", name)
            directory = bundle.uri(BUCKET, "ChurnPipeline")
            assert uri in churn_definition_text or directory in churn_definition_text, bundle.name


def test_a_json_null_argument_means_the_default(pipeline_kwargs, churn_definition):
    nulls = dict.fromkeys(
        (
            "pipeline_name",
            "model_package_group_name",
            "base_job_prefix",
            "cache_expire_after",
            "dataset_spec",
        ),
        None,
    )
    definition = json.loads(churn.get_pipeline(**pipeline_kwargs, **nulls).definition())
    assert definition == churn_definition


def test_a_dataset_spec_that_is_not_a_path_is_refused(pipeline_kwargs):
    with pytest.raises(ConfigError, match="dataset_spec=5 is not a file path"):
        churn.get_pipeline(**pipeline_kwargs, dataset_spec=5)


def test_sdk_defaults_config_on_the_machine_does_not_change_the_definition(
    tmp_path, monkeypatch, pipeline_kwargs, churn_definition
):
    # Studio domains ship such files; with them the same code would give another definition.
    config = tmp_path / "config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n"
        "  ProcessingJob:\n"
        "    ProcessingResources:\n"
        "      ClusterConfig:\n"
        "        VolumeKmsKeyId: arn:aws:kms:eu-west-1:111122223333:key/injected\n"
        "  TrainingJob:\n"
        "    ResourceConfig:\n"
        "      VolumeKmsKeyId: arn:aws:kms:eu-west-1:111122223333:key/injected\n"
        "    EnableNetworkIsolation: true\n"
        "  ModelPackage:\n"
        "    ValidationSpecification:\n"
        "      ValidationRole: arn:aws:iam::111122223333:role/injected\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    assert json.loads(churn.get_pipeline(**pipeline_kwargs).definition()) == churn_definition


# ---- names follow from the table


def test_names_follow_from_the_folder_of_the_dataset_spec_unless_given(pipeline_kwargs, tmp_path):
    concrete = str(REPO / "data" / "concrete" / "dataset.json")
    upload = churn.get_code_upload(**pipeline_kwargs, dataset_spec=concrete)
    assert upload.key_prefix == "ConcretePipeline"
    assert churn.names_from_spec(concrete) == {
        "pipeline_name": "ConcretePipeline",
        "model_package_group_name": "ConcreteModelPackageGroup",
        "base_job_prefix": "concrete",
    }
    assert churn.names_from_spec(churn.DEFAULT_DATASET_SPEC) == {
        "pipeline_name": "ChurnPipeline",
        "model_package_group_name": "ChurnModelPackageGroup",
        "base_job_prefix": "churn",
    }
    given = churn.get_code_upload(**pipeline_kwargs, dataset_spec=concrete, pipeline_name="Strength")
    assert given.key_prefix == "Strength"
    # The default input location is the table's own, so two tables' data never share a prefix.
    assert churn.get_local_inputs(**pipeline_kwargs, dataset_spec=concrete) == {
        f"s3://{BUCKET}/concrete/input/concrete.csv": REPO / "data" / "concrete" / "concrete.csv"
    }
    words = tmp_path / "house_prices-2024"
    words.mkdir()
    shutil.copyfile(concrete, words / "dataset.json")
    assert churn.names_from_spec(words / "dataset.json") == {
        "pipeline_name": "HousePrices2024Pipeline",
        "model_package_group_name": "HousePrices2024ModelPackageGroup",
        "base_job_prefix": "house-prices-2024",
    }


def test_a_folder_that_makes_no_name_is_refused_saying_to_pass_one(pipeline_kwargs, tmp_path):
    folder = tmp_path / "___"
    folder.mkdir()
    shutil.copyfile(REPO / "data" / "concrete" / "dataset.json", folder / "dataset.json")
    with pytest.raises(ConfigError) as caught:
        churn.get_code_upload(**pipeline_kwargs, dataset_spec=str(folder / "dataset.json"))
    assert "base_job_prefix='' is not a job name prefix" in str(caught.value)
    assert "named after the folder of dataset_spec" in str(caught.value)
    assert "pass base_job_prefix to choose one" in str(caught.value)

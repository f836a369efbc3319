"""Metrics as SageMaker reads them, and its refusal of MetricDefinitions on built-in algorithm images."""

import json

import pytest

from pipelines.local.definition import DefinitionError
from pipelines.local.engine import LocalRunner
from pipelines.local.metrics import (
    OVERRIDE_REFUSED,
    XGBOOST_METRICS,
    MetricPattern,
    cloudwatch_line,
    final_metrics,
)

ROLE = "arn:aws:iam::000000000000:role/LocalPipelineRole"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"
CUSTOM = [{"Name": "validation:auc", "Regex": r"validation-auc:([0-9.]+)"}]


def training_arguments(image, metric_definitions=None, hyperparameters=None):
    algorithm = {"TrainingImage": image, "TrainingInputMode": "File"}
    if metric_definitions is not None:
        algorithm["MetricDefinitions"] = metric_definitions
    return {
        "AlgorithmSpecification": algorithm,
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/models"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        "ResourceConfig": {"VolumeSizeInGB": 30, "InstanceCount": 1, "InstanceType": "ml.m5.large"},
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "ContentType": "text/csv",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/train"}},
            }
        ],
        "HyperParameters": hyperparameters or {"num_round": "2"},
    }


def tuning_step(image, metric, metric_definitions=None):
    training = training_arguments(image, metric_definitions)
    definition = {
        "StaticHyperParameters": training.pop("HyperParameters"),
        **{k: v for k, v in training.items() if k != "InputDataConfig"},
        "InputDataConfig": training["InputDataConfig"],
    }
    return {
        "Name": "Tune",
        "Type": "Tuning",
        "Arguments": {
            "HyperParameterTuningJobConfig": {
                "Strategy": "Random",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": metric},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
                "ParameterRanges": {
                    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "4"}]
                },
            },
            "TrainingJobDefinition": definition,
        },
    }


def document(*steps, parameters=()):
    return json.dumps({"Version": "2020-12-01", "Parameters": list(parameters), "Steps": list(steps)})


def test_a_log_line_is_matched_as_cloudwatch_stores_it_with_tabs_as_octal_escapes():
    assert cloudwatch_line("[3]\ttrain-auc:0.91\tvalidation-auc:0.87") == (
        "[3]#011train-auc:0.91#011validation-auc:0.87"
    )


def test_the_xgboost_images_metrics_are_the_containers_own():
    patterns = {pattern.name: pattern.regex.pattern for pattern in XGBOOST_METRICS}
    # aws/sagemaker-xgboost-container algorithm_mode/metrics.py, one per metric of xgb_constants.py
    assert patterns["validation:auc"] == r".*\[[0-9]+\].*#011validation-auc:(\S+)"
    assert patterns["validation:rmse"] == r".*\[[0-9]+\].*#011validation-rmse:(\S+)"
    assert len(patterns) == 33 and all(name.startswith("validation:") for name in patterns)


def test_the_final_value_is_the_last_match_in_the_log(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(
        "[0]\ttrain-auc:0.70\tvalidation-auc:0.65\n"
        "[1]\ttrain-auc:0.80\tvalidation-auc:0.75\n"
        "validation-auc:0.99 without a round is not a metric line\n"
    )
    assert final_metrics(log, XGBOOST_METRICS) == {"validation:auc": 0.75}
    assert final_metrics(log, [MetricPattern.of("auc", r"validation-auc:(\S+)")]) == {"auc": 0.99}


@pytest.mark.parametrize("image", [XGBOOST, XGBOOST.replace("sagemaker-xgboost", "xgboost")])
def test_metric_definitions_on_a_built_in_algorithm_image_are_refused_with_sagemakers_words(tmp_path, image):
    train = {"Name": "Train", "Type": "Training", "Arguments": training_arguments(image, CUSTOM)}
    tune = tuning_step(image, "validation:auc", CUSTOM)
    with pytest.raises(DefinitionError) as caught:
        LocalRunner(tmp_path).check(document(train, tune), "test", {})
    refused = [p for p in caught.value.problems if OVERRIDE_REFUSED in p]
    assert [p.split(":")[0] for p in refused] == ["step 'Train'", "step 'Tune'"]
    assert "You can't override the metric definitions for Amazon SageMaker algorithms" in str(caught.value)


def test_metric_definitions_on_a_framework_image_are_accepted(tmp_path):
    train = {"Name": "Train", "Type": "Training", "Arguments": training_arguments(SKLEARN, CUSTOM)}
    LocalRunner(tmp_path).check(document(train), "test", {})


def test_a_tuning_objective_the_built_in_image_does_not_report_is_refused(tmp_path):
    with pytest.raises(DefinitionError, match="objective metric 'train:auc' is not a metric of the built-in"):
        LocalRunner(tmp_path).check(document(tuning_step(XGBOOST, "train:auc")), "test", {})
    LocalRunner(tmp_path).check(document(tuning_step(XGBOOST, "validation:auc")), "test", {})


def test_an_image_given_by_a_parameter_is_refused_when_the_step_runs(tmp_path):
    runner = LocalRunner(tmp_path / "home")
    runner.store.put_bytes("s3://bucket/train/rows.csv", b"1,0.5\n0,0.1\n")
    arguments = training_arguments({"Get": "Parameters.Image"}, CUSTOM)
    step = {"Name": "Train", "Type": "Training", "Arguments": arguments}
    parameter = {"Name": "Image", "Type": "String", "DefaultValue": XGBOOST}

    outcome = runner.start(document(step, parameters=[parameter]), pipeline_name="metrics")

    assert outcome.status == "Failed"
    assert OVERRIDE_REFUSED in outcome.failure_reason

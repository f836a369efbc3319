"""The model-quality analyzer against AWS's documented example of its metrics."""

import numpy as np
import pytest

from pipelines.monitoring import (
    BaselineError,
    check_model_quality,
    model_quality_statistics,
    parse_model_quality_constraints,
    suggest_model_quality_constraints,
)

# The binary-classification example of AWS "Model quality metrics"
# (docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html): the values
# that follow from its confusion matrix {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}}. (Its curves
# and AUC belong to other data and cannot be reproduced from that matrix.)
DOC_BINARY = {
    "confusion_matrix": {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}},
    "recall": 1.0,
    "precision": 0.3333333333333333,
    "accuracy": 0.5,
    "recall_best_constant_classifier": 1.0,
    "precision_best_constant_classifier": 0.25,
    "accuracy_best_constant_classifier": 0.25,
    "true_positive_rate": 1.0,
    "true_negative_rate": 0.33333333333333337,
    "false_positive_rate": 0.6666666666666666,
    "false_negative_rate": 0.0,
    "f0_5": 0.3846153846153846,
    "f1": 0.5,
    "f2": 0.7142857142857143,
    "f0_5_best_constant_classifier": 0.29411764705882354,
    "f1_best_constant_classifier": 0.4,
    "f2_best_constant_classifier": 0.625,
}


def test_binary_metrics_match_the_documented_example_field_by_field():
    stats = model_quality_statistics("BinaryClassification", [0, 0, 0, 1], [0, 1, 1, 1])
    metrics = stats["binary_classification_metrics"]
    assert stats["dataset"] == {"item_count": 4}
    assert set(metrics) == set(DOC_BINARY)
    assert metrics["confusion_matrix"] == DOC_BINARY["confusion_matrix"]
    for name, value in DOC_BINARY.items():
        if name != "confusion_matrix":
            # "Standard deviation for metrics are provided only when at least 200 samples are available"
            assert metrics[name] == {"value": value, "standard_deviation": "NaN"}, name


def test_curves_and_auc_come_with_probabilities():
    truth = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    metrics = model_quality_statistics("BinaryClassification", truth, scores >= 0.5, scores)[
        "binary_classification_metrics"
    ]
    assert metrics["auc"]["value"] == 0.75
    roc = metrics["receiver_operating_characteristic_curve"]
    assert roc == {
        "false_positive_rates": [0.0, 0.0, 0.5, 0.5, 1.0],
        "true_positive_rates": [0.0, 0.5, 0.5, 1.0, 1.0],
    }
    assert set(metrics["precision_recall_curve"]) == {"precisions", "recalls"}


def test_regression_metrics_have_the_documented_names_and_spread():
    rng = np.random.RandomState(0)
    truth = rng.normal(size=500)
    stats = model_quality_statistics("Regression", truth, truth + rng.normal(0, 0.5, 500))
    metrics = stats["regression_metrics"]
    assert list(metrics) == ["mae", "mse", "rmse", "r2"]
    assert metrics["rmse"]["value"] == pytest.approx(metrics["mse"]["value"] ** 0.5)
    assert all(0 < m["standard_deviation"] < 0.1 for m in metrics.values())


def test_suggested_constraints_flag_a_worse_model():
    truth = np.array([0, 1] * 150)
    good = model_quality_statistics("BinaryClassification", truth, truth)
    constraints = suggest_model_quality_constraints(good)
    assert constraints["binary_classification_constraints"]["accuracy"] == {
        "threshold": 1.0,
        "comparison_operator": "LessThanThreshold",
    }
    assert constraints["binary_classification_constraints"]["false_positive_rate"]["comparison_operator"] == (
        "GreaterThanThreshold"
    )
    assert check_model_quality(good, constraints) == {"violations": []}
    worse = model_quality_statistics("BinaryClassification", truth, np.r_[1 - truth[:30], truth[30:]])
    violations = check_model_quality(worse, parse_model_quality_constraints(constraints, "c.json"))[
        "violations"
    ]
    accuracy = next(v for v in violations if v["metric_name"] == "accuracy")
    assert accuracy == {
        "constraint_check_type": "LessThanThreshold",
        "description": "Metric accuracy with 0.9 was LessThanThreshold 1.0",
        "metric_name": "accuracy",
    }


def test_bad_model_quality_input_is_refused():
    with pytest.raises(BaselineError, match="differ in length"):
        model_quality_statistics("Regression", [1, 2], [1])
    with pytest.raises(BaselineError, match="labels must be 0 or 1"):
        model_quality_statistics("BinaryClassification", [0, 2], [0, 1])
    with pytest.raises(BaselineError, match="MulticlassClassification' is not supported locally"):
        model_quality_statistics("MulticlassClassification", [0], [0])
    with pytest.raises(BaselineError, match="c.json: model-quality constraints: this is a data-quality file"):
        parse_model_quality_constraints({"features": []}, "c.json")
    with pytest.raises(BaselineError, match="comparison_operator 'Below'"):
        parse_model_quality_constraints(
            {"regression_constraints": {"mae": {"threshold": 1, "comparison_operator": "Below"}}}, "c.json"
        )


def test_model_quality_constraints_of_the_wrong_shape_are_refused_never_a_crash():
    good = {
        "version": 0.0,
        "regression_constraints": {"mae": {"threshold": 1.0, "comparison_operator": "GreaterThanThreshold"}},
    }
    stats = model_quality_statistics("Regression", [1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
    for wrong in (None, "x", -1, [], {}, [["x"]]):
        for document in (
            {**good, "regression_constraints": wrong},
            {**good, "regression_constraints": {"mae": wrong}},
            {
                **good,
                "regression_constraints": {
                    "mae": {"threshold": wrong, "comparison_operator": "LessThanThreshold"}
                },
            },
            {**good, "regression_constraints": {"mae": {"threshold": 1.0, "comparison_operator": wrong}}},
        ):
            try:
                parsed = parse_model_quality_constraints(document, "c.json")
            except BaselineError as err:
                assert str(err).startswith("c.json: ")
                continue
            check_model_quality(stats, parsed)

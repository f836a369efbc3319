"""Clarify's drift rules and the model loading, against AWS's documented violation examples."""

import io
import tarfile

import pytest

from pipelines.monitoring import BaselineError
from pipelines.monitoring.clarify import check_bias, check_explainability, load_xgboost, ndcg


def analysis(section, metrics):
    return {
        "version": "1.0",
        section: {
            "label": "label",
            "label_value_or_threshold": "1",
            "facets": {"Age": [{"value_or_threshold": "40", "metrics": metrics}]},
        },
    }


def test_bias_drift_is_a_metric_farther_from_fair_than_its_baseline():
    # AWS "Bias drift violations": baseline DPPL 0.2; 0.1 is no violation, -0.3 is one.
    baseline = analysis("post_training_bias_metrics", [{"name": "DPPL", "description": "", "value": 0.2}])
    closer = analysis("post_training_bias_metrics", [{"name": "DPPL", "description": "", "value": 0.1}])
    farther = analysis("post_training_bias_metrics", [{"name": "DPPL", "description": "", "value": -0.3}])
    assert check_bias(closer, baseline, "post_training_bias_metrics") == {"version": "1.0", "violations": []}
    assert check_bias(farther, baseline, "post_training_bias_metrics") == {
        "version": "1.0",
        "violations": [
            {
                "facet": "Age",
                "facet_value": "40",
                "metric_name": "DPPL",
                "constraint_check_type": "bias_drift_check",
                "description": "Value -0.3 does not meet the constraint requirement",
            }
        ],
    }


def test_disparate_impact_is_measured_from_one():
    baseline = analysis("post_training_bias_metrics", [{"name": "DI", "description": "", "value": 0.8}])
    fair = analysis("post_training_bias_metrics", [{"name": "DI", "description": "", "value": 1.0}])
    worse = analysis("post_training_bias_metrics", [{"name": "DI", "description": "", "value": 0.7}])
    assert check_bias(fair, baseline, "post_training_bias_metrics")["violations"] == []
    assert len(check_bias(worse, baseline, "post_training_bias_metrics")["violations"]) == 1


def shap(values):
    return {
        "explanations": {"kernel_shap": {"label0": {"global_shap_values": values, "expected_value": 0.5}}}
    }


def test_feature_attribution_drift_is_an_ndcg_below_0_9():
    baseline = shap({"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.05})
    assert check_explainability(shap({"a": 0.4, "b": 0.35, "c": 0.1, "d": 0.0}), baseline)["violations"] == []
    reversed_ = shap({"a": 0.01, "b": 0.05, "c": 0.3, "d": 0.5})
    score = ndcg(
        baseline["explanations"]["kernel_shap"]["label0"]["global_shap_values"],
        reversed_["explanations"]["kernel_shap"]["label0"]["global_shap_values"],
    )
    assert score < 0.9
    # Fields and wording of AWS's "Model feature attribution drift violations" example.
    assert check_explainability(reversed_, baseline) == {
        "version": "1.0",
        "violations": [
            {
                "label": "label0",
                "metric_name": "shap",
                "constraint_check_type": "feature_attribution_drift_check",
                "description": f"Feature attribution drift {score!r} exceeds threshold 0.9",
            }
        ],
    }


def archive(name, data, kind=tarfile.REGTYPE):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


def test_a_model_archive_is_read_in_memory_and_refused_when_hostile():
    with pytest.raises(BaselineError, match="m.tar.gz: no xgboost-model"):
        load_xgboost(archive("../../etc/xgboost-model", b"x"), "m.tar.gz")
    with pytest.raises(BaselineError, match="is not a regular file"):
        load_xgboost(archive("xgboost-model", b"", tarfile.SYMTYPE), "m.tar.gz")
    with pytest.raises(BaselineError, match="is not an XGBoost model"):
        load_xgboost(archive("xgboost-model", b"not a model"), "m.tar.gz")
    with pytest.raises(BaselineError, match="not a readable model.tar.gz"):
        load_xgboost(b"garbage", "m.tar.gz")


def test_an_analysis_baseline_of_the_wrong_shape_is_refused_never_a_crash():
    from pipelines.monitoring.clarify import parse_analysis

    section = "pre_training_bias_metrics"
    good = analysis(section, [{"name": "CI", "description": "", "value": 0.1}])
    for wrong in (None, "x", -1, [], {}, [["x"]]):
        for document in (
            {"version": "1.0", section: wrong},
            {"version": "1.0", section: {**good[section], "facets": wrong}},
            {"version": "1.0", section: {**good[section], "facets": {"Age": wrong}}},
            {
                "version": "1.0",
                section: {
                    **good[section],
                    "facets": {"Age": [{"value_or_threshold": "40", "metrics": wrong}]},
                },
            },
            {
                "version": "1.0",
                section: {
                    **good[section],
                    "facets": {"Age": [{"metrics": [{"name": "CI", "value": wrong}]}]},
                },
            },
        ):
            try:
                parsed = parse_analysis(document, "a.json", section)
            except BaselineError as err:
                assert str(err).startswith("a.json: ")
                continue
            check_bias(good, parsed, section)
    bad_labels = (None, "x", [], {"label0": "x"}, {"label0": {"global_shap_values": {"a": "x"}}})
    for labels in bad_labels:
        try:
            parsed = parse_analysis({"explanations": {"kernel_shap": labels}}, "a.json", "explanations")
        except BaselineError as err:
            assert str(err).startswith("a.json: ")
            continue
        check_explainability(shap({"a": 1.0}), parsed)

"""The data-quality analyzer against Model Monitor's documented formats and the preprocess baseline."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.monitoring import (
    CHECK_TYPES,
    BaselineError,
    check_data_quality,
    headerless_names,
    parse_constraints,
    parse_statistics,
    profile,
    suggest_constraints,
)
from pipelines.monitoring.sketch import KllSketch, robust

# Field names of "Schema for Statistics (statistics.json file)", AWS SageMaker developer guide
# (docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html).
DOC_NUMERIC_KEYS = {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}
DOC_KLL_KEYS = {"buckets", "sketch"}
DOC_BUCKET_KEYS = {"lower_bound", "upper_bound", "count"}
DOC_STRING_KEYS = {"common", "distinct_count", "distribution"}
# "Schema for Constraints (constraints.json file)" (model-monitor-byoc-constraints.html).
DOC_MONITORING_CONFIG = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 0.1,
    "domain_content_threshold": 0.1,
}


@pytest.fixture
def table():
    rng = np.random.RandomState(0)
    return pd.DataFrame(
        {
            "amount": rng.normal(10, 2, 3000),
            "count": rng.randint(0, 5, 3000),
            "plan": rng.choice(["basic", "gold", "silver"], 3000),
        }
    )


def test_statistics_have_the_documented_fields(table):
    stats = profile(table).statistics()
    assert set(stats) == {"version", "dataset", "features"}
    assert stats["dataset"] == {"item_count": 3000}
    amount, count, plan = stats["features"]
    assert (amount["name"], amount["inferred_type"]) == ("amount", "Fractional")
    assert (count["name"], count["inferred_type"]) == ("count", "Integral")
    assert (plan["name"], plan["inferred_type"]) == ("plan", "String")
    numeric = amount["numerical_statistics"]
    assert set(numeric) == DOC_NUMERIC_KEYS
    assert numeric["common"] == {"num_present": 3000, "num_missing": 0}
    assert set(numeric["distribution"]["kll"]) == DOC_KLL_KEYS
    buckets = numeric["distribution"]["kll"]["buckets"]
    assert len(buckets) == 10  # "the distributions are materialized in 10 buckets"
    assert all(set(b) == DOC_BUCKET_KEYS for b in buckets)
    assert sum(b["count"] for b in buckets) == 3000
    assert set(numeric["distribution"]["kll"]["sketch"]) == {"parameters", "data"}
    assert set(numeric["distribution"]["kll"]["sketch"]["parameters"]) == {"c", "k"}
    strings = plan["string_statistics"]
    assert set(strings) == DOC_STRING_KEYS
    assert strings["distinct_count"] == 3
    assert {b["value"] for b in strings["distribution"]["categorical"]["buckets"]} == {
        "basic",
        "gold",
        "silver",
    }
    assert sum(b["count"] for b in strings["distribution"]["categorical"]["buckets"]) == 3000
    assert numeric["mean"] == pytest.approx(table["amount"].mean())
    assert numeric["std_dev"] == pytest.approx(table["amount"].std(ddof=0))


def test_chunks_give_the_statistics_of_the_whole_table(table):
    whole = profile(table).statistics()
    chunked = profile(table.iloc[i : i + 701] for i in range(0, len(table), 701)).statistics()
    for a, b in zip(whole["features"], chunked["features"], strict=True):
        key = "numerical_statistics" if "numerical_statistics" in a else "string_statistics"
        for field in ("common", "mean", "sum", "std_dev", "min", "max", "distinct_count"):
            assert a[key].get(field) == b[key].get(field), (a["name"], field)
    assert chunked["dataset"]["item_count"] == 3000


def test_text_cells_are_typed_as_deequ_types_them():
    frame = pd.DataFrame({"i": ["1", "2", None], "f": ["1.0", "2", "3e2"], "s": ["1", "x", ""]}, dtype=object)
    stats = {f["name"]: f for f in profile(frame).statistics()["features"]}
    assert stats["i"]["inferred_type"] == "Integral"
    assert stats["i"]["numerical_statistics"]["common"] == {"num_present": 2, "num_missing": 1}
    assert stats["f"]["inferred_type"] == "Fractional"
    assert stats["f"]["numerical_statistics"]["max"] == 300.0
    assert stats["s"]["inferred_type"] == "String"
    assert stats["s"]["string_statistics"]["common"] == {"num_present": 2, "num_missing": 1}


def test_suggested_constraints_have_the_documented_fields(table):
    constraints = suggest_constraints(profile(table).statistics())
    assert constraints["version"] == 0.0
    config = constraints["monitoring_config"]
    assert {k: config[k] for k in DOC_MONITORING_CONFIG} == DOC_MONITORING_CONFIG
    assert config["distribution_constraints"]["perform_comparison"] == "Enabled"
    assert config["distribution_constraints"]["comparison_threshold"] == 0.1
    assert config["distribution_constraints"]["comparison_method"] in ("Simple", "Robust")
    amount, count, plan = constraints["features"]
    assert amount == {
        "name": "amount",
        "inferred_type": "Fractional",
        "completeness": 1.0,
        "num_constraints": {"is_non_negative": True},
    }
    assert count["num_constraints"] == {"is_non_negative": True}
    assert plan["string_constraints"] == {"domains": ["basic", "gold", "silver"]}
    assert parse_constraints(json.loads(json.dumps(constraints)), "c.json") == constraints


def test_the_same_data_violates_nothing(table):
    stats = profile(table).statistics()
    assert check_data_quality(profile(table), suggest_constraints(stats), stats) == {"violations": []}


def _checks(violations):
    return [(v["feature_name"], v["constraint_check_type"]) for v in violations["violations"]]


def test_each_check_type_is_reported_with_its_wording(table):
    stats = profile(table).statistics()
    constraints = suggest_constraints(stats)
    current = table.copy()
    current["amount"] = current["amount"] + 5  # drift
    current["count"] = current["count"].astype(object)
    current.loc[:299, "count"] = "many"  # 10 % not Integral
    current.loc[300:599, "count"] = None  # and incomplete
    current["plan"] = np.where(np.arange(len(current)) % 2, "platinum", current["plan"])
    current = current.drop(columns=[]).assign(extra=1)
    current2 = current.drop(columns=["amount"])
    violations = check_data_quality(profile(current), constraints, stats)
    assert _checks(violations) == [
        ("amount", "baseline_drift_check"),
        ("count", "data_type_check"),
        ("count", "completeness_check"),
        ("plan", "baseline_drift_check"),
        ("plan", "categorical_values_check"),
        ("extra", "extra_column_check"),
    ]
    by_check = {v["constraint_check_type"]: v["description"] for v in violations["violations"]}
    # Wording of published Model Monitor output (AWS samples and books quoting it).
    assert by_check["data_type_check"] == (
        "Data type match requirement is not met. Expected data type: Integral, Expected match: 100.0%. "
        "Observed: Only 88.88888888888889% of data is Integral."
    )
    assert violations["violations"][0]["description"].startswith("Numerical distance: ")
    assert violations["violations"][0]["description"].endswith(" exceeds numerical threshold: 0.1")
    assert violations["violations"][3]["description"].startswith("Categorical distance: ")
    missing = check_data_quality(profile(current2), constraints, stats)
    assert ("amount", "missing_column_check") in _checks(missing)
    assert {c for _, c in _checks(violations) + _checks(missing)} == set(CHECK_TYPES)


def test_disabled_evaluation_and_comparison_are_honoured(table):
    stats = profile(table).statistics()
    drifted = table.assign(amount=table["amount"] + 5)
    constraints = suggest_constraints(stats)
    constraints["monitoring_config"]["distribution_constraints"]["perform_comparison"] = "Disabled"
    assert check_data_quality(profile(drifted), constraints, stats) == {"violations": []}
    constraints["monitoring_config"]["distribution_constraints"]["perform_comparison"] = "Enabled"
    constraints["features"][0]["monitoringConfigOverrides"] = {
        "distribution_constraints": {"comparison_threshold": 0.99}
    }
    assert check_data_quality(profile(drifted), constraints, stats) == {"violations": []}
    constraints["monitoring_config"]["evaluate_constraints"] = "Disabled"
    assert check_data_quality(profile(drifted.assign(x=1)), constraints, stats) == {"violations": []}


def test_robust_distance_discounts_small_samples():
    # awslabs/deequ analyzers/Distance.scala: max(0, linf - 1.8 * sqrt((n + m) / (n * m)))
    assert robust(0.5, 100, 100) == pytest.approx(0.5 - 1.8 * (200 / 10000) ** 0.5)
    assert robust(0.1, 10, 10) == 0.0


def test_the_sketch_keeps_memory_bounded_and_ranks_close():
    sketch = KllSketch()
    values = np.random.RandomState(1).uniform(0, 1, 200_000)
    for i in range(0, values.size, 10_000):
        sketch.update(values[i : i + 10_000])
    items, weights = sketch.weighted()
    assert items.size < 8000
    assert weights.sum() == values.size
    assert abs(sketch.cdf(np.array([0.5]))[0] - 0.5) < 0.01


def test_a_data_quality_baseline_in_the_wrong_format_is_refused_by_field():
    with pytest.raises(BaselineError, match=r"c.json: holds 'binary_classification_constraints'"):
        parse_constraints({"version": 0.0, "binary_classification_constraints": {}}, "c.json")
    with pytest.raises(BaselineError) as err:
        parse_constraints(
            {
                "features": [{"name": "a", "inferred_type": "Text", "completeness": 2}],
                "monitoring_config": {"distribution_constraints": {"comparison_method": "Fancy"}},
            },
            "c.json",
        )
    message = str(err.value)
    assert "features[0].inferred_type 'Text'" in message
    assert "features[0].completeness must be a number from 0 to 1" in message
    assert "comparison_method 'Fancy'" in message
    with pytest.raises(BaselineError, match="ChiSquared does not run locally"):
        parse_constraints(
            {
                "features": [],
                "monitoring_config": {"distribution_constraints": {"categorical_drift_method": "ChiSquared"}},
            },
            "c.json",
        )
    with pytest.raises(
        BaselineError, match=r"s.json: not a Model Monitor statistics file: dataset.item_count"
    ):
        parse_statistics({"features": []}, "s.json")
    with pytest.raises(BaselineError, match="model-quality metrics"):
        parse_statistics({"regression_metrics": {}}, "s.json")


def test_headerless_columns_are_named_as_model_monitor_names_them():
    assert headerless_names(3) == ["_c0", "_c1", "_c2"]


def test_the_preprocess_baseline_is_what_the_analyzer_computes():
    """steps/preprocess.py writes its baseline without this package (its container has only the
    step's own file); the figures it writes must be the analyzer's."""
    from steps import preprocess

    rng = np.random.RandomState(3)
    encoded = pd.DataFrame(
        {"x": rng.normal(size=400), "y=a": rng.randint(0, 2, 400), "z": np.r_[np.nan, rng.uniform(size=399)]}
    )
    theirs = preprocess.baseline_statistics(encoded)
    ours = profile(encoded.set_axis(headerless_names(3), axis=1)).statistics()
    for a, b in zip(theirs["features"], ours["features"], strict=True):
        assert a["name"] == b["name"] and a["inferred_type"] == b["inferred_type"]
        for field, value in a["numerical_statistics"].items():
            assert b["numerical_statistics"][field] == value, (a["name"], field)
    theirs_c = preprocess.baseline_constraints(encoded)
    ours_c = suggest_constraints(ours)
    assert theirs_c["features"] == ours_c["features"]


def _mutations(value, path=()):
    """Every document made by replacing one value of ``value`` with something of the wrong kind."""
    for wrong in (None, "x", -1, [], {}, [["x"]]):
        yield path, wrong
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _mutations(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            yield from _mutations(item, (*path, index))


def _replace(document, path, wrong):
    if not path:
        return wrong
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = wrong
    return copy


def test_a_baseline_with_any_one_value_of_the_wrong_kind_is_refused_or_used_never_a_crash(table):
    small = table.iloc[:50]
    stats = profile(small).statistics()
    for feature in stats["features"]:  # keep the document small enough to mutate exhaustively
        sketch = feature.get("numerical_statistics", {}).get("distribution", {}).get("kll", {}).get("sketch")
        if sketch:
            sketch["data"] = [level[:2] for level in sketch["data"]]
    constraints = suggest_constraints(stats)
    current = profile(small)
    for document, parse in ((stats, parse_statistics), (constraints, parse_constraints)):
        for path, wrong in _mutations(document):
            mutated = _replace(document, path, wrong)
            try:
                parsed = parse(mutated, "b.json")
            except BaselineError as err:
                assert str(err).startswith("b.json: "), (path, wrong)
                continue
            if parse is parse_statistics:
                check_data_quality(current, constraints, parsed)
            else:
                check_data_quality(current, parsed, stats)

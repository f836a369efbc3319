"""Staging a pipeline's sample table for a local run: a run reads its own table, never an earlier one."""

import json

import pytest

from pipelines.local.cli import stage_samples
from pipelines.local.store import ObjectStore

DEFAULT = "s3://sagemaker-local/churn/input/"
DEFINITION = json.dumps(
    {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "InputDataUrl", "Type": "String", "DefaultValue": DEFAULT},
            {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.7},
        ],
        "Steps": [],
    }
)


@pytest.fixture
def store(tmp_path):
    return ObjectStore(tmp_path / "s3")


def table(tmp_path, name, text):
    path = tmp_path / "tables" / text.split(",")[0] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def keys(store, uri):
    return [key for key, _ in store.list(uri)]


def test_two_tables_staged_for_runs_in_one_home_are_each_read_alone(store, tmp_path, capsys):
    churn = table(tmp_path, "churn.csv", "churn,1\n")
    other = table(tmp_path, "telco.csv", "telco,2\n")

    first = stage_samples(store, [(churn, DEFAULT + "churn.csv")], DEFINITION, {}, per_content=True)
    second = stage_samples(store, [(other, DEFAULT + "telco.csv")], DEFINITION, {}, per_content=True)

    assert first["InputDataUrl"] != second["InputDataUrl"]
    for values, expected in ((first, "churn.csv"), (second, "telco.csv")):
        location = values["InputDataUrl"]
        assert location.startswith("s3://sagemaker-local/churn/local-inputs/") and location.endswith("/")
        assert [key.rsplit("/", 1)[1] for key in keys(store, location)] == [expected]
    assert keys(store, DEFAULT) == []  # nothing under the prefix the definition reads by default
    out = capsys.readouterr().out
    assert f"this run reads InputDataUrl={first['InputDataUrl']}" in out


def test_the_same_table_staged_again_is_at_the_same_location_so_the_cache_can_reuse_its_run(store, tmp_path):
    churn = table(tmp_path, "churn.csv", "churn,1\n")
    first = stage_samples(store, [(churn, DEFAULT + "churn.csv")], DEFINITION, {}, per_content=True)
    again = stage_samples(store, [(churn, DEFAULT + "churn.csv")], DEFINITION, {}, per_content=True)
    assert first == again


def test_staging_without_a_run_replaces_what_the_default_prefix_holds(store, tmp_path, capsys):
    store.put_bytes(DEFAULT + "old.csv", b"old,0\n")
    churn = table(tmp_path, "churn.csv", "churn,1\n")

    values = stage_samples(store, [(churn, DEFAULT + "churn.csv")], DEFINITION, {}, per_content=False)

    assert values == {}
    assert keys(store, DEFAULT) == ["churn/input/churn.csv"]
    assert "removed 1 object an earlier run staged there" in capsys.readouterr().out


def test_an_input_the_user_points_elsewhere_is_left_to_them_and_the_default_prefix_holds_the_sample(
    store, tmp_path
):
    store.put_bytes(DEFAULT + "old.csv", b"old,0\n")
    churn = table(tmp_path, "churn.csv", "churn,1\n")
    given = {"InputDataUrl": "s3://sagemaker-local/mine/"}

    values = stage_samples(store, [(churn, DEFAULT + "churn.csv")], DEFINITION, given, per_content=True)

    assert values == {}
    assert keys(store, DEFAULT) == ["churn/input/churn.csv"]

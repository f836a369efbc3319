"""The churn definition's own Profile, Preprocess and DataQualityBaseline steps on the local runner,
with ProcessingInstanceCount 3 over a raw input of several files: what one instance writes, up to
row order and the hosts' file names."""

import json

import pytest
from support import BUCKET, REGION, ROLE

from pipelines.churn import pipeline as churn
from pipelines.local.engine import LocalRunner

pytestmark = pytest.mark.slow

KWARGS = {"region": REGION, "role": ROLE, "default_bucket": BUCKET}
STEPS = ("Profile", "Preprocess", "DataQualityBaseline")
INPUT = f"s3://{BUCKET}/raw-parts/"


@pytest.fixture(scope="module")
def definition() -> str:
    """The churn definition cut to its preprocessing steps."""
    document = json.loads(churn.get_pipeline(**KWARGS).definition())
    document["Steps"] = [step for step in document["Steps"] if step["Name"] in STEPS]
    return json.dumps(document)


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> LocalRunner:
    runner = LocalRunner(tmp_path_factory.mktemp("sharded") / "home", sleep=lambda seconds: None)
    code = churn.get_code_upload(**KWARGS)
    for bundle in code.bundles:
        for name, body in bundle.objects().items():
            runner.store.put_bytes(f"s3://{code.bucket}/{bundle.key_prefix(code.key_prefix)}/{name}", body)
    (sample,) = churn.get_local_inputs(**KWARGS).values()
    header, *rows = sample.read_text().splitlines()
    for index in range(6):  # six objects: two per instance
        part = "\n".join([header, *rows[index::6]]) + "\n"
        runner.store.put_bytes(f"{INPUT}part-{index}.csv", part.encode())
    return runner


def run(runner: LocalRunner, definition: str, instances: int) -> dict[str, str]:
    outcome = runner.start(
        definition,
        pipeline_name="ShardedPreprocess",
        parameters={"InputDataUrl": INPUT, "ProcessingInstanceCount": instances},
        use_cache=False,
    )
    assert outcome.status == "Succeeded", outcome.failure_reason
    execution = outcome.arn.rsplit("/", 1)[1]
    written = {}
    for step in ("Preprocess", "DataQualityBaseline"):
        prefix = f"s3://{BUCKET}/ChurnPipeline/{execution}/{step}"
        for key, path in runner.store.list(prefix):
            written[key.split(f"/{execution}/", 1)[1]] = path.read_text()
    return written


def by_folder(written: dict[str, str]) -> dict[str, list[str]]:
    """Every split's rows (any file of its folder, sorted); other files as they are."""
    folders: dict[str, list[str]] = {}
    for key, text in written.items():
        if key.endswith(".csv"):
            folders.setdefault(key.rsplit("/", 1)[0], []).extend(text.splitlines())
        else:
            folders[key] = [text]
    return {key: sorted(lines) for key, lines in folders.items()}


def test_three_instances_write_what_one_writes_up_to_row_order(runner, definition):
    one = run(runner, definition, 1)
    three = run(runner, definition, 3)

    assert {key.rsplit("/", 1)[1] for key in one if key.endswith(".csv")} == {
        "train-algo-1.csv",
        "validation-algo-1.csv",
        "test-algo-1.csv",
        "features-algo-1.csv",
    }
    split_files = sorted(key for key in three if key.startswith("Preprocess/train/"))
    assert split_files == [f"Preprocess/train/train-algo-{host}.csv" for host in (1, 2, 3)]
    assert all(three[key] for key in split_files)  # each instance got rows to encode

    # Model Monitor's baseline of the features folder: every instance's file, the same figures.
    sketchless = {}
    for written in (one, three):
        (key,) = [
            k for k in written if k.startswith("DataQualityBaseline/") and k.endswith("statistics.json")
        ]
        statistics = json.loads(written.pop(key))
        sketchless[len(sketchless)] = (
            statistics["dataset"],
            [
                (f["name"], f["inferred_type"], f["numerical_statistics"]["common"]["num_present"])
                for f in statistics["features"]
            ],
        )
    assert sketchless[0] == sketchless[1]
    assert sketchless[0][0]["item_count"] == len(by_folder(one)["Preprocess/features"])

    assert by_folder(three) == by_folder(one)

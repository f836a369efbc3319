"""Sharded Preprocess through the local runner: two processing jobs of three instances each, with a
ShardedByS3Key raw input, write what one instance writes alone."""

from pathlib import Path

import pytest
from step_definitions import definition, processing_step, s3_input, s3_output

from pipelines.code_bundles import script_bundle
from pipelines.local.engine import LocalRunner
from steps import preprocess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUCKET = "s3://shard-tests"
ROOT = "/opt/ml/processing"
SPEC = "pipelines/churn/dataset.json"


def job(name, instances, arguments, extra_inputs=(), **step):
    return processing_step(
        name,
        "preprocess.py",
        f"{BUCKET}/code",
        instances=instances,
        arguments=[
            "--input",
            f"{ROOT}/input/raw",
            "--spec",
            f"{ROOT}/input/spec/dataset.json",
            "--output-dir",
            f"{ROOT}/output",
            "--chunk-rows",
            "300",
            "--resource-config",
            "/opt/ml/config/resourceconfig.json",
            *arguments,
        ],
        inputs=[
            s3_input("spec", f"{BUCKET}/spec/dataset.json", f"{ROOT}/input/spec"),
            s3_input("raw", f"{BUCKET}/raw", f"{ROOT}/input/raw", "ShardedByS3Key"),
            *extra_inputs,
        ],
        outputs=[s3_output("out", f"{BUCKET}/{name}", f"{ROOT}/output")],
        **step,
    )


def sharded_definition(instances: int) -> str:
    profile = job("Profile", instances, ["--stage", "profile"])
    encode = job(
        "Encode",
        instances,
        ["--stage", "encode", "--profiles", f"{ROOT}/input/profiles"],
        [s3_input("profiles", f"{BUCKET}/Profile/profile", f"{ROOT}/input/profiles")],
        DependsOn=["Profile"],
    )
    return definition(profile, encode)


@pytest.fixture
def runner(tmp_path):
    runner = LocalRunner(tmp_path / "home", sleep=lambda seconds: None)
    # The step's code as the pipeline ships it: the script and the steps modules it imports.
    for name, body in script_bundle("preprocess", REPO / "steps" / "preprocess.py").objects().items():
        runner.store.put_bytes(f"{BUCKET}/code/{name}", body)
    runner.store.put_file(REPO / SPEC, f"{BUCKET}/spec/dataset.json")
    rows = (REPO / "data" / "churn" / "churn.csv").read_text().splitlines()
    header, body = rows[0], rows[1:1801]
    for index in range(6):  # six objects, two per instance
        part = "\n".join([header, *body[index * 300 : (index + 1) * 300]]) + "\n"
        runner.store.put_bytes(f"{BUCKET}/raw/part-{index}.csv", part.encode())
    return runner


def objects(runner, prefix):
    return {
        key[len(prefix.split("/", 3)[3]) + 1 :]: path.read_text() for key, path in runner.store.list(prefix)
    }


def test_three_sharded_instances_write_what_one_instance_writes_up_to_row_order(runner, tmp_path):
    outcome = runner.start(sharded_definition(3), pipeline_name="shards")
    assert outcome.status == "Succeeded", outcome.failure_reason
    sharded = objects(runner, f"{BUCKET}/Encode")

    raw = tmp_path / "raw"
    for key, path in runner.store.list(f"{BUCKET}/raw"):
        (raw / key.rsplit("/", 1)[-1]).parent.mkdir(exist_ok=True)
        (raw / key.rsplit("/", 1)[-1]).write_text(path.read_text())
    assert (
        preprocess.main(
            ["--input", str(raw), "--spec", str(REPO / SPEC), "--output-dir", str(tmp_path / "one")]
        )
        == 0
    )
    one = {p.relative_to(tmp_path / "one").as_posix(): p.read_text() for p in (tmp_path / "one").rglob("*.*")}

    assert sorted(objects(runner, f"{BUCKET}/Profile")) == [
        f"profile/profile-algo-{i}.json" for i in (1, 2, 3)
    ]
    for split in preprocess.SPLITS:
        parts = [sharded[f"{split}/{split}-algo-{i}.csv"] for i in (1, 2, 3)]
        assert all(parts)
        assert sorted("".join(parts).splitlines()) == sorted(one[f"{split}/{split}.csv"].splitlines())
    for shared in ("schema/schema.json", "baseline/statistics.json", "baseline/constraints.json"):
        assert sharded[shared] == one[shared]


def test_more_instances_than_input_objects_fails_naming_the_empty_shard(runner):
    outcome = runner.start(sharded_definition(7), pipeline_name="shards")
    assert outcome.status == "Failed"
    assert "Profile (algo-7) exited with status 2" in outcome.failure_reason
    (log,) = runner.jobs_dir.glob("*-Profile/log.txt")
    assert "the shard of algo-7 (7 of 7 instances) holds no data rows" in log.read_text()

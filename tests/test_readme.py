"""The README's commands for another table, run as written in a fresh local home."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.registry.local import FILE_NAME, LocalModelRegistry

REPO = Path(__file__).resolve().parents[1]


def another_table_commands() -> list[str]:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("### Another table", 1)[1]
    section = section.split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_shows_one_command_to_train_on_another_table_and_one_to_see_the_result():
    run, listing = another_table_commands()
    assert run.startswith("run-pipeline --local ") and '"dataset_spec": "data/concrete/dataset.json"' in run
    assert listing == "model-registry list-versions ConcreteModelPackageGroup"


@pytest.mark.slow
def test_the_readmes_command_for_another_table_registers_it_in_a_group_of_its_own(tmp_path):
    run, listing = another_table_commands()
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")},
        "MLOPS_LOCAL_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # Two tuning trials instead of eight keep the run to about a minute; otherwise as written.
    trained = subprocess.run(
        [*shlex.split(run), "--parameters", "MaxTuningJobs=2", "MaxParallelTuningJobs=2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-2000:]
    assert "registered ConcreteModelPackageGroup version 1" in trained.stdout
    assert re.search(r"^staged \S*concrete\.csv at s3://sagemaker-local/concrete/", trained.stdout, re.M)

    listed = subprocess.run(
        shlex.split(listing), cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert row.split()[:2] == ["1", "PendingManualApproval"]
    assert re.search(r"rmse [\d.]+ \(threshold 10\.0\)", row)

    registry = LocalModelRegistry(home / FILE_NAME)
    assert [g.name for g in registry.list_groups()] == ["ConcreteModelPackageGroup"]
    package = registry.get_version("ConcreteModelPackageGroup", 1)
    assert package.customer_metadata["ProblemType"] == "regression"

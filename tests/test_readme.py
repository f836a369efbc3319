"""The README's commands, run as written in a fresh local home: the main path from a local run to
prod and back, and the one for another table."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import free_port

from pipelines.registry.local import FILE_NAME, LocalModelRegistry

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
GROUP = "ChurnModelPackageGroup"
# Two tuning trials instead of eight keep a run to about a minute; otherwise as written.
FEWER_TRIALS = ["--parameters", "MaxTuningJobs=2", "MaxParallelTuningJobs=2"]


def section(heading: str) -> str:
    """The README's text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    text = README.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    ends = [f"\n{'#' * n} " for n in range(1, len(level) + 1)]
    return text[: min((text.find(end) for end in ends if end in text), default=len(text))]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def main_path_steps() -> list[tuple[str, list[str]]]:
    """(step heading, commands) for each step of the main path after Install, which is the
    environment this test runs in."""
    steps = re.findall(r"^### (\d+\. .+)$", section("## The main path"), re.M)
    assert steps and steps[0] == "1. Install", steps
    return [(step, commands(section(f"### {step}"))) for step in steps[1:]]


def commands(text: str) -> list[str]:
    return [line for block in bash_blocks(text) for line in block.splitlines() if line.strip()]


def another_table_commands() -> list[str]:
    assert len(bash_blocks(section("### Another table"))) == 1
    return commands(section("### Another table"))


def environment(home: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")},
        "MLOPS_LOCAL_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def test_the_main_path_is_install_run_look_approve_promote_score_roll_back_clean_up():
    steps = main_path_steps()
    assert [step.split(". ", 1)[1] for step, _ in steps] == [
        "Run the pipeline locally",
        "Look at the result",
        "Approve the version",
        "Promote it: dev, staging, prod",
        "Score a record",
        "A second version, and rolling back",
        "Clean up",
    ]
    every = [command for _, block in steps for command in block]
    assert all("\\" not in command for command in every), "one command a line, so each runs alone"
    stages = json.loads((REPO / "deploy" / "promotion.json").read_text())["stages"]
    assert [c for c in every if c.startswith("promote undeploy")] == [
        f"promote undeploy --stage {stage}" for stage in stages
    ], "clean-up stops every stage's endpoint"


def test_the_readme_shows_one_command_to_train_on_another_table_and_one_to_see_the_result():
    run, listing = another_table_commands()
    assert run.startswith("run-pipeline --local ") and '"dataset_spec": "data/concrete/dataset.json"' in run
    assert listing == "model-registry list-versions ConcreteModelPackageGroup"


@pytest.fixture
def checkout(tmp_path):
    """The repository as the README's reader has it, except that the stages listen on free ports
    (so this test never meets another process on 8081-8083): the ports the README names, mapped to
    the ones this checkout uses. Every endpoint started under its home is stopped afterwards."""
    root = tmp_path / "checkout"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name != "deploy" and not entry.name.startswith("."):
            (root / entry.name).symlink_to(entry)
    shutil.copytree(REPO / "deploy", root / "deploy")
    ports = {}
    for path in sorted((root / "deploy" / "stages").glob("*.json")):
        document = json.loads(path.read_text())
        port = free_port()
        ports[document["endpoint"]["local_port"]] = port
        document["endpoint"]["local_port"] = port
        path.write_text(json.dumps(document))
    home = tmp_path / "home"
    yield root, home, ports
    from pipelines.serving.endpoints import LocalEndpoints

    for namespace in (home / "accounts").glob("*"):
        endpoints = LocalEndpoints(namespace)
        for endpoint in endpoints.list():
            endpoints.stop(endpoint.name)


def as_run_here(command: str, ports: dict[int, int]) -> str:
    if command.startswith("run-pipeline "):
        command += " " + shlex.join(FEWER_TRIALS)
    for written, used in ports.items():
        command = command.replace(f"127.0.0.1:{written}/", f"127.0.0.1:{used}/")
    return command


def run(command: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=environment(home), capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_the_readmes_main_path_runs_as_written_from_a_fresh_home(checkout):
    root, home, ports = checkout
    registered, statuses, answers = [], [], []
    for step, block in main_path_steps():
        for command in block:
            done = run(as_run_here(command, ports), root, home)
            assert done.returncode == 0, f"{step}: {command}\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
            registered += re.findall(rf"registered {GROUP} version (\d+)", done.stdout)
            if command == "promote status":
                statuses.append(json.loads(done.stdout))
            if command.startswith("curl "):
                answers.append(done.stdout)

    assert registered == ["1", "2"]
    # After prod's deploy, and after dev's rollback from version 2.
    assert statuses == [{"dev": 1, "staging": 1, "prod": 1}] * 2
    # The sample record alone, then with its header row: the same customer, the same score.
    headerless, with_header = answers
    assert 0.0 <= float(headerless) <= 1.0, headerless
    assert with_header == headerless
    registry = LocalModelRegistry(home / FILE_NAME)
    assert [v.approval_status for v in registry.list_versions(GROUP)] == ["Approved", "Approved"]
    final = run("promote status", root, home)
    assert json.loads(final.stdout) == {"dev": None, "staging": None, "prod": None}
    where = json.loads(run("promote where --version 1", root, home).stdout)
    # Clean-up is recorded: version 1 served in every stage and is retired from each.
    for stage in ("dev", "staging", "prod"):
        assert where[stage]["serving"] == "no" and "retired-at" in where[stage], where
    for port in ports.values():
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)


@pytest.mark.slow
def test_the_readmes_command_for_another_table_registers_it_in_a_group_of_its_own(tmp_path):
    run_command, listing = another_table_commands()
    home = tmp_path / "home"
    trained = subprocess.run(
        [*shlex.split(run_command), *FEWER_TRIALS],
        cwd=REPO,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-2000:]
    assert "registered ConcreteModelPackageGroup version 1" in trained.stdout
    assert re.search(r"^staged \S*concrete\.csv at s3://sagemaker-local/concrete/", trained.stdout, re.M)

    listed = subprocess.run(
        shlex.split(listing), cwd=REPO, env=environment(home), capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert row.split()[:2] == ["1", "PendingManualApproval"]
    assert re.search(r"rmse [\d.]+ \(threshold 10\.0\)", row)

    registry = LocalModelRegistry(home / FILE_NAME)
    assert [g.name for g in registry.list_groups()] == ["ConcreteModelPackageGroup"]
    package = registry.get_version("ConcreteModelPackageGroup", 1)
    assert package.customer_metadata["ProblemType"] == "regression"

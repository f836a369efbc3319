"""The buildspecs only run commands the project provides and only read documented variables."""

import re
import shlex
from importlib import metadata
from pathlib import Path

import pytest
import yaml

CODEBUILD = Path(__file__).resolve().parents[2] / "codebuild"
BUILDSPECS = sorted(CODEBUILD.glob("buildspec*.yml"))

# Tools the CodeBuild image provides, and shell words that are not commands.
IMAGE_TOOLS = {"python", "set", "printf", "echo", "export", "if", "else", "fi"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


def commands(spec: dict) -> list[str]:
    return [cmd for phase in spec["phases"].values() for cmd in phase.get("commands", [])]


def logical_lines(script: str) -> list[str]:
    return [line.strip() for line in script.replace("\\\n", " ").splitlines() if line.strip()]


def console_scripts() -> set[str]:
    return {
        ep.name
        for ep in metadata.distribution("sagemaker-mlops-template").entry_points
        if ep.group == "console_scripts"
    }


def documented_variables() -> set[str]:
    table = (CODEBUILD / "README.md").read_text()
    return set(re.findall(r"^\| `([A-Z_][A-Z0-9_]*)` \|", table, re.MULTILINE))


@pytest.fixture(params=BUILDSPECS, ids=lambda p: p.name)
def buildspec(request):
    return yaml.safe_load(request.param.read_text())


def test_there_are_the_build_and_deploy_buildspecs():
    assert {CODEBUILD / "buildspec-build.yml", CODEBUILD / "buildspec-deploy.yml"} <= set(BUILDSPECS)


def test_every_command_is_the_projects_or_the_images(buildspec):
    provided = console_scripts() | IMAGE_TOOLS | {"ruff", "pip"}
    for command in commands(buildspec):
        for line in logical_lines(command):
            if re.match(r"\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=\$\(", line):
                continue  # NAME=$(...): an assignment; the program it runs is inside the substitution
            words = shlex.split(line, comments=True)
            # A command may be prefixed with variables for its own environment (NAME=value cmd).
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words.pop(0)
            if not words:
                continue  # a comment
            program = words[0]
            assert program in provided, (
                f"{program!r} is neither a console script of the project nor an image tool"
            )


def test_the_pipeline_commands_name_a_module_that_exists(buildspec):
    import importlib

    for command in commands(buildspec):
        for module in re.findall(r"--module-name\s+(\S+)", command):
            assert callable(importlib.import_module(module).get_pipeline)


def test_every_variable_read_is_documented(buildspec):
    documented = documented_variables()
    for command in commands(buildspec):
        local = set(ASSIGNMENT.findall(command))
        read = set(VARIABLE.findall(command)) - local
        assert read <= documented, f"undocumented: {sorted(read - documented)}"


def test_the_build_exports_the_definition_as_its_artifact(buildspec):
    produced = " ".join(commands(buildspec))
    for path in buildspec.get("artifacts", {}).get("files", []):
        assert f"--definition-file {path}" in produced or f"--file-name {path}" in produced


def test_every_variable_the_stage_files_read_is_documented():
    deploy = CODEBUILD.parent / "deploy"
    read = {
        name
        for path in deploy.rglob("*.json")
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text())
    }
    assert read and read <= documented_variables() | {"AWS_REGION"}


def run_deploy_build(tmp_path, **environ):
    """The deploy buildspec's build commands in bash, with a `promote` that records its arguments."""
    import subprocess

    spec = yaml.safe_load((CODEBUILD / "buildspec-deploy.yml").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "promote"
    fake.write_text(
        '#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$CALLS"\n'
        'if [ "$5" = select ]; then echo arn:aws:sagemaker:us-east-1:111122223333:model-package/g/7; fi\n'
    )
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    script = "\n".join(spec["phases"]["build"]["commands"]) + '\necho "EXPORTED=${MODEL_PACKAGE_ARN:-}"'
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), **environ}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    return calls.read_text().splitlines(), done.stdout


def test_the_deploy_select_action_exports_the_selected_arn(tmp_path):
    spec = yaml.safe_load((CODEBUILD / "buildspec-deploy.yml").read_text())
    assert spec["env"]["exported-variables"] == ["MODEL_PACKAGE_ARN"]
    argv, out = run_deploy_build(tmp_path, STAGE="select")
    assert argv == ["--backend", "aws", "--config", "deploy/promotion.json", "select"]
    assert "EXPORTED=arn:aws:sagemaker:us-east-1:111122223333:model-package/g/7" in out
    argv, _ = run_deploy_build(tmp_path, STAGE="select", MODEL_PACKAGE_VERSION="3")
    assert argv[-2:] == ["--version", "3"]
    # The deploy pipeline's variable defaults to latest, which promote reads as "no pin".
    argv, _ = run_deploy_build(tmp_path, STAGE="select", MODEL_PACKAGE_VERSION="latest")
    assert argv[-2:] == ["--version", "latest"]


def test_a_deploy_action_promotes_exactly_the_selected_arn(tmp_path):
    arn = "arn:aws:sagemaker:us-east-1:111122223333:model-package/g/7"
    argv, _ = run_deploy_build(tmp_path, STAGE="staging", MODEL_PACKAGE_ARN=arn)
    assert argv == ["--backend", "aws", "--config", "deploy/promotion.json", "deploy", "--stage", "staging",
                    "--version", arn]  # fmt: skip
    approver = "CodePipeline manual approval in execution 1f2e"
    argv, _ = run_deploy_build(tmp_path, STAGE="prod", MODEL_PACKAGE_ARN=arn, APPROVED_BY=approver)
    assert argv[-4:] == ["--version", arn, "--approved-by", approver]


def test_a_deploy_action_without_the_selected_arn_fails(tmp_path):
    import subprocess

    with pytest.raises(subprocess.CalledProcessError):
        run_deploy_build(tmp_path, STAGE="prod")

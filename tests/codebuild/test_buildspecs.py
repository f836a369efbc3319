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


def test_there_are_the_build_deploy_and_tracker_buildspecs():
    assert {
        CODEBUILD / "buildspec-build.yml",
        CODEBUILD / "buildspec-deploy.yml",
        CODEBUILD / "buildspec-track.yml",
    } <= set(BUILDSPECS)


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


def load(name: str) -> dict:
    return yaml.safe_load((CODEBUILD / name).read_text())


def test_the_build_names_a_pipeline_module_that_exists():
    import importlib

    modules = {
        m for c in commands(load("buildspec-build.yml")) for m in re.findall(r"--module-name\s+(\S+)", c)
    }
    assert modules, "the build runs no pipeline module"
    for module in modules:
        assert callable(importlib.import_module(module).get_pipeline)


def test_the_deploy_reads_a_promotion_config_that_exists():
    from pipelines.promotion.config import load_promotion

    script = " ".join(commands(load("buildspec-deploy.yml")))
    configs = re.findall(r"\$\{PROMOTION_CONFIG:-([^}]+)\}", script)
    assert configs, "the deploy names no default promotion config"
    for config in configs:
        assert load_promotion(CODEBUILD.parent / config).stages
    assert '--config "${CONFIG}"' in script


def test_every_variable_read_is_documented(buildspec):
    documented = documented_variables()
    for command in commands(buildspec):
        local = set(ASSIGNMENT.findall(command))
        read = set(VARIABLE.findall(command)) - local
        assert read <= documented, f"undocumented: {sorted(read - documented)}"


def test_the_build_exports_the_definition_as_its_artifact():
    spec = load("buildspec-build.yml")
    produced = " ".join(commands(spec))
    files = spec.get("artifacts", {}).get("files", [])
    assert files == ["pipeline-definition.json"]
    for path in files:
        assert f"--definition-file {path}" in produced


def test_the_deploy_exports_the_arn_it_selects():
    spec = load("buildspec-deploy.yml")
    script = " ".join(commands(spec))
    exported = spec.get("env", {}).get("exported-variables", [])
    assert exported == ["MODEL_PACKAGE_ARN"]
    for name in exported:
        assert re.search(rf"\b{name}=\$\(promote ", script) and f"export {name}" in script


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


BUILD_ENVIRON = {
    "AWS_REGION": "eu-west-1",
    "SAGEMAKER_PROJECT_NAME": "churn",
    "SAGEMAKER_PROJECT_ID": "p-abc123",
    "SAGEMAKER_PROJECT_ARN": "arn:aws:sagemaker:eu-west-1:111122223333:project/churn",
    "SAGEMAKER_PIPELINE_ROLE_ARN": "arn:aws:iam::111122223333:role/pipeline",
    "ARTIFACT_BUCKET": "sagemaker-mlops-p-abc123-111122223333-eu-west-1",
}


def run_model_build(tmp_path, **environ):
    """The build buildspec's build commands in bash, with a `run-pipeline` that records each call."""
    import json
    import subprocess

    spec = yaml.safe_load((CODEBUILD / "buildspec-build.yml").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "run-pipeline"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "$CALLS"\necho "--end--" >> "$CALLS"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    script = "\n".join(spec["phases"]["build"]["commands"])
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), **BUILD_ENVIRON, **environ}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    if done.returncode != 0:
        return done, []
    argvs = [call.strip("\n").splitlines() for call in calls.read_text().split("--end--") if call.strip()]
    for argv in argvs:
        json.loads(argv[argv.index("--kwargs") + 1])  # every call gets well-formed kwargs
    return done, argvs


def test_the_build_starts_only_a_changed_definition_unless_asked_and_uses_the_sample_while_empty(tmp_path):
    done, (local, aws) = run_model_build(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--local" in local and "--start-if-changed" not in local
    assert "--local" not in aws
    assert "--start-if-changed" in aws and "--sample-if-empty" in aws

    done, (_, aws) = run_model_build(tmp_path, START_PIPELINE_EXECUTION="always")
    assert done.returncode == 0, done.stderr
    assert "--start-if-changed" not in aws and "--sample-if-empty" in aws

    done, (_, aws) = run_model_build(tmp_path, START_PIPELINE_EXECUTION="if-changed")
    assert "--start-if-changed" in aws


def test_a_bad_start_setting_fails_the_build_before_anything_runs(tmp_path):
    done, calls = run_model_build(tmp_path, START_PIPELINE_EXECUTION="sometimes")
    assert done.returncode == 2 and calls == []
    (line,) = done.stderr.strip().splitlines()
    assert "START_PIPELINE_EXECUTION=sometimes is neither if-changed nor always" in line


def test_the_build_reads_the_input_location_the_project_gives_it(tmp_path):
    import json

    url = "s3://sagemaker-mlops-p-abc123-111122223333-eu-west-1/landing/churn/"
    done, (local, aws) = run_model_build(tmp_path, INPUT_DATA_URL=url)
    assert done.returncode == 0, done.stderr
    for argv in (local, aws):
        assert json.loads(argv[argv.index("--kwargs") + 1])["input_data_url"] == url
    done, (_, aws) = run_model_build(tmp_path)
    assert "input_data_url" not in json.loads(aws[aws.index("--kwargs") + 1])


def test_with_a_tracking_server_the_build_passes_it_to_get_pipeline_and_does_not_wait(tmp_path):
    import json

    server = "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team"
    done, (local, aws) = run_model_build(tmp_path, MLFLOW_TRACKING_SERVER_ARN=server)
    assert done.returncode == 0, done.stderr
    assert json.loads(aws[aws.index("--kwargs") + 1])["mlflow_tracking_server_arn"] == server
    # The project's execution-ended rule logs every execution; the build does not wait for its own.
    assert "--wait" not in aws and "--wait" not in local
    done, (_, aws) = run_model_build(tmp_path)
    assert "mlflow_tracking_server_arn" not in json.loads(aws[aws.index("--kwargs") + 1])
    assert "--wait" not in aws


def test_the_tracker_logs_the_execution_it_is_given_to_the_tracking_server(tmp_path):
    import subprocess

    spec = load("buildspec-track.yml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "execution-report"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$CALLS"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    script = "\n".join(spec["phases"]["build"]["commands"])
    execution = "arn:aws:sagemaker:eu-west-1:111122223333:pipeline/churn-p-abc123/execution/abc"
    server = "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "AWS_REGION": "eu-west-1",
        "PIPELINE_EXECUTION_ARN": execution,
        "MLFLOW_TRACKING_SERVER_ARN": server,
    }
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    argv = calls.read_text().splitlines()
    assert argv[0] == execution
    assert argv[argv.index("--backend") + 1] == "aws"
    assert argv[argv.index("--tracking-server-arn") + 1] == server
    # Without the execution (started by hand, not by the rule) it fails before calling anything.
    calls.unlink()
    del env["PIPELINE_EXECUTION_ARN"]
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and not calls.exists()
    (line,) = done.stderr.strip().splitlines()
    assert "PIPELINE_EXECUTION_ARN is not set" in line

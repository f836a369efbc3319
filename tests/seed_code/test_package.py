"""``package-template``: the seed zip holds what a project needs and nothing else, the same bytes every
time; the templates are published beside it; bad input and AWS refusals are one line."""

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from support import invoke

from seed_code import package, templates

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "team-project-templates"


def dry_run(capsys, tmp_path, *extra, source=ROOT):
    out = tmp_path / "out"
    code, stdout, stderr = invoke(
        package.main,
        ["--bucket", BUCKET, "--dry-run", "--output-dir", str(out), "--source-dir", str(source), *extra],
        capsys,
    )
    return code, stdout, stderr, out


def zip_of(out: Path) -> Path:
    (found,) = out.glob("seed-code-*.zip")
    return found


def names_in(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as opened:
        return opened.namelist()


def copy_of_the_repository(destination: Path) -> Path:
    """The seeded files copied afresh (new timestamps), as another checkout would have them."""
    for name in package.seed_files(ROOT):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, target)
        shutil.copymode(ROOT / name, target)
    for name in ("seed_code", "tests/seed_code"):  # present in a checkout, left out of the zip
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_the_dry_run_writes_the_zip_and_both_templates_and_says_where_they_would_go(capsys, tmp_path):
    code, stdout, stderr, out = dry_run(capsys, tmp_path, "--prefix", "mlops/v1", "--region", "eu-west-1")
    assert code == 0, stderr
    archive = zip_of(out)
    assert sorted(p.name for p in out.iterdir()) == sorted([archive.name, "bootstrap.yaml", "project.yaml"])
    assert stdout.startswith("dry run: nothing uploaded; wrote\n")
    assert f"s3://{BUCKET}/mlops/v1/{archive.name}" in stdout
    assert f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/mlops/v1/project.yaml" in stdout
    assert f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/mlops/v1/bootstrap.yaml" in stdout
    assert "LoadTemplateFromURL=https://" in stdout
    assert (out / "bootstrap.yaml").read_bytes() == templates.BOOTSTRAP.read_bytes()


def test_the_published_project_template_starts_repositories_from_that_zip(capsys, tmp_path):
    code, _, stderr, out = dry_run(capsys, tmp_path, "--prefix", "mlops/v1/")
    assert code == 0, stderr
    published = templates.load(out / "project.yaml")
    parameters = published["Parameters"]
    assert parameters["SeedCodeBucket"]["Default"] == BUCKET
    assert parameters["SeedCodeKey"]["Default"] == f"mlops/v1/{zip_of(out).name}"
    # Nothing else changes.
    source = templates.load(templates.PROJECT)
    for name in ("SeedCodeBucket", "SeedCodeKey"):
        del source["Parameters"][name]["Default"], parameters[name]["Default"]
    assert published == source


def test_the_zip_holds_what_a_project_needs(capsys, tmp_path):
    code, _, stderr, out = dry_run(capsys, tmp_path)
    assert code == 0, stderr
    names = names_in(zip_of(out))
    assert names == sorted(names)
    for needed in (
        ".ci/run",
        ".gitignore",
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "setup.py",
        "pipelines/churn/pipeline.py",
        "pipelines/churn/dataset.json",
        "steps/train.py",
        "codebuild/buildspec-build.yml",
        "codebuild/buildspec-deploy.yml",
        "deploy/promotion.json",
        "deploy/stages/prod.json",
        "data/churn/churn.csv",
        "tests/conftest.py",
        "tests/helpers/support.py",
        "tests/pipelines/churn/golden/definition.json",
    ):
        assert needed in names
    tops = {PurePosixPath(name).parts[0] for name in names}
    assert tops == {".ci", ".gitignore", "LICENSE", "README.md", "pyproject.toml", "setup.py"} | set(
        package.SEED_DIRECTORIES
    )
    for name in names:
        assert not name.startswith(("seed_code/", "tests/seed_code/", "benchmarks/")), name
        assert name != "tests/helpers/seed_support.py"
        assert not package.is_junk(PurePosixPath(name)), name
    with zipfile.ZipFile(zip_of(out)) as opened:
        modes = {info.filename: info.external_attr >> 16 for info in opened.infolist()}
    assert modes[".ci/run"] & 0o111, "CI's entry point stays executable"
    assert not modes["setup.py"] & 0o111


def test_a_seeded_project_gets_a_readme_and_docs_of_its_own_without_the_template_only_sections(
    capsys, tmp_path
):
    code, _, stderr, out = dry_run(capsys, tmp_path)
    assert code == 0, stderr
    with zipfile.ZipFile(zip_of(out)) as opened:
        seeded = {
            name: opened.read(name).decode()
            for name in opened.namelist()
            if name == "README.md" or name.startswith("docs/") and name.endswith(".md")
        }
    template = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "seed_code/" in template and "benchmarks/" in template
    assert "docs/benchmarks.md" not in seeded and "docs/aws.md" in seeded
    # What the project does not have, its README and docs do not mention.
    for name, text in seeded.items():
        for absent in ("seed_code/", "benchmarks/", "benchmarks.md", "package-template", "<!--", "-->"):
            assert absent not in text, f"{name}: {absent}"
        assert "\n\n\n" not in text, name
    assert "This repository was seeded by the SageMaker MLOps project template" in seeded["README.md"]
    for kept in ("## The main path", "### 2. Run the pipeline locally", "## Scenarios", "## Development"):
        assert kept in seeded["README.md"]
    assert "### 4. What a push does" in seeded["docs/aws.md"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\n<!-- template-only -->\nb\n", "README.md:2: <!-- template-only --> is never closed"),
        (
            "a\n<!-- /template-only -->\n",
            "README.md:2: <!-- /template-only --> without a <!-- template-only -->",
        ),
        (
            "<!-- template-only -->\n<!-- seed-only\n-->\n<!-- /template-only -->\n",
            "README.md:2: <!-- seed-only inside the region opened at line 1",
        ),
        ("<!-- seed-only\nb\n", "README.md:1: <!-- seed-only is never closed by -->"),
    ],
)
def test_an_unpaired_readme_marker_is_refused_naming_its_line(text, message):
    with pytest.raises(package.ConfigError) as caught:
        package.seed_readme(text)
    assert str(caught.value).startswith(message)


def test_template_only_regions_go_and_seed_only_comments_open():
    text = "top\n\n<!-- template-only -->\nours\n<!-- /template-only -->\n\n<!-- seed-only\nyours\n-->\nend\n"
    assert package.seed_readme(text) == "top\n\nyours\nend\n"


def test_every_tracked_file_of_the_seeded_directories_is_in_the_zip(capsys, tmp_path):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", *package.SEED_FILES, *package.SEED_DIRECTORIES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {
        name
        for name in tracked
        if (ROOT / name).exists() and not any(PurePosixPath(name).is_relative_to(p) for p in package.LEFT_OUT)
    }
    code, _, stderr, out = dry_run(capsys, tmp_path)
    assert code == 0, stderr
    assert expected <= set(names_in(zip_of(out)))


def test_the_zip_is_the_same_bytes_on_every_build_and_from_every_copy(capsys, tmp_path):
    first = package.build(ROOT, BUCKET, "p/")
    again = package.build(ROOT, BUCKET, "p/")
    elsewhere = package.build(copy_of_the_repository(tmp_path / "copy"), BUCKET, "p/")
    assert first.seed_zip == again.seed_zip == elsewhere.seed_zip
    assert first.templates == elsewhere.templates
    with zipfile.ZipFile(io.BytesIO(first.seed_zip)) as opened:
        assert {info.date_time for info in opened.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_local_junk_never_reaches_the_zip(tmp_path):
    clean = package.build(copy_of_the_repository(tmp_path / "clean"), BUCKET, "p/").seed_zip
    source = copy_of_the_repository(tmp_path / "junk")
    junk = [
        ".venv/bin/python",
        ".venv-checkov/lib/site.py",
        "benchmarks/.venv-mlflow/bin/python",
        "pipelines/__pycache__/errors.cpython-311.pyc",
        "steps/train.pyc",
        "sagemaker_mlops_template.egg-info/PKG-INFO",
        "pipelines/local/thing.egg-info/PKG-INFO",
        "tests/.pytest_cache/v/cache/lastfailed",
        ".ruff_cache/0.6/x",
        "data/churn/.DS_Store",
        "build/seed-code/project.yaml",
        "pipelines/build/lib/x.py",
        "tests/pipelines/.ipynb_checkpoints/x.py",
        "steps/train.py~",
        "dist/x.whl",
        ".git/config",
    ]
    for name in junk:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("junk")
    assert package.build(source, BUCKET, "p/").seed_zip == clean


def test_a_symbolic_link_is_refused(capsys, tmp_path):
    source = copy_of_the_repository(tmp_path / "copy")
    (source / "data" / "elsewhere.csv").symlink_to("/etc/hostname")
    code, _, stderr, _ = dry_run(capsys, tmp_path, source=source)
    assert code == 2
    assert stderr == "Error: data/elsewhere.csv is a symbolic link; the seed code takes plain files only\n"


def test_a_source_dir_that_is_not_this_repository_is_refused(capsys, tmp_path):
    code, _, stderr, _ = dry_run(capsys, tmp_path, source=tmp_path)
    assert code == 2
    assert stderr.startswith(f"Error: --source-dir '{tmp_path}' is not this template's repository: it lacks ")
    assert "setup.py" in stderr and "pipelines" in stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --bucket"),
        (["--bucket", "Team_Templates"], "--bucket 'Team_Templates' is not an S3 bucket name"),
        (["--bucket", BUCKET, "--prefix", "/abs/"], "--prefix '/abs/' is not an S3 key prefix"),
        (["--bucket", BUCKET, "--prefix", "a//b"], "--prefix 'a//b' is not an S3 key prefix"),
        (["--bucket", BUCKET, "--prefix", "../up"], "--prefix '../up' is not an S3 key prefix"),
        (["--bucket", BUCKET, "--prefix", "with space"], "--prefix 'with space' is not an S3 key prefix"),
        (["--bucket", BUCKET, "--region", "Ireland"], "--region 'Ireland' is not an AWS region"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, message):
    code, stdout, stderr = invoke(package.main, [*argv, "--dry-run"], capsys)
    assert code == 2
    assert stderr.startswith(f"Error: {message}") and stderr.count("\n") == 1
    assert stdout == ""


def test_an_output_dir_that_cannot_be_written_is_named(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, stderr = invoke(
        package.main, ["--bucket", BUCKET, "--dry-run", "--output-dir", str(blocker / "out")], capsys
    )
    assert code == 2
    assert stderr.startswith(f"Error: --output-dir '{blocker / 'out'}' cannot be written: ")


def test_prefixes_end_in_one_slash():
    assert package.check_prefix("") == ""
    assert package.check_prefix("a/b") == "a/b/"
    assert package.check_prefix("a/b/") == "a/b/"
    assert package.check_prefix("sagemaker-mlops-template/0.1.0/") == "sagemaker-mlops-template/0.1.0/"


# ---- publishing


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        yield client


def test_publishing_uploads_the_zip_and_the_templates_and_tags_the_project_template(capsys, s3):
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    code, stdout, stderr = invoke(package.main, ["--bucket", BUCKET, "--prefix", "mlops/"], capsys)
    assert code == 0, stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    (seed_key,) = [k for k in keys if k.endswith(".zip")]
    assert keys == sorted([seed_key, "mlops/project.yaml", "mlops/bootstrap.yaml"])
    assert (
        s3.get_object(Bucket=BUCKET, Key=seed_key)["Body"].read()
        == package.build(ROOT, BUCKET, "mlops/").seed_zip
    )
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="mlops/project.yaml")["TagSet"]
    assert tags == [{"Key": "sagemaker:studio-visibility", "Value": "true"}]
    published = s3.get_object(Bucket=BUCKET, Key="mlops/project.yaml")["Body"].read().decode()
    assert f'Default: "{seed_key}"' in published
    assert f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/mlops/project.yaml" in stdout
    assert "dry run" not in stdout


def test_a_missing_bucket_is_exit_code_4(capsys, s3):
    code, _, stderr = invoke(package.main, ["--bucket", BUCKET], capsys)
    assert code == 4
    assert stderr == (
        f"Error: bucket '{BUCKET}' does not exist; "
        "create it in the projects' region or pass another --bucket\n"
    )


def test_an_aws_refusal_says_what_was_being_done_and_is_exit_code_3(capsys, monkeypatch):
    client = boto3.client("s3", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"}, {"Bucket": BUCKET})
    stubber.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
    stubber.activate()
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: client)
    code, stdout, stderr = invoke(package.main, ["--bucket", BUCKET], capsys)
    assert code == 3
    assert stderr.startswith(f"Error: uploading s3://{BUCKET}/sagemaker-mlops-template/seed-code-")
    assert stderr.endswith(".zip: AccessDenied: Access Denied\n")
    assert stdout == ""


# ---- the seeded project stands on its own


@pytest.mark.slow
def test_the_unpacked_seed_code_passes_its_own_tests(capsys, tmp_path):
    code, _, stderr, out = dry_run(capsys, tmp_path)
    assert code == 0, stderr
    project = tmp_path / "project"
    with zipfile.ZipFile(zip_of(out)) as opened:
        opened.extractall(project)
    for info in zipfile.ZipFile(zip_of(out)).infolist():
        os.chmod(project / info.filename, info.external_attr >> 16 & 0o777)
    # The unpacked copy's code, not this checkout's, in the tests and every process they start.
    env = {**os.environ, "PYTHONPATH": str(project), "MLOPS_LOCAL_HOME": str(tmp_path / "home")}
    where = subprocess.run(
        [sys.executable, "-c", "import pipelines, steps; print(pipelines.__file__, steps.__file__)"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.split() == [
        str(project / "pipelines" / "__init__.py"),
        str(project / "steps" / "__init__.py"),
    ]
    result = subprocess.run(
        # In this worker's process: the suite around it already keeps every CPU busy.
        [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *SEEDED_TESTS],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]


#: The seeded project's tests run here: those that read its own files (the buildspecs and the modules
#: they name, the step code on the bundled tables, the churn definition built from its code against
#: its golden file and through the local runner's checks), about 20 s. Its whole suite also passes
#: unpacked (about 3 min); the rest of it, unit tests of the same code on tiny fixtures, runs in
#: this suite already, on the same files.
SEEDED_TESTS = (
    "-m",
    "not slow",
    "tests/codebuild",
    "tests/steps/test_scripts_end_to_end.py",
    "tests/pipelines/churn/test_definition_golden.py",
    "tests/pipelines/local/test_churn_definition.py",
)

"""Content-addressed step code: stable keys, deterministic archives, idempotent upload."""

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipelines.code_bundles import (
    SOURCEDIR_ARCHIVE,
    STEPS_DIR,
    CodeBundle,
    CodeUpload,
    deterministic_targz,
    script_bundle,
)
from pipelines.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "job.py"
    path.write_text("print('hello')\n")
    return path


def test_the_key_depends_on_the_content_not_on_the_file_time(script):
    first = CodeBundle("job", {"job.py": script}).digest
    script.touch()
    assert CodeBundle("job", {"job.py": script}).digest == first
    script.write_text("print('changed')\n")
    assert CodeBundle("job", {"job.py": script}).digest != first


def test_the_name_a_file_has_in_the_container_is_part_of_the_key(script):
    assert CodeBundle("job", {"job.py": script}).digest != CodeBundle("job", {"main.py": script}).digest


def test_an_archive_bundle_has_a_different_key_from_the_plain_files(script):
    assert (
        CodeBundle("job", {"job.py": script}).digest
        != CodeBundle("job", {"job.py": script}, "a.tar.gz").digest
    )


def test_archives_are_byte_identical_and_carry_no_times_or_owners():
    files = {"b.py": b"b = 2\n", "a.py": b"a = 1\n"}
    data = deterministic_targz(files)
    assert data == deterministic_targz(dict(reversed(list(files.items()))))
    assert data[4:8] == b"\0\0\0\0"  # the gzip header's MTIME field
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["a.py", "b.py"]
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}
        assert tar.extractfile("b.py").read() == b"b = 2\n"


def test_a_missing_source_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="nothing.py"):
        CodeBundle("job", {"job.py": tmp_path / "nothing.py"})


def test_uri_points_at_the_bundle_directory_or_one_object(script):
    bundle = CodeBundle("job", {"job.py": script})
    assert bundle.uri("bkt", "Pipe") == f"s3://bkt/Pipe/code/{bundle.digest}/"
    assert bundle.uri("bkt", "Pipe", "job.py") == f"s3://bkt/Pipe/code/{bundle.digest}/job.py"


@mock_aws
def test_upload_puts_new_objects_once_and_then_skips_them(script):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    upload = CodeUpload(
        "bkt", "Pipe", (CodeBundle("job", {"job.py": script}), CodeBundle("t", {"t.py": script}, "s.tar.gz"))
    )

    first = upload.upload(s3)
    assert [r.uploaded for r in first] == [True, True]
    second = upload.upload(s3)
    assert [r.uploaded for r in second] == [False, False]
    assert [r.uri for r in first] == [r.uri for r in second]
    body = s3.get_object(Bucket="bkt", Key=first[0].uri.removeprefix("s3://bkt/"))["Body"].read()
    assert body == script.read_bytes()


@mock_aws
def test_upload_encrypts_with_the_customer_key_when_one_is_given(script):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    (result,) = CodeUpload("bkt", "Pipe", (CodeBundle("job", {"job.py": script}),), kms_key_id=key_id).upload(
        s3
    )
    head = s3.head_object(Bucket="bkt", Key=result.uri.removeprefix("s3://bkt/"))
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]


def test_a_step_script_travels_with_the_steps_modules_it_imports(tmp_path):
    bundle = script_bundle("evaluate", STEPS_DIR / "evaluate.py")
    assert bundle.entry == "evaluate.py"
    assert set(bundle.files) == {
        "evaluate.py",
        "steps/tar_guard.py",
        "steps/label_csv.py",
        "steps/encoding.py",
    }
    # Laid out as the processing input puts it in the container, and imported with nothing of this
    # project on the path but that folder: the shared guard comes from the bundle.
    code = tmp_path / "code"
    for name, body in bundle.objects().items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_bytes(body)
    probe = (
        "import sys, runpy\n"
        f"sys.path = [p for p in sys.path if p.rstrip('/') != {str(REPO)!r} and p not in ('', '.')]\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {str(code)!r})\n"
        f"runpy.run_path({str(code / 'evaluate.py')!r}, run_name='bundle')\n"
        "print(sys.modules['steps.tar_guard'].__file__)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(code / "steps" / "tar_guard.py")


def test_the_serving_archive_carries_the_encoding_module_the_handler_imports(tmp_path):
    bundle = script_bundle("inference", STEPS_DIR / "inference.py", archive=SOURCEDIR_ARCHIVE)
    (archive,) = bundle.objects()
    assert archive == SOURCEDIR_ARCHIVE
    code = tmp_path / "code"
    with tarfile.open(fileobj=io.BytesIO(bundle.objects()[archive])) as tar:
        assert sorted(tar.getnames()) == ["inference.py", "steps/encoding.py"]
        tar.extractall(code, filter="data")
    # The container installs the extracted folder and imports the program by name from there.
    probe = (
        "import sys, importlib\n"
        f"sys.path = [p for p in sys.path if p.rstrip('/') != {str(REPO)!r} and p not in ('', '.')]\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {str(code)!r})\n"
        "importlib.import_module('inference')\n"
        "print(sys.modules['steps.encoding'].__file__)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(code / "steps" / "encoding.py")

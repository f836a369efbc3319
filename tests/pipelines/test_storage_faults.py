"""A local home on a read-only file system or a full disk: every CLI says so in one line.

Each case runs the CLI inside a private mount namespace (``unshare``), over a read-only bind mount
or a tiny tmpfs that is then filled, so the host's file systems are untouched.
"""

import shlex
import subprocess
import sys

import pytest

RUNS_HERE = (
    subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    ).returncode
    == 0
    if sys.platform == "linux"
    else False
)
pytestmark = pytest.mark.skipif(not RUNS_HERE, reason="needs unshare with user and mount namespaces")

CLIS = {
    "local-pipeline list-executions": "pipelines.local.cli list-executions",
    "local-pipeline run": "pipelines.local.cli run --definition-file {definition} --pipeline-name p",
    "model-registry list-groups": "pipelines.registry.cli list-groups",
    "promote status": "pipelines.promotion.cli status",
}


def run_in_namespace(setup: str, home, command: str):
    script = (
        f"{setup} && MLOPS_LOCAL_HOME={shlex.quote(str(home))} {shlex.quote(sys.executable)} -m {command}"
    )
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def definition(tmp_path):
    path = tmp_path / "definition.json"
    path.write_text('{"Version": "2020-12-01", "Parameters": [], "Steps": []}')
    return path


@pytest.mark.parametrize("cli", CLIS)
def test_a_read_only_local_home_is_one_line_naming_the_path_and_the_cause(tmp_path, definition, cli):
    """Reproduction: with $MLOPS_LOCAL_HOME on a read-only file system (``mount -o remount,ro``, not
    a permission bit), every CLI ended in an OSError traceback (Errno 30)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    setup = f"mount --bind {mount} {mount} && mount -o remount,ro,bind {mount} {mount}"
    done = run_in_namespace(setup, mount / "home", CLIS[cli].format(definition=definition))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"Error: cannot write {mount}/home: read-only file system;"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("cli", CLIS)
def test_a_full_disk_is_one_line_naming_the_path_and_no_space_left(tmp_path, definition, cli):
    """Reproduction: with $MLOPS_LOCAL_HOME on a full file system, SQLite's "disk I/O error" ended
    in a traceback that hid "no space left on device"."""
    home = tmp_path / "full"
    home.mkdir()
    fill = f"(dd if=/dev/zero of={home}/filler bs=4k 2>/dev/null; true)"
    setup = f"mount -t tmpfs -o size=256k tmpfs {home} && {fill}"
    done = run_in_namespace(setup, home, CLIS[cli].format(definition=definition))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"Error: cannot write {home}/"), done.stderr
    assert "no space left on device; free some space" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr

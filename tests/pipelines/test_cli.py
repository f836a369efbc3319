"""The behaviour every CLI shares through ``pipelines._cli``."""

import io
import os
import subprocess
import sys

import pytest

from pipelines import _cli
from pipelines.errors import ConfigError
from pipelines.local.progress import PlainReporter


def test_a_template_error_becomes_one_error_line_and_its_exit_code(capsys):
    def main(argv):
        raise ConfigError("bad value 'x' in --kwargs; pass a number")

    assert _cli.run(main, []) == ConfigError.exit_code
    assert capsys.readouterr().err == "Error: bad value 'x' in --kwargs; pass a number\n"


def test_a_reader_that_went_away_ends_the_command_quietly_with_the_sigpipe_status(capsys):
    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert _cli.run(main, []) == _cli.BROKEN_PIPE_EXIT == 141
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "command",
    [
        ["pipelines.local.cli", "list-executions"],
        ["pipelines.registry.cli", "list-groups", "--json"],
    ],
)
def test_a_cli_piped_into_a_reader_that_closes_prints_no_traceback(tmp_path, command):
    # The reader closes before the command writes: every write to stdout fails with EPIPE, as
    # when `head` has read its lines and exited.
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "MLOPS_LOCAL_HOME": str(tmp_path / "home")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", *command],
            stdout=write,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
            text=True,
        )
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.stderr == ""
    assert done.returncode == 141


class _ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_run_whose_reader_went_away_goes_on_without_output():
    reporter = PlainReporter(_ClosedPipe())
    reporter.step("Preprocess", "Executing")
    reporter.step("Preprocess", "Succeeded")  # no second BrokenPipeError
    assert reporter.reader_gone

"""The peak memory a job's process leaves in usage.jsonl is its own, not the runner's.

Linux carries the high-water mark across exec, so wait4's ru_maxrss of a child forked by a large
runner starts at the runner's resident size."""

import json
import sys

import pytest

from pipelines.local.jobs import USAGE_FILE, run_process

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the inherited high-water mark is Linux's")

TOUCH = (
    "x = bytearray({mib} * 2**20)\nfor i in range(0, len(x), 4096): x[i] = 1\nimport time; time.sleep(0.6)"
)


@pytest.fixture(scope="module")
def runner_memory():
    """Make this process, the runner here, hold 400 MiB more while the jobs start."""
    held = bytearray(400 * 2**20)
    for index in range(0, len(held), 4096):
        held[index] = 1
    yield held


def peak_of(tmp_path, mib: int) -> float:
    log = tmp_path / "job" / "log.txt"
    command = [sys.executable, "-c", TOUCH.format(mib=mib)]
    status = run_process(command, cwd=tmp_path, env={}, log_path=log, timeout=60)
    assert status == 0, log.read_text()
    (line,) = (log.parent / USAGE_FILE).read_text().splitlines()
    return json.loads(line)["peak_mib"]


def test_a_small_job_started_by_a_large_runner_reports_its_own_peak(runner_memory, tmp_path):
    peak = peak_of(tmp_path, 20)
    assert 20 < peak < 120, peak  # the interpreter and its 20 MiB, not the runner's 400 MiB more


def test_a_job_larger_than_the_runner_reports_its_whole_peak(runner_memory, tmp_path):
    runner_rss = int(next(x for x in open("/proc/self/status") if x.startswith("VmRSS:")).split()[1]) / 1024
    peak = peak_of(tmp_path, int(runner_rss) + 300)
    assert runner_rss + 300 < peak < runner_rss + 450, (peak, runner_rss)

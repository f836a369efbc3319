"""Jobs see their own sandbox at /opt/ml: scripts written for the containers run unchanged."""

import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipelines.local import sandbox
from pipelines.local.engine import LocalRunner
from pipelines.local.progress import LiveReporter, PlainReporter, Reporter

ABALONE = Path(__file__).parent / "fixtures" / "abalone"
BUCKET = "s3://abalone-bucket"


class Recorder(Reporter):
    def __init__(self):
        self.events = []

    def step(self, name, status, detail="", log_path=None):
        self.events.append((name, status))

    def warning(self, name, text):
        self.events.append((name, "Warning", text))


def abalone_rows(count: int = 240) -> str:
    rng = np.random.default_rng(7)
    lines = []
    for _ in range(count):
        sex = rng.choice(["M", "F", "I"])
        length = rng.uniform(0.1, 0.8)
        weights = [round(length * rng.uniform(0.5, 1.5), 4) for _ in range(4)]
        rings = int(3 + 20 * length + rng.normal(0, 1))
        lines.append(
            ",".join(
                [
                    sex,
                    f"{length:.3f}",
                    f"{length * 0.8:.3f}",
                    f"{length * 0.3:.3f}",
                    *map(str, weights),
                    str(rings),
                ]
            )
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def abalone(tmp_path):
    """A runner with the abalone table and the three scripts staged, and the pipeline's text."""
    runner = LocalRunner(tmp_path / "home", reporter=Recorder())
    runner.store.put_bytes(f"{BUCKET}/abalone/abalone-dataset.csv", abalone_rows().encode())
    for script in ("preprocessing.py", "baseline.py", "evaluation.py"):
        runner.store.put_file(ABALONE / script, f"{BUCKET}/code/{script}")
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    return runner, (ABALONE / "pipeline.json").read_text(), {"RendezvousDir": str(rendezvous)}


def host_opt_ml() -> list[str] | None:
    path = Path(sandbox.CONTAINER_ROOT)
    return sorted(os.listdir(path)) if path.exists() else None


def interval(properties):
    return (
        datetime.fromisoformat(properties["ProcessingStartTime"]),
        datetime.fromisoformat(properties["ProcessingEndTime"]),
    )


@pytest.mark.slow
def test_a_pipeline_written_like_the_abalone_sample_runs_unchanged_with_two_jobs_at_once(abalone, namespaced):
    runner, definition, parameters = abalone
    before = host_opt_ml()

    outcome = runner.start(definition, pipeline_name="AbalonePipeline", parameters=parameters)

    assert outcome.status == "Succeeded", outcome.failure_reason
    # Both read /opt/ml/processing/input with glob() from their own sandboxes, at the same time:
    # each waited at the rendezvous for the other to start.
    first, second = (
        interval(outcome.properties["PreprocessAbaloneData"]),
        interval(outcome.properties["BaselineAbaloneData"]),
    )
    assert first[0] < second[1] and second[0] < first[1]
    baseline_uri = outcome.properties["BaselineAbaloneData"]["ProcessingOutputConfig"]["Outputs"][0]
    stats = json.loads(runner.store.get_bytes(f"{baseline_uri['S3Output']['S3Uri']}/statistics.json"))
    assert stats == {"rows": 240, "columns": 9, "files": ["abalone-dataset.csv"]}
    # The built-in algorithm's metrics, read with the container's own regexes.
    metrics = {m["MetricName"] for m in outcome.properties["TrainAbaloneModel"]["FinalMetricDataList"]}
    assert metrics == {"validation:rmse"}
    registered = outcome.properties["RegisterAbaloneModel"]
    assert registered["ModelPackageGroupName"] == "AbalonePackageGroup"
    assert registered["ModelPackageVersion"] == 1
    assert host_opt_ml() == before  # nothing was created or written at the machine's /opt/ml


def test_without_a_namespace_a_script_that_hard_codes_opt_ml_misses_its_files_and_the_step_is_warned(
    abalone, monkeypatch
):
    monkeypatch.setenv(sandbox.ISOLATION_VARIABLE, "rewrite")
    runner, definition, parameters = abalone
    before = host_opt_ml()

    outcome = runner.start(definition, pipeline_name="AbalonePipeline", parameters=parameters)

    assert outcome.status == "Failed"
    assert "no input under /opt/ml/processing/input" in outcome.failure_reason
    warnings = [event for event in runner.reporter.events if event[1] == "Warning"]
    assert sorted(name for name, _, _ in warnings) == ["BaselineAbaloneData", "PreprocessAbaloneData"]
    assert all("code that hard-codes /opt/ml will not see its files" in text for _, _, text in warnings)
    assert host_opt_ml() == before


def test_a_forced_isolation_that_does_not_exist_falls_back_to_rewriting_and_says_why(monkeypatch):
    monkeypatch.setenv(sandbox.ISOLATION_VARIABLE, "docker")
    found = sandbox.support()
    assert found.isolation is sandbox.Isolation.REWRITE
    assert found.reason == (
        "MLOPS_LOCAL_ISOLATION='docker' is not one of user-namespace, mount-namespace, rewrite"
    )


def test_off_linux_jobs_fall_back_to_rewriting(monkeypatch):
    monkeypatch.delenv(sandbox.ISOLATION_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    found = sandbox.support()
    assert not found.namespaced
    assert found.reason == "mount namespaces are Linux-only (this is darwin)"


def test_a_namespace_job_sees_its_sandbox_at_opt_ml_and_writes_land_in_it(tmp_path, namespaced):
    box = sandbox.Sandbox(tmp_path / "algo-1", namespaced)
    box.local("/opt/ml/input/data/train").mkdir(parents=True)
    box.local("/opt/ml/input/data/train/rows.csv").write_text("1,2\n")
    command, cwd = box.command(
        [
            sys.executable,
            "-c",
            "import os; print(os.listdir('/opt/ml/input/data/train'));"
            "open('/opt/ml/model/out.txt', 'w').write('kept')",
        ],
        "/opt/ml/input",
    )
    box.local("/opt/ml/model").mkdir(parents=True)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['rows.csv']"
    assert box.local("/opt/ml/model/out.txt").read_text() == "kept"
    assert not Path("/opt/ml/model/out.txt").exists()


def test_a_warning_is_one_line_in_the_plain_view_and_comes_under_the_table_in_the_live_view():
    plain = io.StringIO()
    PlainReporter(plain).warning("Preprocess", "code that hard-codes /opt/ml will not see its files")
    assert plain.getvalue().endswith(
        "Preprocess               Warning  code that hard-codes /opt/ml will not see its files\n"
    )

    live = io.StringIO()
    reporter = LiveReporter(live)
    reporter.warning("Preprocess", "code that hard-codes /opt/ml will not see its files")
    assert live.getvalue() == ""  # a line now would break the table redrawn in place
    reporter.finished(
        SimpleNamespace(
            execution_id="e1", status="Succeeded", seconds=1.0, properties={}, steps={}, failure_reason=None
        ),
        SimpleNamespace(steps={}),
    )
    assert (
        "warning: step Preprocess: code that hard-codes /opt/ml will not see its files\n" in live.getvalue()
    )

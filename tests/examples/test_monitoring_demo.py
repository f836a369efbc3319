"""The monitoring demo's story end to end, on the bundled churn table with a small tuning budget:
train and deploy dev, normal traffic passes, shifted traffic names the drifted features and starts a
retraining that registers a new version."""

import json
import re
import sys
from pathlib import Path

import pytest
from support import free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "monitoring"))


@pytest.mark.slow
def test_the_demo_trains_deploys_sees_drift_and_retrains(tmp_path, capfd):
    import demo

    home = tmp_path / "home"
    assert (
        demo.main(
            ["--home", str(home), "--port", str(free_port()), "--rows", "300", "--max-tuning-jobs", "2"]
        )
        == 0
    )
    out = capfd.readouterr().out
    # The smoke tests' requests are captured too: more than the 300 rows sent.
    assert re.search(r"execution \S+ Completed: 3\d\d records", out)
    assert "CompletedWithViolations: 300 records" in out
    drifted = {line.split(":")[0].strip() for line in out.splitlines() if "baseline_drift_check" in line}
    assert drifted == {f"_c{i}" for i in demo.SHIFTED_COLUMNS}
    assert "retraining succeeded" in out
    executions = sorted((home / "monitoring").rglob("execution.json"))
    statuses = [json.loads(p.read_text())["MonitoringExecutionStatus"] for p in executions]
    assert statuses == ["Completed", "CompletedWithViolations"]
    # The retraining registered version 2, waiting for approval like any other.
    assert re.search(r"^2\s+PendingManualApproval", out, re.MULTILINE)

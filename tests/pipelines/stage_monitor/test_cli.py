"""``monitor`` as a person types it: exit codes, one-line errors, JSON answers."""

import json

from monitor_support import rows

from pipelines.stage_monitor import cli


def run_cli(world, monkeypatch, capsys, *argv):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(world.home))
    config = world.config.source
    code = cli.main(["--config", str(config), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_status_and_history(world, monkeypatch, capsys):
    world.register(rows(2000, seed=1))
    world.capture(rows(100, seed=2))
    code, out, _ = run_cli(world, monkeypatch, capsys, "run", "--stage", "dev")
    assert code == 0 and "Completed: 100 records from 1 capture files" in out
    code, out, _ = run_cli(world, monkeypatch, capsys, "status")
    (status,) = json.loads(out)
    assert status["ScheduleExpression"] == "cron(0 * ? * * *)"
    assert status["LastMonitoringExecutionSummary"]["MonitoringExecutionStatus"] == "Completed"
    code, out, _ = run_cli(world, monkeypatch, capsys, "history", "--stage", "dev")
    assert code == 0 and [e["RecordCount"] for e in json.loads(out)] == [100]


def test_a_failed_run_is_one_line_and_exit_1(world, monkeypatch, capsys):
    world.register(rows(200, seed=1))
    code, _, err = run_cli(world, monkeypatch, capsys, "run", "--stage", "dev")
    assert code == 1
    assert (
        err.startswith("Error: dev: monitoring failed: no captured data under s3://") and err.count("\n") == 1
    )


def test_an_unknown_stage_and_a_malformed_config_exit_2(world, monkeypatch, capsys):
    code, _, err = run_cli(world, monkeypatch, capsys, "run", "--stage", "deev")
    assert code == 2 and "no stage 'deev'" in err and "Did you mean 'dev'?" in err
    path = world.config.source.parent / "stages" / "dev.json"
    document = json.loads(path.read_text())
    document["monitoring"]["schedule"] = "cron(0/5 * ? * * *)"
    path.write_text(json.dumps(document))
    code, _, err = run_cli(world, monkeypatch, capsys, "status")
    assert code == 2 and f"invalid stage config {path}: monitoring.schedule is 'cron(0/5 * ? * * *)'" in err


def test_schedule_refuses_an_endpoint_that_is_not_serving(world, monkeypatch, capsys):
    world.register(rows(200, seed=1))
    code, _, err = run_cli(world, monkeypatch, capsys, "schedule", "--stage", "dev", "--max-runs", "1")
    assert code == 2 and "the endpoint 'churn-monitored-dev' of stage 'dev' is not in service" in err

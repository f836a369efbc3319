"""``monitor``: run each stage's monitors on its endpoint's captured data, and see what they found.

    monitor run --stage S         the configured checks on the capture since the last run, against the
                                  baseline of the version S serves; then what a violation does
    monitor status [--stage S]    schedule, next run, what serves, the last execution
    monitor history --stage S     every execution (JSON, like ListMonitoringExecutions)
    monitor schedule --stage S    run on the stage's schedule while its endpoint serves

Stages come from ``deploy/promotion.json`` (``--config``); everything is local, under the local home.
Exit codes: 0 done (violations found is still 0), 1 a run failed, 2 bad configuration.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines import _cli
from pipelines.errors import TemplateError, UsageError
from pipelines.local_home import local_home
from pipelines.promotion.config import load_promotion
from pipelines.stage_monitor.monitor import (
    DEFAULT_PIPELINE_MODULE,
    LocalMonitor,
    monitoring_of,
    schedule_name,
)
from pipelines.stage_monitor.schedule import next_run, run_on_schedule

DEFAULT_CONFIG = Path("deploy/promotion.json")


def _runs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--max-runs {text!r} is not a whole number") from None
    if value < 1:
        raise UsageError(f"--max-runs {value}: give at least 1")
    return value


def build_monitor(args) -> LocalMonitor:
    from pipelines.registry import open_registry
    from pipelines.stage_monitor.checks import data_quality

    parameters = _cli.parameter_options(args.pipeline_parameters)
    if "InputDataUrl" in parameters:
        raise UsageError("--pipeline-parameter: InputDataUrl comes from the stage's retrain_input_data_url")
    return LocalMonitor(
        load_promotion(args.config),
        open_registry("local"),
        local_home(),
        data_quality,
        pipeline_module=args.pipeline_module,
        pipeline_parameters=parameters,
    )


def _status(monitor: LocalMonitor, stage_names: list[str]) -> list[dict]:
    rows = []
    for name in stage_names:
        stage = monitor.config.stage(name)
        settings = stage.monitoring
        row = {"Stage": name, "Enabled": bool(settings and settings.enabled)}
        if settings and settings.enabled:
            history = monitor.history(stage)
            row.update(
                MonitoringScheduleName=schedule_name(stage),
                ScheduleExpression=settings.schedule_expression,
                NextRun=next_run(settings.schedule_expression, monitor.clock()).isoformat(),
                OnViolation=settings.on_violation.action,
                LastMonitoringExecutionSummary=history[-1] if history else None,
                LastRetrainingAt=monitor.state(stage).get("last_retraining_at"),
            )
        rows.append(row)
    return rows


def _main(argv: Sequence[str] | None) -> int:
    parser = _cli.ArgumentParser(prog="monitor", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="promotion.json (default: %(default)s)"
    )
    parser.add_argument(
        "--pipeline-module",
        default=DEFAULT_PIPELINE_MODULE,
        help="the pipeline a retraining runs (default: %(default)s)",
    )
    parser.add_argument(
        "--pipeline-parameter",
        dest="pipeline_parameters",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of a retraining execution, e.g. MaxTuningJobs=2 (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_cli.ArgumentParser)
    run = commands.add_parser("run", help="one monitoring execution now")
    run.add_argument("--stage", required=True)
    status = commands.add_parser("status", help="the monitors of every stage, or of one")
    status.add_argument("--stage")
    history = commands.add_parser("history", help="the executions of a stage's monitor")
    history.add_argument("--stage", required=True)
    schedule = commands.add_parser("schedule", help="run on the stage's schedule while its endpoint serves")
    schedule.add_argument("--stage", required=True)
    schedule.add_argument("--max-runs", type=_runs, help="stop after this many runs (default: never)")
    args = parser.parse_args(argv)

    monitor = build_monitor(args)
    if args.command == "run":
        monitor.run(args.stage)
    elif args.command == "status":
        names = [args.stage] if args.stage else [s.name for s in monitor.config.stages]
        print(json.dumps(_status(monitor, names), indent=2))
    elif args.command == "history":
        print(json.dumps(monitor.history(monitor.config.stage(args.stage)), indent=2))
    else:
        _schedule(monitor, args.stage, args.max_runs)
    return 0


def _schedule(monitor: LocalMonitor, stage_name: str, max_runs: int | None) -> None:
    from pipelines.promotion.local import LocalDeployer
    from pipelines.serving.endpoints import IN_SERVICE

    stage = monitor.config.stage(stage_name)
    settings = monitoring_of(stage)
    endpoints = LocalDeployer(monitor.home).endpoints(stage)

    def alive() -> bool:
        try:
            return endpoints.get(stage.endpoint.name).status == IN_SERVICE
        except TemplateError:
            return False

    def run_once() -> None:
        try:
            monitor.run(stage_name)
        except TemplateError as err:  # recorded as a Failed execution; the schedule goes on
            print(f"Error: {err}", file=sys.stderr)

    if not alive():
        raise UsageError(
            f"the endpoint {stage.endpoint.name!r} of stage {stage_name!r} is not in service; deploy it first"
        )
    print(
        f"{stage_name}: monitoring {stage.endpoint.name} on {settings.schedule_expression} (UTC) "
        "while it serves"
    )
    runs = run_on_schedule(settings.schedule_expression, run_once, alive, max_runs=max_runs)
    print(f"{stage_name}: {runs} runs; the endpoint is {'still serving' if alive() else 'no longer serving'}")


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

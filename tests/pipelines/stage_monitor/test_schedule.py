"""When the local schedule runs a stage's monitor: the hours SageMaker's expressions name, only
while the endpoint serves."""

from datetime import datetime, timedelta, timezone

import pytest

from pipelines.errors import ConfigError
from pipelines.stage_monitor.schedule import hours_of, next_run, run_on_schedule

T = datetime(2026, 11, 30, 13, 25, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cron(0 * ? * * *)", datetime(2026, 11, 30, 14, tzinfo=timezone.utc)),
        ("cron(0 12 ? * * *)", datetime(2026, 12, 1, 12, tzinfo=timezone.utc)),
        ("cron(0 17/12 ? * * *)", datetime(2026, 11, 30, 17, tzinfo=timezone.utc)),
        ("cron(0 0/6 ? * * *)", datetime(2026, 11, 30, 18, tzinfo=timezone.utc)),
    ],
)
def test_the_next_run_is_the_next_hour_the_expression_names(expression, expected):
    assert next_run(expression, T) == expected


def test_a_run_exactly_on_the_hour_waits_for_the_next_one():
    on_the_hour = datetime(2026, 11, 30, 14, tzinfo=timezone.utc)
    assert next_run("cron(0 * ? * * *)", on_the_hour) == on_the_hour + timedelta(hours=1)
    assert hours_of("cron(0 17/12 ? * * *)") == (17,)


def test_an_expression_sagemaker_refuses_is_refused():
    with pytest.raises(ConfigError, match="not a ScheduleExpression SageMaker accepts"):
        hours_of("rate(1 hour)")


def test_runs_follow_the_schedule_and_stop_when_the_endpoint_does():
    clock = {"now": T}
    runs = []

    def sleep(seconds):
        clock["now"] += timedelta(seconds=seconds)

    def alive():
        return clock["now"] < datetime(2026, 11, 30, 17, 30, tzinfo=timezone.utc)

    count = run_on_schedule(
        "cron(0 * ? * * *)", lambda: runs.append(clock["now"]), alive, clock=lambda: clock["now"], sleep=sleep
    )
    assert [r.hour for r in runs] == [14, 15, 16, 17]
    assert count == 4
    assert clock["now"] < datetime(2026, 11, 30, 18, tzinfo=timezone.utc)  # noticed before the next run


def test_max_runs_stops_the_schedule():
    clock = {"now": T}

    def sleep(seconds):
        clock["now"] += timedelta(seconds=seconds)

    assert (
        run_on_schedule(
            "cron(0 * ? * * *)",
            lambda: None,
            lambda: True,
            clock=lambda: clock["now"],
            sleep=sleep,
            max_runs=2,
        )
        == 2
    )

"""When a monitoring schedule fires: the ScheduleExpression forms SageMaker accepts, read as the
hours of the day (UTC) at whose start a run begins."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from pipelines.errors import ConfigError
from pipelines.promotion.config import CRON_FORM


def hours_of(expression: str) -> tuple[int, ...]:
    """The hours (UTC) at which ``expression`` fires; ConfigError for a form SageMaker refuses."""
    match = CRON_FORM.fullmatch(expression)
    if match is None:
        raise ConfigError(f"schedule {expression!r} is not a ScheduleExpression SageMaker accepts")
    hour, step = match.group(1), match.group(2)
    if hour == "*":
        return tuple(range(24))
    if step is None:
        return (int(hour),)
    return tuple(range(int(hour), 24, int(step)))


def next_run(expression: str, after: datetime) -> datetime:
    """The first start of an hour strictly after ``after`` at which ``expression`` fires."""
    hours = hours_of(expression)
    moment = after.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while moment.hour not in hours:
        moment += timedelta(hours=1)
    return moment


def run_on_schedule(
    expression: str,
    run: Callable[[], object],
    alive: Callable[[], bool],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    sleep: Callable[[float], None] = time.sleep,
    max_runs: int | None = None,
    poll_s: float = 30.0,
) -> int:
    """Call ``run`` at each time ``expression`` names while ``alive()`` (the endpoint serves);
    returns how many runs were made. Waits in steps of ``poll_s`` so that an endpoint that stops is
    noticed before the next run, not after it."""
    runs = 0
    while alive() and (max_runs is None or runs < max_runs):
        due = next_run(expression, clock())
        while alive():
            left = (due - clock()).total_seconds()
            if left <= 0:
                break
            sleep(min(left, poll_s))
        else:
            break
        run()
        runs += 1
    return runs

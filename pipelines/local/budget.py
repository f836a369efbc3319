"""One CPU budget for every local job running at once: each job instance's ``SM_NUM_CPUS`` (and so
its thread count) is a share of it, held while the instance runs, so concurrent jobs never ask
for more cores than the machine has.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator


class BudgetStopped(Exception):
    """The wait for CPUs ended because the execution was interrupted."""


class CpuBudget:
    """``total`` CPUs handed out in whole CPUs, first come first served.

    ``lease(instances, want)`` waits until every instance of a job can have at least one CPU,
    then gives each ``min(want, free // instances)``. The instances of one job are granted
    together: a distributed job's instances must all run at once. A job with more instances
    than the whole budget can never be granted in full, so it runs with one CPU per instance
    once nothing else holds any.
    """

    def __init__(self, total: int):
        self.total = max(1, int(total))
        self._used = 0
        self._condition = threading.Condition()
        self._queue: list[int] = []
        self._tickets = itertools.count()

    @property
    def in_use(self) -> int:
        with self._condition:
            return self._used

    @contextlib.contextmanager
    def lease(
        self, instances: int = 1, want: int | None = None, stop: threading.Event | None = None
    ) -> Iterator[int]:
        """CPUs per instance for the duration of the block; BudgetStopped if ``stop`` is set
        while waiting."""
        instances = max(1, int(instances))
        want = self.total if not want or want < 1 else int(want)
        ticket = next(self._tickets)
        with self._condition:
            self._queue.append(ticket)
            try:
                while not self._grantable(ticket, instances):
                    if stop is not None and stop.is_set():
                        raise BudgetStopped("stopped by an interrupt")
                    # Woken by every release; the timeout only bounds how late an interrupt is seen.
                    self._condition.wait(timeout=0.5)
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()
            free = self.total - self._used
            each = max(1, min(want, free // instances))
            granted = each * instances
            self._used += granted
        try:
            yield each
        finally:
            with self._condition:
                self._used -= granted
                self._condition.notify_all()

    def _grantable(self, ticket: int, instances: int) -> bool:
        # First come first served: a wide job is not starved by a stream of narrow ones.
        if self._queue[0] != ticket:
            return False
        free = self.total - self._used
        if instances > self.total:
            return self._used == 0
        return free >= instances

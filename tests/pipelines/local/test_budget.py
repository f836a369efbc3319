"""One CPU budget for every job running at once: shares never add up to more than the machine, a job
waits for its share, and the instances of one job are granted together."""

import threading
import time

import pytest

from pipelines.local.budget import BudgetStopped, CpuBudget


def hold(budget, instances, want, granted, release, entered=None):
    """A thread that leases, reports its share, and holds it until ``release`` is set."""

    def run():
        with budget.lease(instances, want) as cpus:
            granted.append(cpus)
            if entered is not None:
                entered.set()
            release.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_lone_job_gets_what_it_wants_up_to_the_whole_budget():
    budget = CpuBudget(8)

    with budget.lease(1, None) as everything:
        assert everything == 8
    with budget.lease(1, 3) as three:
        assert three == 3
        assert budget.in_use == 3
    assert budget.in_use == 0


def test_a_second_job_waits_until_the_first_gives_its_cpus_back():
    budget = CpuBudget(2)
    granted, release_first, release_second = [], threading.Event(), threading.Event()
    first = hold(budget, 1, None, granted, release_first)
    wait_until(lambda: granted == [2])

    second = hold(budget, 1, None, granted, release_second)
    time.sleep(0.3)
    assert granted == [2]  # nothing is free: the second job has not started

    release_first.set()
    wait_until(lambda: granted == [2, 2])
    release_second.set()
    first.join(5)
    second.join(5)


def test_jobs_that_want_a_share_run_side_by_side_within_the_budget():
    budget = CpuBudget(4)
    granted, release = [], threading.Event()
    threads = [hold(budget, 1, 2, granted, release) for _ in range(2)]

    wait_until(lambda: len(granted) == 2)
    assert granted == [2, 2]
    assert budget.in_use == 4
    release.set()
    for thread in threads:
        thread.join(5)


def test_the_instances_of_one_job_are_granted_together_and_split_the_share():
    budget = CpuBudget(4)

    with budget.lease(2, None) as each:
        assert each == 2
        assert budget.in_use == 4


def test_a_job_wider_than_the_budget_runs_alone_with_one_cpu_per_instance():
    budget = CpuBudget(2)
    granted, release, entered = [], threading.Event(), threading.Event()
    narrow = hold(budget, 1, 1, granted, release, entered)
    entered.wait(5)
    wide_granted = []
    wide = hold(budget, 3, None, wide_granted, threading.Event())
    time.sleep(0.3)
    assert wide_granted == []  # waits until nothing else holds a CPU

    release.set()
    wait_until(lambda: wide_granted == [1])
    assert budget.in_use == 3
    narrow.join(5)
    wide.join(0)


def test_a_waiting_wide_job_is_not_overtaken_by_a_later_narrow_one():
    budget = CpuBudget(2)
    granted, release_first = [], threading.Event()
    first = hold(budget, 1, 1, granted, release_first)
    wait_until(lambda: granted == [1])
    wide_granted, narrow_granted, release_rest = [], [], threading.Event()
    wide = hold(budget, 2, None, wide_granted, release_rest)
    time.sleep(0.2)
    narrow = hold(budget, 1, 1, narrow_granted, release_rest)
    time.sleep(0.3)
    # One CPU is free, enough for the narrow job, but the wide job asked first.
    assert (wide_granted, narrow_granted) == ([], [])

    release_first.set()
    wait_until(lambda: wide_granted == [1])
    assert narrow_granted == []
    release_rest.set()
    wait_until(lambda: narrow_granted == [1])
    for thread in (first, wide, narrow):
        thread.join(5)


def test_an_interrupt_ends_the_wait_for_cpus():
    budget = CpuBudget(1)
    stop = threading.Event()
    with budget.lease(1, None):
        stop.set()
        with pytest.raises(BudgetStopped), budget.lease(1, None, stop):
            pass
    assert budget.in_use == 0

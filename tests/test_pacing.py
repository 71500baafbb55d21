"""Retention's pause schedule (:class:`eventsource.pacing.Pacer`): pauses follow the work done, not the calls.

The clock is the test's own and advances only as the test says: the schedule is computed, never timed."""

from __future__ import annotations

import pytest
from eventsource.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(pacer: Pacer, clock: Clock, batches: list[tuple[float, float]], idle: float = 0.0) -> list[float]:
    """Each ``(took, share)`` batch advances the clock by its time, then by the pause it was given and ``idle``."""
    pauses = []
    for took, share in batches:
        clock.now += took
        pause = pacer.done(took, share)
        pauses.append(pause)
        clock.now += pause + idle
    return pauses


def test_full_batches_each_pause_twice_as_long_as_they_took() -> None:
    clock = Clock()
    pauses = run(Pacer(2, 0.01, clock), clock, [(0.01, 1.0)] * 10)
    assert pauses == pytest.approx([0.02] * 10)


def test_many_tiny_batches_pause_a_few_times_for_the_work_they_did() -> None:
    clock = Clock()
    took, quantum = 2**-13, 2**-7  # (binary fractions: the sums are exact)
    pauses = run(Pacer(2, quantum, clock), clock, [(took, 1.0)] * 1024)  # 1,024 streams of a few events each
    slept = [p for p in pauses if p]
    assert len(slept) == 32  # one pause per quantum of debt (1,024 x 2 x took / quantum), not one per batch
    assert sum(slept) == 1024 * took * 2  # the same share of the time as full batches get


def test_the_pause_scales_with_the_work_not_with_the_number_of_batches() -> None:
    light, heavy = Clock(), Clock()
    few = sum(run(Pacer(2, 0.01, light), light, [(0.004, 1.0)] * 100))
    many = sum(run(Pacer(2, 0.01, heavy), heavy, [(0.004, 1.0)] * 400))
    assert many == pytest.approx(4 * few)


def test_a_batch_owes_only_its_share_of_a_full_batch() -> None:
    clock = Clock()
    each = 2 * 0.005 * 2 / 64  # 5 ms of round trips deleting 2 events where a full batch deletes 64
    pauses = run(Pacer(2, 0.008, clock), clock, [(0.005, 2 / 64)] * 64)
    assert [round(p / each) for p in pauses if p] == [26, 26]  # paid on reaching the quantum; the rest still owed


def test_time_spent_between_batches_counts_as_paid() -> None:
    free, busy = Clock(), Clock()
    # the caller's own work between batches (max_count reading the next stream) leaves the lock free
    assert not any(run(Pacer(2, 0.01, free), free, [(0.001, 1.0)] * 50, idle=0.002))
    assert len([p for p in run(Pacer(2, 0.01, busy), busy, [(0.001, 1.0)] * 50, idle=0.001) if p]) == 5


def test_sqlite_batches_shrink_on_slow_full_batches_only() -> None:
    from eventsource.sqlite.maintenance import Batches
    from eventsource.sqlite.statements import BATCH_SECONDS

    sizes = Batches(64)
    sizes.took(BATCH_SECONDS * 10, 2)  # a stream barely over max_count: slow for its overhead, not its size
    assert sizes.size == 64
    for _ in range(10):
        sizes.took(BATCH_SECONDS * 10, sizes.size)
    assert sizes.size == 2  # a transaction holding the lock for two events at a time if that is what it takes

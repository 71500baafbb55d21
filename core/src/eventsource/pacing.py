"""The pause schedule of a retention run: pauses owed for the work its batches did, paid in a few sleeps.

A store deletes in short transactions and lets writers have the lock (or the server) between them by pausing
``pause`` times as long as each transaction took. Paying that after every transaction made a run of many tiny
ones (``max_count`` over many streams holding a few events too many, one ``truncate_stream`` each) pay a
sleep's overhead and a full pause per stream, whatever it deleted. A :class:`Pacer` is kept by the provider
across calls: each batch adds what it owes, the time the run spent outside its batches (the caller's own
work, reading the next stream) counts as paid, and the run sleeps only once the debt reaches ``quantum``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class Pacer:
    """Pauses owed by retention batches (``pause`` times the time each held, scaled by its share of work).

    :param pause: seconds of pause owed per second a batch took.
    :param quantum: the debt at which the run sleeps (all of it, at once); below it the run goes on.
    :param clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, pause: float, quantum: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.pause = pause
        self.quantum = quantum
        self.clock = clock
        self.owed = 0.0
        self.free_since: float | None = None  # when the last batch (or the last pause) ended

    def done(self, took: float, share: float = 1.0) -> float:
        """After a batch that took ``took`` seconds doing ``share`` (0..1) of a full batch's work: sleep this long.

        Time since the previous batch or pause ended, minus this batch, was free already and is taken off
        the debt; ``0.0`` means go on at once. The caller sleeps the returned seconds before its next batch.
        """
        now = self.clock()
        if self.free_since is not None:
            self.owed = max(0.0, self.owed - max(0.0, now - took - self.free_since))
        self.owed += took * self.pause * min(1.0, max(0.0, share))
        self.free_since = now
        if self.owed < self.quantum:
            return 0.0
        owed, self.owed = self.owed, 0.0
        self.free_since = now + owed
        return owed

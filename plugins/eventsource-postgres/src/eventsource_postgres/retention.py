"""Retention primitives: truncate a stream below a version, delete events older than a cutoff.

Each deleting transaction (one stream under its advisory lock, or every stream) locks the touched streams
rows in id order and gives them exact ``event_count`` and ``first_version``; versions never go down. A run is
many short transactions: :class:`Batches` sizes them to last about :data:`BATCH_SECONDS` each, and the run
pauses :data:`PAUSE` times as long as their work took (their time beyond a small batch's round trips, for the
share of a full batch each deleted), so writers wait at most one short batch and get the server between
batches. A transaction the server aborted to break a deadlock kept nothing and is run again.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import StreamNotFoundError
from eventsource.pacing import Pacer

from eventsource_postgres.connection import RACE_ATTEMPTS

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.statements import Statements

log = logging.getLogger(__name__)

BATCH = 5000
"""Events one retention transaction deletes at most."""
BATCH_SECONDS = 0.004
"""How long one deleting transaction should last, as the client times it (its round trips included)."""
PAUSE = 2
"""A run sleeps this many times as long as its transactions' work took, in proportion to the events each deleted."""
SMALL = 8
"""A transaction deleting this many events or fewer is timed as the fixed part of one (its round trips)."""
LEAST_WORK = 1 / 3
"""The least share of a transaction's time counted as work: with every batch small, the timing cannot tell
slow round trips from slow work (a lock wait, a costly event), so each owes at least this much of its pause."""
FORGET = 32
"""Batches without a small one after which the fixed part is timed afresh (until then, no discount)."""


class Batches:
    """Batch sizes that keep each deleting transaction near :data:`BATCH_SECONDS` (carried from run to run).

    Also the fixed part of a transaction (round trips, commit): the median time of the latest ones that
    deleted :data:`SMALL` events or fewer, forgotten after :data:`FORGET` batches without one.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.small: list[float] = []
        self.since = 0  # batches since the last small one

    def took(self, seconds: float, deleted: int) -> None:
        """Halve the next batch after a slow one, double it after a quick full one (within 8..BATCH).

        A batch that deleted less than its size (the end of the range) says nothing about a bigger one, nor, if
        under half of it, about its own size (a stream barely over ``max_count``: its time is the round trips).
        """
        if 0 < deleted <= SMALL:
            self.small = [*self.small[-4:], seconds]
            self.since = 0
        else:
            self.since += 1
            if self.since > FORGET:
                self.small = []
        if seconds > BATCH_SECONDS and deleted >= self.size // 2:
            self.size = max(8, self.size // 2)
        elif seconds < BATCH_SECONDS / 2 and deleted >= self.size:
            self.size = min(BATCH, self.size * 2)

    def work(self, seconds: float) -> float:
        """The share of a transaction's ``seconds`` beyond the fixed part (:data:`LEAST_WORK`..1; 1 until timed)."""
        if not self.small or seconds <= 0:
            return 1.0
        return max(LEAST_WORK, (seconds - statistics.median(self.small)) / seconds)


class Retention:
    """The deleting operations of one store."""

    def __init__(self, conn: Connection, sql: Statements) -> None:
        self.conn = conn
        self.sql = sql
        self.batches = Batches()
        self.pacer = Pacer(PAUSE, PAUSE * BATCH_SECONDS / 2)  # carried across calls: max_count is one per stream

    async def _batch(
        self, operation: str, fn: Callable[[AsyncConnection[Any], int], Awaitable[tuple[int, bool]]]
    ) -> tuple[int, bool]:
        """One deleting transaction of the current size, timed and logged, then the pause it owes (if due).

        A transaction owes :data:`PAUSE` times its work (its time beyond the fixed part) for the share of a full
        batch it deleted: round trips leave the server to writers, and a busy machine makes them most of the time.
        """
        size = self.batches.size
        t = perf_counter()
        n, last = await self._run(operation, lambda conn: fn(conn, size))
        took = perf_counter() - t
        self.batches.took(took, n)
        log.debug("%s: deleted %d of at most %d events in one transaction of %.2f ms", operation, n, size, took * 1e3)
        pause = self.pacer.done(took, min(1.0, n / size) * self.batches.work(took))
        if pause:
            await asyncio.sleep(pause)
        return n, last

    async def _run(self, operation: str, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run a deleting transaction, again if the server broke a deadlock by aborting it (nothing was kept)."""
        from psycopg.errors import DeadlockDetected, SerializationFailure

        async def run(conn: AsyncConnection[Any]) -> T:
            for attempt in range(1, RACE_ATTEMPTS + 1):
                try:
                    async with conn.transaction():
                        return await fn(conn)
                except (DeadlockDetected, SerializationFailure):
                    if attempt == RACE_ATTEMPTS:
                        raise
            msg = "unreachable"
            raise AssertionError(msg)

        return await self.conn.call(operation, run, retry=False)

    async def _recount(self, conn: AsyncConnection[Any], deleted: list[tuple[str, int]]) -> None:
        """Lock the touched streams rows (in id order), then fix ``event_count`` and ``first_version``."""
        if not deleted:
            return
        ids = [d[0] for d in deleted]
        await conn.execute(self.sql.lock_stream_rows, [ids])
        await conn.execute(self.sql.recount, [ids, [d[1] for d in deleted]])

    async def truncate_stream(
        self, stream_id: str, before_version: int, if_holds: tuple[int, str] | None = None
    ) -> int:
        """``DELETE ... WHERE version < before_version``, in short batches (:class:`Batches`) under the stream lock.

        Versions stay as they are; the stream's writers wait at most one batch. With ``if_holds``, each batch
        first checks, under the lock, that the stream still holds that event (else the run ends there: the
        stream was deleted and created again, or lost the event, since); once the run itself deleted it, the
        stream's last event as that batch left it is checked instead.
        """
        upto = 0
        guard = if_holds

        async def run(conn: AsyncConnection[Any], size: int) -> tuple[int, bool]:
            nonlocal upto, guard
            await conn.execute(self.sql.lock, [self.conn.lock(stream_id)])
            cur = await conn.execute(self.sql.stream_info, [stream_id])
            if await cur.fetchone() is None:
                msg = f"stream {stream_id!r} does not exist"
                raise StreamNotFoundError(msg, stream_id=stream_id)
            if guard is not None and not await self.conn.fetchall(conn, self.sql.holds, [stream_id, *guard]):
                upto = before_version  # another incarnation, or the event is gone: leave the stream as it is
                return 0, True
            low = (await self.conn.fetchall(conn, self.sql.lowest_version, [stream_id]))[0][0]
            if low is None or low >= before_version:
                upto = before_version
                return 0, True
            upto = min(before_version, int(low) + size)
            rows = await self.conn.fetchall(conn, self.sql.truncate, [stream_id, upto])
            n = int(rows[0][0])
            await self._recount(conn, [(stream_id, n)] if n else [])
            if guard is not None and guard[0] < upto < before_version:  # this batch deleted the guarding event
                last = await self.conn.fetchall(conn, self.sql.last_event, [stream_id])
                if not last:  # nothing left of this incarnation below before_version
                    upto = before_version
                    return n, True
                guard = (int(last[0][0]), str(last[0][1]))
            return n, upto >= before_version

        total = 0
        while True:  # one batch at least: a bound of 0 or below deletes nothing, yet a missing stream is named
            total += (await self._batch("truncate_stream", run))[0]
            if upto >= before_version:
                return total

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """``DELETE ... WHERE ts < cutoff``, oldest first, in short batches (:class:`Batches`), fixing streams rows.

        Each batch commits on its own, so the streams rows (and, for one stream, its advisory lock) are held
        only for one batch: writers wait at most one batch, never the whole run.
        """

        async def one(conn: AsyncConnection[Any], size: int) -> tuple[int, bool]:
            await conn.execute(self.sql.lock, [self.conn.lock(stream_id or "")])
            rows = await self.conn.fetchall(conn, self.sql.delete_before_in_batch, [stream_id, cutoff, size])
            found, n = int(rows[0][0]), int(rows[0][1])
            await self._recount(conn, [(stream_id or "", n)] if n else [])
            return n, found < size  # not n: rows another run deleted meanwhile do not mean the range ended

        async def every(conn: AsyncConnection[Any], size: int) -> tuple[int, bool]:
            old = await self.conn.fetchall(conn, self.sql.old_batch, [cutoff, size])
            if not old:
                return 0, True
            rows = await self.conn.fetchall(conn, self.sql.delete_positions, [[r[0] for r in old]])
            deleted = [(r[0], int(r[1])) for r in rows]
            await self._recount(conn, deleted)
            return sum(d[1] for d in deleted), len(old) < size

        total = 0
        last = False
        while not last:
            n, last = await self._batch("delete_events_before", one if stream_id is not None else every)
            total += n
        return total

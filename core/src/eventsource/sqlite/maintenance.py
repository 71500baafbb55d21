"""Retention and statistics on one SQLite connection: the deleting batches, the kept floor, and the stats read.

Retention deletes in short transactions (:func:`in_batches`) whose size :class:`Batches` adapts so each stays
near :data:`BATCH_SECONDS`, with pauses (:func:`pacer`) twelve times the lock time so writers get the lock (a
run no write of this provider's has come near for :data:`QUIET_AFTER` runs longer batches, still paused);
:func:`delete_old_batch` and :func:`truncate_batch` are one such transaction's body, and :func:`keep_floor`
keeps a stream's version, newest event and counts before its events go. :func:`read_stats` is the body of
the provider's one-transaction ``stats`` read. The provider runs them on its threads.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import StreamNotFoundError
from eventsource.model import ProviderStats
from eventsource.pacing import Pacer
from eventsource.sqlite import counts
from eventsource.sqlite.calls import tx
from eventsource.sqlite.schema import SCHEMA_VERSION
from eventsource.sqlite.statements import (
    BATCH_SECONDS,
    BATCH_STREAMS,
    MAX_VERSION,
    OLD_BATCH,
    OLD_BATCH_IN_STREAM,
    RETENTION_BATCH,
    SQL_COUNT_STREAMS,
    SQL_EVENTS_BY_STREAM,
    SQL_HOLDS,
    SQL_KEEP_FLOOR,
    SQL_KEEP_FLOORS,
    SQL_LOWEST_VERSION,
    SQL_STREAM_FLOOR,
    SQL_STREAM_TOP,
    SQL_TRUNCATE,
    SQL_TRUNCATE_COUNT,
)
from eventsource.timestamps import from_us

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Coroutine

    from eventsource.model import EventAt

RETENTION_PAUSE = 12
"""A retention run pauses this many times as long as its batches held the write lock (see :func:`pacer`): an
append that arrives mid-batch waits for the rest of it, so the fewer it meets, the lower writers' tail."""


QUIET_AFTER = 2.0
"""Seconds since the provider's last other write after which a retention run has its writer thread to itself:
its batches then last about :data:`QUIET_BATCH_SECONDS` and pause :data:`QUIET_PAUSE` times as long. It still
pauses: it cannot see other processes' writers, which wait in SQLite's busy handler (sleeping 1, 2, 5, 10 ms
and more between tries) and would rarely find the lock free behind back-to-back batches."""
QUIET_BATCH_SECONDS = 0.001
"""How long one retention transaction should hold the write lock while none of the provider's writes is near."""
QUIET_PAUSE = 1
"""The pause per second of lock time while none of the provider's writes is near (:data:`QUIET_AFTER`)."""


def pacer() -> Pacer:
    """A provider's retention pauses: :data:`RETENTION_PAUSE` times the lock time its batches held.

    Slept once they add up to half a full batch's pause: tiny batches (one per stream under ``max_count``)
    do not each pay a sleep.
    """
    return Pacer(RETENTION_PAUSE, RETENTION_PAUSE * BATCH_SECONDS / 2)


class Batches:
    """Retention batch sizes that keep each deleting transaction near :data:`BATCH_SECONDS` (adapted per run)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size

    def took(self, seconds: float, deleted: int, target: float = BATCH_SECONDS) -> None:
        """Halve the next batch after one slower than ``target``, double it after a quick full one (2..RETENTION_BATCH).

        A batch that deleted less than its size (the end of a stream's range) says nothing about a bigger one, nor,
        if under half of it, about its own size (a stream barely over ``max_count``: its time is the overhead).
        """
        if seconds > target and deleted >= self.size // 2:
            self.size = max(2, self.size // 2)
        elif seconds < target / 2 and deleted >= self.size:
            self.size = min(RETENTION_BATCH, self.size * 2)


async def in_batches(
    write: Callable[[str, Callable[[sqlite3.Connection], Any]], Coroutine[Any, Any, Any]],
    op: str,
    batch: Callable[[int, sqlite3.Connection], tuple[int, bool]],
    *,
    last: Batches,
    pace: Pacer,
    quiet: Callable[[], bool],
    written: Callable[[int], None],
) -> int:
    """Run ``batch(size, db) -> (count, last)`` in write transactions sized by :class:`Batches` until the last.

    ``write`` runs a function on the writer; ``last`` (the batch size) and ``pace`` (the pauses owed) are the
    provider's, carried from call to call (max_count runs one per stream); ``written`` is told each batch's
    count. The run pauses :data:`RETENTION_PAUSE` times as long as its batches held the write lock, so writers
    have the lock at least twelve thirteenths of the time; while ``quiet()`` (none of the provider's own writes lately)
    before and after a batch, the batch is longer and owes :data:`QUIET_PAUSE` times its time. The WAL the
    deletes grow is checkpointed beside them (:mod:`.checkpoints`), never inside a commit.
    """
    sizes = Batches(last.size)
    total, done = 0, False
    while not done:
        alone = quiet()
        n, done, took = await write(op, partial(timed_tx, partial(batch, sizes.size)))
        alone = alone and quiet()  # (an append queued meanwhile: pause as usual)
        sizes.took(took, n, QUIET_BATCH_SECONDS if alone else BATCH_SECONDS)  # lock time, not its queue wait
        last.size = sizes.size
        total += n
        if n:
            written(n)
        pause = pace.done(took, QUIET_PAUSE / RETENTION_PAUSE if alone else 1.0)
        if pause:
            await asyncio.sleep(pause)
    return total


def timed_tx(body: Callable[[sqlite3.Connection], tuple[int, bool]], db: sqlite3.Connection) -> tuple[int, bool, float]:
    """:func:`~eventsource.sqlite.calls.tx` of a retention batch, and how long it took (its lock wait included)."""
    start = time.perf_counter()
    n, done = tx(db, body)
    return n, done, time.perf_counter() - start


def delete_old_batch(us: int, stream_id: str | None, size: int, db: sqlite3.Connection) -> tuple[int, bool]:
    """Delete up to ``size`` of the oldest events with ``timestamp < us`` (in one stream if given).

    How many, and whether that was the last batch (fewer than ``size``).
    """
    where, args = (OLD_BATCH, (us, size)) if stream_id is None else (OLD_BATCH_IN_STREAM, (stream_id, us, size))
    # a fixed number of statements per batch, whatever number of streams it touches
    streams = db.execute(BATCH_STREAMS.format(where=where), (counts.counted(db), *args)).fetchall()
    db.executemany(SQL_KEEP_FLOORS, [(v, eid, v, ts, v, n, sid) for sid, n, _, v, eid, ts in streams])
    counts.uncount_streams(db, [(sid, -folded) for sid, _, folded, _, _, _ in streams if folded])
    counts.uncount_types(db, where, args)
    deleted: int = db.execute(f"DELETE FROM es_events WHERE {where}", args).rowcount  # noqa: S608 - constant fragment
    return deleted, deleted < size


def truncate_batch(
    stream_id: str, before_version: int, guard: list[EventAt | None], size: int, db: sqlite3.Connection
) -> tuple[int, bool]:
    """Delete the next versions; how many, and whether that was the last batch.

    With an event in ``guard`` (``if_holds``), each batch first checks (in its own transaction) that the stream
    still holds it: a stream deleted and created again between two batches stops the run, its new events
    untouched. A batch that deletes that event itself hands the guard on to the stream's newest event.
    """
    if db.execute(SQL_STREAM_FLOOR, (stream_id,)).fetchone() is None:
        msg = f"stream {stream_id!r} does not exist"
        raise StreamNotFoundError(msg, stream_id=stream_id)
    held = guard[0]
    if held is not None and db.execute(SQL_HOLDS, (stream_id, *held)).fetchone() is None:
        return 0, True
    low = db.execute(SQL_LOWEST_VERSION, (stream_id,)).fetchone()[0]
    if low is None or low >= before_version:
        return 0, True
    upto = min(before_version, low + size)
    n: int = db.execute(SQL_TRUNCATE_COUNT, (stream_id, upto)).fetchone()[0]
    if n:
        keep_floor(db, stream_id, n)
        counts.uncount(db, "stream_id = ? AND version < ?", (stream_id, upto))
        db.execute(SQL_TRUNCATE, (stream_id, upto))
    if held is not None and held[0] < upto:  # the same stream, as this transaction leaves it
        top = db.execute(SQL_STREAM_TOP, (stream_id,)).fetchone()
        guard[0] = None if top is None else (top[0], top[1])
    return n, upto >= before_version


def keep_floor(db: sqlite3.Connection, stream_id: str, deleting: int) -> None:
    """Before ``deleting`` events of a stream go: remember its version and newest event, count them."""
    floor = db.execute(SQL_STREAM_FLOOR, (stream_id,)).fetchone()
    if floor is None:  # events without a stream row do not happen; nothing to keep
        return
    version, last_id, updated = floor
    top = db.execute(SQL_STREAM_TOP, (stream_id,)).fetchone()
    if top is not None and top[0] >= version:
        version, last_id, updated = top
    db.execute(SQL_KEEP_FLOOR, (version, last_id, updated, deleting, stream_id))


def read_stats(
    db: sqlite3.Connection, top_streams: int | None, *, path: str, provider: str, started: float
) -> ProviderStats:
    """The file's statistics, all exact, for the provider ``provider`` at ``path`` built at ``started``."""
    by_type = counts.by_type(db)
    total_streams = db.execute(SQL_COUNT_STREAMS).fetchone()[0]
    total_snapshots = db.execute("SELECT COUNT(*) FROM es_snapshots").fetchone()[0]
    if top_streams is None:
        by_stream = dict(db.execute(SQL_EVENTS_BY_STREAM).fetchall())
    else:
        by_stream = counts.top_streams(db, min(top_streams, MAX_VERSION))
    last = db.execute("SELECT timestamp FROM es_events ORDER BY position DESC LIMIT 1").fetchone()
    page_count = db.execute("PRAGMA page_count").fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    return ProviderStats(
        total_events=sum(by_type.values()),
        total_streams=total_streams,
        total_snapshots=total_snapshots,
        events_by_type=by_type,
        events_by_stream=by_stream,
        storage_size=page_count * page_size,
        last_event_at=from_us(last[0]) if last is not None else None,
        uptime_seconds=monotonic() - started,
        provider=provider,
        extra={"path": path, "journal_mode": journal, "schema_version": SCHEMA_VERSION},
        top_streams=top_streams,
    )

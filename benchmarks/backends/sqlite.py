"""SQLite: :class:`~eventsource.sqlite.SqliteProvider` against raw ``sqlite3`` on the same file.

The reference backend: copy it for a new store. Every run gets a fresh directory under ``--workdir``
(default ``/var/tmp``, a real disk: commits are fsynced, as they are in production). The raw side
writes to its own ``raw_events`` table *in the library's database file*, with the same columns, the
same indexes (unique event id, unique stream+version, timestamp) and the same durability (WAL,
``synchronous=FULL``), through its own ``sqlite3`` connection, called directly (no thread hop):

* single append: one autocommit ``INSERT`` (the statement is its own transaction and commit); and,
  informational, the same ``INSERT`` on one dedicated worker thread (``append_p50_offloop``): a job
  queue in, one ``call_soon_threadsafe`` back, the leanest hop an asyncio service can have (what
  ``aiosqlite`` does; ``asyncio.to_thread`` costs about 40 µs more per call here);
* batch of 100: ``BEGIN`` + ``executemany`` + ``COMMIT``;
* read 1,000: one ``SELECT`` of the same columns the provider reads, ``json.loads`` of every payload;
* 8 writers: 8 threads, each with its own connection, each doing autocommit single inserts.
"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from eventsource.sqlite import SqliteProvider, to_us
from harness import Backend, RawEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsource.provider import Provider

RAW_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS raw_events (
        position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, stream_id TEXT NOT NULL,
        event_type TEXT NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL, metadata BLOB NOT NULL,
        encoding TEXT NOT NULL, timestamp INTEGER NOT NULL, correlation_id TEXT, causation_id TEXT, user_id TEXT,
        tenant_id TEXT, aggregate_id TEXT, aggregate_type TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS raw_events_event_id ON raw_events (event_id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS raw_events_stream_version ON raw_events (stream_id, version)",
    "CREATE INDEX IF NOT EXISTS raw_events_timestamp ON raw_events (timestamp)",
)
RAW_INSERT = (
    "INSERT INTO raw_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
RAW_READ = (
    "SELECT event_id, stream_id, event_type, version, position, data, metadata, encoding, timestamp, "
    "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type "
    "FROM raw_events WHERE stream_id = ? ORDER BY version"
)
FILL_EVENT = (
    "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp) "
    "VALUES (?, ?, 'Filler', ?, ?, x'', 'json', ?)"
)
FILL_STREAM = (
    "INSERT INTO es_streams (stream_id, version_floor, deleted_count, created_at, updated_at, metadata) "
    "VALUES (?, 0, 0, ?, ?, '{}')"
)
FILL_STREAM_SIZE = 1000


def connect(path: Path) -> sqlite3.Connection:
    """A raw connection configured like the provider's (WAL, synchronous FULL, autocommit)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    return db


def row(stream_id: str, version: int, ev: RawEvent) -> tuple[object, ...]:
    """The raw insert's parameters: the raw side serializes the payload itself."""
    return (
        ev.event_id,
        stream_id,
        ev.event_type,
        version,
        json.dumps(ev.data).encode(),
        b"",
        "json",
        to_us(ev.timestamp),
    )


class RawThread:
    """The raw side's off-loop hop: one thread, jobs in on a queue, results back by ``call_soon_threadsafe``.

    Written here, not borrowed from the library, so the baseline owes nothing to the code it measures.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[[], object], asyncio.Future[object]] | None] = queue.SimpleQueue()
        self.loop = asyncio.get_running_loop()
        self.thread = threading.Thread(target=self.run, name="raw-sqlite", daemon=True)
        self.thread.start()

    def run(self) -> None:
        """Run jobs until ``None`` arrives."""
        while (job := self.jobs.get()) is not None:
            fn, fut = job
            try:
                self.loop.call_soon_threadsafe(fut.set_result, fn())
            except Exception as e:  # noqa: BLE001 - handed to the awaiting coroutine
                self.loop.call_soon_threadsafe(fut.set_exception, e)
            del job, fn, fut

    def call(self, fn: Callable[[], object]) -> asyncio.Future[object]:
        """Queue ``fn``; the future completes on the loop."""
        fut = self.loop.create_future()
        self.jobs.put((fn, fut))
        return fut

    def stop(self) -> None:
        """End the thread after the queued jobs."""
        self.jobs.put(None)
        self.thread.join()


class SqliteBackend(Backend):
    """Fresh directory per run; the first provider shares its file with the raw table."""

    name = "sqlite"
    targets: dict[str, float | None] = {  # noqa: RUF012 - DESIGN.md targets
        "append_p50": 1.3,
        "append_p50_offloop": None,  # informational: the library's cost beyond the thread hop
        "append_p50_hop": None,  # informational: the thread hop's own cost
        "batch_100": 0.85,
        "read_1000": 0.8,
        "writers_8": None,  # n/a in DESIGN.md (one writer at a time by design); measured anyway
        "big_store_read_100": 1.5,  # DESIGN.md: "about what it costs from an empty one"
    }
    notes = "raw = sqlite3 on the same file (own table, same indexes, WAL, synchronous=FULL), called directly"

    async def open(self) -> None:
        """Make the run directory and the raw table in the main database file."""
        self.dir = Path(self.options.workdir) / f"eventsource-bench-{uuid.uuid4().hex[:10]}"
        self.dir.mkdir(parents=True)
        self.main = self.dir / "main.db"
        self.raw = connect(self.main)
        for statement in RAW_SCHEMA:
            self.raw.execute(statement)
        self.files = 0
        self.hop = RawThread()

    async def close(self) -> None:
        """Close the raw connection and delete the run directory."""
        self.hop.stop()
        self.raw.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_provider(self) -> Provider:
        """The main file first (shared with the raw table), then a new file per call."""
        path = self.main if self.files == 0 else self.dir / f"store-{self.files}.db"
        self.files += 1
        return SqliteProvider(f"sqlite:///{path}")

    async def fill(self, provider: Provider, n: int) -> int:
        """Bulk-insert ``n`` events (streams of 1,000) into the provider's tables with raw sqlite3."""
        assert isinstance(provider, SqliteProvider)
        await asyncio.to_thread(self._fill, Path(provider.path), n)
        return n

    @staticmethod
    def _fill(path: Path, n: int) -> None:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous = OFF")  # the filler only; the provider's connections stay FULL
        body = json.dumps({"filler": True, "pad": "x" * 150}).encode()
        ts = to_us(datetime.now(UTC))
        prefix = uuid.uuid4().hex[:8]
        step = 100_000
        for start in range(0, n, step):
            count = min(step, n - start)
            db.execute("BEGIN")
            db.executemany(
                FILL_EVENT,
                (
                    (f"{prefix}-{i}", f"filler-{prefix}-{i // FILL_STREAM_SIZE}", i % FILL_STREAM_SIZE + 1, body, ts)
                    for i in range(start, start + count)
                ),
            )
            db.execute("COMMIT")
        db.execute("BEGIN")
        db.executemany(
            FILL_STREAM,
            ((f"filler-{prefix}-{s}", ts, ts) for s in range((n + FILL_STREAM_SIZE - 1) // FILL_STREAM_SIZE)),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("ANALYZE")
        db.close()

    async def raw_append(self, stream_id: str, version: int, event: RawEvent) -> None:
        """One autocommit INSERT: its own transaction and commit."""
        self.raw.execute(RAW_INSERT, row(stream_id, version, event))

    async def raw_append_offloop(self, stream_id: str, version: int, event: RawEvent) -> None:  # type: ignore[override]
        """The same autocommit INSERT on the raw side's worker thread (how an asyncio service runs blocking sqlite3)."""
        args = row(stream_id, version, event)
        await self.hop.call(lambda: self.raw.execute(RAW_INSERT, args))

    async def raw_append_batch(self, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
        """``executemany`` in one transaction."""
        db = self.raw
        rows = [row(stream_id, first_version + i, ev) for i, ev in enumerate(events)]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(RAW_INSERT, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def raw_read_stream(self, stream_id: str) -> int:
        """SELECT every column, json.loads every payload."""
        loads = json.loads
        n = 0
        for r in self.raw.execute(RAW_READ, (stream_id,)).fetchall():
            loads(r[5])
            n += 1
        return n

    async def raw_writers(self, streams: Sequence[str], per_writer: int, make: Callable[[int], RawEvent]) -> None:
        """One thread and one connection per writer, autocommit single inserts."""

        def writer(stream_id: str) -> None:
            db = connect(self.main)
            try:
                for i in range(per_writer):
                    db.execute(RAW_INSERT, row(stream_id, i + 1, make(i)))
            finally:
                db.close()

        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=len(streams)) as pool:
            await asyncio.gather(*(loop.run_in_executor(pool, writer, s) for s in streams))


BACKEND = SqliteBackend

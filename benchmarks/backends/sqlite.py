"""SQLite: :class:`~eventsource.sqlite.SqliteProvider` against raw ``sqlite3`` on the same file.

The reference backend: copy it for a new store. Every run gets a fresh directory under ``--workdir``
(default ``/var/tmp``, a real disk: commits are fsynced, as they are in production). Each contestant
writes a database file of its own, so each one's WAL checkpoints pay for its own pages only. The raw
side writes ``raw_events``: the library's ``es_events`` columns and every index on it, read from the
library's own migration (:func:`raw_schema`), with the same durability (WAL, ``synchronous=FULL``),
through its own ``sqlite3`` connection, called directly (no thread hop):

* single append: one autocommit ``INSERT`` (its own transaction and commit) on one dedicated writer
  thread, the baseline DESIGN.md names for an async library: a job queue in, one
  ``call_soon_threadsafe`` back, the leanest hop an asyncio service can have; the ``append_p50_hop``
  row shows that hop against the same ``INSERT`` inline;
* batch of 100: ``BEGIN`` + ``executemany`` + ``COMMIT`` (inline: no hop);
* read 1,000: one ``SELECT`` of the same columns the provider reads, ``json.loads`` of every payload;
* 8 writers: 8 threads (a pool made in :meth:`open`), each with its own connection (opened in
  :meth:`open`: warm, like the library's), each doing autocommit single inserts.

Peers: ``aiosqlite`` (the same statements on the same table layout in its own file, through an
``aiosqlite`` connection opened in :meth:`open`) in the append, batch and read rows. The sync rows
(files of their own): the sync API, raw ``sqlite3`` inline, and ``eventsourcing`` 9.5.6's
``SQLiteApplicationRecorder`` (``insert_events`` / ``select_events`` of ``StoredEvent`` whose state
is the JSON payload, decoded with ``json.loads`` on read), and ``raw_es_layout``: raw ``sqlite3`` inline on
that recorder's table and statements, its baseline as ``raw`` is ours. ``eventsourcing`` sets no ``synchronous``
pragma of its own: it runs at SQLite's default, which every side reports from its own connection
(:func:`durability`, recorded per row; the smoke test checks they agree).
"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsource.sqlite import SqliteProvider, to_us
from eventsource.sqlite.schema import migrate
from harness import Backend, RawEvent, Side, SyncLibSide, SyncSide, installed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from eventsource.provider import Provider


def raw_schema(table: str) -> tuple[str, ...]:
    """The library's ``es_events`` table and every index on it (as its migrations leave them), named ``table``.

    Read from a schema the library's own migration made, so the raw side stores the same columns under the
    same indexes whatever the schema version; the library's triggers (positions never reused) are its own work.
    """
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(db, ":memory:")
        found = db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'es_events' AND type IN ('table', 'index') "
            "ORDER BY type = 'index', name"
        ).fetchall()
    finally:
        db.close()
    return tuple(sql.replace('"es_events"', "es_events").replace("es_events", table) for (sql,) in found)


RAW_SCHEMA = raw_schema("raw_events")
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
SETTLE_POLL = 0.0001
"""Seconds between two looks at whether the library's checkpoint thread is done (see :func:`_settle`)."""


LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def durability(db: Any) -> dict[str, str]:
    """``synchronous``, ``journal_mode`` and the file, as the connection ``db`` (or a cursor of it) reports them."""
    level = db.execute("PRAGMA synchronous").fetchone()[0]
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    file = db.execute("PRAGMA database_list").fetchone()[2]
    return {"synchronous": LEVELS.get(level, str(level)), "journal_mode": mode, "file": Path(file).name}


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
    """Fresh directory per run; a database file per contestant."""

    name = "sqlite"
    eventsourcing_rows = frozenset({"sync_append_p50", "sync_batch_100", "sync_read_1000"})
    notes = (
        "raw = sqlite3, a file of its own with the library's table layout (same columns, every index), WAL, "
        "synchronous=FULL (every side's file reports WAL + FULL from its own connection); single append raw on a "
        "dedicated writer thread, batch/read inline; peers: aiosqlite (same layout), eventsourcing (sync rows; "
        "its own layout: no event id, no timestamp, one index, so 2 WAL pages per single append where the "
        "library and raw write 5); raw_es_layout (sync rows) = sqlite3 inline on eventsourcing's table and "
        "statements, so eventsourcing / raw_es_layout shows what its recorder adds as lib / raw shows ours"
    )

    async def open(self) -> None:
        """Make the run directory and the raw table in the main database file."""
        self.dir = Path(self.options.workdir) / f"eventsource-bench-{uuid.uuid4().hex[:10]}"
        self.dir.mkdir(parents=True)
        self.main = self.dir / "main.db"
        raw_file = self.dir / "raw.db"
        self.raw = connect(raw_file)
        for statement in RAW_SCHEMA:
            self.raw.execute(statement)
        self.files = 0
        self.hop = RawThread()
        # the append_p50_hop row's two sides: files of their own, so the raw table of the later rows holds
        # what the library's holds (the raw side's rows only)
        self.hop_dbs = [connect(self.dir / name) for name in ("hop-thread.db", "hop-inline.db")]
        for db in self.hop_dbs:
            for statement in RAW_SCHEMA:
                db.execute(statement)
        self.writer_dbs = [connect(raw_file) for _ in range(self.options.writers)]
        self.writer_pool = ThreadPoolExecutor(max_workers=self.options.writers)
        self.aio = None
        if self.options.peers and installed("aiosqlite"):
            import aiosqlite

            self.aio = await aiosqlite.connect(self.dir / "aio.db", isolation_level=None)
            await self.aio.execute("PRAGMA journal_mode = WAL")
            await self.aio.execute("PRAGMA synchronous = FULL")
            for statement in RAW_SCHEMA:
                await self.aio.execute(statement.replace("raw_events", "aio_events"))

    async def close(self) -> None:
        """Close the raw connections (the directory goes in :meth:`cleanup`)."""
        self.hop.stop()
        if self.aio is not None:
            await self.aio.close()
        self.writer_pool.shutdown()
        for db in (*self.writer_dbs, *self.hop_dbs):
            db.close()
        self.raw.close()

    def cleanup(self) -> None:
        """Delete the run directory (after the sync rows, which use a file in it)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_provider(self) -> Provider:
        """The main file first, then a new file per call."""
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
        """One autocommit INSERT on the raw side's dedicated writer thread (DESIGN.md's async baseline)."""
        args = row(stream_id, version, event)
        await self.hop.call(lambda: self.raw.execute(RAW_INSERT, args))

    def raw_durability(self) -> dict[str, str]:
        """The raw connection's pragmas."""
        return durability(self.raw)

    def lib_settle(self, provider: Provider) -> Callable[[], Awaitable[None]] | None:
        """Wait for the WAL checkpoint the library's write asked for (see :class:`_SyncLib`), inside its timer."""

        async def settle() -> None:
            assert isinstance(provider, SqliteProvider)
            checkpoints = provider._checkpoints  # noqa: SLF001 - the contestant's own checkpoint thread
            while checkpoints is not None and checkpoints.busy():  # noqa: ASYNC110 - a thread's state, no event to await
                await asyncio.sleep(SETTLE_POLL)

        return settle

    async def lib_durability(self, provider: Provider) -> dict[str, str] | None:
        """The pragmas of the connection the provider writes through, read on its writer."""
        assert isinstance(provider, SqliteProvider)
        return await provider._write("durability", durability)  # noqa: SLF001 - the contestant's own connection

    def row_note(self, key: str, sides: Iterable[str]) -> str:
        """Where ``eventsourcing`` does less work than the library and raw (its layout, not the harness)."""
        if "eventsourcing" not in sides:
            return ""
        if key == "sync_read_1000":
            return "eventsourcing reads 4 columns a row where lib and raw read 15"
        pages = (
            "2 WAL pages per one-event commit against 5" if key == "sync_append_p50" else "2 b-trees per row against 5"
        )
        return (
            f"eventsourcing stores no event id, timestamp or metadata: one index where lib and raw keep 4 ({pages}); "
            "raw_es_layout = raw sqlite3 on eventsourcing's table and statements (what its recorder adds: "
            "eventsourcing / raw_es_layout, against lib / raw)"
        )

    def hop_sides(self) -> tuple[Side, Side]:
        """The off-loop raw INSERT (the raw side's writer thread) against the same INSERT inline, each on its file."""
        return _OffLoop(self.hop, self.hop_dbs[0]), _Inline(self.hop_dbs[1])

    def peers(self, row: str) -> dict[str, Side]:  # noqa: ARG002 - every row
        """aiosqlite on its own table of the same file."""
        return {"aiosqlite": _Aiosqlite(self.aio)} if self.aio is not None else {}

    def sync_sides(self) -> dict[str, SyncSide]:
        """Sync API, raw sqlite3 inline and eventsourcing's recorder, each on a file of its own."""
        path = self.dir / "sync.db"
        sides: dict[str, SyncSide] = {
            "lib": _SyncLib({"providers": {"bench": {"url": f"sqlite:///{path}"}}, "default_provider": "bench"}),
            "raw": _SyncRaw(self.dir / "sync-raw.db"),
        }
        if self.options.peers and installed("eventsourcing"):
            sides["eventsourcing"] = _EventsourcingSqlite(self.dir / "sync-eventsourcing.db")
            sides["raw_es_layout"] = _SyncRawEsLayout(self.dir / "sync-raw-es-layout.db")
        return sides

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

    async def raw_writers(self, streams: Sequence[str], events: Sequence[Sequence[RawEvent]]) -> None:
        """One thread and one warm connection per writer, autocommit single inserts."""

        def writer(db: sqlite3.Connection, stream_id: str, evs: Sequence[RawEvent]) -> None:
            for i, e in enumerate(evs):
                db.execute(RAW_INSERT, row(stream_id, i + 1, e))

        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(self.writer_pool, writer, db, s, evs)
                for db, s, evs in zip(self.writer_dbs, streams, events, strict=True)
            )
        )


def _read(db: sqlite3.Connection, query: str, stream_id: str) -> int:
    loads = json.loads
    n = 0
    for r in db.execute(query, (stream_id,)).fetchall():
        loads(r[5])
        n += 1
    return n


def _batch(db: sqlite3.Connection, insert: str, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
    rows = [row(stream_id, first_version + i, ev) for i, ev in enumerate(events)]
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(insert, rows)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class _Inline(Side):
    """The raw INSERT called inline on the loop (the ``append_p50_hop`` row's baseline)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        self.db.execute(RAW_INSERT, row(stream_id, version, prepared[0]))

    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        _batch(self.db, RAW_INSERT, stream_id, first_version, prepared)

    async def read(self, stream_id: str) -> int:
        return _read(self.db, RAW_READ, stream_id)

    async def durability(self) -> dict[str, str] | None:
        return durability(self.db)


class _OffLoop(_Inline):
    """The raw INSERT on the raw side's dedicated writer thread (the ``append_p50_hop`` row's ``lib``)."""

    def __init__(self, hop: RawThread, db: sqlite3.Connection) -> None:
        super().__init__(db)
        self.hop = hop

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        args = row(stream_id, version, prepared[0])
        await self.hop.call(lambda: self.db.execute(RAW_INSERT, args))


class _Aiosqlite(Side):
    """aiosqlite: the raw statements on table ``aio_events`` through its worker thread."""

    insert = RAW_INSERT.replace("raw_events", "aio_events")
    select = RAW_READ.replace("raw_events", "aio_events")

    def __init__(self, db: Any) -> None:
        self.db = db

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        await self.db.execute(self.insert, row(stream_id, version, prepared[0]))

    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        rows = [row(stream_id, first_version + i, ev) for i, ev in enumerate(prepared)]
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.executemany(self.insert, rows)
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")

    async def read(self, stream_id: str) -> int:
        loads = json.loads
        n = 0
        async with self.db.execute(self.select, (stream_id,)) as cur:
            for r in await cur.fetchall():
                loads(r[5])
                n += 1
        return n

    async def durability(self) -> dict[str, str] | None:
        got = []
        for pragma in ("synchronous", "journal_mode", "database_list"):
            async with self.db.execute(f"PRAGMA {pragma}") as cur:
                got.append(await cur.fetchone())
        level, mode, file = got[0][0], got[1][0], got[2][2]
        return {"synchronous": LEVELS.get(level, str(level)), "journal_mode": mode, "file": Path(file).name}


def _settle(provider: Provider) -> None:
    """Wait until the WAL checkpoint ``provider``'s writes asked for has run (its thread's work is theirs)."""
    assert isinstance(provider, SqliteProvider)
    checkpoints = provider._checkpoints  # noqa: SLF001 - the contestant's own checkpoint thread
    while checkpoints is not None and checkpoints.busy():
        time.sleep(SETTLE_POLL)


class _SyncLib(SyncLibSide):
    """The sync API (:class:`SyncLibSide`), able to report its writer connection's pragmas.

    Each write returns once the WAL checkpoint it asked for has run: raw sqlite3 and ``eventsourcing`` checkpoint
    inside their commits, in their own timers; the library's checkpoint thread would otherwise copy and sync while
    the next contestant's write is timed.
    """

    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        super().append(stream_id, version, prepared)
        _settle(self.m.get_provider())

    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        super().append_batch(stream_id, first_version, prepared)
        _settle(self.m.get_provider())

    def durability(self) -> dict[str, str] | None:
        provider = self.m.get_provider()
        assert isinstance(provider, SqliteProvider)
        writer = provider._writer  # noqa: SLF001 - the contestant's own connection
        assert writer is not None
        assert writer.db is not None
        with writer.lock:
            return durability(writer.db)


class _SyncRaw(SyncSide):
    """Raw sqlite3 inline (the sync rows' baseline), table ``raw_events`` of the sync file."""

    def __init__(self, path: Path) -> None:
        self.db = connect(path)
        for statement in RAW_SCHEMA:
            self.db.execute(statement)

    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        self.db.execute(RAW_INSERT, row(stream_id, version, prepared[0]))

    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        _batch(self.db, RAW_INSERT, stream_id, first_version, prepared)

    def read(self, stream_id: str) -> int:
        return _read(self.db, RAW_READ, stream_id)

    def durability(self) -> dict[str, str] | None:
        return durability(self.db)

    def close(self) -> None:
        self.db.close()


ES_LAYOUT = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
    "PRIMARY KEY (originator_id, originator_version))"
)
"""``eventsourcing`` 9.5.6's ``SQLiteApplicationRecorder`` table (text originator ids), as ``create_table`` makes it."""


class _SyncRawEsLayout(SyncSide):
    """Raw sqlite3 inline on ``eventsourcing``'s layout and statements: what its recorder adds shows against this.

    ``BEGIN``, ``INSERT INTO stored_events VALUES (?, ?, ?, ?)`` per event and ``COMMIT``, as its ``insert_events``
    sends them; the read selects its four columns by originator id and version and decodes each state.
    """

    def __init__(self, path: Path) -> None:
        self.db = connect(path)
        self.db.execute(ES_LAYOUT)

    def _insert(self, stream_id: str, first_version: int, evs: Sequence[RawEvent]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            for i, e in enumerate(evs):  # one statement per event, as its application recorder sends them
                row = (stream_id, first_version + i, e.event_type, json.dumps(e.data).encode())
                db.execute("INSERT INTO stored_events VALUES (?, ?, ?, ?)", row)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        self._insert(stream_id, version, prepared)

    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        self._insert(stream_id, first_version, prepared)

    def read(self, stream_id: str) -> int:
        loads = json.loads
        rows = self.db.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE originator_id = ? "
            "ORDER BY originator_version",
            (stream_id,),
        ).fetchall()
        for r in rows:
            loads(r[3])
        return len(rows)

    def durability(self) -> dict[str, str] | None:
        return durability(self.db)

    def close(self) -> None:
        self.db.close()


class _EventsourcingSqlite(SyncSide):
    """eventsourcing 9.5.6's ``SQLiteApplicationRecorder`` (text originator ids), payload = the JSON bytes."""

    def __init__(self, path: Path) -> None:
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        self.datastore = SQLiteDatastore(str(path), originator_id_type="text")
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        self.recorder.create_table()

    def prepare(self, evs: Sequence[RawEvent]) -> Any:
        return evs

    def _stored(self, stream_id: str, version: int, e: RawEvent) -> Any:
        from eventsourcing.persistence import StoredEvent

        return StoredEvent(stream_id, version, e.event_type, json.dumps(e.data).encode())

    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        self.recorder.insert_events([self._stored(stream_id, version, prepared[0])])

    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        self.recorder.insert_events([self._stored(stream_id, first_version + i, e) for i, e in enumerate(prepared)])

    def read(self, stream_id: str) -> int:
        loads = json.loads
        n = 0
        for e in self.recorder.select_events(stream_id):
            loads(e.state)
            n += 1
        return n

    def durability(self) -> dict[str, str] | None:
        """Read through a writer connection of its own pool (the one ``insert_events`` takes)."""
        with self.datastore.get_connection(commit=True) as conn:
            return durability(conn.cursor().sqlite_cursor)

    def close(self) -> None:
        self.datastore.close()


BACKEND = SqliteBackend

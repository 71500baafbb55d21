"""The SQLite provider: the embedded default store (one durable file, no server); see :mod:`eventsource.sqlite`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sqlite3
import time
import uuid
import weakref
from dataclasses import replace
from datetime import datetime
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import (
    StreamExistsError,
    StreamNotFoundError,
)
from eventsource.model import (
    HealthStatus,
    NewSnapshot,
    NewStream,
    ProviderStats,
    QueryPage,
    RecordedEvent,
    RowPage,
    StreamInfo,
    utcnow,
)
from eventsource.provider import (
    Capabilities,
    Provider,
    check_snapshot,
)
from eventsource.sqlite import counts, live
from eventsource.sqlite.appending import AppendCalls
from eventsource.sqlite.calls import ConnectionCalls, tx
from eventsource.sqlite.checkpoints import (
    CHECKPOINT_EVERY,
    WAL_BACKSTOP_PAGES,
    Checkpointer,
)
from eventsource.sqlite.connection import OpenedFiles, open_connection
from eventsource.sqlite.errors import READ_ONLY, map_error
from eventsource.sqlite.maintenance import (
    QUIET_AFTER,
    Batches,
    delete_old_batch,
    in_batches,
    pacer,
    read_stats,
    truncate_batch,
)
from eventsource.sqlite.presence import check_store
from eventsource.sqlite.queries import query_page
from eventsource.sqlite.rewrite import rewrite_batch
from eventsource.sqlite.rows import (
    _dump_meta,
    _events_from_rows,
    _fetch_rows,
    _info_from_row,
    _snapshot_from_row,
)
from eventsource.sqlite.schema import SCHEMA_VERSION, migrate
from eventsource.sqlite.settings import SqliteSettings, absolute_url, path_from_url, url_settings
from eventsource.sqlite.statements import (
    MAX_VERSION,
    SQL_COUNT_STREAMS,
    SQL_CREATE_STREAM,
    SQL_DELETE_SNAPSHOT,
    SQL_DELETE_STREAM,
    SQL_DELETE_STREAM_EVENTS,
    SQL_DELETE_STREAM_SNAPSHOTS,
    SQL_EVENT_BY_ID,
    SQL_GET_SNAPSHOT,
    SQL_LIST_STREAMS,
    SQL_LIST_STREAMS_AFTER,
    SQL_POSITION_AT,
    SQL_READ_ALL,
    SQL_READ_BACKWARD,
    SQL_READ_FORWARD,
    SQL_SAVE_SNAPSHOT,
    SQL_STREAM_INFO,
    SQL_STREAM_STATE,
)
from eventsource.sqlite.worker import _Worker
from eventsource.subscriptions.signal import ChangeSignal
from eventsource.timestamps import from_us, to_us

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Sequence

    from eventsource.domain.rewrite import EventRewrite
    from eventsource.model import CountMode, EventAt, EventFilter, RecordedSnapshot

T = TypeVar("T")
RETENTION_OPS = frozenset({"delete_events_before", "truncate_stream"})
HEALTH_WAIT = 2.0
"""Seconds ``health()`` waits for the writer's thread (its pragmas), behind the writes queued there."""


def _schema_version(db: sqlite3.Connection) -> int:
    """The file's schema version; at the current one, after a walk down each table's newest end.

    A few pages, which raise when corrupt: the version alone, on page 1, said ok over a file of garbage.
    """
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        db.execute("SELECT MAX(position) FROM es_events").fetchone()
        db.execute("SELECT MAX(stream_id) FROM es_streams").fetchone()
    return version


class SqliteProvider(AppendCalls, ConnectionCalls, Provider):
    """The embedded default store: ``sqlite:///path.db``. See the module docstring for the guarantees."""

    kind = "sqlite"
    capabilities = Capabilities(
        global_order="total",
        concurrency="cross_process",
        deleted_stream_ids="reusable",
        head_position=True,
        live_wakeup=True,
    )
    settings_schema = SqliteSettings
    loop_free = True

    def __init__(self, url: str | None = None, **settings: Any) -> None:
        url = url or "sqlite:///eventsource.db"
        super().__init__(url, **url_settings(url, settings))
        assert self.url is not None
        self.path = path_from_url(self.url)
        self.memory = self.path == ":memory:"
        if self.memory:  # this instance's own database: what spawn_args() builds elsewhere opens a new, empty one
            self.capabilities = replace(  # type: ignore[misc]
                self.capabilities, concurrency="in_process", cross_process_reads=False
            )
        self._memory_id = uuid.uuid4().hex  # an in-memory database's identity in checkpoints
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None
        self._started = monotonic()
        self._connect_lock = asyncio.Lock()
        self._changes = ChangeSignal()  # bumped after each append: wakes live subscriptions in this process
        self._unfolded = 0  # events appended through this instance since it last folded the counts
        self._checkpoints: Checkpointer | None = None  # WAL checkpoints off the writer (file databases)
        self._unchecked = 0  # events written since the checkpointer was last poked
        self._batches = Batches()  # retention's batch size, as the last batch left it
        self._pacer = pacer()  # retention's pauses owed, across runs
        self._wrote_at = -math.inf  # (monotonic) when a write other than retention's was last sent to the writer

    @property
    def checkpoint_source(self) -> str:
        """The masked URL; an in-memory database's is unique (``sqlite:///:memory:#db=<uuid>``): each is its own."""
        return f"sqlite:///:memory:#db={self._memory_id}" if self.memory else super().checkpoint_source

    def spawn_args(self) -> dict[str, Any]:
        """The same file by absolute path (so another process with another working directory finds it)."""
        url = self.url if self.memory else absolute_url(self.url or "", self.path)
        return {"url": url, **self.settings}

    # ------------------------------------------------------------------ threads

    def _open(self, worker: _Worker, *, writer: bool = False) -> None:
        """Open and configure ``worker``'s connection (runs on its thread, which then owns it).

        The writer's commits checkpoint the WAL only past a backstop (:mod:`.checkpoints` does, on its own connection).
        """
        db = open_connection(self.path, self.settings, memory=self.memory, create=self.settings["create_store"])
        worker.db = db
        if writer and not self.memory:
            try:  # (a full disk fails making the -wal and -shm: typed and said, as every other connect step)
                db.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")
                db.execute("PRAGMA user_version").fetchone()  # (a read opens, or makes, the -wal file)
            except sqlite3.Error as e:
                worker.db = None
                db.close()
                raise map_error(e, "connect", self.path) from e
            worker.files = OpenedFiles(self.path)
        elif not self.memory:  # the reader's: a read after a swap would serve the moved file's data as current
            worker.files = OpenedFiles(self.path, reads=True)

    def _write(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> Coroutine[Any, Any, T]:
        """Run ``fn`` on the writer thread, noting when a write other than a retention batch was sent."""
        if op not in RETENTION_OPS:
            self._wrote_at = monotonic()
        return super()._write(op, fn)

    def _quiet(self) -> bool:
        """No write but retention's went to the writer for :data:`~.maintenance.QUIET_AFTER` seconds."""
        return monotonic() - self._wrote_at > QUIET_AFTER

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Start the writer (and reader) thread, open their connections, migrate the schema. Idempotent.

        With ``create_store`` off, a file that holds no store at the current schema is refused, left as it was
        (:mod:`~eventsource.sqlite.presence`); ``:memory:`` is this instance's own database, always there.
        """
        async with self._connect_lock:
            if self._writer is not None:
                return
            started: list[_Worker] = []
            create = self.settings["create_store"] or self.memory
            try:
                writer = _Worker("eventsource-sqlite-w")
                started.append(writer)
                if not create:
                    await writer.submit(partial(check_store, self.path, SCHEMA_VERSION))
                await writer.submit(partial(self._open, writer, writer=True))
                if create:
                    await writer.submit(partial(self._migrate, writer))
                reader = None
                if self.settings["read_connection"] and not self.memory:
                    reader = _Worker("eventsource-sqlite-r")
                    started.append(reader)
                    await reader.submit(partial(self._open, reader))
            except BaseException:
                for w in started:
                    with contextlib.suppress(Exception):
                        await w.close()
                raise
            self._writer, self._reader = writer, reader
            self._checkpoints = None if self.memory else Checkpointer(self.path, self.settings)
            # a provider dropped without close() still ends its threads and closes its connections
            self._finalizers = [weakref.finalize(self, w.stop) for w in started]
            if self._checkpoints is not None:
                self._finalizers.append(weakref.finalize(self, self._checkpoints.stop))

    def _migrate(self, worker: _Worker) -> None:
        """Bring the file to :data:`SCHEMA_VERSION` (see :func:`~eventsource.sqlite.schema.migrate`)."""
        assert worker.db is not None
        migrate(worker.db, self.path)

    async def close(self) -> None:
        """Close both connections on their threads (after queued work) and end the threads. Idempotent."""
        workers = [w for w in (self._reader, self._writer) if w is not None]
        self._writer = self._reader = None
        self._changes.notify()  # waiting subscriptions read again, and find the provider closed
        for f in getattr(self, "_finalizers", ()):
            f.detach()
        checkpoints, self._checkpoints = self._checkpoints, None
        if checkpoints is not None:  # first: its thread ends after the checkpoint in progress
            checkpoints.stop()
            await asyncio.to_thread(checkpoints.join)
        for w in workers:
            with contextlib.suppress(Exception):
                await w.close()

    # ------------------------------------------------------------------ streams

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Insert the stream row; :class:`StreamExistsError` when it is there already."""
        now = utcnow()
        us = to_us(now)
        meta = _dump_meta(stream.metadata)
        args = (
            stream.stream_id,
            us,
            us,
            stream.name,
            stream.aggregate_id,
            stream.aggregate_type,
            meta,
        )

        def run(db: sqlite3.Connection) -> int:
            return db.execute(SQL_CREATE_STREAM, args).rowcount

        if await self._write("create_stream", run) == 0:
            msg = f"stream {stream.stream_id!r} already exists"
            raise StreamExistsError(msg, stream_id=stream.stream_id)
        return StreamInfo.new(stream, from_us(us))

    async def delete_stream(self, stream_id: str) -> None:
        """Delete the stream row, its events and snapshots in one transaction."""

        def body(db: sqlite3.Connection) -> int:
            gone = db.execute(SQL_DELETE_STREAM, (stream_id,)).rowcount
            if gone:
                counts.uncount(db, "stream_id = ?", (stream_id,))
                db.execute(SQL_DELETE_STREAM_EVENTS, (stream_id,))
                db.execute(SQL_DELETE_STREAM_SNAPSHOTS, (stream_id,))
            return gone

        if not await self._write("delete_stream", lambda db: tx(db, body)):
            msg = f"stream {stream_id!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=stream_id)
        self._written(CHECKPOINT_EVERY)  # (any number of events went)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """The stream row (counts are kept exact by every write transaction)."""

        def run(db: sqlite3.Connection) -> StreamInfo | None:
            row = db.execute(SQL_STREAM_INFO, (stream_id,)).fetchone()
            return _info_from_row(row) if row is not None else None

        return await self._read("get_stream_info", run)

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page ordered by stream id (byte order of UTF-8 = code point order) and the total.

        ``after`` seeks the primary key; ``offset`` steps over rows; the total counts the stream rows.
        """

        def body(db: sqlite3.Connection) -> tuple[list[StreamInfo], int]:
            if after is None:
                rows = db.execute(SQL_LIST_STREAMS, (limit, offset)).fetchall()
            else:
                rows = db.execute(SQL_LIST_STREAMS_AFTER, (after, limit, offset)).fetchall()
            total = db.execute(SQL_COUNT_STREAMS).fetchone()[0]
            return [_info_from_row(r) for r in rows], total

        return await self._read("list_streams", lambda db: tx(db, body, write=False))

    # ------------------------------------------------------------------ reads

    def read_stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RowPage]:
        """Keyset pages of ``page_size`` rows by ``(stream_id, version)``, as :class:`RowPage` (no records built)."""
        lo = max(from_version, 0)
        hi = MAX_VERSION if to_version is None else to_version
        sql = SQL_READ_BACKWARD if backwards else SQL_READ_FORWARD
        limit = page_size + 1

        def after(last: tuple[Any, ...], args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            version = last[3]
            if backwards:
                return (stream_id, args[1], version - 1, limit) if version - 1 >= args[1] else None
            return (stream_id, version + 1, args[2], limit) if version + 1 <= args[2] else None

        first = (stream_id, lo, hi, limit) if lo <= hi else None
        return self._paged("read_stream", sql, first, after, page_size)

    def read_all_pages(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RowPage]:
        """Keyset pages of ``page_size`` rows by position (commit order), as :class:`RowPage`."""

        def after(last: tuple[Any, ...], _args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (last[4] + 1, page_size + 1)

        return self._paged("read_all", SQL_READ_ALL, (max(from_position, 0), page_size + 1), after, page_size)

    async def _paged(
        self,
        op: str,
        sql: str,
        args: tuple[Any, ...] | None,
        after: Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...] | None],
        page_size: int,
    ) -> AsyncIterator[RowPage]:
        """Keyset pages of ``page_size`` rows, one query (one hop) per page.

        Each query asks for one row more than a page, so the last page is known without an empty
        query. Each page is queried after the previous one was handed out, so writes committed
        meanwhile are seen by the later pages. ``args`` ``None``: an empty range, nothing to read.
        The reader thread only fetches; the rows become events on the loop (see :class:`RowPage`).
        """
        while args is not None:
            rows: list[Any] = await self._read(op, partial(_fetch_rows, sql, args))  # EventRow-shaped tuples
            if not rows:
                return
            more = len(rows) > page_size
            if more:
                del rows[page_size:]
            yield RowPage(rows, from_us)
            args = after(rows[-1], args) if more else None

    async def wait_for_change(self, after_position: int, max_wait: float) -> None:
        """Return once a position above ``after_position`` is committed, or after ``max_wait`` (see :mod:`.live`)."""
        await live.wait_for_change(
            lambda fn: self._read("wait_for_change", fn), self._changes, after_position, max_wait
        )

    async def head_position(self) -> int:
        """The highest position ever handed out (deleted events included)."""
        return await self._read("head_position", live.head)

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look the id up in its unique index."""

        def run(db: sqlite3.Connection) -> RecordedEvent | None:
            rows = _events_from_rows(db.execute(SQL_EVENT_BY_ID, (event_id,)).fetchall())
            return rows[0] if rows else None

        rec: RecordedEvent | None = await self._read("get_event", run)
        if rec is None or (stream_id is not None and rec.stream_id != stream_id):
            return None
        return rec

    async def query(
        self, flt: EventFilter, *, limit: int, offset: int, descending: bool = False, count: CountMode = "exact"
    ) -> QueryPage:
        """Every filter pushed down to SQL (each has an index); the page and the count from one read transaction.

        The cursor seeks the primary key (or, within one stream, the version index). A total that the counts
        answer (no filter, only types, only a stream) is exact for every ``count`` mode; any other is a
        ``COUNT(*)`` over the index for ``"exact"`` and not given for ``"estimate"`` or ``"none"``.
        """
        run = partial(query_page, flt=flt, limit=limit, offset=offset, descending=descending, count=count)
        return await self._read("query", lambda db: tx(db, run, write=False))

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Check the stream backs it, then insert (or replace the one at the same version): one transaction."""
        args = (
            snapshot.snapshot_id,
            snapshot.stream_id,
            snapshot.version,
            snapshot.data,
            snapshot.metadata,
            snapshot.encoding,
            to_us(snapshot.created_at),
            snapshot.aggregate_id,
            snapshot.aggregate_type,
            snapshot.position,
        )
        sid, version = snapshot.stream_id, snapshot.version

        def body(db: sqlite3.Connection) -> None:
            state = db.execute(SQL_STREAM_STATE, (sid, sid)).fetchone()
            at = db.execute(SQL_POSITION_AT, (sid, version)).fetchone() if state is not None else None
            current = max(state[0], state[1] or 0) if state is not None else 0
            check_snapshot(snapshot, exists=state is not None, version=current, position_at=at[0] if at else None)
            db.execute(SQL_SAVE_SNAPSHOT, args)

        await self._write("save_snapshot", lambda db: tx(db, body))
        self._written(1 + len(snapshot.data) // 4096)  # (a big one is several pages)

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot at or below ``max_version``."""
        args = (stream_id, MAX_VERSION if max_version is None else max_version)

        def run(db: sqlite3.Connection) -> NewSnapshot | None:
            row = db.execute(SQL_GET_SNAPSHOT, args).fetchone()
            return _snapshot_from_row(row) if row is not None else None

        return await self._read("get_snapshot", run)

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Delete one or all snapshots of a stream; the count."""
        if version is None:
            return await self._write(
                "delete_snapshots", lambda db: db.execute(SQL_DELETE_STREAM_SNAPSHOTS, (stream_id,)).rowcount
            )
        return await self._write(
            "delete_snapshots", lambda db: db.execute(SQL_DELETE_SNAPSHOT, (stream_id, version)).rowcount
        )

    # ------------------------------------------------------------------ retention

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Delete events with ``timestamp < cutoff``, oldest first, in short transactions (:mod:`.maintenance`).

        Each batch keeps each stream's version and the counts; writers queued on the writer thread (or waiting
        for the file's lock) go between batches, so a run over millions of events never stalls them for more
        than one batch. A run cut short leaves the newer old events for the next run (nothing is half-deleted).
        """
        return await self._in_batches("delete_events_before", partial(delete_old_batch, to_us(cutoff), stream_id))

    async def truncate_stream(self, stream_id: str, before_version: int, *, if_holds: EventAt | None = None) -> int:
        """Delete the stream's events below ``before_version``, lowest first, in short transactions."""
        batch = partial(truncate_batch, stream_id, before_version, [if_holds])  # the guard, carried batch to batch
        return await self._in_batches("truncate_stream", batch)

    async def _in_batches(self, op: str, batch: Callable[[int, sqlite3.Connection], tuple[int, bool]]) -> int:
        """One retention run: ``batch`` in the provider's sized, paced transactions."""
        return await in_batches(
            self._write, op, batch, last=self._batches, pace=self._pacer, quiet=self._quiet, written=self._written
        )

    async def rewrite_events(self, stream_id: str, rewrites: Sequence[EventRewrite]) -> int:
        """Swap payloads in place in one write transaction (:mod:`eventsource.sqlite.rewrite`)."""
        done = await self._write("rewrite_events", partial(tx, body=partial(rewrite_batch, stream_id, rewrites)))
        self._written(done)
        return done

    # ------------------------------------------------------------------ monitoring

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Counts kept in the file (see :mod:`eventsource.sqlite.counts`), read in one transaction: all exact.

        Totals by type and the ``top_streams`` read the counts and the tail; the stream total counts the stream
        rows, and without ``top_streams`` every stream is listed (one row and one index probe each). A long tail
        (another process appended) is folded first, unless ``create_store`` is off: a store found, not set up, is
        never written by a read, and the tail is counted as it is (exact all the same).
        """
        may_write = self.settings["create_store"] or self.memory
        if may_write and await self._read("stats", counts.tail_size) > 4 * counts.FOLD_EVERY:
            await self._write("stats", lambda db: tx(db, counts.fold))

        body = partial(read_stats, top_streams=top_streams, path=self.path, provider=self.name, started=self._started)
        return await self._read("stats", lambda db: tx(db, body, write=False))

    def _unhealthy(self, version: int, latency: float, path: str) -> HealthStatus | None:
        """Health's answer when the file's schema is not this code's, or writes fail or would; else ``None``.

        A store that cannot append is down for its main job: unhealthy, as a read-only PostgreSQL session is.
        """
        if version != SCHEMA_VERSION:
            msg = f"schema version {version}, expected {SCHEMA_VERSION}"
            return HealthStatus(
                healthy=False, provider=self.name, message=msg, details={"path": self.path}, latency_ms=latency
            )
        if (failed := self.write_fault) is not None:  # health never writes: the last write's failure tells
            msg = f"writes fail since {failed['since']} (no write has committed since): {failed['error']}"
            why = {"path": self.path, "reason": "writes_failing", "write_failure": failed}
            return HealthStatus(healthy=False, provider=self.name, message=msg, details=why, latency_ms=latency)
        if not self.memory and not os.access(path, os.W_OK):  # it opens (reads work); every write would fail
            why = {"path": self.path, "reason": "read_only"}
            return HealthStatus(healthy=False, provider=self.name, message=READ_ONLY, details=why, latency_ms=latency)
        return None

    async def health(self) -> HealthStatus:
        """Read the schema version through the reader, the writer's durability pragmas (:mod:`.durability`).

        Unhealthy (``reason: writes_failing``) while the last write failed because the file cannot take writes
        (disk full, I/O error, read-only: :attr:`write_fault`) and none has committed since. The pragmas are read
        on the writer's thread, behind queued writes: past :data:`HEALTH_WAIT` seconds health answers degraded
        (a ``writer`` fault) instead of waiting on.
        """
        start = time.perf_counter()
        try:
            files = self._writer.files if self._writer is not None else None
            if files is not None:
                files.check("health", always=True)
            version = await self._read("health", _schema_version)
        except Exception as e:  # noqa: BLE001 - health reports, never raises
            return HealthStatus(healthy=False, provider=self.name, message=str(e), details={"path": self.path})
        latency = (time.perf_counter() - start) * 1e3
        path = files.path if files is not None else self.path  # (absolute: a chdir since connect moves nothing)
        unhealthy = self._unhealthy(version, latency, path)
        if unhealthy is not None:
            return unhealthy
        from eventsource.manager.monitoring import with_durability, with_faults  # the manager imports this module
        from eventsource.sqlite import durability

        details: dict[str, Any] = {"path": self.path}
        faults: list[dict[str, Any]] = []
        if self._checkpoints is not None:  # its thread's failures: degraded while they last
            details["wal_checkpoints"], faults = self._checkpoints.report()
            if faults:  # try again now: an idle store (no writes to poke it) stayed degraded for good
                self._checkpoints.poke()
        ok = HealthStatus(healthy=True, provider=self.name, message="ok", details=details, latency_ms=latency)
        ok = with_faults(ok, faults)
        risks: list[dict[str, str]] = []
        unread: list[str] = []
        if not self.memory:  # (the mount table is a file the kernel keeps in memory: no disk wait)
            risks, unread = durability.filesystem(path)
            risks += durability.links(path)
        try:  # the writer's pragmas, queued behind its writes: waited for HEALTH_WAIT at most
            audit = self._submit(self._writer, "health", partial(durability.audit, memory=self.memory))
            risks += await asyncio.wait_for(audit, HEALTH_WAIT)
        except TimeoutError:
            said = f"busy: no answer within {HEALTH_WAIT:g}s, writes queue behind the write lock (held elsewhere?)"
            ok = with_faults(ok, [{"component": "writer", "error": said, "since": utcnow().isoformat()}])
            return with_durability(ok, risks, unread=[*unread, "synchronous, journal_mode: the writer was busy"])
        except Exception as e:  # noqa: BLE001 - health reports, never raises
            return with_durability(ok, risks, unread=[*unread, f"synchronous, journal_mode: {e}"])
        return with_durability(ok, risks, unread=unread)

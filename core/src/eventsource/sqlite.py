"""The SQLite provider: the embedded default store, one durable file and no server.

URLs: ``sqlite:///relative/path.db`` (relative to the working directory), ``sqlite:////abs/path.db``,
and ``sqlite:///:memory:`` (a private in-memory database, for experiments: nothing is durable and a
second instance does not see it).

Durability. The file runs in WAL mode with ``synchronous=FULL``: every commit is fsynced to the
write-ahead log before ``append`` returns, so a committed event survives a power loss (``NORMAL`` in
WAL mode may lose the last commits on power loss; the ``synchronous`` setting allows it for callers
who accept that, and says so).

Global order (``total``). ``position`` is an ``INTEGER PRIMARY KEY AUTOINCREMENT``. Every write runs
in a write transaction (``BEGIN IMMEDIATE``, or one autocommit write statement, which SQLite starts
as a write transaction) that takes the database's single write lock before it reads or assigns
anything and keeps it until it commits. Positions are therefore assigned by one writer at a
time, each transaction's positions are above every committed one, and they become visible in the
same order they were assigned: commit order is position order. A reader following ``read_all`` can
never see position ``p + 1`` committed while ``p`` is still in flight, so it never skips a late
commit (the PostgreSQL bigserial hazard cannot happen here). ``AUTOINCREMENT`` keeps positions from
being reused after the newest events are deleted.

Concurrency (``cross_process``). The expected-version check reads the stream row inside that same
write transaction, so two writers (threads, provider instances or processes on the same file) are
serialized by SQLite's lock: exactly one wins a race; the other sees the new version and gets
:class:`ConcurrencyError`. A writer that cannot get the lock within ``busy_timeout`` seconds gets
:class:`ProviderTimeoutError` (retryable; nothing was written). WAL readers never block writers nor
wait for them.

Idempotency. ``event_id`` has a unique index (ids are unique store-wide, as in the memory provider).
One event at an exact version ``>= 1`` is one autocommit statement, ``INSERT ... SELECT ... WHERE``
the stream is at ``version - 1`` (two index seeks); any other append takes the fast path of four
statements (``BEGIN IMMEDIATE``; one ``SELECT`` of the stream's state; ``INSERT``; ``COMMIT``). Both
write only the event's pages: the stream row is written when the stream is created and by retention,
never by an append (its version is the highest stored event version; see the schema). Only when
that fails (a version mismatch or a unique violation) is the careful path run, which compares the stored rows under the batch's ids first
(:func:`check_duplicate`): an identical retry returns the original result with ``duplicate=True``,
any other overlap raises :class:`DuplicateEventError`; then the version is checked.

Threads. ``sqlite3`` blocks, so no call runs on the event loop: each provider owns one writer thread
(one connection, made and used only there) and, for file databases, one reader thread with its own
connection, so reads never queue behind writes. Every operation is one hop to one of those threads
(a queue put there, a ``call_soon_threadsafe`` back). A caller that gives up waiting (a timeout or a
cancellation) does not stop a statement already running: a write still commits or rolls back as a
whole, and a retried append with the same event ids is then an idempotent no-op.

Reads hold O(page) memory: ``read_stream`` and ``read_all`` run one keyset query per page
(``version``/``position`` greater than the last one seen, ``LIMIT page_size``). The reader thread only
fetches the rows; the manager gets each page whole as a :class:`~eventsource.model.RowPage` and
turns the rows into events on the loop (``read_stream_pages`` / ``read_all_pages``).

Deleted streams: ``delete_stream`` removes events, the stream row and snapshots in one transaction;
the id is reusable from version 0. A stream's version never goes down (retention keeps it).

Schema versions live in ``PRAGMA user_version``; :meth:`SqliteProvider.connect` migrates an older
file inside a write transaction (idempotent, safe when several processes connect at once) and refuses
a file written by a newer schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from functools import partial
from operator import attrgetter
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from marshmallow import Schema, fields, validate

from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventError,
    EventSourceError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    StreamExistsError,
    StreamNotFoundError,
    ValidationError,
)
from eventsource.model import (
    AppendResult,
    HealthStatus,
    NewSnapshot,
    NewStream,
    ProviderStats,
    QueryPage,
    RecordedEvent,
    RowPage,
    StreamInfo,
    make_recorded_event,
    positional_constructor,
    utcnow,
)
from eventsource.provider import (
    Capabilities,
    Provider,
    check_duplicate,
    check_expected,
    check_snapshot,
    inline_io_allowed,
    records_of,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Sequence

    from eventsource.model import EventFilter, Expected, NewEvent, RecordedSnapshot

T = TypeVar("T")

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the current schema."""

MAX_VERSION = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_make_append_result = positional_constructor(AppendResult)
_US = timedelta(microseconds=1)

# ----------------------------------------------------------------------------- schema

_SCHEMA_V1 = (
    # Appends never write this row (it is inserted when a stream is created, implicitly or not): the
    # version is the highest stored event version, and the floor columns keep what retention deleted
    # (the version and last event before a deletion; how many events were deleted), so
    # event_count = version - deleted_count (versions are gap-free: each one was assigned once).
    """CREATE TABLE IF NOT EXISTS es_streams (
        stream_id      TEXT PRIMARY KEY,
        version_floor  INTEGER NOT NULL,
        deleted_count  INTEGER NOT NULL,
        last_event_id  TEXT,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        name           TEXT,
        aggregate_id   TEXT,
        aggregate_type TEXT,
        metadata       TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS es_events (
        position       INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id       TEXT NOT NULL,
        stream_id      TEXT NOT NULL,
        event_type     TEXT NOT NULL,
        version        INTEGER NOT NULL,
        data           BLOB NOT NULL,
        metadata       BLOB NOT NULL,
        encoding       TEXT NOT NULL,
        timestamp      INTEGER NOT NULL,
        correlation_id TEXT,
        causation_id   TEXT,
        user_id        TEXT,
        tenant_id      TEXT,
        aggregate_id   TEXT,
        aggregate_type TEXT
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS es_events_event_id ON es_events (event_id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS es_events_stream_version ON es_events (stream_id, version)",
    "CREATE INDEX IF NOT EXISTS es_events_timestamp ON es_events (timestamp)",
    """CREATE TABLE IF NOT EXISTS es_snapshots (
        stream_id      TEXT NOT NULL,
        version        INTEGER NOT NULL,
        snapshot_id    TEXT NOT NULL,
        data           BLOB NOT NULL,
        metadata       BLOB NOT NULL,
        encoding       TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        aggregate_id   TEXT,
        aggregate_type TEXT,
        position       INTEGER,
        PRIMARY KEY (stream_id, version)
    )""",
)
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1}
"""Statements that bring a file from ``user_version = v - 1`` to ``v``."""

# ----------------------------------------------------------------------------- statements

_EVENT_COLS = (
    "event_id, stream_id, event_type, version, position, data, metadata, encoding, timestamp, "
    "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type"
)
_STREAM_COLS = (
    "s.stream_id, s.version_floor, s.deleted_count, s.created_at, s.updated_at, s.name, s.aggregate_id, "
    "s.aggregate_type, s.metadata, s.last_event_id, "
    "(SELECT MIN(version) FROM es_events WHERE stream_id = s.stream_id), "
    "(SELECT version FROM es_events WHERE stream_id = s.stream_id ORDER BY version DESC LIMIT 1), "
    "(SELECT event_id FROM es_events WHERE stream_id = s.stream_id ORDER BY version DESC LIMIT 1), "
    "(SELECT timestamp FROM es_events WHERE stream_id = s.stream_id ORDER BY version DESC LIMIT 1)"
)
_SNAP_COLS = (
    "snapshot_id, stream_id, version, data, metadata, encoding, created_at, aggregate_id, aggregate_type, position"
)

# Only plain ``?`` placeholders: ``sqlite3`` on Python 3.12.0-3.12.3 takes numbered ``?NNN`` ones bound from a
# sequence for "named" ones and warns (a DeprecationWarning that -W error turns into a failed append), so a
# parameter used twice is passed twice.
SQL_STREAM_STATE = "SELECT version_floor, (SELECT MAX(version) FROM es_events WHERE stream_id = ?) FROM es_streams WHERE stream_id = ?"
SQL_INSERT_EVENT = (
    "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp, "
    "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_INSERT_EVENT_SHORT = (
    "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_AT_VERSION = (
    "WHERE (SELECT MAX(version_floor, IFNULL((SELECT MAX(version) FROM es_events WHERE stream_id = ?), 0)) "
    "FROM es_streams WHERE stream_id = ?) = ? - 1"
)
SQL_APPEND_AT = (
    "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp, "
    "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type) "
    f"SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? {_AT_VERSION}"
)
"""One event at an exact version, in one autocommit statement: inserted only if the stream is at
``version - 1`` (the same check as :data:`SQL_STREAM_STATE` + :func:`check_expected`). Parameters: the
event's row, then stream id, stream id, version (for :data:`_AT_VERSION`)."""
SQL_APPEND_AT_SHORT = (
    "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp) "
    f"SELECT ?, ?, ?, ?, ?, ?, ?, ? {_AT_VERSION}"
)
SQL_LAST_ROWID = "SELECT last_insert_rowid()"
SQL_INSERT_STREAM = (
    "INSERT INTO es_streams (stream_id, version_floor, deleted_count, last_event_id, created_at, updated_at, "
    "name, aggregate_id, aggregate_type, metadata) VALUES (?, 0, 0, NULL, ?, ?, ?, ?, ?, ?)"
)
SQL_CREATE_STREAM = SQL_INSERT_STREAM + " ON CONFLICT (stream_id) DO NOTHING"
SQL_STREAM_INFO = f"SELECT {_STREAM_COLS} FROM es_streams AS s WHERE s.stream_id = ?"  # noqa: S608 - constant text
SQL_LIST_STREAMS = f"SELECT {_STREAM_COLS} FROM es_streams AS s ORDER BY s.stream_id LIMIT ? OFFSET ?"  # noqa: S608
SQL_COUNT_STREAMS = "SELECT COUNT(*) FROM es_streams"
SQL_READ_FORWARD = (
    f"SELECT {_EVENT_COLS} FROM es_events WHERE stream_id = ? AND version >= ? AND version <= ? "  # noqa: S608
    "ORDER BY version LIMIT ?"
)
SQL_READ_BACKWARD = (
    f"SELECT {_EVENT_COLS} FROM es_events WHERE stream_id = ? AND version >= ? AND version <= ? "  # noqa: S608
    "ORDER BY version DESC LIMIT ?"
)
SQL_READ_ALL = f"SELECT {_EVENT_COLS} FROM es_events WHERE position >= ? ORDER BY position LIMIT ?"  # noqa: S608
SQL_EVENT_BY_ID = f"SELECT {_EVENT_COLS} FROM es_events WHERE event_id = ?"  # noqa: S608
SQL_DELETE_STREAM = "DELETE FROM es_streams WHERE stream_id = ?"
SQL_DELETE_STREAM_EVENTS = "DELETE FROM es_events WHERE stream_id = ?"
SQL_DELETE_STREAM_SNAPSHOTS = "DELETE FROM es_snapshots WHERE stream_id = ?"
SQL_SAVE_SNAPSHOT = f"INSERT OR REPLACE INTO es_snapshots ({_SNAP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
SQL_POSITION_AT = "SELECT position FROM es_events WHERE stream_id = ? AND version = ?"
SQL_GET_SNAPSHOT = (
    f"SELECT {_SNAP_COLS} FROM es_snapshots WHERE stream_id = ? AND version <= ? "  # noqa: S608
    "ORDER BY version DESC LIMIT 1"
)
SQL_DELETE_SNAPSHOT = "DELETE FROM es_snapshots WHERE stream_id = ? AND version = ?"
SQL_TRUNCATE = "DELETE FROM es_events WHERE stream_id = ? AND version < ?"
SQL_TRUNCATE_COUNT = "SELECT COUNT(*) FROM es_events WHERE stream_id = ? AND version < ?"
SQL_STREAM_TOP = "SELECT version, event_id, timestamp FROM es_events WHERE stream_id = ? ORDER BY version DESC LIMIT 1"
SQL_KEEP_FLOOR = (
    "UPDATE es_streams SET version_floor = ?, last_event_id = ?, updated_at = ?, deleted_count = deleted_count + ? "
    "WHERE stream_id = ?"
)
SQL_STREAM_FLOOR = "SELECT version_floor, last_event_id, updated_at FROM es_streams WHERE stream_id = ?"
SQL_EVENTS_BY_STREAM = (
    "SELECT s.stream_id, MAX(s.version_floor, "
    "COALESCE((SELECT MAX(version) FROM es_events WHERE stream_id = s.stream_id), 0)) - s.deleted_count "
    "FROM es_streams AS s"
)
SQL_OLD_BY_STREAM = "SELECT stream_id, COUNT(*) FROM es_events WHERE timestamp < ? GROUP BY stream_id"
SQL_OLD_IN_STREAM = "SELECT COUNT(*) FROM es_events WHERE timestamp < ? AND stream_id = ?"
SQL_DELETE_OLD = "DELETE FROM es_events WHERE timestamp < ?"
SQL_DELETE_OLD_IN_STREAM = "DELETE FROM es_events WHERE timestamp < ? AND stream_id = ?"

# ----------------------------------------------------------------------------- conversions


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch (UTC); naive datetimes are taken as UTC. Exact, no float."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _US


_FLOAT_EXACT_US = 2**31 * 1_000_000
"""Below this many microseconds from the epoch (until 2038) a float holds every microsecond exactly:
``us / 1e6`` is within 0.12 µs of the true value, so ``fromtimestamp`` rounds back to it."""
_fromtimestamp = datetime.fromtimestamp


def from_us(us: int) -> datetime:
    """The timezone-aware UTC datetime of :func:`to_us`, exactly (a fast path for present-day times)."""
    if -_FLOAT_EXACT_US < us < _FLOAT_EXACT_US:
        return _fromtimestamp(us / 1e6, UTC)
    return _EPOCH + timedelta(microseconds=us)


def _record(r: Any) -> RecordedEvent:
    """A row in :data:`_EVENT_COLS` order (RecordedEvent's field order) as a record."""
    return make_recorded_event(*r[:8], from_us(r[8]), *r[9:])


def _events_from_rows(rows: list[Any]) -> list[RecordedEvent]:
    """Rows in :data:`_EVENT_COLS` order to records (runs on a provider thread, not on the loop)."""
    return list(map(_record, rows))


def _fetch_rows(sql: str, args: tuple[Any, ...], db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """One page of rows in :data:`_EVENT_COLS` order (runs on a provider thread)."""
    return db.execute(sql, args).fetchall()  # fetchall: about 8% faster than iterating


_OPTIONAL = attrgetter("correlation_id", "causation_id", "user_id", "tenant_id", "aggregate_id", "aggregate_type")
_NO_OPTIONAL = (None, None, None, None, None, None)


def _event_rows(stream_id: str, events: Sequence[NewEvent], first_version: int) -> tuple[str, list[tuple[Any, ...]]]:
    """The INSERT and its parameter rows; the short form when no event has an optional envelope field.

    ``sqlite3`` binds every parameter through Python, so leaving out six NULL columns (the usual case)
    saves about a quarter of the insert's cost per event.
    """
    if all(_OPTIONAL(e) == _NO_OPTIONAL for e in events):
        return SQL_INSERT_EVENT_SHORT, [
            (e.event_id, stream_id, e.event_type, v, e.data, e.metadata, e.encoding, to_us(e.timestamp))
            for v, e in enumerate(events, first_version)
        ]
    return SQL_INSERT_EVENT, [
        (
            e.event_id,
            stream_id,
            e.event_type,
            v,
            e.data,
            e.metadata,
            e.encoding,
            to_us(e.timestamp),
            e.correlation_id,
            e.causation_id,
            e.user_id,
            e.tenant_id,
            e.aggregate_id,
            e.aggregate_type,
        )
        for v, e in enumerate(events, first_version)
    ]


def _dump_meta(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"))


def _info_from_row(r: Any) -> StreamInfo:
    """A row of :data:`_STREAM_COLS`: the floor columns, then the lowest and the highest stored event."""
    floor, deleted = r[1], r[2]
    top = r[11]
    if top is not None and top >= floor:
        version, last_id, updated = top, r[12], r[13]
    else:  # no event stored, or retention deleted the newest ones: the floor remembers them
        version, last_id, updated = floor, r[9], r[4]
    return StreamInfo(
        stream_id=r[0],
        version=version,
        event_count=version - deleted,
        created_at=from_us(r[3]),
        updated_at=from_us(updated),
        name=r[5],
        aggregate_id=r[6],
        aggregate_type=r[7],
        metadata=json.loads(r[8]),
        last_event_id=last_id,
        first_version=r[10],
    )


def _snapshot_from_row(r: Any) -> NewSnapshot:
    return NewSnapshot(
        snapshot_id=r[0],
        stream_id=r[1],
        version=r[2],
        data=r[3],
        metadata=r[4],
        encoding=r[5],
        created_at=from_us(r[6]),
        aggregate_id=r[7],
        aggregate_type=r[8],
        position=r[9],
    )


def path_from_url(url: str) -> str:
    """The database path of a ``sqlite://`` URL (``:memory:`` for the in-memory form)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        msg = f"not a sqlite URL: {url!r} (expected sqlite:///relative.db or sqlite:////absolute.db)"
        raise ConfigurationError(msg, field="url")
    if parts.netloc:
        msg = f"sqlite URLs have no host: {url!r} (use three slashes: sqlite:///path.db)"
        raise ConfigurationError(msg, field="url")
    path = unquote(parts.path)
    if path in ("/:memory:", ":memory:"):
        return ":memory:"
    path = path.removeprefix("/")
    if not path or path.endswith("/"):
        msg = f"sqlite URL names no file: {url!r}"
        raise ConfigurationError(msg, field="url")
    return path


# ----------------------------------------------------------------------------- errors


_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_UNAVAILABLE = {"SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_NOTADB", "SQLITE_PERM", "SQLITE_AUTH", "SQLITE_FULL"}


def map_error(e: BaseException, op: str, path: str) -> EventSourceError:
    """The typed error for a ``sqlite3`` failure (the provider's one mapping point)."""
    if isinstance(e, EventSourceError):
        return e
    name = (getattr(e, "sqlite_errorname", None) or "").split("_")
    family = "_".join(name[:2]) if len(name) >= 2 else ""  # noqa: PLR2004 - SQLITE_BUSY_SNAPSHOT -> SQLITE_BUSY
    where = f"sqlite {op} on {path}"
    if family in _BUSY or "database is locked" in str(e):
        return ProviderTimeoutError(
            f"{where}: the database is busy (another connection held the write lock past busy_timeout)",
            provider="sqlite",
            operation=op,
        )
    if family in _UNAVAILABLE or isinstance(e, (OSError, sqlite3.InterfaceError)):
        return ProviderUnavailableError(f"{where}: cannot use the database file: {e}", provider="sqlite", operation=op)
    if isinstance(e, sqlite3.ProgrammingError) and "closed" in str(e):
        return ProviderUnavailableError(f"{where}: the connection is closed", provider="sqlite", operation=op)
    if isinstance(e, sqlite3.IntegrityError) and "event_id" in str(e):
        return DuplicateEventError(f"{where}: an event id of the batch is already stored", provider="sqlite")
    return ProviderError(f"{where} failed: {type(e).__name__}: {e}", provider="sqlite", operation=op)


# ----------------------------------------------------------------------------- settings


class SqliteSettings(Schema):
    """Settings of :class:`SqliteProvider`."""

    busy_timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0))
    """Seconds a writer waits for another connection's write lock before :class:`ProviderTimeoutError`."""
    synchronous = fields.String(load_default="full", validate=validate.OneOf(["full", "normal"]))
    """``full`` (default): every commit is durable. ``normal``: faster; WAL may lose the last commits on power loss."""
    read_connection = fields.Boolean(load_default=True)
    """Serve reads from a second connection on its own thread, so they never queue behind writes."""
    cached_statements = fields.Integer(load_default=64, validate=validate.Range(min=8))
    """Prepared statements ``sqlite3`` keeps per connection."""


# ----------------------------------------------------------------------------- provider


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Hand a job's outcome to its future (on the loop's thread)."""
    if fut.cancelled():
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)


class _Worker:
    """One thread that owns one connection. Jobs arrive on a queue; outcomes go back to the loop.

    Leaner than ``run_in_executor`` (no ``concurrent.futures`` future chained to an asyncio one): one
    queue put, one ``call_soon_threadsafe``. Jobs run in submission order; :meth:`stop` closes the
    connection on the thread after the jobs already queued.
    """

    def __init__(self, name: str) -> None:
        self.db: sqlite3.Connection | None = None
        self.lock = threading.Lock()  # held by whoever uses the connection: this thread or an inline sync caller
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                break
            fn, fut, loop = job
            try:
                with self.lock:
                    result, error = fn(), None
            except Exception as e:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, e
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile: nobody is waiting
                loop.call_soon_threadsafe(_settle, fut, result, error)
            del job, fn, fut, result, error
        with self.lock:
            db, self.db = self.db, None
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn`` for the thread; the returned future completes on the calling loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, fut, loop))
        return fut

    def stop(self) -> None:
        """Close the connection and end the thread once the queued jobs are done. Idempotent."""
        self._jobs.put(None)

    async def close(self) -> None:
        """Close the connection on its thread (after the jobs already queued), then end the thread."""
        try:
            await self.submit(self._close_db)
        finally:
            self.stop()

    def _close_db(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            db.close()


class SqliteProvider(Provider):
    """The embedded default store: ``sqlite:///path.db``. See the module docstring for the guarantees."""

    kind = "sqlite"
    capabilities = Capabilities(global_order="total", concurrency="cross_process", deleted_stream_ids="reusable")
    settings_schema = SqliteSettings
    loop_free = True

    def __init__(self, url: str | None = None, **settings: Any) -> None:
        super().__init__(url or "sqlite:///eventsource.db", **settings)
        assert self.url is not None
        self.path = path_from_url(self.url)
        self.memory = self.path == ":memory:"
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None
        self._started = monotonic()
        self._connect_lock = asyncio.Lock()

    def spawn_args(self) -> dict[str, Any]:
        """The same file by absolute path (so another process with another working directory finds it)."""
        url = self.url if self.memory else "sqlite:///" + str(Path(self.path).resolve())
        return {"url": url, **self.settings}

    # ------------------------------------------------------------------ threads

    def _open(self, worker: _Worker) -> None:
        """Open and configure ``worker``'s connection (runs on its thread, which then owns it)."""
        try:
            if not self.memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path,
                timeout=self.settings["busy_timeout"],
                isolation_level=None,
                check_same_thread=False,  # an inline sync caller uses it too, under the worker's lock
                cached_statements=self.settings["cached_statements"],
            )
            if not self.memory:
                mode = self._wal(db)
                if str(mode).lower() != "wal":
                    db.close()
                    msg = f"sqlite: cannot switch {self.path} to WAL mode (got {mode})"
                    raise ProviderUnavailableError(msg, provider="sqlite")
            db.execute(f"PRAGMA synchronous = {'FULL' if self.settings['synchronous'] == 'full' else 'NORMAL'}")
            db.execute("PRAGMA foreign_keys = OFF")
        except (sqlite3.Error, OSError) as e:  # OSError: the directory cannot be made (a file in the way, no permission)
            raise map_error(e, "connect", self.path) from e
        worker.db = db

    def _wal(self, db: sqlite3.Connection) -> str:
        """Switch ``db``'s file to WAL (once per file) and return the journal mode now in force.

        The switch needs an exclusive lock, and SQLite answers "database is locked" at once, without
        consulting the busy handler, while another connection is opening or switching the same file
        (several processes starting together). So the current mode is read first (WAL persists in the
        file, so later opens need no lock), and the switch is retried until ``busy_timeout``.
        """
        deadline = time.monotonic() + self.settings["busy_timeout"]
        delay = 0.001
        while True:
            try:
                mode = str(db.execute("PRAGMA journal_mode").fetchone()[0])
                if mode.lower() == "wal":
                    return mode
                return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _submit(self, worker: _Worker | None, op: str, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``fn(connection)`` on the connection's own thread now; errors come back typed."""
        if worker is None or worker.db is None:
            msg = f"sqlite {op}: the provider is not connected (call connect())"
            raise ProviderUnavailableError(msg, provider="sqlite", operation=op)
        db = worker.db
        path = self.path

        def call() -> T:
            try:
                return fn(db)
            except EventSourceError:
                raise
            except Exception as e:
                raise map_error(e, op, path) from e

        return worker.submit(call)

    async def _on(self, worker: _Worker | None, op: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the connection's own thread (one hop), or inline for a sync caller.

        Inline only when the running loop belongs to a sync caller blocked in this thread
        (:func:`~eventsource.provider.inline_io_allowed`): nothing else waits on that loop, so the
        statement runs here under the worker's lock, the same one-at-a-time discipline as the thread.
        """
        if worker is not None and inline_io_allowed():
            return self._inline(worker, op, fn)
        return await self._submit(worker, op, fn)

    def _inline(self, worker: _Worker, op: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        with worker.lock:
            db = worker.db
            if db is None:
                msg = f"sqlite {op}: the provider is not connected (call connect())"
                raise ProviderUnavailableError(msg, provider="sqlite", operation=op)
            try:
                return fn(db)
            except EventSourceError:
                raise
            except Exception as e:
                raise map_error(e, op, self.path) from e
            except BaseException:  # KeyboardInterrupt between two statements: leave no transaction open
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def _write(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> Coroutine[Any, Any, T]:
        """Run ``fn`` on the writer thread."""
        return self._on(self._writer, op, fn)

    def _read(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> Coroutine[Any, Any, T]:
        """Run ``fn`` on the reader thread (the writer's for in-memory databases)."""
        return self._on(self._reader or self._writer, op, fn)

    @staticmethod
    def _tx(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``body`` in one transaction (``BEGIN IMMEDIATE`` for writes: the write lock first)."""
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = body(db)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Start the writer (and reader) thread, open their connections, migrate the schema. Idempotent."""
        async with self._connect_lock:
            if self._writer is not None:
                return
            started: list[_Worker] = []
            try:
                writer = _Worker("eventsource-sqlite-w")
                started.append(writer)
                await writer.submit(partial(self._open, writer))
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
            # a provider dropped without close() still ends its threads and closes its connections
            self._finalizers = [weakref.finalize(self, w.stop) for w in started]

    def _migrate(self, worker: _Worker) -> None:
        """Bring the file to :data:`SCHEMA_VERSION` (each step in a write transaction; re-checked inside)."""
        db = worker.db
        assert db is not None
        try:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current == SCHEMA_VERSION:
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                current = db.execute("PRAGMA user_version").fetchone()[0]
                if current > SCHEMA_VERSION:
                    msg = (
                        f"sqlite: {self.path} has schema version {current}, newer than this eventsource "
                        f"({SCHEMA_VERSION}); upgrade eventsource"
                    )
                    raise ProviderError(msg, provider="sqlite")  # noqa: TRY301 - rolled back just below
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {int(version)}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as e:
            raise map_error(e, "connect", self.path) from e

    async def close(self) -> None:
        """Close both connections on their threads (after queued work) and end the threads. Idempotent."""
        workers = [w for w in (self._reader, self._writer) if w is not None]
        self._writer = self._reader = None
        for f in getattr(self, "_finalizers", ()):
            f.detach()
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
                db.execute(SQL_DELETE_STREAM_EVENTS, (stream_id,))
                db.execute(SQL_DELETE_STREAM_SNAPSHOTS, (stream_id,))
            return gone

        if not await self._write("delete_stream", lambda db: self._tx(db, body)):
            msg = f"stream {stream_id!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=stream_id)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """The stream row (counts are kept exact by every write transaction)."""

        def run(db: sqlite3.Connection) -> StreamInfo | None:
            row = db.execute(SQL_STREAM_INFO, (stream_id,)).fetchone()
            return _info_from_row(row) if row is not None else None

        return await self._read("get_stream_info", run)

    async def list_streams(self, *, limit: int, offset: int) -> tuple[list[StreamInfo], int]:
        """A page ordered by stream id (byte order of UTF-8 = code point order) and the total."""

        def body(db: sqlite3.Connection) -> tuple[list[StreamInfo], int]:
            rows = db.execute(SQL_LIST_STREAMS, (limit, offset)).fetchall()
            total = db.execute(SQL_COUNT_STREAMS).fetchone()[0]
            return [_info_from_row(r) for r in rows], total

        return await self._read("list_streams", lambda db: self._tx(db, body, write=False))

    # ------------------------------------------------------------------ append

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Append ``events`` in one write transaction (see the module docstring): one thread hop."""
        if not events:
            msg = "append needs at least one event"
            raise ValidationError(msg, field="events")
        return await self._write("append", partial(self._append_sync, stream_id, events, expected, stream))

    def _append_sync(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        stream: NewStream | None,
        db: sqlite3.Connection,
    ) -> AppendResult:
        """Fast path first; on a version mismatch or a unique violation, the careful path decides.

        One event at an exact version of a stream that has events (the usual case) is one autocommit
        ``INSERT ... SELECT ... WHERE <the stream is at version - 1>``: a single statement, its own
        transaction, the write lock taken first (SQLite starts a write statement's transaction as a
        write transaction), so nothing can slip in between the check and the insert.
        """
        if len(events) == 1 and 1 <= expected < MAX_VERSION:  # (at MAX_VERSION, version + 1 would not bind)
            result = self._append_at(db, stream_id, events[0], expected + 1)
        else:
            result = self._append_tx(db, stream_id, events, expected, stream, careful=False)
        if result is None:
            result = self._append_tx(db, stream_id, events, expected, stream, careful=True)
        if result is None:  # pragma: no cover - the careful path returns or raises
            msg = "unreachable: the careful append path always decides"
            raise AssertionError(msg)
        return result

    @staticmethod
    def _append_at(db: sqlite3.Connection, stream_id: str, event: NewEvent, version: int) -> AppendResult | None:
        """``event`` as ``version`` in one autocommit statement; ``None`` when the careful path must decide."""
        sql, rows = _event_rows(stream_id, (event,), version)
        try:
            sql = SQL_APPEND_AT_SHORT if sql is SQL_INSERT_EVENT_SHORT else SQL_APPEND_AT
            cur = db.execute(sql, (*rows[0], stream_id, stream_id, version))
        except sqlite3.IntegrityError:
            return None  # the id is taken (a retry?)
        if cur.rowcount != 1:
            return None  # the stream is not at version - 1 (or does not exist)
        # positional, in AppendResult's field order (see _append_tx)
        return _make_append_result(stream_id, version, version, (cur.lastrowid,), (event.event_id,), event.timestamp, False)  # noqa: FBT003

    def _append_tx(
        self,
        db: sqlite3.Connection,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        stream: NewStream | None,
        *,
        careful: bool,
    ) -> AppendResult | None:
        """One ``BEGIN IMMEDIATE`` attempt; ``None`` when the fast path must give way to the careful one.

        Fast path (4 statements for one event): ``BEGIN IMMEDIATE``; read the stream's state (row
        present, version floor, highest stored version); check the expected version; insert the stream
        row if it is new; ``INSERT`` the events; ``COMMIT``. Careful path: the stored rows under the
        batch's ids are compared first (:func:`check_duplicate`), then the version, then the same writes.
        """
        n = len(events)
        db.execute("BEGIN IMMEDIATE")
        try:
            if careful:
                dup = check_duplicate(stream_id, events, self._stored(db, [e.event_id for e in events]))
                if dup is not None:
                    db.execute("ROLLBACK")
                    return dup
            state = db.execute(SQL_STREAM_STATE, (stream_id, stream_id)).fetchone()
            exists = state is not None
            version = max(state[0], state[1] or 0) if exists else 0
            try:
                check_expected(stream_id, expected, exists=exists, version=version)
            except ConcurrencyError:
                db.execute("ROLLBACK")
                if careful:
                    raise
                return None  # an idempotent retry is checked before the version: the careful path decides
            if not exists:
                first = events[0]
                if stream is not None:
                    attrs = (stream.name, stream.aggregate_id, stream.aggregate_type, _dump_meta(stream.metadata))
                else:
                    attrs = (None, first.aggregate_id, first.aggregate_type, "{}")
                created = to_us(first.timestamp)
                db.execute(SQL_INSERT_STREAM, (stream_id, created, created, *attrs))
            sql, rows = _event_rows(stream_id, events, version + 1)
            try:
                if n == 1:
                    pos = db.execute(sql, rows[0]).lastrowid
                    positions: tuple[int, ...] = (pos,)  # type: ignore[assignment]
                else:
                    db.executemany(sql, rows)
                    # one writer holds the lock: the AUTOINCREMENT rowids of this transaction are consecutive
                    top = db.execute(SQL_LAST_ROWID).fetchone()[0]
                    positions = tuple(range(top - n + 1, top + 1))
            except sqlite3.IntegrityError:
                if careful:
                    raise
                db.execute("ROLLBACK")
                return None
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        ids = (events[0].event_id,) if n == 1 else tuple(e.event_id for e in events)
        # positional, in AppendResult's field order, without the frozen __init__'s cost (about 1.7 µs)
        return _make_append_result(stream_id, version + 1, version + n, positions, ids, events[0].timestamp, False)  # noqa: FBT003 - duplicate

    @staticmethod
    def _stored(db: sqlite3.Connection, ids: list[str]) -> list[RecordedEvent | None]:
        """The stored event under each id (``None`` where there is none), in ``ids`` order."""
        found: dict[str, RecordedEvent] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            sql = f"SELECT {_EVENT_COLS} FROM es_events WHERE event_id IN ({', '.join('?' * len(chunk))})"  # noqa: S608 - placeholders only
            for rec in _events_from_rows(db.execute(sql, chunk).fetchall()):
                found[rec.event_id] = rec
        return [found.get(i) for i in ids]

    # ------------------------------------------------------------------ reads

    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """The events of :meth:`read_stream_pages`, one record at a time."""
        # this class's own page view, even when a subclass swaps read_stream_pages (no recursion)
        return records_of(
            SqliteProvider.read_stream_pages(
                self, stream_id, from_version=from_version, to_version=to_version, backwards=backwards, page_size=page_size
            )
        )

    def read_all(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RecordedEvent]:
        """The events of :meth:`read_all_pages`, one record at a time."""
        return records_of(SqliteProvider.read_all_pages(self, from_position=from_position, page_size=page_size))

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
            rows: list[tuple[Any, ...]] = await self._read(op, partial(_fetch_rows, sql, args))
            if not rows:
                return
            more = len(rows) > page_size
            if more:
                del rows[page_size:]
            yield RowPage(rows, from_us)
            args = after(rows[-1], args) if more else None

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look the id up in its unique index."""

        def run(db: sqlite3.Connection) -> RecordedEvent | None:
            rows = _events_from_rows(db.execute(SQL_EVENT_BY_ID, (event_id,)).fetchall())
            return rows[0] if rows else None

        rec: RecordedEvent | None = await self._read("get_event", run)
        if rec is None or (stream_id is not None and rec.stream_id != stream_id):
            return None
        return rec

    async def query(self, flt: EventFilter, *, limit: int, offset: int, descending: bool = False) -> QueryPage:
        """Every filter pushed down to SQL; the page and the total count from one read transaction."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("stream_id = ?", flt.stream_id),
            ("version >= ?", flt.from_version),
            ("version <= ?", flt.to_version),
            ("timestamp >= ?", to_us(flt.from_timestamp) if flt.from_timestamp is not None else None),
            ("timestamp <= ?", to_us(flt.to_timestamp) if flt.to_timestamp is not None else None),
            ("tenant_id = ?", flt.tenant_id),
            ("correlation_id = ?", flt.correlation_id),
            ("aggregate_id = ?", flt.aggregate_id),
            ("aggregate_type = ?", flt.aggregate_type),
        ):
            if value is not None:
                where.append(column)
                args.append(value)
        if flt.event_types is not None:
            where.append(f"event_type IN ({', '.join('?' * len(flt.event_types))})")
            args.extend(flt.event_types)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        order = "DESC" if descending else "ASC"
        # within one stream version order is position order, and the (stream_id, version) index gives it
        key = "version" if flt.stream_id is not None else "position"
        page_sql = f"SELECT {_EVENT_COLS} FROM es_events{clause} ORDER BY {key} {order} LIMIT ? OFFSET ?"  # noqa: S608 - fixed fragments, values bound
        count_sql = f"SELECT COUNT(*) FROM es_events{clause}"  # noqa: S608 - fixed fragments, values bound

        def body(db: sqlite3.Connection) -> QueryPage:
            rows = db.execute(page_sql, (*args, limit, offset)).fetchall()
            total = db.execute(count_sql, args).fetchone()[0]
            return QueryPage(events=_events_from_rows(rows), total_count=total)

        return await self._read("query", lambda db: self._tx(db, body, write=False))

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

        await self._write("save_snapshot", lambda db: self._tx(db, body))

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
        """``DELETE ... WHERE timestamp < cutoff`` (indexed), keeping each stream's version, in one transaction."""
        us = to_us(cutoff)

        def body(db: sqlite3.Connection) -> int:
            if stream_id is None:
                counts = db.execute(SQL_OLD_BY_STREAM, (us,)).fetchall()
            else:
                n = db.execute(SQL_OLD_IN_STREAM, (us, stream_id)).fetchone()[0]
                counts = [(stream_id, n)] if n else []
            if not counts:
                return 0
            for sid, n in counts:
                self._keep_floor(db, sid, n)
            if stream_id is None:
                db.execute(SQL_DELETE_OLD, (us,))
            else:
                db.execute(SQL_DELETE_OLD_IN_STREAM, (us, stream_id))
            return sum(n for _, n in counts)

        return await self._write("delete_events_before", lambda db: self._tx(db, body))

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """Delete the stream's events below ``before_version``; the version stays."""

        def body(db: sqlite3.Connection) -> int:
            if db.execute(SQL_STREAM_FLOOR, (stream_id,)).fetchone() is None:
                msg = f"stream {stream_id!r} does not exist"
                raise StreamNotFoundError(msg, stream_id=stream_id)
            n: int = db.execute(SQL_TRUNCATE_COUNT, (stream_id, before_version)).fetchone()[0]
            if n:
                self._keep_floor(db, stream_id, n)
                db.execute(SQL_TRUNCATE, (stream_id, before_version))
            return n

        return await self._write("truncate_stream", lambda db: self._tx(db, body))

    @staticmethod
    def _keep_floor(db: sqlite3.Connection, stream_id: str, deleting: int) -> None:
        """Before ``deleting`` events of a stream go: remember its version and newest event, count them."""
        floor = db.execute(SQL_STREAM_FLOOR, (stream_id,)).fetchone()
        if floor is None:  # events without a stream row do not happen; nothing to keep
            return
        version, last_id, updated = floor
        top = db.execute(SQL_STREAM_TOP, (stream_id,)).fetchone()
        if top is not None and top[0] >= version:
            version, last_id, updated = top
        db.execute(SQL_KEEP_FLOOR, (version, last_id, updated, deleting, stream_id))

    # ------------------------------------------------------------------ monitoring

    async def stats(self) -> ProviderStats:
        """Counts from SQL in one read transaction; storage size is ``page_count * page_size``."""

        def body(db: sqlite3.Connection) -> ProviderStats:
            total_events = db.execute("SELECT COUNT(*) FROM es_events").fetchone()[0]
            total_streams = db.execute(SQL_COUNT_STREAMS).fetchone()[0]
            total_snapshots = db.execute("SELECT COUNT(*) FROM es_snapshots").fetchone()[0]
            by_type = dict(db.execute("SELECT event_type, COUNT(*) FROM es_events GROUP BY event_type").fetchall())
            by_stream = dict(db.execute(SQL_EVENTS_BY_STREAM).fetchall())
            last = db.execute("SELECT timestamp FROM es_events ORDER BY position DESC LIMIT 1").fetchone()
            page_count = db.execute("PRAGMA page_count").fetchone()[0]
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            journal = db.execute("PRAGMA journal_mode").fetchone()[0]
            return ProviderStats(
                total_events=total_events,
                total_streams=total_streams,
                total_snapshots=total_snapshots,
                events_by_type=by_type,
                events_by_stream=by_stream,
                storage_size=page_count * page_size,
                last_event_at=from_us(last[0]) if last is not None else None,
                uptime_seconds=monotonic() - self._started,
                provider=self.name,
                extra={"path": self.path, "journal_mode": journal, "schema_version": SCHEMA_VERSION},
            )

        return await self._read("stats", lambda db: self._tx(db, body, write=False))

    async def health(self) -> HealthStatus:
        """Read the schema version through the reader; never raises."""
        start = time.perf_counter()
        try:
            version = await self._read("health", lambda db: db.execute("PRAGMA user_version").fetchone()[0])
        except Exception as e:  # noqa: BLE001 - health reports, never raises
            return HealthStatus(healthy=False, provider=self.name, message=str(e), details={"path": self.path})
        latency = (time.perf_counter() - start) * 1e3
        if version != SCHEMA_VERSION:
            return HealthStatus(
                healthy=False,
                provider=self.name,
                message=f"schema version {version}, expected {SCHEMA_VERSION}",
                details={"path": self.path},
                latency_ms=latency,
            )
        return HealthStatus(
            healthy=True, provider=self.name, message="ok", details={"path": self.path}, latency_ms=latency
        )

"""The SQLite provider: the embedded default store, one durable file and no server.

The package is split by role: :mod:`.schema` (tables and migrations), :mod:`.statements` (the SQL),
:mod:`.rows` (row conversions), :mod:`.appends` (append transactions), :mod:`.worker` (the connection's
thread), :mod:`.errors`, :mod:`.settings` and :mod:`.provider`.

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
whole, and a retried append with the same event ids is then an idempotent no-op. A caller of the sync
API runs its statements inline, in its own thread, under the worker's lock (no hop); nothing can
cancel them there, so the lock wait is cut to the manager's ``timeout`` when that is shorter than
``busy_timeout``.

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

from eventsource.sqlite.appends import append_sync
from eventsource.sqlite.errors import map_error
from eventsource.sqlite.provider import SqliteProvider
from eventsource.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from eventsource.sqlite.settings import SqliteSettings, path_from_url
from eventsource.sqlite.statements import (
    MAX_VERSION,
    SQL_APPEND_AT,
    SQL_APPEND_AT_SHORT,
    SQL_COUNT_STREAMS,
    SQL_CREATE_STREAM,
    SQL_DELETE_OLD,
    SQL_DELETE_OLD_IN_STREAM,
    SQL_DELETE_SNAPSHOT,
    SQL_DELETE_STREAM,
    SQL_DELETE_STREAM_EVENTS,
    SQL_DELETE_STREAM_SNAPSHOTS,
    SQL_EVENT_BY_ID,
    SQL_EVENTS_BY_STREAM,
    SQL_GET_SNAPSHOT,
    SQL_INSERT_EVENT,
    SQL_INSERT_EVENT_SHORT,
    SQL_INSERT_STREAM,
    SQL_KEEP_FLOOR,
    SQL_LAST_ROWID,
    SQL_LIST_STREAMS,
    SQL_OLD_BY_STREAM,
    SQL_OLD_IN_STREAM,
    SQL_POSITION_AT,
    SQL_READ_ALL,
    SQL_READ_BACKWARD,
    SQL_READ_FORWARD,
    SQL_SAVE_SNAPSHOT,
    SQL_STREAM_FLOOR,
    SQL_STREAM_INFO,
    SQL_STREAM_STATE,
    SQL_STREAM_TOP,
    SQL_TRUNCATE,
    SQL_TRUNCATE_COUNT,
)
from eventsource.sqlite.worker import _Worker as _Worker
from eventsource.timestamps import from_us, to_us

__all__ = [
    "MAX_VERSION",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQL_APPEND_AT",
    "SQL_APPEND_AT_SHORT",
    "SQL_COUNT_STREAMS",
    "SQL_CREATE_STREAM",
    "SQL_DELETE_OLD",
    "SQL_DELETE_OLD_IN_STREAM",
    "SQL_DELETE_SNAPSHOT",
    "SQL_DELETE_STREAM",
    "SQL_DELETE_STREAM_EVENTS",
    "SQL_DELETE_STREAM_SNAPSHOTS",
    "SQL_EVENTS_BY_STREAM",
    "SQL_EVENT_BY_ID",
    "SQL_GET_SNAPSHOT",
    "SQL_INSERT_EVENT",
    "SQL_INSERT_EVENT_SHORT",
    "SQL_INSERT_STREAM",
    "SQL_KEEP_FLOOR",
    "SQL_LAST_ROWID",
    "SQL_LIST_STREAMS",
    "SQL_OLD_BY_STREAM",
    "SQL_OLD_IN_STREAM",
    "SQL_POSITION_AT",
    "SQL_READ_ALL",
    "SQL_READ_BACKWARD",
    "SQL_READ_FORWARD",
    "SQL_SAVE_SNAPSHOT",
    "SQL_STREAM_FLOOR",
    "SQL_STREAM_INFO",
    "SQL_STREAM_STATE",
    "SQL_STREAM_TOP",
    "SQL_TRUNCATE",
    "SQL_TRUNCATE_COUNT",
    "SqliteProvider",
    "SqliteSettings",
    "append_sync",
    "from_us",
    "map_error",
    "path_from_url",
    "to_us",
]

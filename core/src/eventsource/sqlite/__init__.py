"""The SQLite provider: the embedded default store, one durable file and no server.

Split by role: :mod:`.schema` (tables and migrations), :mod:`.statements` (the SQL), :mod:`.rows` (row
conversions), :mod:`.appends` (append transactions), :mod:`.worker` (the connection's thread), :mod:`.calls`
(running statements on it), :mod:`.maintenance` (retention batches, stats), :mod:`.rewrite`, :mod:`.errors`,
:mod:`.settings` and :mod:`.provider`. Durability, global order, concurrency and threads: docs/internals/sqlite.md.
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

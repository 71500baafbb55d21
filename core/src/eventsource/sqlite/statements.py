"""Every SQL statement the SQLite provider sends, as constants (plain ``?`` placeholders only)."""

from __future__ import annotations

from eventsource.model import MAX_NUMBER

MAX_VERSION = MAX_NUMBER
"""The largest version SQLite holds (its integers are signed 64-bit: :data:`eventsource.model.MAX_NUMBER`)."""


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
SQL_STREAM_STATE = (
    "SELECT version_floor, (SELECT MAX(version) FROM es_events WHERE stream_id = ?) FROM es_streams WHERE stream_id = ?"
)
NEXT_POSITION = "(SELECT MAX(IFNULL((SELECT MAX(position) FROM es_events), 0), position) + 1 FROM es_head WHERE id = 1)"
"""The position an insert takes: above every stored one and every deleted one (``es_head``; see the schema's v3).
Two seeks on pages an append reads anyway, where ``AUTOINCREMENT`` wrote a ``sqlite_sequence`` page per commit."""
SQL_INSERT_EVENT = (
    "INSERT INTO es_events (position, event_id, stream_id, event_type, version, data, metadata, encoding, "  # noqa: S608
    "timestamp, correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type) "
    f"VALUES ({NEXT_POSITION}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_INSERT_EVENT_SHORT = (
    "INSERT INTO es_events (position, event_id, stream_id, event_type, version, data, metadata, encoding, "  # noqa: S608
    f"timestamp) VALUES ({NEXT_POSITION}, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_AT_VERSION = (
    "CASE WHEN (SELECT MAX(version_floor, IFNULL((SELECT MAX(version) FROM es_events WHERE stream_id = ?), 0)) "
    "FROM es_streams WHERE stream_id = ?) = ? - 1 THEN ? END"
)
"""The version column of :data:`SQL_APPEND_AT`: the version when the stream stands at the one before it, else NULL,
which the column's NOT NULL refuses. Parameters: stream id, stream id, version, version."""
SQL_APPEND_AT = (
    "INSERT INTO es_events (position, event_id, stream_id, event_type, version, data, metadata, encoding, "  # noqa: S608
    "timestamp, correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type) "
    f"VALUES ({NEXT_POSITION}, ?, ?, ?, {_AT_VERSION}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
"""One event at an exact version, in one autocommit statement: refused (``IntegrityError``, nothing written) unless
the stream is at ``version - 1`` (the same check as :data:`SQL_STREAM_STATE` + :func:`check_expected`), as it is
when the stream does not exist or the event id is taken. ``INSERT ... VALUES``: an ``INSERT ... SELECT`` that reads
the table it writes first copies its row into a temporary table. Parameters: the event's row, with
:data:`_AT_VERSION`'s four in place of the version."""
SQL_APPEND_AT_SHORT = (
    "INSERT INTO es_events (position, event_id, stream_id, event_type, version, data, metadata, encoding, "  # noqa: S608
    f"timestamp) VALUES ({NEXT_POSITION}, ?, ?, ?, {_AT_VERSION}, ?, ?, ?, ?)"
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

SQL_LIST_STREAMS_AFTER = (
    f"SELECT {_STREAM_COLS} FROM es_streams AS s WHERE s.stream_id > ? ORDER BY s.stream_id LIMIT ? OFFSET ?"  # noqa: S608
)
SQL_STREAM_COUNT = (
    "SELECT MAX(version_floor, IFNULL((SELECT MAX(version) FROM es_events WHERE stream_id = ?), 0)) - deleted_count "
    "FROM es_streams WHERE stream_id = ?"
)
SQL_VERSION_AT = "SELECT stream_id, version FROM es_events WHERE position = ?"
RETENTION_BATCH = 2000
"""Events one retention transaction deletes at most: writers get the lock between batches."""
BATCH_SECONDS = 0.00025
"""How long one retention transaction should hold the write lock (batch sizes adapt to it): about two one-event
appends' commits, since an append that finds a batch running waits for the rest of it (docs/costs.md)."""
# ordered by a unique key: each statement of a batch (count, uncount, delete) picks the same rows whatever its plan
OLD_BATCH = "position IN (SELECT position FROM es_events WHERE timestamp < ? ORDER BY timestamp, position LIMIT ?)"
OLD_BATCH_IN_STREAM = (
    "position IN (SELECT position FROM es_events WHERE stream_id = ? AND timestamp < ? ORDER BY version LIMIT ?)"
)
# a batch's streams in one read: how many of their events go, how many of those the counts hold, and the newest
# event (its version, id, time: kept as the floor when it goes); then one UPDATE per stream in one executemany
BATCH_STREAMS = (
    "SELECT g.stream_id, g.n, g.folded, t.version, t.event_id, t.timestamp FROM (SELECT stream_id, COUNT(*) AS n, "
    "SUM(position <= ?) AS folded FROM es_events WHERE {where} GROUP BY stream_id) AS g JOIN es_events AS t "
    "ON t.stream_id = g.stream_id AND t.version = (SELECT MAX(version) FROM es_events WHERE stream_id = g.stream_id)"
)
SQL_KEEP_FLOORS = (
    "UPDATE es_streams SET last_event_id = CASE WHEN ? >= version_floor THEN ? ELSE last_event_id END, "
    "updated_at = CASE WHEN ? >= version_floor THEN ? ELSE updated_at END, version_floor = MAX(version_floor, ?), "
    "deleted_count = deleted_count + ? WHERE stream_id = ?"
)
SQL_LOWEST_VERSION = "SELECT MIN(version) FROM es_events WHERE stream_id = ?"
SQL_HOLDS = "SELECT 1 FROM es_events WHERE stream_id = ? AND version = ? AND event_id = ?"

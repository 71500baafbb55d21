"""The SQLite schema: tables, indexes and the migrations that bring a file to :data:`SCHEMA_VERSION`."""

from __future__ import annotations

import sqlite3

from eventsource.errors import ProviderError
from eventsource.sqlite.errors import map_error

SCHEMA_VERSION = 3
"""``PRAGMA user_version`` of the current schema."""


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
# Version 2 (issue #17) only adds. Counts by type and stream that stats read instead of scanning: they cover the
# events up to the position in es_counted (a single row), and whatever lies above it is counted from the
# primary key on each read, so an append pays nothing; the provider folds that tail into the counts now and
# then (see eventsource.sqlite.counts), and every delete takes what it removes at or below the position off the
# counts in its own transaction. Indexes let every filter of ``query`` find a page without reading events that
# do not match; the partial ones cost an append nothing when the field is NULL. The counts are backfilled once.
_SCHEMA_V2 = (
    "CREATE TABLE IF NOT EXISTS es_type_counts (event_type TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS es_counted (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS es_stream_counts (stream_id TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS es_stream_counts_n ON es_stream_counts (n)",
    "INSERT INTO es_type_counts (event_type, n) SELECT event_type, COUNT(*) FROM es_events GROUP BY event_type",
    "INSERT INTO es_stream_counts (stream_id, n) SELECT stream_id, COUNT(*) FROM es_events GROUP BY stream_id",
    "INSERT INTO es_counted (id, position) SELECT 1, IFNULL(MAX(position), 0) FROM es_events",
    "CREATE INDEX IF NOT EXISTS es_events_type_position ON es_events (event_type, position)",
    "CREATE INDEX IF NOT EXISTS es_events_tenant ON es_events (tenant_id, position) WHERE tenant_id IS NOT NULL",
    (
        "CREATE INDEX IF NOT EXISTS es_events_correlation ON es_events (correlation_id, "
        "position) WHERE correlation_id IS NOT NULL"
    ),
    (
        "CREATE INDEX IF NOT EXISTS es_events_aggregate ON es_events (aggregate_id, "
        "position) WHERE aggregate_id IS NOT NULL"
    ),
    (
        "CREATE INDEX IF NOT EXISTS es_events_aggregate_type ON es_events (aggregate_type, "
        "position) WHERE aggregate_type IS NOT NULL"
    ),
)
_EVENTS_V3 = _SCHEMA_V1[1].replace("IF NOT EXISTS es_events", "es_events_v3").replace(" AUTOINCREMENT", "")
_COLUMNS = (
    "position, event_id, stream_id, event_type, version, data, metadata, encoding, timestamp, correlation_id, "
    "causation_id, user_id, tenant_id, aggregate_id, aggregate_type"
)
# Version 3 (issues #10, #12) drops AUTOINCREMENT, whose sqlite_sequence row every append rewrote (a page more in
# the WAL per commit). Positions still are never reused: es_head keeps the highest position a delete ever removed
# (a trigger, so every delete path is covered; it writes only when a delete reaches above it), and an insert
# takes MAX(highest stored, es_head) + 1 (see statements.NEXT_POSITION). The table is rebuilt once, in the
# migration's transaction, data and positions kept.
_SCHEMA_V3 = (
    "CREATE TABLE es_head (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
    (
        "INSERT INTO es_head (id, position) SELECT 1, MAX(IFNULL((SELECT seq FROM sqlite_sequence WHERE name = "
        "'es_events'), 0), IFNULL((SELECT MAX(position) FROM es_events), 0))"
    ),
    _EVENTS_V3,
    f"INSERT INTO es_events_v3 ({_COLUMNS}) SELECT {_COLUMNS} FROM es_events ORDER BY position",  # noqa: S608
    "DROP TABLE es_events",
    "ALTER TABLE es_events_v3 RENAME TO es_events",
    *(s for s in (*_SCHEMA_V1, *_SCHEMA_V2) if " INDEX " in s and " ON es_events (" in s),
    (
        "CREATE TRIGGER es_events_head AFTER DELETE ON es_events "
        "WHEN OLD.position > (SELECT position FROM es_head WHERE id = 1) "
        "BEGIN UPDATE es_head SET position = OLD.position WHERE id = 1; END"
    ),
    # A process still on the v2 code (it checks user_version only when it connects) inserts without a position:
    # the rowid, highest stored + 1, reuses a deleted newest position. Every insert below the head fails instead.
    (
        "CREATE TRIGGER es_events_never_reuse AFTER INSERT ON es_events "
        "WHEN NEW.position <= (SELECT position FROM es_head WHERE id = 1) "
        "BEGIN SELECT RAISE(ABORT, 'eventsource: this position was handed out before and deleted; a process on "
        "eventsource older than schema version 3 must be restarted on the new version'); END"
    ),
)
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}
"""Statements that bring a file from ``user_version = v - 1`` to ``v``."""


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` (each step in a write transaction; re-checked inside)."""
    try:
        current = db.execute("PRAGMA user_version").fetchone()[0]
        if current == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                msg = (
                    f"sqlite: {path} has schema version {current}, newer than this eventsource "
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
        raise map_error(e, "connect", path) from e

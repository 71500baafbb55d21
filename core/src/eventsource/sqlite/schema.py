"""The SQLite schema: tables, indexes and the migrations that bring a file to :data:`SCHEMA_VERSION`."""

from __future__ import annotations

import sqlite3

from eventsource.errors import ProviderError
from eventsource.sqlite.errors import map_error

SCHEMA_VERSION = 1
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
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1}
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

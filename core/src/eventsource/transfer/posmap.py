"""The position map a copy writes: each source event's global position and the target's position of its copy.

Global positions are each store's own, so a checkpoint taken on the source means nothing on the target until
it is translated. The map is a SQLite file (one row per event: source position, target position, stream id,
version, event id) committed after every page a copy writes, so a killed copy loses no entry it acknowledged.
A row is keyed by its stream and version: a source whose order is ``per_stream`` (Kafka) gives events of two
streams the same position, and an entry keyed by position alone lost one of them.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING

from eventsource.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventsource.checkpoints.base import Checkpoint

_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
        source    INTEGER NOT NULL,
        target    INTEGER NOT NULL,
        stream_id TEXT NOT NULL,
        version   INTEGER NOT NULL,
        event_id  TEXT,
        PRIMARY KEY (stream_id, version)
    )"""

_SCHEMA = (
    _TABLE.format(name="positions"),
    "CREATE INDEX IF NOT EXISTS positions_source ON positions (source)",
    "CREATE INDEX IF NOT EXISTS positions_target ON positions (target)",
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
)


_MAP_COLUMNS = frozenset({"source", "target", "stream_id", "version"})
"""The columns every map's ``positions`` table has (``event_id`` came later)."""

Entry = tuple[int, int, str, int, "str | None"]
"""One row of the map: source position, target position, stream id, version, event id (``None`` in older maps)."""


class PositionMap:
    """Source position -> target position of every copied event, in a SQLite file (``None``: in memory).

    :param path: the file; an existing map is extended (a re-run of the same copy), never cleared.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        db = None
        try:
            db = self.db = sqlite3.connect(self.path or ":memory:", isolation_level=None)
            self._check_is_map()
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            self._upgrade()
            for statement in _SCHEMA:
                self.db.execute(statement)
        except sqlite3.Error as e:
            if db is not None:  # (not a database, or a locked or read-only one): no connection left open
                db.close()
            msg = f"cannot open the position map {self.path!r}: {e}"
            raise ConfigurationError(msg, field="position_map") from e

    def _check_is_map(self) -> None:
        """Refuse a database that holds anything but a map (a store's own file named by mistake), before any change.

        The map's tables would go into it, and a table of its own named ``positions`` would get rows (and a column).
        """
        db = self.db
        tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        others = sorted(t for t in tables - {"positions", "cursors"} if not t.startswith("sqlite_"))
        columns = {str(r[1]) for r in db.execute("PRAGMA table_info(positions)")}
        if not others and (not columns or columns >= _MAP_COLUMNS):
            return
        db.close()
        held = f"tables {', '.join(others[:5])}" if others else "a positions table of another shape"
        msg = (
            f"{self.path!r} is not a position map (it holds {held}: a store's or an application's database?); "
            "refusing to write into it: name another file (--map FILE, position_map=)"
        )
        raise ConfigurationError(msg, field="position_map")

    def _upgrade(self) -> None:
        """Bring a map an earlier release wrote to this shape, its rows kept, in one transaction.

        Maps written before event ids were kept get the column (their rows are checked anew on a re-run); maps
        keyed by source position alone are re-keyed by stream and version. Such a map, written by a copy from
        a ``per_stream`` source, may have lost entries to a shared position: a re-run maps them again from the
        target (it compares every event the map lacks with the source's).
        """
        db = self.db
        info = list(db.execute("PRAGMA table_info(positions)"))
        if not info:
            return  # a new map
        keys = [str(row[1]) for row in sorted(info, key=lambda row: int(row[5])) if int(row[5]) > 0]
        if "event_id" not in {str(row[1]) for row in info}:
            db.execute("ALTER TABLE positions ADD COLUMN event_id TEXT")
        if keys == ["stream_id", "version"]:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DROP TABLE IF EXISTS positions_rekeyed")
            db.execute(_TABLE.format(name="positions_rekeyed"))
            db.execute(
                "INSERT OR REPLACE INTO positions_rekeyed (source, target, stream_id, version, event_id) "
                "SELECT source, target, stream_id, version, event_id FROM positions ORDER BY source"
            )
            db.execute("DROP TABLE positions")
            db.execute("ALTER TABLE positions_rekeyed RENAME TO positions")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def record(self, entries: Iterable[Entry], cursor: tuple[str, int] | None = None) -> None:
        """Store ``(source position, target position, stream id, version, event id)`` rows in one durable commit.

        ``cursor`` (a name and a source position) is stored in the same commit: where a re-run may resume.
        """
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO positions (source, target, stream_id, version, event_id) "
                "VALUES (?, ?, ?, ?, ?)",
                entries,
            )
            if cursor is not None:
                db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", cursor)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def cursor(self, name: str) -> int | None:
        """The source position a copy named ``name`` has written everything up to, if it recorded one."""
        row = self.db.execute("SELECT position FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def highest_version(self, stream_id: str) -> int:
        """The highest version of ``stream_id`` the map holds (0: none)."""
        row = self.db.execute("SELECT MAX(version) FROM positions WHERE stream_id = ?", (stream_id,)).fetchone()
        return int(row[0] or 0)

    def target_of_version(self, stream_id: str, version: int) -> int | None:
        """The target position of the copy of ``stream_id`` at ``version``, if the map holds it."""
        row = self.db.execute(
            "SELECT target FROM positions WHERE stream_id = ? AND version = ?", (stream_id, version)
        ).fetchone()
        return None if row is None else int(row[0])

    def last(self) -> tuple[int, str, int] | None:
        """``(target position, stream id, version)`` of the entry with the highest source position (``None``: empty)."""
        entry = self.entry()
        return None if entry is None else (entry[1], entry[2], entry[3])

    def entry(self, source_position: int | None = None) -> Entry | None:
        """The entry of the event at ``source_position`` (``None``: the last one), if the map holds it.

        Of several events at one position (a ``per_stream`` source), the one with the highest target position.
        """
        columns = "SELECT source, target, stream_id, version, event_id FROM positions"
        if source_position is None:
            row = self.db.execute(f"{columns} ORDER BY source DESC, target DESC LIMIT 1").fetchone()
        else:
            query = f"{columns} WHERE source = ? ORDER BY target DESC LIMIT 1"
            row = self.db.execute(query, (source_position,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]), int(row[3]), row[4])

    def event_ids(self, stream_id: str, low: int, high: int) -> dict[int, str | None]:
        """Version -> event id (``None``: not recorded) of the copied events of ``stream_id`` in ``low..high``."""
        rows = self.db.execute(
            "SELECT version, event_id FROM positions WHERE stream_id = ? AND version BETWEEN ? AND ?",
            (stream_id, low, high),
        )
        return {int(version): event_id for version, event_id in rows}

    def target(self, source_position: int, stream_id: str | None = None) -> int | None:
        """The target position of the event at ``source_position`` (of ``stream_id``), if it was copied.

        A source whose order is ``per_stream`` (Kafka) may hold events of several streams at one position: then
        ``stream_id`` says which, and without it the call is refused rather than answered for any of them.
        """
        query, args = "SELECT target FROM positions WHERE source = ?", list[int | str]([source_position])
        if stream_id is not None:
            query += " AND stream_id = ?"
            args.append(stream_id)
        rows = self.db.execute(f"{query} LIMIT 2", args).fetchall()
        if len(rows) > 1:
            msg = (
                f"source position {source_position} is held by events of several streams (a source whose global "
                "order is per_stream): name the stream (stream_id=)"
            )
            raise ValidationError(msg, field="stream_id")
        return int(rows[0][0]) if rows else None

    def translate(self, position: int) -> int:
        """A target checkpoint for a source checkpoint: "handled every source event up to ``position``".

        The answer is the highest target position such that every copied event at or below it came from a
        source position at or below ``position``: nothing is skipped; an event the copy wrote out of source
        order may be delivered again (handlers are idempotent by event id). 0 when none qualifies.
        """
        first_after = self.db.execute("SELECT MIN(target) FROM positions WHERE source > ?", (position,)).fetchone()[0]
        if first_after is None:
            row = self.db.execute("SELECT MAX(target) FROM positions").fetchone()
        else:
            row = self.db.execute("SELECT MAX(target) FROM positions WHERE target < ?", (first_after,)).fetchone()
        return int(row[0] or 0)

    def translate_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """``checkpoint`` for the target store: a global position translated, a stream version kept as it is.

        A filtered subscription's scope (``all filter=...``) counts global positions too: translated like ``all``.
        """
        if checkpoint.scope.startswith("stream:"):
            return checkpoint  # versions are kept by the copy
        position = self.translate(checkpoint.position)
        # the event the checkpoint names (a resume checks the store holds it there) is the one the copy wrote at
        # that target position, often not the one counted at the source's (a copy writes stream by stream)
        row = self.db.execute("SELECT event_id FROM positions WHERE target = ?", (position,)).fetchone()
        event_id = row[0] if row is not None and position > 0 else None
        return replace(checkpoint, position=position, event_id=event_id if checkpoint.event_id is not None else None)

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM positions").fetchone()[0])

    def close(self) -> None:
        """Close the file."""
        self.db.close()

"""``sqlite:///file.db`` checkpoints: a table ``es_checkpoints`` in a SQLite file (the event file or another).

Each call opens a short-lived connection on a worker thread; ``put`` and ``delete`` check then write inside
one ``BEGIN IMMEDIATE`` transaction, so two processes committing the same checkpoint never move it backwards,
and ``get`` and ``list`` read in a plain transaction, which waits for no writer of the file.
An in-memory URL (``sqlite:///:memory:``) is refused: its table would vanish with each connection. With
``create_store`` off the store creates and alters nothing: a missing file or table is refused
(:class:`~eventsource.errors.StoreNotFoundError`), and a table an older release made is read as it is.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from eventsource.checkpoints.base import Checkpoint, CheckpointStore, check_name, event_id_of
from eventsource.create_store import store_not_found
from eventsource.errors import ConfigurationError, ProviderUnavailableError, StoreNotFoundError
from eventsource.sqlite.connection import check_path
from eventsource.sqlite.errors import map_error
from eventsource.sqlite.settings import path_from_url

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

SCHEMA = """CREATE TABLE IF NOT EXISTS es_checkpoints (
    name TEXT NOT NULL, source TEXT NOT NULL, scope TEXT NOT NULL, position INTEGER NOT NULL,
    updated_at TEXT NOT NULL, anchor TEXT, PRIMARY KEY (name, source))"""
UPSERT = (
    "INSERT INTO es_checkpoints (name, source, scope, position, updated_at, anchor) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (name, source) DO UPDATE SET scope = excluded.scope, position = excluded.position, "
    "updated_at = excluded.updated_at, anchor = excluded.anchor"
)
"""Write one checkpoint (its columns in order: :func:`columns`)."""


def create_table(db: sqlite3.Connection) -> None:
    """Create ``es_checkpoints`` if missing; one an older release made gets the ``anchor`` column (NULL: unchecked)."""
    db.execute(SCHEMA)
    if "anchor" not in {r[1] for r in db.execute("PRAGMA table_info(es_checkpoints)")}:
        try:
            db.execute("ALTER TABLE es_checkpoints ADD COLUMN anchor TEXT")
        except sqlite3.OperationalError as e:  # another process added it first
            if "duplicate column" not in str(e):
                raise


def has_table(db: sqlite3.Connection) -> bool | None:
    """Whether ``es_checkpoints`` has its ``anchor`` column; ``None`` when there is no such table."""
    names = {r[1] for r in db.execute("PRAGMA table_info(es_checkpoints)")}
    return None if not names else "anchor" in names


def columns(cp: Checkpoint, updated_at: datetime | None) -> tuple[object, ...]:
    """The :data:`UPSERT` parameters of ``cp`` stored at ``updated_at``."""
    return (cp.name, cp.source, cp.scope, cp.position, updated_at.isoformat() if updated_at else "", cp.anchor)


class SqliteCheckpointStore(CheckpointStore):
    """Checkpoints in the ``es_checkpoints`` table of a SQLite file."""

    kind = "sqlite"

    def __init__(self, url: str, *, create_store: bool = True) -> None:
        super().__init__(url, create_store=create_store)
        self.path = path_from_url(url)
        if self.path == ":memory:":
            msg = "sqlite checkpoints need a file (an in-memory database vanishes with its connection)"
            raise ConfigurationError(msg, field="url")
        self._ready = False
        self._anchor = "anchor"
        """What reads select as the anchor: ``NULL`` on an older table read as it is (``create_store`` off)."""

    def _open(self) -> sqlite3.Connection:
        """A connection to the file; with ``create_store`` off one that never creates it (``mode=rw``)."""
        check_path(self.path, "checkpoint")
        if self.create_store:
            folder = Path(self.path).absolute().parent
            if not folder.is_dir():
                msg = f"sqlite checkpoint on {self.path}: the folder {folder} does not exist: create it first"
                raise ProviderUnavailableError(msg, operation="checkpoint")
            return sqlite3.connect(self.path, timeout=30, isolation_level=None)
        if not Path(self.path).exists():
            raise self._missing(f"no file {self.path!r}")
        uri = Path(self.path).absolute().as_uri() + "?mode=rw"
        return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)

    def _missing(self, why: str, *, outdated: bool = False) -> StoreNotFoundError:
        what = "column es_checkpoints.anchor" if outdated else "table es_checkpoints"
        return store_not_found(f"{self.display_url} (checkpoints)", why, missing=[what], outdated=outdated)

    def _check(self, db: sqlite3.Connection) -> None:
        """``create_store`` off: the table must be there; an older one (no ``anchor``) is read as it is."""
        found = has_table(db)
        if found is None:
            raise self._missing(f"{self.path!r} has no table es_checkpoints")
        if not found:
            self._anchor = "NULL"

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """``fn`` in one transaction; a ``sqlite3`` failure becomes the typed error (busy: a timeout).

        A write one unless ``write`` is false: a reader never waits for a writer of the file.
        """
        try:
            db = self._open()
        except sqlite3.Error as e:
            raise map_error(e, "checkpoint", self.path) from e
        try:
            return self._in(db, fn, write=write)
        except (sqlite3.Error, OSError) as e:
            raise map_error(e, "checkpoint", self.path) from e
        finally:
            db.close()

    def _in(self, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        if not self._ready:
            if self.create_store:
                create_table(db)
            else:
                self._check(db)
            self._ready = True
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            out = fn(db)
            db.execute("COMMIT")
            return out
        finally:
            if db.in_transaction:  # fn failed, or COMMIT did
                db.execute("ROLLBACK")

    async def connect(self) -> None:
        """Create the table if it is missing (with ``create_store`` off: refuse a missing file or table)."""
        await asyncio.to_thread(self._run, lambda _db: None)

    async def get(self, name: str, source: str) -> Checkpoint | None:
        """The stored checkpoint, or ``None``."""
        key = (check_name("name", name), check_name("source", source))
        return await asyncio.to_thread(lambda: self._run(lambda db: read(db, *key, self._anchor), write=False))

    async def put(self, checkpoint: Checkpoint, *, force: bool = False) -> Checkpoint:
        """Check and write in one write transaction."""
        cp = self.checked(checkpoint)

        def body(db: sqlite3.Connection) -> Checkpoint:
            if self._anchor != "anchor":  # an older table, read as it is: the anchor has no column to go to
                why = f"{self.path!r} holds es_checkpoints as an older release made it, without its anchor column"
                raise self._missing(why, outdated=True)
            self.check_move(read(db, cp.name, cp.source), cp, force=force)
            db.execute(UPSERT, columns(cp, cp.updated_at))
            return cp

        return await asyncio.to_thread(self._run, body)

    async def delete(self, name: str, source: str) -> bool:
        """Remove it; whether there was one."""
        key = (check_name("name", name), check_name("source", source))
        return await asyncio.to_thread(
            self._run,
            lambda db: db.execute("DELETE FROM es_checkpoints WHERE name = ? AND source = ?", key).rowcount > 0,
        )

    async def list(self, source: str | None = None) -> list[Checkpoint]:
        """Every checkpoint (of ``source`` only, when given), by name then source."""
        where, args = ("WHERE source = ?", (check_name("source", source),)) if source is not None else ("", ())

        def body(db: sqlite3.Connection) -> list[Checkpoint]:
            rows = db.execute(
                f"SELECT name, source, scope, position, updated_at, {self._anchor} FROM es_checkpoints {where} "  # noqa: S608
                "ORDER BY name, source",
                args,
            ).fetchall()
            return [row(r) for r in rows]

        return await asyncio.to_thread(lambda: self._run(body, write=False))


def row(r: tuple[str, str, str, int, str, str | None]) -> Checkpoint:
    """A checkpoint from its columns (``SELECT name, source, scope, position, updated_at, anchor``)."""
    at = datetime.fromisoformat(r[4]) if r[4] else None
    return Checkpoint(r[0], r[1], r[2], int(r[3]), at, event_id_of(r[5], int(r[3])))


def read(db: sqlite3.Connection, name: str, source: str, anchor: str = "anchor") -> Checkpoint | None:
    """The checkpoint stored in ``db`` for ``name`` on ``source``, or ``None`` (``anchor``: its column, or NULL)."""
    found = db.execute(
        f"SELECT name, source, scope, position, updated_at, {anchor} FROM es_checkpoints "  # noqa: S608
        "WHERE name = ? AND source = ?",
        (name, source),
    ).fetchone()
    return None if found is None else row(found)

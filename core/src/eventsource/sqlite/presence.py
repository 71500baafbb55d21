"""Whether a SQLite file holds an eventsource store at the current schema, found without changing the file.

The provider with ``create_store`` off asks :func:`check_store` before it opens a file: a missing file, an empty
database, another application's database (tables, none of which is eventsource's), a store at an older schema
version or not in WAL mode is refused with :class:`~eventsource.errors.StoreNotFoundError`, where opening would
create a file, add tables, migrate or switch the journal. The CLI's read-only checks use :func:`tables` too.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from eventsource.create_store import store_not_found
from eventsource.errors import ProviderError

EVENTS_TABLE = "es_events"
"""The table every eventsource SQLite store has (every schema version)."""
SHOWN_TABLES = 5
"""How many of a foreign database's tables a refusal names."""


def tables(path: str) -> list[str] | None:
    """The table names of the database at ``path``; ``None`` if it cannot be read here (or is not a database)."""
    found = _look(path)
    return None if found is None else found[0]


def _look(path: str) -> tuple[list[str], int, str] | None:
    """The tables, ``user_version`` and journal mode of the database at ``path``; ``None`` if it cannot be read.

    Opened read-write (``mode=rw`` never creates a file) and only read: the connection, the last one on the
    file, removes the ``-wal``/``-shm`` files a WAL database gets on opening when it closes, where a read-only
    one would leave them behind.
    """
    uri = Path(path).absolute().as_uri() + "?mode=rw"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        with contextlib.closing(db):
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            mode = str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    except sqlite3.Error:  # not a database, locked...: the provider's error says it, and changes nothing either
        return None
    return [str(name) for (name,) in rows if not str(name).startswith("sqlite_")], version, mode


def foreign(path: str, names: list[str]) -> str | None:
    """Why a database holding the tables ``names`` holds no eventsource store; ``None`` when it may hold one."""
    if EVENTS_TABLE in names:
        return None
    if not names:
        return f"{path!r} is an empty SQLite database"
    more = len(names) - SHOWN_TABLES
    shown = ", ".join(names[:SHOWN_TABLES]) + (f" and {more} more" if more > 0 else "")
    return f"{path!r} is a SQLite database without eventsource's tables (it holds {shown})"


def check_store(path: str, schema_version: int) -> None:
    """Refuse (``StoreNotFoundError``) a file that holds no store at ``schema_version`` in WAL mode.

    A file that cannot be looked at here (locked, not a database) passes: opening it fails as it would anyway.
    """
    where = f"sqlite:///{path}"
    if not Path(path).exists():
        raise store_not_found(where, f"no file {path!r}", missing=[path])
    found = _look(path)
    if found is None:
        return
    names, version, mode = found
    why = foreign(path, names)
    if why is not None:
        raise store_not_found(where, why, missing=[f"table {EVENTS_TABLE}"])
    if version > schema_version:
        msg = f"sqlite: {path} has schema version {version}, newer than this eventsource ({schema_version})"
        msg += "; upgrade eventsource"
        raise ProviderError(msg, provider="sqlite")
    if version < schema_version:
        why = f"its schema is at version {version}, this eventsource uses version {schema_version}"
        raise store_not_found(where, why, missing=[f"schema version {schema_version}"], outdated=True)
    if mode != "wal":
        why = f"its journal mode is {mode!r}, not 'wal' (set when the store is created)"
        raise store_not_found(where, why, missing=["journal_mode=wal"], outdated=True)

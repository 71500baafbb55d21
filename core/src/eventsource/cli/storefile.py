"""Whether a ``sqlite://`` URL names a store that a command which only reads may open.

Opening a SQLite store creates what is missing: SQLite makes a database where there is no file, and the
provider creates its tables in whatever database it is given (and turns on WAL mode). A command that only
reads (``read``, ``stats``, ``export --from``...) therefore looks at the file first: a missing file, or a
database holding tables none of which is eventsource's (another application's database, named by mistake) or
none at all, holds no store, and the command says so and leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from eventsource.errors import ConfigurationError

SQLITE_PATHS = "a sqlite:/// path is relative to the working directory, sqlite://// is absolute"
EVENTS_TABLE = "es_events"
"""The table every eventsource SQLite store has (every schema version)."""
SHOWN_TABLES = 5
"""How many of a foreign database's tables a refusal names."""


def _path(url: str) -> str | None:
    """The file a ``sqlite://`` URL names; ``None`` for another URL, ``:memory:`` or a URL the provider refuses."""
    if not url.lower().startswith("sqlite:"):
        return None
    from eventsource.sqlite.settings import path_from_url

    try:
        path = path_from_url(url)
    except ConfigurationError:
        return None  # the provider names what is wrong with the URL
    return None if path == ":memory:" else path


def missing_sqlite_file(url: str) -> str | None:
    """The path a ``sqlite://`` URL names when no such file exists (opening it would create an empty store)."""
    path = _path(url)
    return path if path is not None and not Path(path).exists() else None


def foreign_sqlite_file(url: str) -> str | None:
    """Why the existing file a ``sqlite://`` URL names holds no eventsource store; ``None`` when it may hold one.

    ``None`` too for any other URL, a missing file (see :func:`missing_sqlite_file`) and a file that cannot be
    looked at here (locked, unreadable): the provider then says what is wrong.
    """
    path = _path(url)
    if path is None or not Path(path).exists():
        return None
    tables = _tables(path)
    if tables is None or EVENTS_TABLE in tables:
        return None
    if not tables:
        return f"{path!r} is an empty SQLite database"
    more = len(tables) - SHOWN_TABLES
    shown = ", ".join(tables[:SHOWN_TABLES]) + (f" and {more} more" if more > 0 else "")
    return f"{path!r} is a SQLite database without eventsource's tables (it holds {shown})"


def _tables(path: str) -> list[str] | None:
    """The table names of the database at ``path``; ``None`` if it cannot be read here (or is not a database).

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
    except sqlite3.Error:  # not a database, locked...: the provider's error says it, and changes nothing either
        return None
    return [str(name) for (name,) in rows if not str(name).startswith("sqlite_")]

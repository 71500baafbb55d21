"""Whether a ``sqlite://`` URL names a store that a command which only reads may open.

Opening a SQLite store creates what is missing: SQLite makes a database where there is no file, and the
provider creates its tables in whatever database it is given (and turns on WAL mode). A command that only
reads (``read``, ``stats``, ``export --from``...) therefore looks at the file first: a missing file, or a
database holding tables none of which is eventsource's (another application's database, named by mistake) or
none at all, holds no store, and the command says so and leaves the file as it was.
"""

from __future__ import annotations

from pathlib import Path

from eventsource.errors import ConfigurationError

SQLITE_PATHS = "a sqlite:/// path is relative to the working directory, sqlite://// is absolute"


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
    from eventsource.sqlite.presence import foreign, tables

    path = _path(url)
    if path is None or not Path(path).exists():
        return None
    names = tables(path)  # (the provider's own look at the file, which changes nothing)
    return None if names is None else foreign(path, names)

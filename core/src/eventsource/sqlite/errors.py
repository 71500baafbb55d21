"""The one place ``sqlite3`` errors become typed eventsource errors."""

from __future__ import annotations

import sqlite3

from eventsource.errors import (
    DuplicateEventError,
    EventSourceError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED"}
READ_ONLY = (
    "the database is read-only for this process (the file, its folder, where SQLite makes the -wal and -shm "
    "files, or the file system): give this user write permission on the file and its folder (or mount the file "
    "system read-write), then retry"
)
_ADVICE = {  # what to do, by error family
    "SQLITE_READONLY": f"nothing was written: {READ_ONLY}",
    "SQLITE_FULL": "nothing was written: the disk (or this user's quota) is full: free space on it, then retry",
    "SQLITE_IOERR": (
        "the file system refused a read or write (a full disk or quota, a file size limit, a failing disk, or a "
        "file system gone read-only): free space or repair the file system, then retry"
    ),
    "SQLITE_CORRUPT": (
        "the database file is corrupt (overwritten, truncated or damaged on disk): stop writing to it and restore "
        "it from a backup (the sqlite3 shell's .recover saves what is still readable)"
    ),
    "SQLITE_NOTADB": (
        "it is not a SQLite database, or its header was overwritten: check that the URL names the store's file, "
        "or restore the file from a backup"
    ),
}
_UNAVAILABLE = {"SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_NOTADB", "SQLITE_PERM", "SQLITE_AUTH", "SQLITE_FULL"}


def map_error(e: BaseException, op: str, path: str) -> EventSourceError:
    """The typed error for a ``sqlite3`` failure (the provider's one mapping point)."""
    if isinstance(e, EventSourceError):
        return e
    name = (getattr(e, "sqlite_errorname", None) or "").split("_")
    family = "_".join(name[:2]) if len(name) >= 2 else ""  # noqa: PLR2004 - SQLITE_BUSY_SNAPSHOT -> SQLITE_BUSY
    where = f"sqlite {op} on {path}"
    if family in _BUSY or "database is locked" in str(e):
        return ProviderTimeoutError(
            f"{where}: the database is busy (another connection held the write lock past busy_timeout)",
            provider="sqlite",
            operation=op,
        )
    if family in _ADVICE or family in _UNAVAILABLE or isinstance(e, (OSError, sqlite3.InterfaceError)):
        what = _ADVICE.get(family, "cannot use the database file")
        kind = ProviderError if family == "SQLITE_CORRUPT" else ProviderUnavailableError  # (no retry mends that)
        return kind(f"{where}: {what}: {e}", provider="sqlite", operation=op)
    if isinstance(e, sqlite3.ProgrammingError) and "closed" in str(e):
        return ProviderUnavailableError(f"{where}: the connection is closed", provider="sqlite", operation=op)
    if isinstance(e, sqlite3.IntegrityError) and "event_id" in str(e):
        return DuplicateEventError(f"{where}: an event id of the batch is already stored", provider="sqlite")
    return ProviderError(f"{where} failed: {type(e).__name__}: {e}", provider="sqlite", operation=op)

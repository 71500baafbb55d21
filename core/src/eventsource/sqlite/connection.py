"""Opening a SQLite connection the way the provider needs it: WAL, the configured durability, typed errors."""

from __future__ import annotations

import math
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderUnavailableError
from eventsource.sqlite.errors import map_error

if TYPE_CHECKING:
    from collections.abc import Mapping


def open_connection(path: str, settings: Mapping[str, Any], *, memory: bool, create: bool = True) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with the configured ``synchronous`` level; errors come typed.

    ``create=False`` opens only a database that exists (no folder nor file is made): a connection that
    must reach the provider's database, not a new empty one where it went missing.
    """
    db = None
    if not memory:
        check_path(path)
    try:
        if not memory and create:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            path if create or memory else Path(path).absolute().as_uri() + "?mode=rw",
            uri=not create and not memory,
            timeout=settings["busy_timeout"],
            isolation_level=None,
            check_same_thread=False,  # an inline sync caller uses it too, under the worker's lock
            cached_statements=settings["cached_statements"],
        )
        if not memory:
            mode = switch_to_wal(db, settings["busy_timeout"])
            if str(mode).lower() != "wal":
                db.close()
                msg = f"sqlite: cannot switch {path} to WAL mode (got {mode})"
                raise ProviderUnavailableError(msg, provider="sqlite")
        db.execute(f"PRAGMA synchronous = {'FULL' if settings['synchronous'] == 'full' else 'NORMAL'}")
        db.execute("PRAGMA foreign_keys = OFF")
    except (sqlite3.Error, OSError) as e:  # OSError: the directory cannot be made (a file in the way, no permission)
        if db is not None:  # (a file that is not a database): the connection is closed, not left to the collector
            db.close()
        raise map_error(e, "connect", path) from e
    return db


def check_path(path: str, op: str = "connect") -> None:
    """Refuse, before anything is made, a path that cannot be a database file, saying what it is."""
    where = f"sqlite {op} on {path}"
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:  # a symlink loop, a name too long, a folder on the way not searchable...
        raise ProviderUnavailableError(f"{where}: {e.strerror}", provider="sqlite", operation=op) from e
    if mode is not None and stat.S_ISDIR(mode):
        msg = f"{where}: it is a directory: name a database file (sqlite:///{path}/events.db, say)"
        raise ProviderUnavailableError(msg, provider="sqlite", operation=op)
    if mode is not None and not stat.S_ISREG(mode):
        msg = f"{where}: it is not a regular file (a FIFO, socket or device): name a database file"
        raise ProviderUnavailableError(msg, provider="sqlite", operation=op)
    try:
        longest = os.pathconf(p.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # (a folder still to be made; no pathconf on Windows)
        longest = 255
    if len(os.fsencode(p.name)) + len("-wal") > longest:
        msg = (
            f"{where}: the file name is too long: SQLite adds '-wal' and '-shm' to it, and a name here holds at "
            f"most {longest} bytes: use a name of at most {longest - 4}"
        )
        raise ProviderUnavailableError(msg, provider="sqlite", operation=op)


def switch_to_wal(db: sqlite3.Connection, busy_timeout: float) -> str:
    """Switch ``db``'s file to WAL (once per file) and return the journal mode now in force.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once, without
    consulting the busy handler, while another connection is opening or switching the same file
    (several processes starting together). So the current mode is read first (WAL persists in the
    file, so later opens need no lock), and the switch is retried until ``busy_timeout``.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            mode = str(db.execute("PRAGMA journal_mode").fetchone()[0])
            if mode.lower() == "wal":
                return mode
            return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


LOOK_EVERY = 0.05
"""Seconds between two looks at the files before a write (a look is three ``stat`` calls, a few microseconds:
paid on every write it was a tenth of a one-event append). A write within this time of a swap may still go to
the old files; every write after it is refused."""


class OpenedFiles:
    """The device and inode of a database file, its ``-wal`` and its ``-shm``, by absolute path (``None``: not there).

    The ``-shm`` holds the WAL's index and its locks: another process opening a new one writes the same WAL.
    """

    __slots__ = ("files", "ids", "next_look", "path", "reads")

    def __init__(self, path: str, *, reads: bool = False) -> None:
        """The files at ``path`` now (a connection of ours holds them open, so SQLite never removes them).

        ``reads``: the reader connection's, whose refusals say a read (not a write) was refused.
        """
        self.path = str(Path(path).absolute())  # (a later chdir does not move it)
        self.reads = reads
        self.files = (self.path, self.path + "-wal", self.path + "-shm")
        self.ids = self._now()
        self.next_look = time.monotonic() + LOOK_EVERY

    def _now(self) -> tuple[tuple[int, int] | None, ...]:
        return tuple(_identity(f) for f in self.files)

    def check(self, op: str, *, always: bool = False) -> None:
        """Refuse a write once the files at the path are not the ones the connection holds open.

        The connection would commit into a file that is no longer there (removed, or another file renamed
        over it): acknowledged, then lost when the process ends (SQLite does not checkpoint a moved file at
        close), or its WAL applied to the file now at the path. Nothing of the write is done. Looked at once
        every :data:`LOOK_EVERY` seconds (``always``: now); once a look finds them changed, at every write.
        """
        now = time.monotonic()
        if not always and now < self.next_look:
            return
        if self.moved():
            self.next_look = -math.inf  # from now on every write looks (and is refused while they stay moved)
            why = (
                "nothing was read (the data a read now gets is that of a file no longer at that path)"
                if self.reads
                else "nothing was written (a write now could go to a file no longer at that path and be lost, or "
                "collide with another process's)"
            )
            msg = (
                f"sqlite {op} on {self.path}: the database file, its -wal or its -shm was moved, removed or replaced "
                f"while this provider had it open; {why}. Put the files back, or close the manager and connect "
                "again to use the database now at that path"
            )
            raise ProviderUnavailableError(msg, provider="sqlite", operation=op)
        self.next_look = now + LOOK_EVERY

    def moved(self) -> bool:
        """Whether the files at the path now are not the ones the connection holds open (looked at now)."""
        return self._now() != self.ids


def settle_moved(db: sqlite3.Connection, files: OpenedFiles | None) -> None:
    """Before ``db`` closes: if its files were moved away, copy its WAL into the database file it holds open.

    SQLite names the -wal after the path: the moved database's WAL stays there (SQLite does not checkpoint a
    moved file at close) and the next connection to the file now at the path applied it to that file, whose
    own data it then hid, while the moved file lost every change still in it. A TRUNCATE checkpoint writes
    those pages into the moved file and leaves the WAL at the path empty. A failure leaves things as they were.
    """
    if files is None or not files.moved():
        return
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # noqa: PTH116 - on every write: a Path costs five times as much
    except OSError:
        return None
    return st.st_dev, st.st_ino

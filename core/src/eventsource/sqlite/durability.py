"""The durability audit of a SQLite store: the writer connection's pragmas that can lose acknowledged writes.

Read from the connection the provider writes through (``PRAGMA synchronous`` and ``journal_mode``), not from
the settings: a pragma set on the connection after it was opened is what counts. The file system the file
lives on comes from the kernel's mount table (:func:`filesystem`): a RAM one loses everything at reboot.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from eventsource.manager.monitoring import risk

SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def audit(db: sqlite3.Connection, *, memory: bool) -> list[dict[str, str]]:
    """Every pragma of ``db`` under which a committed (acknowledged) transaction can be lost."""
    if memory:
        return [risk("database", ":memory:", "connection", "an in-memory database is lost when the process exits")]
    level = int(db.execute("PRAGMA synchronous").fetchone()[0])
    journal = str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    out = []
    name = SYNCHRONOUS.get(level, str(level))
    if level == 0:
        out.append(
            risk("synchronous", name, "connection", "nothing is synced: an OS crash or power loss can lose commits")
        )
    elif level == 1:
        why = (
            "in WAL mode, the last commits before an OS crash or power loss can roll back"
            if journal == "wal"
            else "outside WAL mode, an OS crash or power loss at the wrong moment can corrupt the file"
        )
        out.append(risk("synchronous", name, "connection", why))
    if journal in ("memory", "off"):
        out.append(
            risk(
                "journal_mode",
                journal.upper(),
                "connection",
                "no journal on disk: a crash mid-commit corrupts the file",
            )
        )
    return out


RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
MOUNTS = "/proc/self/mounts"


def filesystem(path: str, mounts: str = MOUNTS) -> tuple[list[dict[str, str]], list[str]]:
    """A risk when ``path``'s file system keeps it in RAM (tmpfs, ramfs); unread where no mount table is readable.

    The mount point is the longest one containing the file's resolved directory (``mounts``: the
    ``/proc/self/mounts`` format, octal escapes in mount points undone).
    """
    where = str(Path(path).resolve().parent)
    try:
        with Path(mounts).open(encoding="utf-8", errors="replace") as f:
            table = [line.split()[1:3] for line in f if len(line.split()) >= 3]  # noqa: PLR2004 - dev, point, type
    except OSError as e:
        return [], [f"file system of {where}: {mounts} unreadable ({e.strerror or e})"]
    best, kind = "", ""
    for point, fstype in table:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)  # noqa: PLW2901 - unescaped
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fstype
    if kind in RAM_FILESYSTEMS:
        why = "the file system keeps the database in RAM: every event is lost at reboot or power loss"
        return [risk("filesystem", kind, f"file system at {best}", why)], []
    return [], []


def links(path: str) -> list[dict[str, str]]:
    """A risk when the database file has more than one name (hard links).

    SQLite names the ``-wal`` and ``-shm`` after the name it opened: a connection through another name writes
    another WAL into the same file, and commits are lost or the file corrupted
    (https://sqlite.org/howtocorrupt.html, "multiple links to the same file").
    """
    try:
        n = Path(path).stat().st_nlink
    except OSError:
        return []
    if n <= 1:
        return []
    why = "another name of the file opens another WAL on it: commits can be lost; remove the other links"
    return [risk("hard_links", str(n), "file", why)]

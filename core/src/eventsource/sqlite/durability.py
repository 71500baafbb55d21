"""The durability audit of a SQLite store: the writer connection's pragmas that can lose acknowledged writes.

Read from the connection the provider writes through (``PRAGMA synchronous`` and ``journal_mode``), not from
the settings: a pragma set on the connection after it was opened is what counts.
"""

from __future__ import annotations

import sqlite3

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

"""Counts by event type that stats read without scanning events, at no cost to an append.

``es_type_counts`` holds the counts of every event at or below the position in ``es_counted``; the events
above it (the tail) are counted from the primary key when read, so the figures are exact in one read
transaction. :func:`fold` moves the tail into the counts (the provider runs it on the writer every so many
appends, and a stats call runs it first when the tail is long, say after another process wrote); every delete
calls :func:`uncount` in its own transaction for the rows it removes, before removing them. Positions commit
in order (one writer at a time), so no event can later appear at or below the folded position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

FOLD_EVERY = 4096
"""Appended events after which the provider folds the tail into the counts."""

SQL_COUNTED = "SELECT position FROM es_counted WHERE id = 1"
SQL_TOP = "SELECT IFNULL(MAX(position), 0) FROM es_events"
SQL_TAIL = "SELECT event_type, COUNT(*) FROM es_events WHERE position > ? GROUP BY event_type"
SQL_COUNTS = "SELECT event_type, n FROM es_type_counts WHERE n > 0"
SQL_ADD = (
    "INSERT INTO es_type_counts (event_type, n) VALUES (?, ?) ON CONFLICT (event_type) DO UPDATE SET n = n + excluded.n"
)
SQL_SET_COUNTED = "UPDATE es_counted SET position = ? WHERE id = 1"
SQL_DROP_EMPTY = "DELETE FROM es_type_counts WHERE n <= 0"


def counted(db: sqlite3.Connection) -> int:
    """The position the counts cover."""
    row = db.execute(SQL_COUNTED).fetchone()
    return int(row[0]) if row is not None else 0


def by_type(db: sqlite3.Connection) -> dict[str, int]:
    """Exact events per type: the folded counts plus the tail (call inside one read transaction)."""
    out = dict(db.execute(SQL_COUNTS).fetchall())
    for event_type, n in db.execute(SQL_TAIL, (counted(db),)).fetchall():
        out[event_type] = out.get(event_type, 0) + n
    return out


def tail_size(db: sqlite3.Connection) -> int:
    """How many positions lie above the folded one (an upper bound on the tail's events)."""
    top = db.execute(SQL_TOP).fetchone()[0]
    return int(top) - counted(db)


def fold(db: sqlite3.Connection) -> None:
    """Move the tail into the counts (call inside a write transaction)."""
    at = counted(db)
    top = int(db.execute(SQL_TOP).fetchone()[0])
    if top <= at:
        return
    db.executemany(SQL_ADD, db.execute(SQL_TAIL, (at,)).fetchall())
    db.execute(SQL_SET_COUNTED, (top,))


def uncount(db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    """Before deleting ``es_events WHERE <where>``: take the folded ones among them off the counts.

    ``where`` is a fixed fragment of the caller's own statement (values bound through ``args``).
    """
    sql = f"SELECT event_type, -COUNT(*) FROM es_events WHERE ({where}) AND position <= ? GROUP BY event_type"  # noqa: S608 - fixed fragments, values bound
    gone = db.execute(sql, (*args, counted(db))).fetchall()
    if gone:
        db.executemany(SQL_ADD, gone)
        db.execute(SQL_DROP_EMPTY)

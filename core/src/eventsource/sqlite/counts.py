"""Counts by event type and by stream that stats read without scanning events, at no cost to an append.

``es_type_counts`` and ``es_stream_counts`` hold the counts of the events at or below the position in ``es_counted``;
the events above it (the tail) are counted from the primary key when read, so the figures are exact in one read
transaction. :func:`fold` moves the tail into the counts (the provider runs it on the writer every so many
appends, queued behind the append and not awaited, and tried again by the next append if it fails; a stats call
runs it first when the tail is long, say after another process wrote, unless ``create_store`` is off); every delete
calls :func:`uncount` in its own transaction for the rows it removes, before removing them. Positions commit in
order (one writer at a time), so no event can later appear at or below the folded position.
"""

from __future__ import annotations

import heapq
import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

FOLD_EVERY = 4096
"""Appended events after which the provider folds the tail into the counts."""

SQL_COUNTED = "SELECT position FROM es_counted WHERE id = 1"
SQL_TOP = "SELECT IFNULL(MAX(position), 0) FROM es_events"
# NOT INDEXED: the tail is a primary key range; left alone the planner may pick an index that orders the
# GROUP BY and read every event of the store to find it
SQL_TAIL = "SELECT event_type, COUNT(*) FROM es_events NOT INDEXED WHERE position > ? GROUP BY event_type"
SQL_COUNTS = "SELECT event_type, n FROM es_type_counts WHERE n > 0"
SQL_ADD = (
    "INSERT INTO es_type_counts (event_type, n) VALUES (?, ?) ON CONFLICT (event_type) DO UPDATE SET n = n + excluded.n"
)
SQL_SET_COUNTED = "UPDATE es_counted SET position = ? WHERE id = 1"
SQL_DROP_EMPTY = "DELETE FROM es_type_counts WHERE n <= 0"
SQL_STREAM_TAIL = "SELECT stream_id, COUNT(*) FROM es_events NOT INDEXED WHERE position > ? GROUP BY stream_id"
SQL_STREAM_ADD = (
    "INSERT INTO es_stream_counts (stream_id, n) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET n = n + excluded.n"
)
SQL_STREAM_DROP_EMPTY = "DELETE FROM es_stream_counts WHERE n <= 0"
SQL_STREAM_TOP = "SELECT stream_id, n FROM es_stream_counts ORDER BY n DESC LIMIT ?"
SQL_STREAM_FOLDED = "SELECT n FROM es_stream_counts WHERE stream_id = ?"


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
    db.executemany(SQL_STREAM_ADD, db.execute(SQL_STREAM_TAIL, (at,)).fetchall())
    db.execute(SQL_SET_COUNTED, (top,))


def uncount(db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    """Before deleting ``es_events WHERE <where>``: take the folded ones among them off the counts.

    ``where`` is a fixed fragment of the caller's own statement (values bound through ``args``).
    """
    uncount_types(db, where, args)
    sql = f"SELECT stream_id, -COUNT(*) FROM es_events WHERE ({where}) AND position <= ? GROUP BY stream_id"  # noqa: S608 - fixed fragments, values bound
    uncount_streams(db, db.execute(sql, (*args, counted(db))).fetchall())


def uncount_types(db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    """The by-type half of :func:`uncount`."""
    sql = f"SELECT event_type, -COUNT(*) FROM es_events WHERE ({where}) AND position <= ? GROUP BY event_type"  # noqa: S608 - fixed fragments, values bound
    gone = db.execute(sql, (*args, counted(db))).fetchall()
    if gone:
        db.executemany(SQL_ADD, gone)
        db.execute(SQL_DROP_EMPTY)


def uncount_streams(db: sqlite3.Connection, gone: list[tuple[str, int]]) -> None:
    """The by-stream half of :func:`uncount`: ``(stream id, minus how many folded events go)`` pairs."""
    if gone:
        db.executemany(SQL_STREAM_ADD, gone)
        db.execute(SQL_STREAM_DROP_EMPTY)


def top_streams(db: sqlite3.Connection, top: int) -> dict[str, int]:
    """The ``top`` streams with the most events, exact (call inside one read transaction).

    A stream of the true top either has events in the tail or ranks in the folded top among the others, so
    the folded top ``top + len(tail)`` plus the tail's streams are the only candidates: the cost follows
    ``top`` and the tail, never the store.
    """
    tail = dict(db.execute(SQL_STREAM_TAIL, (counted(db),)).fetchall())
    out = dict(db.execute(SQL_STREAM_TOP, (min(top + len(tail), 2**63 - 1),)).fetchall())
    for sid, n in tail.items():
        if sid not in out:
            row = db.execute(SQL_STREAM_FOLDED, (sid,)).fetchone()
            out[sid] = row[0] if row is not None else 0
        out[sid] += n
    return dict(heapq.nlargest(top, out.items(), key=operator.itemgetter(1)))

"""The offline upcast rewrite's write on SQLite: payloads swapped in place in one transaction.

Each event is matched by stream, event id and version *and* the type, payload and encoding it was read with,
so one changed or deleted since is left alone. A renamed type moves the event between the counts by type
when the event is at or below the folded position (:mod:`eventsource.sqlite.counts`); above it the counts
read the row itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.sqlite import counts

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from eventsource.domain.rewrite import EventRewrite

SQL_SWAP = (
    "UPDATE es_events SET event_type = ?, data = ?, metadata = ?, encoding = ? WHERE stream_id = ? AND event_id = ? "
    "AND version = ? AND event_type = ? AND data = ? AND metadata = ? AND encoding = ?"
)


def rewrite_batch(stream_id: str, rewrites: Sequence[EventRewrite], db: sqlite3.Connection) -> int:
    """Swap the payloads (inside the caller's write transaction); how many events were still as read."""
    folded = counts.counted(db)
    done = 0
    renamed: dict[str, int] = {}
    for rw in rewrites:
        o = rw.old
        new = (rw.event_type, rw.data, rw.metadata, rw.encoding)
        old = (o.event_type, o.data, o.metadata, o.encoding)
        cur = db.execute(SQL_SWAP, (*new, stream_id, o.event_id, o.version, *old))
        if cur.rowcount != 1:
            continue
        done += 1
        if o.position <= folded and rw.event_type != o.event_type:
            renamed[o.event_type] = renamed.get(o.event_type, 0) - 1
            renamed[rw.event_type] = renamed.get(rw.event_type, 0) + 1
    if renamed:
        db.executemany(counts.SQL_ADD, renamed.items())
        db.execute(counts.SQL_DROP_EMPTY)
    return done

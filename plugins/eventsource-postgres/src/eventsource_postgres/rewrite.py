"""The offline upcast rewrite's write on PostgreSQL: payloads swapped in place by one UPDATE in one transaction.

Each event is matched by stream, event id and version *and* the type, payload and encoding it was read with,
so one changed or deleted since is left alone (row locks order it against a concurrent delete). Never
retried: a lost connection after the commit would make the retry match nothing and miscount.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.domain.rewrite import EventRewrite
    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection


def swap_sql(events: str) -> str:
    """The UPDATE over the ``events`` table (a quoted, qualified name)."""
    return (
        f"UPDATE {events} AS e SET event_type = r.nt, data = r.nd, metadata = r.nm, encoding = r.ne "  # noqa: S608 - a quoted table name
        "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bytea[], %s::bytea[], %s::text[], "
        "%s::text[], %s::bytea[], %s::bytea[], %s::text[]) AS r (eid, ver, ot, od, om, oe, nt, nd, nm, ne) "
        "WHERE e.stream_id = %s AND e.event_id = r.eid AND e.version = r.ver AND e.event_type = r.ot "
        "AND e.data = r.od AND e.metadata = r.om AND e.encoding = r.oe"
    )


async def rewrite_events(conn: Connection, events: str, stream_id: str, rewrites: Sequence[EventRewrite]) -> int:
    """Swap the payloads; how many events were still as read."""
    if not rewrites:
        return 0
    olds = [rw.old for rw in rewrites]
    params: list[Any] = [
        [o.event_id for o in olds],
        [o.version for o in olds],
        [o.event_type for o in olds],
        [o.data for o in olds],
        [o.metadata for o in olds],
        [o.encoding for o in olds],
        [rw.event_type for rw in rewrites],
        [rw.data for rw in rewrites],
        [rw.metadata for rw in rewrites],
        [rw.encoding for rw in rewrites],
        stream_id,
    ]

    async def run(c: AsyncConnection[Any]) -> int:
        async with c.transaction():
            cur = await c.execute(swap_sql(events), params)
            return cur.rowcount

    return await conn.call("rewrite_events", run, retry=False)

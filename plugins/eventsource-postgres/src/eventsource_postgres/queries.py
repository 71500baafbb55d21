"""Queries (the manager's ``get_events``): every filter pushed down into the events table's ``WHERE``.

Each set filter adds one fixed clause whose value is bound, never spliced; the total is a ``count(*)``
with the same clauses, run with the page query on one connection. One stream is ordered by version,
anything else by position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.model import QueryPage, RecordedEvent

from eventsource_postgres.statements import EVENT_COLS

if TYPE_CHECKING:
    from eventsource.model import EventFilter
    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.statements import Statements


class Queries:
    """Filtered, counted pages of one store's events."""

    def __init__(self, conn: Connection, sql: Statements) -> None:
        self.conn = conn
        self.sql = sql

    async def query(self, flt: EventFilter, *, limit: int, offset: int, descending: bool = False) -> QueryPage:
        """Every filter becomes a ``WHERE`` clause; one count and one page query on one connection."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("stream_id = %s", flt.stream_id),
            ("event_type = ANY (%s::text[])", list(flt.event_types) if flt.event_types is not None else None),
            ("version >= %s", flt.from_version),
            ("version <= %s", flt.to_version),
            ("ts >= %s", flt.from_timestamp),
            ("ts <= %s", flt.to_timestamp),
            ("tenant_id = %s", flt.tenant_id),
            ("correlation_id = %s", flt.correlation_id),
            ("aggregate_id = %s", flt.aggregate_id),
            ("aggregate_type = %s", flt.aggregate_type),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        cond = " AND ".join(where) if where else "TRUE"
        order = "version" if flt.stream_id is not None else "position"
        direction = "DESC" if descending else "ASC"
        count_q = f"SELECT count(*) FROM {self.sql.events} WHERE {cond}"  # noqa: S608 - fixed clauses, values bound
        page_q = (
            f"SELECT {EVENT_COLS} FROM {self.sql.events} WHERE {cond} "  # noqa: S608
            f"ORDER BY {order} {direction} LIMIT %s OFFSET %s"
        )

        async def run(conn: AsyncConnection[Any]) -> QueryPage:
            total = await self.conn.fetchall(conn, count_q, params)
            rows = await self.conn.fetchall(conn, page_q, [*params, limit, offset]) if limit > 0 else []
            return QueryPage(events=[RecordedEvent(*r) for r in rows], total_count=int(total[0][0]))

        return await self.conn.call("query", run, retry=True)

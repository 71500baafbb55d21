"""Queries (the manager's ``get_events``): every filter pushed down into the events table's ``WHERE``.

Each set filter adds one fixed clause whose value is bound, never spliced; the total is a ``count(*)``
with the same clauses (or, as the caller asks, the streams rows, the planner's estimate, or nothing), run
with the page query on one connection. One stream is ordered by version, anything else by position.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eventsource.model import QueryPage, RecordedEvent

from eventsource_postgres.statements import EVENT_COLS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventsource.model import CountMode, EventFilter
    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.replica import Checked
    from eventsource_postgres.statements import Statements


class Queries:
    """Filtered, counted pages of one store's events."""

    def __init__(
        self, conn: Connection, sql: Statements, route: Callable[[], Awaitable[Connection | Checked]] | None = None
    ) -> None:
        self.conn = conn
        self.sql = sql
        self._route = route
        """Picks the pool of each query (a standby, see :mod:`~eventsource_postgres.replica`); else ``conn``."""

    async def query(
        self, flt: EventFilter, *, limit: int, offset: int, descending: bool = False, count: CountMode = "exact"
    ) -> QueryPage:
        """Every filter becomes a ``WHERE`` clause (each has an index); the page and the count on one connection.

        A cursor seeks the primary key (within one stream, the version index too). An ascending page over
        several streams (the first one too: its last row is the next cursor) stops below the oldest running
        transaction, as ``read_all`` does, so an event that commits late with a lower position is on a later
        page, never skipped. The total: exact from
        the streams rows when the filter is nothing or one stream; else ``count(*)`` for ``"exact"``, the
        planner's row estimate for ``"estimate"``, nothing for ``"none"``.
        """
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
        plain = list(where)
        order = "version" if flt.stream_id is not None else "position"
        direction = "DESC" if descending else "ASC"
        cursor = flt.before_position if descending else flt.after_position
        if cursor is not None:
            where.append("position < %s" if descending else "position > %s")
            params.append(cursor)
        simple = cursor is None and plain in ([], ["stream_id = %s"])

        async def run(conn: AsyncConnection[Any]) -> QueryPage:
            page_where, page_params = list(where), list(params)
            if cursor is not None and flt.stream_id is not None:
                at = await self.conn.fetchall(conn, self.sql.version_at, [cursor])
                if at and at[0][0] == flt.stream_id:  # the same bound on the (stream_id, version) index
                    page_where.append("version < %s" if descending else "version > %s")
                    page_params.append(at[0][1])
            cond = " AND ".join(page_where) if page_where else "TRUE"
            guarded = flt.stream_id is None and not descending  # the first page too: its last row is the next cursor
            horizon = f" AND position < ({self.sql.horizon})" if guarded else ""
            # a first page from a start time: read the matches through the ts index and sort them; left alone the
            # planner walks the primary key in order and reads every event before the range to find the first ten
            # (with a cursor that walk starts at the cursor, next to the matches, and is the cheap plan)
            key = f"({order} + 0)" if flt.stream_id is None and flt.from_timestamp and cursor is None else order
            keyed = _keyed(flt, cursor, self.sql.horizon, descending=descending)
            if keyed is not None:  # a cursor page with the plan every size wants: one cached plan for any store
                page_q = f"SELECT {EVENT_COLS} FROM {self.sql.events} WHERE {keyed[0]} LIMIT {int(limit)}"  # noqa: S608
                args = keyed[1] if not offset else [*keyed[1], offset]
                page_q += " OFFSET %s" if offset else ""
            else:
                page_q = (
                    f"SELECT {EVENT_COLS} FROM {self.sql.events} WHERE {cond}{horizon} "  # noqa: S608 - fixed clauses, values bound
                    f"ORDER BY {key} {direction} LIMIT %s OFFSET %s"
                )
                args = [*page_params, limit, offset]
            rows = await self.conn.fetchall(conn, page_q, args, varied=keyed is not None) if limit > 0 else []
            held = False
            if guarded and len(rows) < limit:  # the page may end at the horizon: do matches wait above it?
                q = f"SELECT EXISTS (SELECT 1 FROM {self.sql.events} WHERE {cond} AND position >= ({self.sql.horizon}))"  # noqa: S608
                held = bool((await self.conn.fetchall(conn, q, page_params))[0][0])
            total, exact = await self._total(conn, flt, cond, page_params, simple=simple, count=count)
            recs = [RecordedEvent(*r) for r in rows]
            return QueryPage(events=recs, total_count=total, total_exact=exact, held_back=held)

        pool = self.conn if self._route is None else await self._route()
        return await pool.call("query", run, retry=True)

    async def _total(
        self, conn: AsyncConnection[Any], flt: EventFilter, cond: str, params: list[Any], *, simple: bool, count: str
    ) -> tuple[int | None, bool]:
        """The number of matches as ``count`` asks, and whether it is exact."""
        if simple and flt.stream_id is not None:
            row = await self.conn.fetchall(conn, self.sql.stream_count, [flt.stream_id])
            return (int(row[0][0]) if row else 0), True
        if simple:
            return int((await self.conn.fetchall(conn, self.sql.total_events, []))[0][0]), True
        if count == "exact":
            q = f"SELECT count(*) FROM {self.sql.events} WHERE {cond}"  # noqa: S608 - fixed clauses, values bound
            return int((await self.conn.fetchall(conn, q, params))[0][0]), True
        if count == "estimate":
            q = f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self.sql.events} WHERE {cond}"  # noqa: S608
            plan = (await self.conn.fetchall(conn, q, params))[0][0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            return int(plan[0]["Plan"]["Plan Rows"]), False
        return None, False


_KEYS = ("tenant_id", "correlation_id", "aggregate_id", "aggregate_type")
_MIN_POSITION = -(1 << 63)


def _keyed(flt: EventFilter, cursor: int | None, horizon: str, *, descending: bool) -> tuple[str, list[Any]] | None:
    """A cursor page's ``WHERE ... ORDER BY`` on one index whose order is the page's, or ``None`` for any other query.

    No filter: the primary key. One type, tenant, correlation, aggregate id or type: that field's
    ``(field, position)`` index, bounded by row comparisons (``(f, position) > (v, cursor)`` with the
    upper bound ``(v, ...)``: only ``f = v`` lies between) and ordered by both columns, so no other plan
    gives the order. PostgreSQL caches a generic plan once it costs no more than planning each call;
    the literal ``LIMIT`` (with a bound one the planner guesses 10% of the rows) lets it see that the
    page is cheap on a big store too, and the plan it caches is this index walk for any value.
    """
    if cursor is None or flt.stream_id is not None:
        return None
    ranges = (flt.from_version, flt.to_version, flt.from_timestamp, flt.to_timestamp)
    set_keys = [(k, getattr(flt, k)) for k in _KEYS if getattr(flt, k) is not None]
    if flt.event_types is not None:  # several types (or none) are no one key of the index
        set_keys.append(("event_type", flt.event_types[0] if len(flt.event_types) == 1 else None))
    if any(v is not None for v in ranges) or len(set_keys) > 1 or any(v is None for _, v in set_keys):
        return None
    if not set_keys:
        if descending:
            return "position < %s ORDER BY position DESC", [cursor]
        return f"position > %s AND position < ({horizon}) ORDER BY position ASC", [cursor]
    col, value = set_keys[0]
    if descending:
        where = f"({col}, position) < (%s, %s) AND ({col}, position) >= (%s, %s)"
        order, args = f"{col} DESC, position DESC", [value, cursor, value, _MIN_POSITION]
    else:  # below the horizon, as every ascending cursor page over several streams
        where = f"({col}, position) > (%s, %s) AND ({col}, position) < (%s, ({horizon}))"
        order, args = f"{col}, position", [value, cursor, value]
    return f"{where} AND {col} IS NOT NULL ORDER BY {order}", args

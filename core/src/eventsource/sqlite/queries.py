"""Event queries on one SQLite connection: the filter as SQL, then the page and its count in one read transaction.

:func:`where_clause` turns an :class:`EventFilter` into bound ``WHERE`` fragments (every filter has an index);
:func:`query_page` reads one page of matches and, when asked or when the kept counts answer it exactly, the
total; :func:`counted_total` is that exact total for a filter on nothing, only types, or only a stream.
The provider's ``query`` runs :func:`query_page` on its reader thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.model import QueryPage
from eventsource.sqlite import counts
from eventsource.sqlite.rows import _events_from_rows
from eventsource.sqlite.statements import _EVENT_COLS, MAX_VERSION, SQL_STREAM_COUNT, SQL_VERSION_AT
from eventsource.timestamps import to_us

if TYPE_CHECKING:
    import sqlite3

    from eventsource.model import CountMode, EventFilter


def where_clause(flt: EventFilter) -> tuple[list[str], list[Any]]:
    """The filter's ``WHERE`` fragments and their bound values (the cursor is added per page)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("stream_id = ?", flt.stream_id),
        ("version >= ?", flt.from_version),
        ("version <= ?", flt.to_version),
        ("timestamp >= ?", to_us(flt.from_timestamp) if flt.from_timestamp is not None else None),
        ("timestamp <= ?", to_us(flt.to_timestamp) if flt.to_timestamp is not None else None),
        ("tenant_id = ?", flt.tenant_id),
        ("correlation_id = ?", flt.correlation_id),
        ("aggregate_id = ?", flt.aggregate_id),
        ("aggregate_type = ?", flt.aggregate_type),
    ):
        if value is not None:
            where.append(column)
            args.append(value)
    if flt.event_types is not None:
        where.append(f"event_type IN ({', '.join('?' * len(flt.event_types))})")
        args.extend(flt.event_types)
    return where, args


def query_page(
    db: sqlite3.Connection, flt: EventFilter, *, limit: int, offset: int, descending: bool, count: CountMode
) -> QueryPage:
    """One page of the filter's matches and its total (run inside one read transaction)."""
    where, args = where_clause(flt)
    order = "DESC" if descending else "ASC"
    # within one stream version order is position order, and the (stream_id, version) index gives it
    key = "version" if flt.stream_id is not None else "position"
    cursor = flt.before_position if descending else flt.after_position
    simple = (
        flt.after_position is None
        and flt.before_position is None
        and where
        == (
            ["stream_id = ?"]
            if flt.stream_id is not None
            else [f"event_type IN ({', '.join('?' * len(flt.event_types))})"]
            if flt.event_types is not None
            else []
        )
    )
    page_where, page_args = list(where), list(args)
    if cursor is not None:
        page_where.append("position < ?" if descending else "position > ?")
        page_args.append(min(cursor, MAX_VERSION))
        at = db.execute(SQL_VERSION_AT, (cursor,)).fetchone() if flt.stream_id is not None else None
        if at is not None and at[0] == flt.stream_id:  # the same bound on the version index
            page_where.append("version < ?" if descending else "version > ?")
            page_args.append(at[1])
    clause = (" WHERE " + " AND ".join(page_where)) if page_where else ""
    order_by = f" ORDER BY {key} {order} LIMIT ? OFFSET ?"
    page_sql = f"SELECT {_EVENT_COLS} FROM es_events{clause}{order_by}"  # noqa: S608 - fixed fragments, values bound
    rows = db.execute(page_sql, (*page_args, limit, offset)).fetchall()
    total: int | None = None
    if simple:
        total = counted_total(db, flt)
    elif count == "exact":
        total = db.execute(f"SELECT COUNT(*) FROM es_events{clause}", page_args).fetchone()[0]  # noqa: S608
    return QueryPage(events=_events_from_rows(rows), total_count=total)


def counted_total(db: sqlite3.Connection, flt: EventFilter) -> int:
    """The matches of a filter on nothing, only types, or only a stream, from the counts (exact)."""
    if flt.stream_id is not None:
        row = db.execute(SQL_STREAM_COUNT, (flt.stream_id, flt.stream_id)).fetchone()
        return int(row[0]) if row is not None else 0
    by_type = counts.by_type(db)
    if flt.event_types is None:
        return sum(by_type.values())
    return sum(by_type.get(t, 0) for t in set(flt.event_types))

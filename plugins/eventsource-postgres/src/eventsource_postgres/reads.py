"""Reads: the page views of one stream and of the global log, and an event by id.

Both page views fetch a page of rows per statement, in binary format, and yield it as a
:class:`~eventsource.model.RowPage`, holding no connection between pages. The global log is read in
position order and never past a transaction that may still commit below the reader's cursor: each row
comes flagged by whether its transaction id is below ``pg_snapshot_xmin``, and only a prefix of flagged
rows is handed out (the README proves that no late commit is skipped).
"""

from __future__ import annotations

import asyncio
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, cast

from eventsource.model import RecordedEvent, RowPage

from eventsource_postgres.statements import MAX_VERSION

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventsource.model import EventRow

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.replica import Checked
    from eventsource_postgres.statements import Statements


class Reader:
    """Paged reads of one store."""

    def __init__(
        self, conn: Connection, sql: Statements, route: Callable[[], Awaitable[Connection | Checked]] | None = None
    ) -> None:
        self.conn = conn
        self.sql = sql
        self._route = route
        """Picks the pool of each read (a standby, see :mod:`~eventsource_postgres.replica`); else ``conn``."""

    async def _pool(self) -> Connection | Checked:
        return self.conn if self._route is None else await self._route()

    async def stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RowPage]:
        """Pages of ``page_size`` rows through the ``(stream_id, version)`` index.

        No connection is held between pages.
        """
        conn = await self._pool()
        lo = max(1, from_version)
        hi = MAX_VERSION if to_version is None else to_version
        query = self.sql.read_backward if backwards else self.sql.read_forward
        while lo <= hi:
            params = (stream_id, lo, hi, page_size + 1)  # one extra row says whether another page follows
            rows = await conn.call(
                "read_stream", partial(conn.fetchall, query=query, params=params, binary=True), retry=True
            )
            if not rows:
                return
            more = len(rows) > page_size
            if more:
                nxt = rows[page_size][3]
                del rows[page_size:]
            yield RowPage(cast("list[EventRow]", rows))  # the columns are RecordedEvent's, in its order
            if not more:
                return
            if backwards:
                hi = nxt
            else:
                lo = nxt

    async def all_pages(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RowPage]:
        """Every event at ``position >= from_position``, in position order, never past a running transaction.

        Each page flags the rows whose transaction id is below ``pg_snapshot_xmin`` (the oldest
        transaction still running); only those are yielded. When committed rows are held back by an
        older transaction that is still running, the reader waits for it (polling, at most
        ``visibility_wait`` seconds in all) and then stops: a follower resumes from its last position
        and gets them then, in order, never skipping one.
        """
        conn = await self._pool()
        nxt = from_position
        waiting_since: float | None = None
        delay = 0.001
        while True:
            params = (nxt, page_size)
            rows = await conn.call(
                "read_all", partial(conn.fetchall, query=self.sql.read_all, params=params, binary=True), retry=True
            )
            safe = 0
            for r in rows:
                if not r[-1]:
                    break
                safe += 1
            if safe:
                nxt = rows[safe - 1][4] + 1
                yield RowPage(cast("list[EventRow]", [r[:-1] for r in rows[:safe]]))
            if safe == page_size:
                continue
            if safe == len(rows):
                return
            now = monotonic()
            if waiting_since is None:
                waiting_since = now
            if now - waiting_since >= self.conn.settings["visibility_wait"]:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look the id up through its unique index."""
        if stream_id is None:
            query, params = self.sql.get_event, [event_id]
        else:
            query, params = self.sql.get_event_in, [event_id, stream_id]
        conn = await self._pool()
        rows = await conn.call("get_event", lambda c: conn.fetchall(c, query, params), retry=True)
        return RecordedEvent(*rows[0]) if rows else None

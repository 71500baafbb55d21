"""Retention primitives: truncate a stream below a version, delete events older than a cutoff.

Each deleting transaction (one stream under its advisory lock, or every stream; ``delete_events_before``
in batches of at most :data:`BATCH` events) locks the touched streams rows in id order and gives them
exact ``event_count`` and ``first_version``; versions never go down. A transaction the server aborted to break a
deadlock kept
nothing and is run again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.errors import StreamNotFoundError

from eventsource_postgres.connection import RACE_ATTEMPTS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.statements import Statements


BATCH = 5000
"""Events one retention transaction deletes at most."""


class Retention:
    """The deleting operations of one store."""

    def __init__(self, conn: Connection, sql: Statements) -> None:
        self.conn = conn
        self.sql = sql

    async def _run(self, operation: str, fn: Callable[[AsyncConnection[Any]], Awaitable[int]]) -> int:
        """Run a deleting transaction, again if the server broke a deadlock by aborting it (nothing was kept)."""
        from psycopg.errors import DeadlockDetected, SerializationFailure

        async def run(conn: AsyncConnection[Any]) -> int:
            for attempt in range(1, RACE_ATTEMPTS + 1):
                try:
                    async with conn.transaction():
                        return await fn(conn)
                except (DeadlockDetected, SerializationFailure):
                    if attempt == RACE_ATTEMPTS:
                        raise
            msg = "unreachable"
            raise AssertionError(msg)

        return await self.conn.call(operation, run, retry=False)

    async def _recount(self, conn: AsyncConnection[Any], deleted: list[tuple[str, int]]) -> None:
        """Lock the touched streams rows (in id order), then fix ``event_count`` and ``first_version``."""
        if not deleted:
            return
        ids = [d[0] for d in deleted]
        await conn.execute(self.sql.lock_stream_rows, [ids])
        await conn.execute(self.sql.recount, [ids, [d[1] for d in deleted]])

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """``DELETE ... WHERE version < before_version``, in batches under the stream's lock.

        :data:`BATCH` versions per transaction.
        Versions stay as they are; the stream's writers wait at most one batch.
        """
        upto = 0

        async def run(conn: AsyncConnection[Any]) -> int:
            nonlocal upto
            await conn.execute(self.sql.lock, [self.conn.lock(stream_id)])
            cur = await conn.execute(self.sql.stream_info, [stream_id])
            if await cur.fetchone() is None:
                msg = f"stream {stream_id!r} does not exist"
                raise StreamNotFoundError(msg, stream_id=stream_id)
            low = (await self.conn.fetchall(conn, self.sql.lowest_version, [stream_id]))[0][0]
            if low is None or low >= before_version:
                upto = before_version
                return 0
            upto = min(before_version, int(low) + BATCH)
            rows = await self.conn.fetchall(conn, self.sql.truncate, [stream_id, upto])
            n = int(rows[0][0])
            await self._recount(conn, [(stream_id, n)] if n else [])
            return n

        total = 0
        while upto < before_version:
            total += await self._run("truncate_stream", run)
        return total

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """``DELETE ... WHERE ts < cutoff``, oldest first, in batches, fixing the streams rows.

        :data:`BATCH` events per transaction.
        Each batch commits on its own, so the streams rows (and, for one stream, its advisory lock) are held
        only for one batch: writers wait at most one batch, never the whole run.
        """

        async def one(conn: AsyncConnection[Any]) -> int:
            await conn.execute(self.sql.lock, [self.conn.lock(stream_id or "")])
            rows = await self.conn.fetchall(conn, self.sql.delete_before_in_batch, [stream_id, cutoff, BATCH])
            n = int(rows[0][0])
            await self._recount(conn, [(stream_id or "", n)] if n else [])
            return n

        async def every(conn: AsyncConnection[Any]) -> int:
            old = await self.conn.fetchall(conn, self.sql.old_batch, [cutoff, BATCH])
            if not old:
                return 0
            rows = await self.conn.fetchall(conn, self.sql.delete_positions, [[r[0] for r in old]])
            deleted = [(r[0], int(r[1])) for r in rows]
            await self._recount(conn, deleted)
            return sum(d[1] for d in deleted)

        total = 0
        while True:
            n = await self._run("delete_events_before", one if stream_id is not None else every)
            total += n
            if n < BATCH:
                return total

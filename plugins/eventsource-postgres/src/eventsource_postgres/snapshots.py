"""Snapshots: saved only when the stream as it is now backs them, read at or below a version, deleted.

A save runs in one transaction under the stream's advisory lock (the lock appends take), so the check
(:func:`~eventsource.provider.check_snapshot`) and the upsert on ``(stream_id, version)`` see one
committed state of the stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.model import NewSnapshot
from eventsource.provider import check_snapshot

from eventsource_postgres.statements import MAX_VERSION

if TYPE_CHECKING:
    from eventsource.model import RecordedSnapshot
    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.statements import Statements


class Snapshots:
    """The snapshots of one store."""

    def __init__(self, conn: Connection, sql: Statements) -> None:
        self.conn = conn
        self.sql = sql

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Check the stream backs it (:func:`check_snapshot`), then upsert on ``(stream_id, version)``.

        One transaction, under the stream's advisory lock, the row held FOR SHARE between the check and
        the write.
        """
        s = snapshot
        params = (
            s.snapshot_id, s.stream_id, s.version, s.data, s.metadata, s.encoding, s.created_at,
            s.aggregate_id, s.aggregate_type, s.position,
        )  # fmt: skip

        async def run(conn: AsyncConnection[Any]) -> None:
            async with conn.transaction():
                # the stream's lock first (appends and creates take it): the next statement then reads the
                # row and the event at the version from one committed state (FOR SHARE alone could re-read
                # the row after an append committed while its subquery still saw the state before it)
                await conn.execute(self.sql.lock, [self.conn.lock(s.stream_id)])
                rows = await self.conn.fetchall(conn, self.sql.snapshot_backing, [s.version, s.stream_id])
                version, position_at = rows[0] if rows else (0, None)
                check_snapshot(s, exists=bool(rows), version=version, position_at=position_at)
                await conn.execute(self.sql.save_snapshot, params)

        await self.conn.call("save_snapshot", run, retry=True)

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The highest version at or below ``max_version``."""
        params = (stream_id, MAX_VERSION if max_version is None else max_version)
        rows = await self.conn.call(
            "get_snapshot", lambda c: self.conn.fetchall(c, self.sql.get_snapshot, params), retry=True
        )
        return NewSnapshot(*rows[0]) if rows else None

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Delete one or all snapshots of a stream."""

        async def run(conn: AsyncConnection[Any]) -> int:
            if version is None:
                cur = await conn.execute(self.sql.delete_snapshots, [stream_id])
            else:
                cur = await conn.execute(self.sql.delete_snapshot, [stream_id, version])
            return max(cur.rowcount, 0)

        return await self.conn.call("delete_snapshots", run, retry=False)

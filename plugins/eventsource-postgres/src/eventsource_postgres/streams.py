"""Streams rows: create, delete (events, row and, by cascade, snapshots), read one, list a page.

The streams row is the stream's exact record (version, counts, first version, attributes), kept in the
same transaction as every write; creating and deleting take the stream's advisory lock, as appends do.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eventsource.errors import StreamExistsError, StreamNotFoundError
from eventsource.model import StreamInfo, utcnow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from eventsource.model import NewStream
    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.statements import Statements


SURELY_INDEXED = 2_600
"""Stream ids of up to this many bytes of UTF-8 fit every index key of the store (about 2,700 bytes, less its
other columns); a longer one fits only as far as it compresses: ``create_stream`` checks the events' key."""


def metadata_text(metadata: Mapping[str, Any]) -> str:
    """Stream metadata (plain JSON, checked by the manager) as the JSON text the streams row keeps."""
    return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def stream_info(row: Sequence[Any]) -> StreamInfo:
    """A row of :data:`~eventsource_postgres.statements.STREAM_COLS` (the metadata as JSON text)."""
    sid, version, count, created, updated, name, agg_id, agg_type, metadata, last_id, first = row
    md = json.loads(metadata)
    return StreamInfo(sid, version, count, created, updated, name, agg_id, agg_type, md, last_id, first)


class Streams:
    """The streams-row operations of one store."""

    def __init__(self, conn: Connection, sql: Statements) -> None:
        self.conn = conn
        self.sql = sql

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Insert the streams row at version 0 (under the stream's lock); refuse an existing id."""
        now = utcnow()
        text = metadata_text(stream.metadata)
        params = (
            stream.stream_id,
            now,
            now,
            stream.name,
            stream.aggregate_id,
            stream.aggregate_type,
            text,
            text,
            self.conn.lock(stream.stream_id),
        )

        async def run(conn: AsyncConnection[Any]) -> list[Any]:
            if len(stream.stream_id.encode()) <= SURELY_INDEXED:
                return await self.conn.fetchall(conn, self.sql.create_stream, params)
            async with conn.transaction():  # the events' key of a long id may not fit where the streams row's does
                rows = await self.conn.fetchall(conn, self.sql.create_stream, params)
                if rows:
                    await conn.execute("SAVEPOINT probe_key")
                    await conn.execute(self.sql.probe_key, [stream.stream_id])
                    await conn.execute("ROLLBACK TO SAVEPOINT probe_key")
                return rows

        rows = await self.conn.call("create_stream", run, retry=False)
        if not rows:
            msg = f"stream {stream.stream_id!r} already exists"
            raise StreamExistsError(msg, stream_id=stream.stream_id)
        return stream_info(rows[0])

    async def delete_stream(self, stream_id: str) -> None:
        """Delete the events, then the streams row (snapshots follow by cascade), in one transaction."""

        async def run(conn: AsyncConnection[Any]) -> bool:
            async with conn.transaction():
                await conn.execute(self.sql.lock, [self.conn.lock(stream_id)])
                await conn.execute(self.sql.delete_stream_events, [stream_id])
                cur = await conn.execute(self.sql.delete_stream_row, [stream_id])
                return cur.rowcount > 0

        if not await self.conn.call("delete_stream", run, retry=False):
            msg = f"stream {stream_id!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=stream_id)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """The streams row (kept exact by every write), or ``None``."""
        rows = await self.conn.call(
            "get_stream_info", lambda c: self.conn.fetchall(c, self.sql.stream_info, [stream_id]), retry=True
        )
        return stream_info(rows[0]) if rows else None

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page of streams in code-point order of their ids (``COLLATE "C"``) and the total.

        ``after`` seeks the key (a literal ``LIMIT``: see :class:`~eventsource_postgres.statements.Statements`).
        """

        async def run(conn: AsyncConnection[Any]) -> tuple[list[StreamInfo], int]:
            if after is None:
                rows = await self.conn.fetchall(conn, self.sql.list_streams, [limit, offset])
            else:
                q = f"{self.sql.list_streams_after} LIMIT {int(limit)}" + (" OFFSET %s" if offset else "")
                rows = await self.conn.fetchall(conn, q, [after, offset] if offset else [after], varied=True)
            total = await self.conn.fetchall(conn, self.sql.count_streams, [])
            return [stream_info(r) for r in rows], int(total[0][0])

        return await self.conn.call("list_streams", run, retry=True)

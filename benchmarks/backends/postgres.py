"""PostgreSQL: eventsource-postgres against raw psycopg 3 on the same server, in the same run.

Server: ``EVENTSOURCE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).

The raw side writes the same rows (same columns, JSON serialized by the raw code) into a table built
by the provider's own migration in a schema of its own, so both sides maintain the same indexes. What
the raw side does not do is the library's work: no expected-version check, no idempotency lookup, no
streams row, no commit-order-safe position (it takes versions and positions from client counters).

* single append: one autocommit ``INSERT`` (prepared);
* batch of 100: ``executemany`` of 100 ``INSERT`` in one transaction (psycopg pipelines it). Set
  ``EVENTSOURCE_BENCH_PG_BATCH=copy`` to make the raw side use ``COPY`` instead;
* read: ``SELECT`` the same columns of one stream by ``(stream_id, version)``, ``json.loads`` each payload;
* 8 writers: 8 raw connections, one per writer (the library uses its pool);
* big store: 1,000,000 filler events in 1,000 streams, loaded server-side with ``generate_series``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
from eventsource_postgres import PostgresProvider
from eventsource_postgres.schema import Names, migrate
from harness import Backend, Options, RawEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsource.provider import Provider

URL = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
RAW_BATCH = os.environ.get("EVENTSOURCE_BENCH_PG_BATCH", "executemany")

_COLS = "event_id, stream_id, event_type, version, position, data, metadata, encoding, ts"
_ALL_COLS = (
    "event_id, stream_id, event_type, version, position, data, metadata, encoding, ts, "
    "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type"
)


class PostgresBackend(Backend):
    """PostgreSQL 15 on this machine; the library through ``EventSourcingManager``."""

    name = "postgres"
    targets = {  # noqa: RUF012
        "append_p50": 1.5,
        "append_p95": None,
        "batch_100": 0.85,
        "read_1000": 0.8,
        "writers_8": 0.8,
        "big_store_read_100": 1.3,
    }
    notes = (
        "raw = psycopg 3 on a table with the provider's own DDL (same indexes); "
        f"batch raw = {RAW_BATCH}; 8 raw writers on 8 connections"
    )

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.schemas: list[str] = []
        self.raw: psycopg.AsyncConnection[Any] | None = None
        self.raw_names = Names(f"bench_raw_{uuid.uuid4().hex[:10]}", "")
        self.positions = itertools.count(1)

    async def open(self) -> None:
        self.raw = await psycopg.AsyncConnection.connect(URL, autocommit=True)
        await self.raw.execute("SET TimeZone TO 'UTC'")
        self.schemas.append(self.raw_names.schema)
        await migrate(self.raw, self.raw_names)
        self.insert = f"INSERT INTO {self.raw_names.events} ({_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        self.select = f"SELECT {_ALL_COLS} FROM {self.raw_names.events} WHERE stream_id = %s ORDER BY version"

    async def close(self) -> None:
        if self.raw is not None:
            for schema in self.schemas:
                await self.raw.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await self.raw.close()

    def new_provider(self) -> Provider:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        self.schemas.append(schema)
        return PostgresProvider(URL, schema=schema, application_name="eventsource-bench")

    async def fill(self, provider: Provider, n: int) -> int | None:
        assert isinstance(provider, PostgresProvider)
        names = provider.names
        assert self.raw is not None
        body = json.dumps({"order_id": "order-0", "note": "filler", "total": 19.0, "items": [1, 2, 3]})
        streams = 1000
        async with self.raw.transaction():
            await self.raw.execute(
                f"INSERT INTO {names.events} ({_COLS}) "
                "SELECT 'fill-' || g, 'fill-' || (g %% %s), 'Filler', g / %s + 1, g, convert_to(%s, 'UTF8'), '', 'json', now() "
                "FROM generate_series(0, %s - 1) AS g",
                [streams, streams, body, n],
            )
            await self.raw.execute(
                f"INSERT INTO {names.streams} (stream_id, version, event_count, created_at, updated_at, first_version) "
                "SELECT stream_id, max(version), count(*), now(), now(), 1 FROM "
                f"{names.events} WHERE stream_id LIKE 'fill-%%' GROUP BY stream_id"
            )
        await self.raw.execute(f"ANALYZE {names.events}")
        await self.raw.execute(f"ANALYZE {names.streams}")
        return None  # all n

    def _row(self, stream_id: str, version: int, e: RawEvent) -> tuple[Any, ...]:
        return (
            e.event_id, stream_id, e.event_type, version, next(self.positions),
            json.dumps(e.data).encode(), b"", "json", e.timestamp,
        )  # fmt: skip

    async def raw_append(self, stream_id: str, version: int, event: RawEvent) -> None:
        assert self.raw is not None
        await self.raw.execute(self.insert, self._row(stream_id, version, event), prepare=True)

    async def raw_append_batch(self, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
        assert self.raw is not None
        rows = [self._row(stream_id, first_version + i, e) for i, e in enumerate(events)]
        async with self.raw.transaction():
            if RAW_BATCH == "copy":
                async with self.raw.cursor().copy(f"COPY {self.raw_names.events} ({_COLS}) FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
            else:
                async with self.raw.cursor() as cur:
                    await cur.executemany(self.insert, rows)

    async def raw_read_stream(self, stream_id: str) -> int:
        assert self.raw is not None
        cur = await self.raw.execute(self.select, [stream_id], prepare=True)
        n = 0
        for row in await cur.fetchall():
            json.loads(row[5])
            n += 1
        return n

    async def raw_writers(self, streams: Sequence[str], per_writer: int, make: Callable[[int], RawEvent]) -> None:
        conns = [await psycopg.AsyncConnection.connect(URL, autocommit=True) for _ in streams]
        try:

            async def one(conn: psycopg.AsyncConnection[Any], s: str) -> None:
                for i in range(per_writer):
                    await conn.execute(self.insert, self._row(s, i + 1, make(i)), prepare=True)

            await asyncio.gather(*(one(c, s) for c, s in zip(conns, streams, strict=True)))
        finally:
            for c in conns:
                await c.close()


BACKEND = PostgresBackend

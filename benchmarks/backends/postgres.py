"""PostgreSQL: eventsource-postgres against raw psycopg 3 on the same server, in the same run.

Server: ``EVENTSOURCE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).

The raw side writes the same rows (same columns, JSON serialized by the raw code) into a table built
by the provider's own migration in a schema of its own, so both sides maintain the same indexes. What
the raw side does not do is the library's work: no expected-version check, no idempotency lookup, no
streams row, no commit-order-safe position (it takes versions and positions from client counters).
Each side reports ``fsync``, ``synchronous_commit`` and ``full_page_writes`` from its own connection (the raw
one, a connection of the provider's pool), recorded per row: the verdict compares only like with like.

* single append: one autocommit ``INSERT`` (prepared; text parameters where the library sends binary ones:
  the raw ``INSERT`` with binary parameters measured the same, server and client);
* batch of 100: ``executemany`` of 100 ``INSERT`` in one transaction (psycopg pipelines it). Set
  ``EVENTSOURCE_BENCH_PG_BATCH=copy`` to make the raw side use ``COPY`` instead;
* read: ``SELECT`` the same columns of one stream by ``(stream_id, version)`` in binary format (the
  library's wire format for event rows), ``json.loads`` each payload;
* 8 writers: 8 raw connections, one per writer, opened in :meth:`open` (warm, as the library's pool);
* big store: 1,000,000 filler events in 1,000 streams, loaded server-side with ``generate_series``.

Sync rows: the sync API against raw sync psycopg (one connection, the same statements) and
``eventsourcing`` 9.5.6's ``PostgresApplicationRecorder`` (text originator ids, its own table in the
raw side's schema; state = the JSON payload, ``json.loads`` on read).
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
from harness import Backend, Options, RawEvent, SyncLibSide, SyncSide, installed

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from eventsource.provider import Provider

URL = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
RAW_BATCH = os.environ.get("EVENTSOURCE_BENCH_PG_BATCH", "executemany")

DURABILITY = "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')"
"""The settings under which a commit is acknowledged, as the connection running this sees them."""

_COLS = "event_id, stream_id, event_type, version, position, data, metadata, encoding, ts"
_ALL_COLS = (
    "event_id, stream_id, event_type, version, position, data, metadata, encoding, ts, "
    "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type"
)


class PostgresBackend(Backend):
    """PostgreSQL 15 on this machine; the library through ``EventSourcingManager``."""

    name = "postgres"
    eventsourcing_rows = frozenset({"sync_append_p50", "sync_batch_100", "sync_read_1000", "live_p50", "live_p99"})
    notes = (
        "raw = psycopg 3 on a table with the provider's own DDL (same indexes); "
        f"batch raw = {RAW_BATCH}; read in binary (as the library); 8 raw writers on 8 warm connections"
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
        self.writer_conns = [
            await psycopg.AsyncConnection.connect(URL, autocommit=True) for _ in range(self.options.writers)
        ]
        for c in self.writer_conns:
            await c.execute("SET TimeZone TO 'UTC'")
        self.sync_raw_names = Names(f"bench_rawsync_{uuid.uuid4().hex[:10]}", "")
        self.sync_schemas = [self.sync_raw_names.schema]  # dropped in cleanup(), after the sync rows
        await migrate(self.raw, self.sync_raw_names)
        self.version = str((await (await self.raw.execute("SHOW server_version")).fetchone())[0])
        self.raw_settings = dict(await (await self.raw.execute(DURABILITY)).fetchall())

    def server_version(self) -> str | None:
        return f"PostgreSQL {self.version}"

    def raw_durability(self) -> dict[str, str]:
        """The raw connection's commit settings, read on it in :meth:`open` (nothing in the run changes them)."""
        return dict(self.raw_settings)

    async def lib_durability(self, provider: Provider) -> dict[str, str] | None:
        """The commit settings of a connection of the provider's pool (the connections it appends through)."""
        assert isinstance(provider, PostgresProvider)
        conn = provider._conn  # noqa: SLF001 - the contestant's own pool

        async def read(c: Any) -> list[tuple[Any, ...]]:
            return await conn.fetchall(c, DURABILITY, [])

        return dict(await conn.call("benchmark durability", read, retry=True))

    async def close(self) -> None:
        for c in self.writer_conns:
            await c.close()
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
                "SELECT 'fill-' || g, 'fill-' || (g %% %s), 'Filler', g / %s + 1, g, "
                "convert_to(%s, 'UTF8'), '', 'json', now() "
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
        cur = self.raw.cursor(binary=True)
        await cur.execute(self.select, [stream_id], prepare=True)
        n = 0
        for row in await cur.fetchall():
            json.loads(row[5])
            n += 1
        return n

    async def raw_writers(self, streams: Sequence[str], events: Sequence[Sequence[RawEvent]]) -> None:
        async def one(conn: psycopg.AsyncConnection[Any], s: str, evs: Sequence[RawEvent]) -> None:
            for i, e in enumerate(evs):
                await conn.execute(self.insert, self._row(s, i + 1, e), prepare=True)

        await asyncio.gather(*(one(c, s, e) for c, s, e in zip(self.writer_conns, streams, events, strict=True)))

    def sync_sides(self) -> dict[str, SyncSide]:
        """Sync API, raw sync psycopg and eventsourcing's recorder, each on a schema of its own."""
        schema = f"bench_sync_{uuid.uuid4().hex[:10]}"
        self.sync_schemas.append(schema)
        config = {"providers": {"bench": {"url": URL, "settings": {"schema": schema}}}, "default_provider": "bench"}
        sides: dict[str, SyncSide] = {"lib": SyncLibSide(config), "raw": _SyncRaw(self)}
        if self.options.peers and installed("eventsourcing"):
            sides["eventsourcing"] = _Eventsourcing(sides["raw"].names.schema)  # type: ignore[attr-defined]
        return sides

    def row_note(self, key: str, sides: Iterable[str]) -> str:  # noqa: ARG002 - every contestant set
        """For ``sync_append_p50``: over how many heap pages the library's streams row spread during the row.

        One page: its old versions were pruned as it went. More: a transaction left open elsewhere on the
        server kept them, and each append's lookup of the row visited every page it left (the raw side,
        insert-only, pays nothing for that); the plugin README ("The cost") explains.
        """
        if key != "sync_append_p50" or len(getattr(self, "sync_schemas", [])) < 2:  # (raw's schema, then the lib's)
            return ""
        table = f'"{self.sync_schemas[-1]}"."streams"'
        with psycopg.connect(URL, autocommit=True) as conn:
            size = "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int"
            row = conn.execute(size, [table]).fetchone()
        pages = int(row[0]) if row else 0
        return f"lib's streams row ended on {pages} heap page{'s' if pages != 1 else ''} (1 = pruned as it went)"

    def cleanup(self) -> None:
        with psycopg.connect(URL, autocommit=True) as conn:
            for schema in getattr(self, "sync_schemas", []):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class _SyncRaw(SyncSide):
    """Raw sync psycopg: the same statements as the async raw side, one autocommit connection."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.b = backend
        self.names = backend.sync_raw_names  # tables made by the provider's migration in open()
        self.conn = psycopg.connect(URL, autocommit=True)
        self.conn.execute("SET TimeZone TO 'UTC'")
        self.insert = backend.insert.replace(backend.raw_names.events, self.names.events)
        self.select = backend.select.replace(backend.raw_names.events, self.names.events)

    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        self.conn.execute(self.insert, self.b._row(stream_id, version, prepared[0]), prepare=True)  # noqa: SLF001

    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        rows = [self.b._row(stream_id, first_version + i, e) for i, e in enumerate(prepared)]  # noqa: SLF001
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(self.insert, rows)

    def read(self, stream_id: str) -> int:
        cur = self.conn.cursor(binary=True)
        cur.execute(self.select, [stream_id], prepare=True)
        n = 0
        for row in cur.fetchall():
            json.loads(row[5])
            n += 1
        return n

    def close(self) -> None:
        self.conn.close()


class _Eventsourcing(SyncSide):
    """eventsourcing 9.5.6's ``PostgresApplicationRecorder`` (text originator ids), state = the JSON payload."""

    def __init__(self, schema: str) -> None:
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        info = psycopg.conninfo.conninfo_to_dict(URL)
        self.datastore = PostgresDatastore(
            dbname=str(info.get("dbname", "test")),
            host=str(info.get("host", "127.0.0.1")),
            port=str(info.get("port", 5432)),
            user=str(info.get("user", "postgres")),
            password=str(info.get("password", "")),
            schema=schema,
            originator_id_type="text",
        )
        self.recorder = PostgresApplicationRecorder(self.datastore, events_table_name="es_stored_events")
        self.recorder.create_table()

    def _stored(self, stream_id: str, version: int, e: RawEvent) -> Any:
        from eventsourcing.persistence import StoredEvent

        return StoredEvent(stream_id, version, e.event_type, json.dumps(e.data).encode())

    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        self.recorder.insert_events([self._stored(stream_id, version, prepared[0])])

    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        self.recorder.insert_events([self._stored(stream_id, first_version + i, e) for i, e in enumerate(prepared)])

    def read(self, stream_id: str) -> int:
        n = 0
        for e in self.recorder.select_events(stream_id):
            json.loads(e.state)
            n += 1
        return n

    def close(self) -> None:
        self.datastore.close()


BACKEND = PostgresBackend

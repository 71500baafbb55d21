"""Schema creation and versioned migrations: idempotent, and safe when processes start at once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest
from eventsource.errors import ConfigurationError
from eventsource.model import NewEvent, utcnow
from eventsource_postgres import PostgresProvider
from eventsource_postgres.schema import LATEST, MIGRATIONS, Names, migrate

WORKER = """
import asyncio, json, sys, time
from eventsource_postgres import PostgresProvider
spec = json.loads(sys.argv[1])
async def main():
    p = PostgresProvider(
        spec["url"], schema=spec["schema"], table_prefix=spec["prefix"], pool_min_size=1, pool_max_size=1
    )
    delay = spec["start_at"] - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    await p.connect()
    from eventsource.model import NewEvent, utcnow, ANY
    r = await p.append("s-" + spec["name"], [NewEvent(spec["name"], "E", b"{}", b"", "json", utcnow())], ANY)
    await p.close()
    print(json.dumps({"version": r.first_version}))
asyncio.run(main())
"""


@pytest.fixture
async def schema(url: str) -> AsyncIterator[str]:
    name = f"es_mig_{uuid.uuid4().hex[:12]}"
    yield name
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def applied(admin: psycopg.AsyncConnection[Any], n: Names) -> list[int]:
    cur = await admin.execute(f"SELECT version FROM {n.migrations} ORDER BY version")
    return [r[0] for r in await cur.fetchall()]


async def test_processes_starting_at_once_create_the_schema_once(
    url: str, schema: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    start_at = time.time() + 1.5
    procs = []
    for i in range(4):
        prefix = "" if i < 3 else "other_"  # a second store in the same schema starts at the same time
        spec = {"url": url, "schema": schema, "prefix": prefix, "start_at": start_at, "name": f"p{i}"}
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", WORKER, json.dumps(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert json.loads(out.decode().splitlines()[-1]) == {"version": 1}
    assert await applied(admin, Names(schema, "")) == [v for v, _, _ in MIGRATIONS]
    assert await applied(admin, Names(schema, "other_")) == [v for v, _, _ in MIGRATIONS]
    cur = await admin.execute(f"SELECT count(*) FROM {Names(schema, '').events}")
    assert (await cur.fetchone())[0] == 3  # type: ignore[index]


async def test_concurrent_connects_in_one_process(url: str, schema: str, admin: psycopg.AsyncConnection[Any]) -> None:
    providers = [PostgresProvider(url, schema=schema, pool_min_size=1, pool_max_size=1) for _ in range(6)]
    await asyncio.gather(*(p.connect() for p in providers))
    try:
        assert await applied(admin, providers[0].names) == list(range(1, LATEST + 1))
    finally:
        await asyncio.gather(*(p.close() for p in providers))


async def test_migrate_is_idempotent_and_upgrades_from_an_older_version(
    schema: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    n = Names(schema, "")
    assert await migrate(admin, n) == list(range(1, LATEST + 1))
    assert await migrate(admin, n) == []
    # an older store: undo the last migration and forget it was applied
    await admin.execute(
        f'DROP INDEX "{schema}"."events_type", "{schema}"."events_aggregate", "{schema}"."events_aggregate_type"'
    )
    await admin.execute(
        f'DROP INDEX "{schema}"."events_ts", "{schema}"."events_tenant", "{schema}"."events_correlation"'
    )
    await admin.execute(f"DELETE FROM {n.migrations} WHERE version >= 2")
    assert await migrate(admin, n) == [2, 3, 4]
    for index in ("events_ts", "events_type", "events_aggregate_type"):
        cur = await admin.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = %s", [schema, index]
        )
        assert (await cur.fetchone())[0] == 1  # type: ignore[index]
    assert await applied(admin, n) == list(range(1, LATEST + 1))


async def test_a_store_of_version_2_with_events_upgrades_and_its_filters_use_the_new_indexes(
    url: str, schema: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    n = Names(schema, "")
    p = PostgresProvider(url, schema=schema)
    await p.connect()
    await p.append("s", [NewEvent(str(uuid.uuid4()), "T", b"{}", b"{}", "json", utcnow(), aggregate_id="g")], 0)
    await p.close()
    await admin.execute(
        f'DROP INDEX "{schema}"."events_type", "{schema}"."events_aggregate", "{schema}"."events_aggregate_type"'
    )
    await admin.execute(f"DELETE FROM {n.migrations} WHERE version >= 3")
    assert await migrate(admin, n) == [3, 4]
    await admin.execute(
        "SET enable_seqscan = off"
    )  # a tiny table: ask whether an index can serve, not which is cheaper
    for clause, index in (("event_type = 'T'", "events_type"), ("aggregate_id = 'g'", "events_aggregate")):
        cur = await admin.execute(f"EXPLAIN SELECT * FROM {n.events} WHERE {clause} ORDER BY position LIMIT 10")
        plan = " ".join(r[0] for r in await cur.fetchall())
        assert index in plan, plan
    await admin.execute("RESET enable_seqscan")


async def test_a_store_of_version_3_keeps_its_stream_metadata_and_new_metadata_is_exact(
    url: str, schema: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    # jsonb changed stream metadata on the way in (1e20 came back as an int, keys sorted, -0.0 as 0.0)
    n = Names(schema, "")
    md = {"z": 1e20, "a": -0.0}
    p = PostgresProvider(url, schema=schema)
    await p.connect()
    await p.close()
    await admin.execute(f"ALTER TABLE {n.streams} DROP COLUMN metadata_text")  # as version 3 left it
    await admin.execute(f"DELETE FROM {n.migrations} WHERE version = 4")
    old_insert = (
        f"INSERT INTO {n.streams} (stream_id, version, event_count, created_at, updated_at, metadata) "
        "VALUES (%s, 0, 0, now(), now(), %s::jsonb)"
    )
    await admin.execute(old_insert, ["before", json.dumps(md)])  # what 3's create_stream stored
    assert await migrate(admin, n) == [4]
    await admin.execute(old_insert, ["older-process", json.dumps(md)])  # a process still on the older release
    p = PostgresProvider(url, schema=schema)
    await p.connect()
    try:
        normalised = {"a": 0.0, "z": 100000000000000000000}
        for stream_id in ("before", "older-process"):  # what the jsonb holds, as it always read
            info = await p.get_stream_info(stream_id)
            assert info is not None
            assert json.dumps(info.metadata) == json.dumps(normalised)
        from eventsource.model import NewStream

        await p.create_stream(NewStream("after", None, None, None, md))
        info = await p.get_stream_info("after")
        assert info is not None
        assert json.dumps(info.metadata) == json.dumps(md)  # as given
        cur = await admin.execute(f"SELECT metadata FROM {n.streams} WHERE stream_id = 'after'")
        assert (await cur.fetchone())[0] == normalised  # type: ignore[index] # an older reader's column still holds it
    finally:
        await p.close()


async def test_a_newer_schema_is_refused(url: str, schema: str, admin: psycopg.AsyncConnection[Any]) -> None:
    n = Names(schema, "")
    await migrate(admin, n)
    await admin.execute(
        f"INSERT INTO {n.migrations} (version, description) VALUES (%s, 'from the future')", [LATEST + 1]
    )
    p = PostgresProvider(url, schema=schema)
    with pytest.raises(ConfigurationError) as info:
        await p.connect()
    assert "newer" in str(info.value)
    await p.close()


async def test_connect_is_idempotent_and_close_too(url: str, schema: str) -> None:
    p = PostgresProvider(url, schema=schema, pool_max_size=2)
    await p.connect()
    await p.connect()
    assert (await p.health()).healthy
    await p.close()
    await p.close()
    assert not (await p.health()).healthy


async def _fresh_schema_race(
    url: str, make: Callable[[str], list[Any]], opener: str, check: Callable[[str, list[Any]], Awaitable[None]]
) -> None:
    """Five rounds on a fresh schema: six of ``make(schema)`` (each opened by its method ``opener``) and two
    providers start at once; every one must open, then ``check(schema, made)`` runs."""
    for _ in range(5):  # (the race is lost in most rounds before the fixes)
        name = f"es_mig_{uuid.uuid4().hex[:12]}"
        made = make(name)
        providers = [PostgresProvider(url, schema=name, pool_min_size=1, pool_max_size=1) for _ in range(2)]
        try:
            opened = await asyncio.gather(
                *(getattr(m, opener)() for m in made), *(p.connect() for p in providers), return_exceptions=True
            )
            assert [o for o in opened if o is not None] == []
            await check(name, made)
        finally:
            await asyncio.gather(*(m.close() for m in made), *(p.close() for p in providers))
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_checkpoint_stores_and_providers_creating_one_schema_at_once_all_connect(url: str) -> None:
    """Review: the checkpoint store created its schema and table with no lock, so two processes starting at once on
    a fresh database failed ('duplicate key value violates unique constraint "pg_namespace_nspname_index"'), also
    racing a provider's migration of the same schema; and a failed creation left the connection cached, so the
    store went on without ever creating its table. Each connect now creates them under the schema's lock."""
    from eventsource.checkpoints import Checkpoint
    from eventsource_postgres.checkpoints import PostgresCheckpointStore

    async def check(_: str, stores: list[Any]) -> None:
        await stores[0].put(Checkpoint("n", "src", "all", 7))
        assert (await stores[-1].get("n", "src")).position == 7

    await _fresh_schema_race(
        url, lambda name: [PostgresCheckpointStore(url, schema=name) for _ in range(6)], "connect", check
    )


async def test_projection_sinks_and_providers_creating_one_schema_at_once_all_open(url: str) -> None:
    """Review: PostgresSink created the checkpoint schema and table as the checkpoint store did, with no lock:
    projection services starting at once on a fresh database failed on the catalog's unique indexes (a provider
    migrating the same schema too), and a failed creation left the connection cached without the table."""
    from eventsource.projections.postgres import PostgresSink
    from eventsource_postgres.schema import MIGRATE_LOCK
    from eventsource_postgres.settings import lock_key

    # core cannot import the plugin: it computes the plugin's key of the schema's lock itself
    assert f"pg_advisory_xact_lock({lock_key(MIGRATE_LOCK, 'abc')})" in PostgresSink(url, schema="abc")._ddl()

    async def check(name: str, _: list[Any]) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{name}"."checkpoints"'])
            assert (await cur.fetchone())[0]  # type: ignore[index]

    await _fresh_schema_race(url, lambda name: [PostgresSink(url, schema=name) for _ in range(6)], "open", check)


async def test_a_checkpoint_table_made_before_the_anchor_gets_it(url: str) -> None:
    """Checkpoints keep the id of the event they counted (``anchor``): a table an older release made gets the
    column (its rows resume unchecked), and a position moved by an older release's put leaves it unchecked."""
    from eventsource.checkpoints import Checkpoint
    from eventsource_postgres.checkpoints import PostgresCheckpointStore

    name = f"es_mig_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        await conn.execute(
            f'CREATE TABLE "{name}"."checkpoints" (name text NOT NULL, source text NOT NULL, scope text NOT NULL, '
            "position bigint NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (name, source))"
        )
        await conn.execute(f"""INSERT INTO "{name}"."checkpoints" VALUES ('old', 'src', 'stream:a', 4, now())""")
    store = PostgresCheckpointStore(url, schema=name)
    try:
        await store.connect()
        old = await store.get("old", "src")
        assert old is not None and (old.position, old.event_id) == (4, None)
        await store.put(Checkpoint("old", "src", "stream:a", 5, event_id="id-5"))
        await store.put(Checkpoint("new", "src", "stream:b", 1, event_id="id-1"))
        assert [(cp.name, cp.event_id) for cp in await store.list()] == [("new", "id-1"), ("old", "id-5")]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"""UPDATE "{name}"."checkpoints" SET position = 6 WHERE name = 'old'""")
        moved = await store.get("old", "src")
        assert moved is not None and (moved.position, moved.event_id) == (6, None)
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

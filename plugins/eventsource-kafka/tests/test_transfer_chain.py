"""A store copied SQLite -> PostgreSQL -> NATS -> Kafka -> SQLite verifies byte-equal at every hop (issue #15).

It lives here because the kafka env installs every plugin. The store is encrypted and compressed, with
snapshots, stream attributes, an empty stream and a truncated one; at the end it still decrypts.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
import signal
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from eventsource.errors import ConfigurationError
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.sqlite import SqliteProvider
from eventsource.testing.fidelity import read_back, write_fuzzed
from eventsource.testing.transfer import KILLED_COPY, decoded, manager_on, populate
from eventsource.transfer import PositionMap, copy_store, export_store, import_store, open_input, verify_stores
from eventsource_kafka import KafkaProvider
from eventsource_nats.provider import NatsProvider
from eventsource_postgres import PostgresProvider

from .conftest import drop_namespace

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.provider import Provider

PG_URL = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
NATS_URL = os.environ.get("EVENTSOURCE_TEST_NATS_URL", "nats://127.0.0.1:4222")
STREAMS = 50
EVENTS = 2000


async def test_copy_chain_through_every_store_is_byte_equal(kafka_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]
    first = SqliteProvider(f"sqlite:///{tmp_path / 'first.db'}")
    pg = PostgresProvider(PG_URL, schema=f"es_{tag}", pool_max_size=4, visibility_wait=30)
    nats = NatsProvider(NATS_URL, stream=f"T{tag}", subject_prefix=f"t{tag}")
    kafka = KafkaProvider(kafka_url, topic_prefix=f"t{tag}", request_timeout=60.0)
    last = SqliteProvider(f"sqlite:///{tmp_path / 'last.db'}")
    chain: list[Provider] = [first, pg, nats, kafka, last]
    m = await manager_on(first)
    try:
        for p in chain[1:]:
            await p.connect()
        await populate(m, streams=STREAMS, events=EVENTS)
        expected = await decoded(m)
        for i, (src, dst) in enumerate(itertools.pairwise(chain)):
            result = await copy_store(src, dst, position_map=tmp_path / f"map{i}.db", verify=True)
            assert result.verify is not None
            assert result.verify.ok, (dst.kind, result.verify.differences)
            assert result.written == EVENTS - 2, dst.kind  # the first stream is truncated below version 3
            assert result.streams == STREAMS + 1
            assert (await verify_stores(first, dst)).ok, dst.kind  # byte-equal to the original, not just the hop
            # a re-run with the hop's map: the map is found true to this target (its check reads the target's
            # positions), and nothing is written twice
            again = await copy_store(src, dst, position_map=tmp_path / f"map{i}.db")
            assert again.written == 0, dst.kind
            positions = PositionMap(tmp_path / f"map{i}.db")
            try:
                assert len(positions) == EVENTS - 2
            finally:
                positions.close()
        end = await manager_on(last)
        try:
            assert await decoded(end) == expected  # the ciphertext still decrypts after four hops
        finally:
            await end.close()
    finally:
        await m.close()
        await drop_namespace(kafka)
        await nats.drop_store()
        for p in chain[1:]:
            await p.close()
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "es_{tag}" CASCADE')


async def test_export_from_kafka_imports_into_postgres_byte_equal(kafka_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]
    first = SqliteProvider(f"sqlite:///{tmp_path / 'first.db'}")
    kafka = KafkaProvider(kafka_url, topic_prefix=f"t{tag}", request_timeout=60.0)
    pg = PostgresProvider(PG_URL, schema=f"es_{tag}", pool_max_size=4, visibility_wait=30)
    m = await manager_on(first)
    try:
        await kafka.connect()
        await pg.connect()
        await populate(m, streams=10, events=300)
        await copy_store(first, kafka)
        path = tmp_path / "kafka.jsonl"
        with path.open("wb") as out:
            await export_store(kafka, out)
        with path.open("rb") as stream:
            result = await import_store(stream, pg, check_first=True)
        assert result.written == 300 - 2
        report = await verify_stores(first, pg)
        assert report.ok, report.differences
    finally:
        await m.close()
        await drop_namespace(kafka)
        await kafka.close()
        await pg.close()
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "es_{tag}" CASCADE')


async def test_a_copy_into_postgres_killed_mid_window_and_rerun_is_exact(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]
    first = SqliteProvider(f"sqlite:///{tmp_path / 'first.db'}")
    settings = {"schema": f"es_{tag}", "pool_max_size": 4, "visibility_wait": 30}
    pg = PostgresProvider(PG_URL, **settings)
    m = await manager_on(first)
    try:
        await populate(m, streams=STREAMS, events=EVENTS)
        mapfile = str(tmp_path / "map.db")
        args = [first.url or "", PG_URL, json.dumps(settings), mapfile, "append", "40"]
        killed = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", KILLED_COPY, *args], check=False)
        assert killed.returncode == -signal.SIGKILL
        await pg.connect()
        half = [rec.event_id async for rec in pg.read_all()]
        assert 0 < len(half) < EVENTS - 2
        result = await copy_store(first, pg, position_map=mapfile, verify=True)
        assert result.written == EVENTS - 2 - len(half)
        ids = [rec.event_id async for rec in pg.read_all()]
        assert len(ids) == len(set(ids)) == EVENTS - 2
        positions = PositionMap(mapfile)
        try:
            assert len(positions) == EVENTS - 2
        finally:
            positions.close()
    finally:
        await m.close()
        await pg.close()
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "es_{tag}" CASCADE')


async def test_fuzzed_data_comes_back_exactly_after_sqlite_postgres_sqlite_export_nats_export_memory(
    tmp_path: Path,
) -> None:
    """Every field of the fidelity kit's fuzzed store (ids of any text, big ints, -0.0, 1e20, astral text, deep
    payloads, odd timestamps, stream metadata kept as exact JSON text) reads back exactly on every read path at
    every hop, after copies and export/import round trips, and verify says so against the original.
    """
    tag = uuid.uuid4().hex[:12]
    first = SqliteProvider(f"sqlite:///{tmp_path / 'first.db'}")
    pg = PostgresProvider(PG_URL, schema=f"es_{tag}", pool_max_size=4, visibility_wait=30)
    back = SqliteProvider(f"sqlite:///{tmp_path / 'back.db'}")
    nats = NatsProvider(NATS_URL, stream=f"T{tag}", subject_prefix=f"t{tag}")
    last = MemoryProvider(f"memory://fidelity-{tag}")
    stores: list[Provider] = [first, pg, back, nats, last]
    for p in stores:
        await p.connect()
    managers = [await _plain_manager(p) for p in stores]
    try:
        written = await write_fuzzed(managers[0], 20240229, streams=6, events=40)
        await copy_store(first, pg, position_map=tmp_path / "m1.db", verify=True)
        await copy_store(pg, back, position_map=tmp_path / "m2.db", verify=True)
        for src, dst, name in ((back, nats, "a"), (nats, last, "b")):
            path = tmp_path / f"{name}.jsonl"
            with path.open("wb") as out:
                await export_store(src, out)
            with open_input(str(path)) as stream:
                await import_store(stream, dst, check_first=True, position_map=tmp_path / f"{name}.db")
        for p, m in zip(stores[1:], managers[1:], strict=True):
            problems = await read_back(m, copy.deepcopy(written), subscription=False)
            assert not problems, (p.kind, problems[:10])
            report = await verify_stores(first, p)
            assert report.ok, (p.kind, report.differences)
        with pytest.raises(ConfigurationError, match="the source and the target are the same store"):
            again = PostgresProvider(PG_URL, schema=f"es_{tag}", pool_max_size=2)
            try:
                await copy_store(pg, again, position_map=tmp_path / "self.db")
            finally:
                await again.close()
    finally:
        await nats.drop_store()
        for m in managers:  # (closes its provider)
            await m.close()
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "es_{tag}" CASCADE')


async def _plain_manager(provider: Provider) -> EventSourcingManager:
    """A manager over ``provider`` with the default codecs (no encryption), as the fidelity kit writes."""
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(provider, name="store", default=True)
    return m

"""Issue #15's acceptance run: 100,000 events in 1,000 streams, encrypted and compressed, with snapshots, copied
SQLite -> PostgreSQL -> NATS -> Kafka -> SQLite, each hop verified against the original, then decrypted.

Not a test (it takes minutes): ``python benchmarks/transfer_chain.py`` in an env with every plugin (the kafka
tox env); it starts its own Tansu broker and prints one line per hop (copy time, events/s, verification).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from eventsource.model import EventData
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import decoded, manager_on
from eventsource.transfer import copy_store, verify_stores
from eventsource_kafka import KafkaProvider
from eventsource_kafka.tansu import start_tansu
from eventsource_nats.provider import NatsProvider
from eventsource_postgres import PostgresProvider

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager

PG_URL = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("EVENTSOURCE_TEST_NATS_URL", "nats://127.0.0.1:4222")
STREAMS = 1000
ROUNDS = 10
BATCH = 10


async def fill(m: EventSourcingManager) -> None:
    """``STREAMS * ROUNDS * BATCH`` events, streams interleaved, and two snapshots on every fifth stream."""
    n = 0
    for _ in range(ROUNDS):
        for s in range(STREAMS):
            batch = [
                EventData(event_type="T", data={"n": n + k, "s": "x" * (k * 20)}, metadata={"k": k}, tenant_id="t")
                for k in range(BATCH)
            ]
            await m.append_events_batch(stream_id=f"s-{s:04d}", events=batch)
            n += BATCH
    for s in range(0, STREAMS, 5):
        await m.create_snapshot(stream_id=f"s-{s:04d}", data={"snap": s}, version=50)
        await m.create_snapshot(stream_id=f"s-{s:04d}", data={"snap": s}, version=100)


async def main() -> None:
    broker = start_tansu()
    tag = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        first = SqliteProvider(f"sqlite:///{tmp / 'first.db'}", synchronous="normal")
        m = await manager_on(first)
        start = time.perf_counter()
        await fill(m)
        print(f"populated in {time.perf_counter() - start:.1f}s", flush=True)
        pg = PostgresProvider(PG_URL, schema=f"es_{tag}", pool_max_size=4)
        nats = NatsProvider(NATS_URL, stream=f"T{tag}", subject_prefix=f"t{tag}")
        kafka = KafkaProvider(broker.url, topic_prefix=f"t{tag}", request_timeout=60.0)
        last = SqliteProvider(f"sqlite:///{tmp / 'last.db'}")
        chain = [first, pg, nats, kafka, last]
        try:
            for p in chain[1:]:
                await p.connect()
            for i, (src, dst) in enumerate(itertools.pairwise(chain)):
                start = time.perf_counter()
                r = await copy_store(src, dst, position_map=tmp / f"map{i}.db")
                took = time.perf_counter() - start
                start = time.perf_counter()
                v = await verify_stores(first, dst)
                print(
                    f"{src.kind}->{dst.kind}: {r.written} events, {r.snapshots} snapshots in {took:.1f}s "
                    f"({r.written / took:.0f} events/s); against the original: ok={v.ok}, {v.streams} streams, "
                    f"{v.events} events, {v.snapshots} snapshots, verified in {time.perf_counter() - start:.1f}s",
                    flush=True,
                )
            end = await manager_on(last)
            print("the last copy decrypts to the original:", await decoded(end) == await decoded(m))
            await end.close()
        finally:
            await m.close()
            await nats.drop_store()
            for p in chain[1:]:
                await p.close()
            async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "es_{tag}" CASCADE')
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())

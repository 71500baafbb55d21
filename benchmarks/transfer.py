"""Issue #15: copy throughput against the target store's own batch-append throughput, in the same run.

A source SQLite file holds ``--events`` events over ``--streams`` streams, interleaved as applications write
them (built once, outside any timer, through the provider). Each round, interleaved: ``copy_store`` into a
fresh target, and the same events appended straight to another fresh target in batches of 100 per stream
(the records built before the timer). Events per second of each, medians over ``--rounds``, and the ratio.
Usage: ``python benchmarks/transfer.py --target sqlite --target postgres``; JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider
from eventsource.transfer import copy_store
from eventsource.transfer.run import WINDOW

if TYPE_CHECKING:
    from eventsource.provider import Provider

PG_URL = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("EVENTSOURCE_TEST_NATS_URL", "nats://127.0.0.1:4222")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
BATCH = 100


async def build_source(path: Path, events: int, streams: int) -> SqliteProvider:
    """The source store: ``events`` events, stream ``i % streams`` for event ``i`` (fully interleaved)."""
    src = SqliteProvider(f"sqlite:///{path}")
    await src.connect()
    payload = b"x" * 200
    for start in range(0, events, BATCH * streams):
        for s in range(streams):
            batch = [
                NewEvent(str(uuid.uuid4()), "T", payload, b"", "json", T0 + timedelta(microseconds=i))
                for i in range(start + s, min(start + BATCH * streams, events), streams)
            ]
            if batch:
                await src.append(f"s-{s:04d}", batch, -1)
    return src


async def fresh_target(kind: str, tmp: Path) -> tuple[Provider, Any]:
    """A connected, empty target and a coroutine function that drops it."""
    tag = uuid.uuid4().hex[:12]
    if kind == "sqlite":
        p: Provider = SqliteProvider(f"sqlite:///{tmp / f'{tag}.db'}")
        await p.connect()
        return p, p.close
    if kind == "postgres":
        import psycopg
        from eventsource_postgres import PostgresProvider

        p = PostgresProvider(PG_URL, schema=f"es_bench_{tag}", pool_max_size=4)
        await p.connect()

        async def drop_pg() -> None:
            await p.close()
            async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "es_bench_{tag}" CASCADE')

        return p, drop_pg
    if kind == "nats":
        from eventsource_nats.provider import NatsProvider

        n = NatsProvider(NATS_URL, stream=f"B{tag}", subject_prefix=f"b{tag}")
        await n.connect()

        async def drop_nats() -> None:
            await n.drop_store()
            await n.close()

        return n, drop_nats
    msg = f"unknown target {kind!r}"
    raise SystemExit(msg)


async def batches_of(src: Provider) -> list[tuple[str, list[NewEvent]]]:
    """The source's events as per-stream batches of :data:`BATCH` (built before the baseline's timer)."""
    by_stream: dict[str, list[NewEvent]] = {}
    async for r in src.read_all():
        by_stream.setdefault(r.stream_id, []).append(
            NewEvent(r.event_id, r.event_type, r.data, r.metadata, r.encoding, r.timestamp)
        )
    return [(sid, evs[i : i + BATCH]) for sid, evs in by_stream.items() for i in range(0, len(evs), BATCH)]


async def one_round(
    kind: str, src: Provider, batches: list[tuple[str, list[NewEvent]]], tmp: Path, window: int
) -> dict[str, float]:
    total = sum(len(b) for _, b in batches)
    out: dict[str, float] = {}
    dst, drop = await fresh_target(kind, tmp)
    try:
        start = time.perf_counter()
        versions: dict[str, int] = {}
        for sid, batch in batches:
            await dst.append(sid, batch, versions.get(sid, 0))
            versions[sid] = versions.get(sid, 0) + len(batch)
        out["batch_append"] = total / (time.perf_counter() - start)
    finally:
        await drop()
    dst, drop = await fresh_target(kind, tmp)
    try:
        start = time.perf_counter()
        result = await copy_store(src, dst, position_map=tmp / f"map-{uuid.uuid4().hex}.db", window=window)
        out["copy"] = result.written / (time.perf_counter() - start)
    finally:
        await drop()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", default=None)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window", type=int, default=WINDOW)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = await build_source(tmp / "source.db", args.events, args.streams)
        batches = await batches_of(src)
        report: dict[str, Any] = {
            "events": args.events,
            "streams": args.streams,
            "rounds": args.rounds,
            "window": args.window,
            "targets": {},
        }
        for kind in args.target or ["sqlite"]:
            rounds = [await one_round(kind, src, batches, tmp, args.window) for _ in range(args.rounds)]
            copy = statistics.median(r["copy"] for r in rounds)
            base = statistics.median(r["batch_append"] for r in rounds)
            report["targets"][kind] = {
                "copy_events_per_s": round(copy),
                "batch_append_events_per_s": round(base),
                "ratio": round(copy / base, 2),
            }
        await src.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

"""Issue #17 on Kafka: ``stats(top_streams=10)`` on a small and a big store, in the writer and in a cold process.

Each size gets a fresh Tansu broker (memory storage) and a store of 1,000 streams (a topic each) written through the
provider in appends of ``--batch`` events by a loader process, which then times its own bounded stats (it holds
every stream's tail: exact figures). A second process, which never wrote, times its first call (it reads each
topic's last record once) and its next calls (cached until a topic's end moves), and the unbounded scan
(``stats()``) once. Usage: ``python benchmarks/scale_kafka.py --big 200000``; JSON to
``benchmarks/report/scale/kafka-<big>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from eventsource.model import NewEvent, utcnow
from eventsource_kafka import KafkaProvider

STREAMS = 1000


async def timed(call: Any, rounds: int) -> tuple[float, Any]:
    """Median ms of ``rounds`` calls after one warm-up, and the last answer."""
    await call()
    out, last = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        last = await call()
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1e3, last


def figures(st: Any) -> dict[str, Any]:
    return {"total_events": st.total_events, "total_streams": st.total_streams, "estimated": list(st.estimated)}


async def load(url: str, prefix: str, n: int, batch: int, rounds: int) -> dict[str, Any]:
    """Write ``n`` events over the streams, then time bounded stats in this (the writing) process."""
    p = KafkaProvider(url, topic_prefix=prefix, request_timeout=60.0)
    await p.connect()
    per = n // STREAMS
    sem = asyncio.Semaphore(16)

    async def one(s: int) -> None:
        async with sem:
            v = 0
            while v < per:
                k = min(batch, per - v)
                evs = [NewEvent(str(uuid.uuid4()), f"T{(v + j) % 5}", b"{}", b"{}", "json", utcnow()) for j in range(k)]
                await p.append(f"s-{s:04d}", evs, v)
                v += k

    t = time.perf_counter()
    await asyncio.gather(*(one(s) for s in range(STREAMS)))
    built = time.perf_counter() - t
    ms, st = await timed(lambda: p.stats(top_streams=10), rounds)
    await p.close()
    return {"load_s": built, "writer_ms": ms, "writer": figures(st)}


async def cold(url: str, prefix: str, rounds: int, *, scan: bool) -> dict[str, Any]:
    """Bounded stats in a process that holds no tail: the first call, then the cached ones."""
    p = KafkaProvider(url, topic_prefix=prefix, request_timeout=60.0)
    await p.connect()
    t = time.perf_counter()
    first = await p.stats(top_streams=10)
    out: dict[str, Any] = {"first_ms": (time.perf_counter() - t) * 1e3, "first": figures(first)}
    out["next_ms"], st = await timed(lambda: p.stats(top_streams=10), rounds)
    out["next"] = figures(st)
    if scan:
        t = time.perf_counter()
        full = await p.stats()
        out["scan_ms"] = (time.perf_counter() - t) * 1e3
        out["scan"] = figures(full)
    await p.close()
    return out


def child(*args: str) -> dict[str, Any]:
    """Run one step in a process of its own and return what it printed (JSON)."""
    done = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10, help="events per append (one record each)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--scan-up-to", type=int, default=10_000, help="time the unbounded scan on stores this small")
    ap.add_argument("--step", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.step:
        kind, url, prefix, n = a.step[0], a.step[1], a.step[2], int(a.step[3])
        if kind == "load":
            print(json.dumps(asyncio.run(load(url, prefix, n, a.batch, a.rounds))))
        else:
            print(json.dumps(asyncio.run(cold(url, prefix, a.rounds, scan=n <= a.scan_up_to))))
        return
    from eventsource_kafka.tansu import start_tansu

    out: dict[str, Any] = {"store": "kafka", "streams": STREAMS, "batch": a.batch, "rounds": a.rounds, "sizes": {}}
    for n in (a.small, a.big):
        broker = start_tansu()
        try:
            prefix = f"scale{n}"
            step = [f"--batch={a.batch}", f"--rounds={a.rounds}", f"--scan-up-to={a.scan_up_to}", "--step"]
            row = child(*step, "load", broker.url, prefix, str(n))
            row.update(child(*step, "cold", broker.url, prefix, str(n)))
        finally:
            broker.stop()
        row["loadavg"] = os.getloadavg()
        out["sizes"][str(n)] = row
        print(f"kafka {n:,} events: {json.dumps(row)}", flush=True)
    report = Path(__file__).parent / "report" / "scale" / f"kafka-{a.big}.json"
    report.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {report}")


if __name__ == "__main__":
    main()

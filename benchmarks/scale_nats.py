"""Issue #17 on NATS: ``stats(top_streams=10)`` on a small and a big store, published through the provider.

Stores (1,000 streams, batches of 500) are kept on the server between runs, one JetStream stream per size.
Usage: ``python benchmarks/scale_nats.py 1000000`` (``EVENTSOURCE_TEST_NATS_URL`` names the server).
"""

import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

from eventsource.model import NewEvent
from eventsource_nats import NatsProvider


async def build(n: int, tag: str) -> NatsProvider:
    p = NatsProvider(
        os.environ.get("EVENTSOURCE_TEST_NATS_URL", "nats://127.0.0.1:4222"),
        stream=f"ESSCALE{tag}",
        subject_prefix=f"esscale{tag}".lower(),
    )
    await p.connect()
    st = await p.stats(top_streams=1)
    have = st.extra["messages"]
    t = time.perf_counter()
    if have == 0:
        per = n // 1000
        sem = asyncio.Semaphore(8)

        async def one(s: int) -> None:
            async with sem:
                v = 0
                while v < per:
                    k = min(500, per - v)
                    evs = [
                        NewEvent(str(uuid.uuid4()), f"T{(v + j) % 5}", b"{}", b"{}", "json", datetime.now(UTC))
                        for j in range(k)
                    ]
                    await p.append(f"s-{s:04d}", evs, v)
                    v += k

        await asyncio.gather(*(one(s) for s in range(1000)))
    print(f"store {n}: ready in {time.perf_counter() - t:.1f}s (atomic={p.uses_atomic_batches})", flush=True)
    return p


async def main() -> None:
    out = {}
    for n, tag in ((10_000, "S"), (int(sys.argv[1]), f"N{sys.argv[1]}")):
        p = await build(n, tag)
        await p.stats(top_streams=10)
        ts = []
        for _ in range(7):
            t = time.perf_counter()
            st = await p.stats(top_streams=10)
            ts.append(time.perf_counter() - t)
        out[n] = statistics.median(ts) * 1e3
        print(
            f"  stats(top_streams=10) at {n}: {out[n]:.1f} ms; total_events {st.total_events}, estimated {st.estimated}"
            f", top {list(st.events_by_stream.items())[:2]}",
            flush=True,
        )
        await p.close()


asyncio.run(main())

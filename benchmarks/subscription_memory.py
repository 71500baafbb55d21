"""Issue #13: a subscription 1,000,000 events behind catches up in flat memory (resident memory sampled).

Opens the SQLite store ``benchmarks/transfer_memory.py`` builds (1,000,000 events in 1,000 streams, built
there if missing), subscribes from position 0 and consumes every event with a handler that keeps nothing,
printing the process's resident memory every 10% of the way: the subscription holds one page, so the
figures must not grow with the backlog. Usage: ``python benchmarks/subscription_memory.py``; one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import time

from eventsource import EventSourcingManager
from transfer_memory import build, parse_args, rss_mib


async def main() -> None:
    """Build (or reuse) the store, catch a subscription up over it, print the memory samples."""
    args, path = parse_args(__doc__)
    await build(path, args.events, args.streams)
    samples: list[tuple[int, float]] = []
    step = args.events // 10
    start = rss_mib()
    t0 = time.perf_counter()
    async with EventSourcingManager({"providers": {"s": f"sqlite:///{path}"}}) as es:
        n = 0
        async with es.subscribe() as sub:
            async for _event in sub:
                n += 1
                if n % step == 1 or step == 1:
                    samples.append((n, round(rss_mib(), 1)))
                if n >= args.events:
                    break
    took = time.perf_counter() - t0
    out = {"events": n, "rss_before_mib": round(start, 1), "samples": samples, "seconds": round(took, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())

"""Issue #15: memory of a copy stays flat as the store grows (peak RSS sampled while 1,000,000 events copy).

Builds a SQLite source of ``--events`` events in ``--streams`` streams (cached under ``--workdir``), copies it
into a fresh SQLite target with a position map on disk, and prints the process's resident memory at every
10% of the copy: a copy holds one window of events, so the figures must not grow with the events copied.
Usage: ``python benchmarks/transfer_memory.py --events 1000000``; one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider
from eventsource.transfer import copy_store

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def rss_mib() -> float:
    """Resident memory of this process now (from /proc; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def parse_args(description: str | None) -> tuple[argparse.Namespace, Path]:
    """The memory scripts' options (``--events``, ``--streams``, ``--workdir``) and the source store's path.

    The path names the events and streams, so a source built once is reused by every script asking for it.
    """
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = ap.parse_args()
    return args, args.workdir / f"es-copy-src-{args.events}-{args.streams}.db"


async def build(path: Path, events: int, streams: int) -> None:
    """The source: ``events`` events over ``streams`` streams, written in batches of 1,000 per stream."""
    if path.exists():  # noqa: ASYNC240 - once, before anything runs
        return
    src = SqliteProvider(f"sqlite:///{path}")
    await src.connect()
    per = events // streams
    for s in range(streams):
        sid = f"acct-{s}"
        for first in range(0, per, 1000):
            batch = [
                NewEvent(
                    event_id=f"{s:05d}-{first + k:07d}",
                    event_type="Posted",
                    data=json.dumps({"n": first + k, "memo": "x" * 64}).encode(),
                    metadata=b"",
                    encoding="json",
                    timestamp=T0 + timedelta(seconds=first + k),
                )
                for k in range(min(1000, per - first))
            ]
            await src.append(sid, batch, first)
    await src.close()


async def main() -> None:
    """Build (or reuse) the source, copy it, print the memory samples."""
    args, src_path = parse_args(__doc__)
    await build(src_path, args.events, args.streams)
    dst_path = args.workdir / f"es-copy-dst-{time.time_ns()}.db"
    src, dst = SqliteProvider(f"sqlite:///{src_path}"), SqliteProvider(f"sqlite:///{dst_path}")
    await src.connect()
    await dst.connect()
    samples: list[tuple[int, float]] = []
    start = rss_mib()
    step = args.events // 10

    def progress(p: object) -> None:
        done = int(getattr(p, "events", 0))
        if not samples or done - samples[-1][0] >= step:
            samples.append((done, round(rss_mib(), 1)))

    t0 = time.perf_counter()
    result = await copy_store(src, dst, position_map=str(dst_path) + ".map", progress=progress)
    took = time.perf_counter() - t0
    await src.close()
    await dst.close()
    for p in (dst_path, Path(str(dst_path) + ".map")):
        p.unlink(missing_ok=True)
    out = {"events": args.events, "streams": args.streams, "rss_before_mib": round(start, 1), "samples": samples}
    out |= {"seconds": round(took, 1), "result": str(result)[:200]}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())

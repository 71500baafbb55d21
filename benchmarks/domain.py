"""Domain-model benchmarks: a snapshotted aggregate's load against a small one's, and upcasting overhead.

Two rows, each a median over rounds of a per-round ratio, both sides on the same store in the same run
with their data written before any timer starts, the side that goes first alternating by round:
``aggregate_load_snapshot`` times ``Repository.get`` of a 10,000-event aggregate with a snapshot at
9,990 against ``Repository.get`` of a 10-event one without a snapshot (target: about 1x); and
``read_1000_upcast`` times ``read_stream`` over 1,000 events whose type has one upcaster step against
1,000 events of the same data and a type with none (target: <= 1.3x). The harness (``run.py``) runs both
on every store as ``domain_*`` rows; this script runs them alone, on SQLite or memory.

    python benchmarks/domain.py [--store sqlite|memory] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsource import EventSourcingManager
from eventsource.domain import SCHEMA_KEY, Aggregate, DomainEvent, Repository, applies
from eventsource.domain.repository import EVENT_KEY
from eventsource.model import EventData


@dataclass(frozen=True)
class Counted(DomainEvent, type_name="bench.Counted"):
    """One increment."""

    n: int
    label: str


class Counter(Aggregate):
    """Sums ``n``."""

    aggregate_type = "bench.Counter"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.total = 0

    @applies(Counted)
    def _counted(self, e: Counted) -> None:
        self.total += e.n


async def _append(es: EventSourcingManager, stream: str, events: list[Any], chunk: int = 500) -> None:
    for i in range(0, len(events), chunk):
        await es.append_events_batch(stream_id=stream, events=events[i : i + chunk])


async def _timed(fn: Any) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def aggregate_load(
    es: EventSourcingManager, big_n: int, tail: int, rounds: int, per_round: int = 1
) -> dict[str, Any]:
    """``get`` of a ``big_n``-event aggregate snapshotted ``tail`` events before its end vs a ``tail``-event one.

    Each round times ``per_round`` gets of each, alternating which goes first, and keeps their medians.
    """
    repo = Repository(es, Counter, snapshot_threshold=big_n * 10)  # snapshots only where this run puts them
    events = [Counted(1, f"e{i}") for i in range(big_n)]
    await _append(es, Counter.stream_id_of("big"), events[: big_n - tail])
    loaded = await repo.get("big")
    [last] = [e async for e in es.read_stream(loaded.stream_id, from_version=loaded.version)]
    await es.create_snapshot(
        stream_id=loaded.stream_id,
        data=loaded.to_snapshot(),
        version=loaded.version,
        metadata={SCHEMA_KEY: Counter.snapshot_version, EVENT_KEY: last.event_id},
        aggregate_type=Counter.aggregate_type,
    )
    await _append(es, Counter.stream_id_of("big"), events[big_n - tail :])
    await _append(es, Counter.stream_id_of("small"), events[:tail])
    big, small = await repo.get("big"), await repo.get("small")
    assert (big.total, big.version, small.total) == (big_n, big_n, tail), "the benchmark state is wrong"
    big_s, small_s = await _rounds(("big", "small"), repo.get, rounds, per_round)
    ratios = [b / s for b, s in zip(big_s, small_s, strict=True)]
    return {"ratio": statistics.median(ratios), "big_s": big_s, "small_s": small_s, "events": big_n, "tail": tail}


async def _rounds(names: tuple[str, str], op: Any, rounds: int, per_round: int) -> tuple[list[float], list[float]]:
    """Per round, the median seconds of ``per_round`` calls ``op(name)`` for each of the two names, interleaved."""
    a_s: list[float] = []
    b_s: list[float] = []
    for r in range(rounds):
        took: dict[str, list[float]] = {n: [] for n in names}
        for i in range(per_round):
            for name in names if (r + i) % 2 == 0 else names[::-1]:
                took[name].append(await _timed(lambda name=name: op(name)))
        a_s.append(statistics.median(took[names[0]]))
        b_s.append(statistics.median(took[names[1]]))
    return a_s, b_s


async def read_upcast(es: EventSourcingManager, n: int, rounds: int, per_round: int = 1) -> dict[str, Any]:
    """``read_stream`` of ``n`` events with one upcaster step each vs ``n`` events of a type with none."""
    data = [{"name": f"item-{i}", "qty": i % 7} for i in range(n)]
    await _append(es, "bench-up", [EventData("bench.Old", d) for d in data])
    await _append(es, "bench-plain", [EventData("bench.Plain", d) for d in data])
    es.add_upcaster("bench.Old", 1, lambda d: {"item": d["name"], "qty": d["qty"]})

    async def read(stream: str) -> None:
        count = 0
        async for _ in es.read_stream(stream):
            count += 1
        assert count == n

    up_s, plain_s = await _rounds(("bench-up", "bench-plain"), read, rounds, per_round)
    ratios = [u / p for u, p in zip(up_s, plain_s, strict=True)]
    return {"ratio": statistics.median(ratios), "upcast_s": up_s, "plain_s": plain_s, "events": n}


async def run(store: str, quick: bool, rounds: int, workdir: Path) -> dict[str, Any]:
    """Both rows on a fresh store; the results as plain data."""
    url = "memory://" if store == "memory" else f"sqlite:///{workdir / 'domain-bench.db'}"
    big_n, n = (1_000, 200) if quick else (10_000, 1_000)
    async with EventSourcingManager({"providers": {store: url}, "default_provider": store}) as es:
        load = await aggregate_load(es, big_n, 10, rounds)
        up = await read_upcast(es, n, rounds)
    return {
        "store": store,
        "rounds": rounds,
        "aggregate_load_snapshot": {**load, "target": "about 1x"},
        "read_1000_upcast": {**up, "target": "<= 1.3x", "pass": up["ratio"] <= 1.3},
    }


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print the two rows."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    ap.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run")
    ap.add_argument("--repetitions", type=int, default=None, help="rounds per row (default 7; --quick 1)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rounds = args.repetitions or (1 if args.quick else 7)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        out = asyncio.run(run(args.store, args.quick, rounds, Path(tmp)))
    load, up = out["aggregate_load_snapshot"], out["read_1000_upcast"]
    print(f"store {out['store']}, median of {rounds} round(s)")
    print(
        f"aggregate_load_snapshot  {load['events']} events, snapshot {load['tail']} before the end "
        f"/ {load['tail']} events: {load['ratio']:.2f}x (target {load['target']})"
    )
    print(
        f"read_1000_upcast         {up['events']} events, one upcaster each / none: {up['ratio']:.2f}x "
        f"(target {up['target']}: {'PASS' if up['pass'] else 'FAIL'})"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

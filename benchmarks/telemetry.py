"""Telemetry cost per call: off (also the code path without the ``otel`` extra), the API's no-op providers, the SDK.

Standalone: ``python benchmarks/telemetry.py [--store URL] [--rounds N] [--json]``. One manager on one store
switches its policy's telemetry between contestants, interleaved round by round (the order rotates), so the
machine's noise falls on all alike; each figure is the median over the rounds of the mean microseconds per
``append_event`` (one event, exact expected version) and per ``read_stream`` of a 100-event stream. The SDK
contestant records spans (no processor: no export) and metrics (an in-memory reader).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from typing import Any

from eventsource import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.telemetry import build


def contestants() -> dict[str, Any]:
    """Name -> the policy's ``telemetry`` (``None``: off)."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    out: dict[str, Any] = {
        "off": None,
        "api no-op": build(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()),
    }
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return out
    sdk_meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
    out["sdk"] = build(tracer_provider=TracerProvider(), meter_provider=sdk_meter)
    return out


async def measure(store: str, rounds: int, appends: int, reads: int) -> list[dict[str, Any]]:
    """One row per (operation, contestant): median microseconds per call, and each round's figure."""
    m = EventSourcingManager({"providers": {"bench": {"url": store}}}, host=PluginHost(load_entrypoints=False))
    await m.connect()
    who = contestants()
    names = list(who)
    samples: dict[tuple[str, str], list[float]] = {(op, n): [] for op in ("append", "read_stream") for n in names}
    try:
        full = f"full-{uuid.uuid4().hex[:8]}"
        await m.append_events_batch(stream_id=full, events=[{"event_type": "E", "data": {"i": i}} for i in range(100)])
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                m._policy.telemetry = who[name]  # noqa: SLF001 - the contestant under test
                sid = f"b-{uuid.uuid4().hex[:12]}"
                start = time.perf_counter_ns()
                for v in range(appends):
                    await m.append_event(stream_id=sid, event_type="E", data={"v": v}, expected_version=v)
                samples["append", name].append((time.perf_counter_ns() - start) / appends / 1000)
                start = time.perf_counter_ns()
                for _ in range(reads):
                    async for _e in m.read_stream(full):
                        pass
                samples["read_stream", name].append((time.perf_counter_ns() - start) / reads / 1000)
    finally:
        m._policy.telemetry = None  # noqa: SLF001
        await m.close()
    return [
        {
            "operation": op,
            "telemetry": n,
            "median_us": round(statistics.median(v), 1),
            "rounds_us": [round(x, 1) for x in v],
        }
        for (op, n), v in samples.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="memory://", help="store URL (default memory://: the overhead shows most)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--appends", type=int, default=300, help="appends per contestant per round")
    parser.add_argument("--reads", type=int, default=30, help="100-event reads per contestant per round")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.store, args.rounds, args.appends, args.reads))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"python {sys.version.split()[0]}; {args.store}; median of {args.rounds} interleaved rounds")
    print(f"{'operation':12} {'telemetry':10} {'us/call':>9}")
    for r in rows:
        print(f"{r['operation']:12} {r['telemetry']:10} {r['median_us']:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

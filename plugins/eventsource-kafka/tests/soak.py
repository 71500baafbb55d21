"""Reads under writes (issue #11, part 1), as a function the tests and a long manual run share.

One manager (``timeout=10``), one stream: a task appends single events with the exact expected
version every ~2 ms, another reads the whole stream in a loop, and a third applies ``max_count``
retention beside them. Every read must end (at the log end it saw when it began) and every retention
run must succeed; any timeout or error stops the run and is returned.

Long run (10 minutes)::

    EVENTSOURCE_TEST_KAFKA_BOOTSTRAP=127.0.0.1:PORT python -m tests.soak 600 [PREFILL]

(from ``plugins/eventsource-kafka``); without the variable a Tansu broker is started for the run.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field

from eventsource import EventSourcingManager


@dataclass
class SoakReport:
    """What one run did: counts, and the first failure (``None`` when every call succeeded)."""

    appends: int = 0
    reads: int = 0
    longest_read_events: int = 0
    retention_runs: int = 0
    hidden_by_retention: int = 0
    failure: str | None = None
    read_versions_ok: bool = True
    notes: list[str] = field(default_factory=list)


async def reads_under_writes(url: str, seconds: float, *, prefill: int = 0, prefix: str | None = None) -> SoakReport:
    """Run the three tasks for ``seconds`` (of work, measured by the loop, never asserted).

    ``prefill``: single-event appends made before the loop starts, so a short run starts where a
    long one would be (on Tansu, a topic past ~1,500 records answers each fetch with one record).
    """
    prefix = prefix or f"soak{uuid.uuid4().hex[:10]}"
    manager = EventSourcingManager(
        {"providers": {"kafka": {"url": url, "settings": {"topic_prefix": prefix}}}, "timeout": 10}
    )
    await manager.connect()
    report = SoakReport()
    stream = "soak-stream"
    stop = asyncio.Event()
    end_at = time.monotonic() + seconds

    def fail(where: str, e: BaseException) -> None:
        if report.failure is None:
            report.failure = f"{where}: {type(e).__name__}: {e}"
        stop.set()

    async def writer() -> None:
        version = prefill
        try:
            while not stop.is_set() and time.monotonic() < end_at:
                await manager.append_events_batch(
                    stream_id=stream, events=[{"event_type": "E", "data": {"i": version}}], expected_version=version
                )
                version += 1
                report.appends += 1
                await asyncio.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - reported
            fail("append", e)
        stop.set()

    async def reader() -> None:
        try:
            while not stop.is_set():
                versions = [e.version async for e in manager.read_stream(stream)]
                report.reads += 1
                report.longest_read_events = max(report.longest_read_events, len(versions))
                if versions and versions != list(range(versions[0], versions[0] + len(versions))):
                    report.read_versions_ok = False
                    fail("read", AssertionError(f"versions not consecutive: {versions[:5]}..."))
                await asyncio.sleep(0)
        except Exception as e:  # noqa: BLE001 - reported
            fail("read_stream", e)

    async def retention() -> None:
        try:
            while not stop.is_set():
                await asyncio.sleep(0.5)
                if report.appends == 0:
                    continue
                rep = await manager.apply_retention([{"policy": "max_count", "max_events": 200}], provider="kafka")
                report.retention_runs += 1
                report.hidden_by_retention += sum(o.deleted_events for o in rep.outcomes)
                await manager.list_streams()
        except Exception as e:  # noqa: BLE001 - reported
            fail("retention", e)

    try:
        for v in range(prefill):
            await manager.append_events_batch(
                stream_id=stream, events=[{"event_type": "E", "data": {"i": v}}], expected_version=v
            )
        await asyncio.gather(writer(), reader(), retention())
    finally:
        try:
            provider = manager.get_provider("kafka")
            metas = await provider._catch_up_meta()
            for meta in list(metas.values()):
                await provider.io.delete_topic(meta["topic"])  # type: ignore[attr-defined]
            await provider.io.delete_topic(provider._meta_topic)  # type: ignore[attr-defined]
            await provider.io.delete_topic(provider._snap_topic)  # type: ignore[attr-defined]
        finally:
            await manager.close()
    return report


def main() -> None:
    """``python -m tests.soak [seconds]``: run the loop and print the report."""
    import os

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    prefill = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    bootstrap = os.environ.get("EVENTSOURCE_TEST_KAFKA_BOOTSTRAP", "").strip()
    broker = None
    if not bootstrap:
        from eventsource_kafka.tansu import start_tansu

        broker = start_tansu()
        bootstrap = broker.bootstrap
    try:
        t0 = time.monotonic()
        report = asyncio.run(reads_under_writes(f"kafka://{bootstrap}", seconds, prefill=prefill))
        print(f"ran {time.monotonic() - t0:.0f}s: {report}")
    finally:
        if broker is not None:
            broker.stop()
    sys.exit(0 if report.failure is None else 1)


if __name__ == "__main__":
    main()

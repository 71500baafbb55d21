"""Retention beside live one-stream subscriptions and projections on Kafka (docs/subscriptions.md, "Retention
does not wait for subscriptions"): events deleted before a subscription reads them never come, it goes on at
the next stored version (live, or resumed from a checkpoint whose event is gone) and says which versions it
never saw, without stalling, reading in a loop, or taking the stream for deleted."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from eventsource.checkpoints import MemoryCheckpointStore
from eventsource.manager import EventSourcingManager
from eventsource.model import utcnow
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from eventsource_kafka import KafkaProvider

WAIT = 30.0


async def manager_on(p: KafkaProvider) -> EventSourcingManager:
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="k", default=True)
    return m


async def ten(m: EventSourcingManager, sid: str = "s") -> None:
    for i in range(10):  # one record each
        await m.append_event(stream_id=sid, event_type="T", data={"i": i})


async def test_a_stream_truncated_past_a_live_subscription_goes_on_and_names_the_versions(
    kafka_provider: KafkaProvider, caplog: pytest.LogCaptureFixture
) -> None:
    m = await manager_on(kafka_provider)
    caplog.set_level("WARNING", logger="eventsource.subscriptions")
    await ten(m)
    async with m.subscribe(stream_id="s", page_size=3, poll_interval=0.2) as sub, asyncio.timeout(WAIT):
        assert [(await anext(sub)).version for _ in range(3)] == [1, 2, 3]
        assert await kafka_provider.truncate_stream("s", 8) == 7
        assert [(await anext(sub)).version for _ in range(3)] == [8, 9, 10]
    warned = [r.getMessage() for r in caplog.records if r.name == "eventsource.subscriptions"]
    assert len(warned) == 1 and "versions 4 to 7 of stream 's'" in warned[0], warned


async def test_a_stream_emptied_by_retention_under_a_live_subscription_is_not_taken_for_deleted(
    kafka_provider: KafkaProvider,
) -> None:
    m = await manager_on(kafka_provider)
    await ten(m)
    async with m.subscribe(stream_id="s", page_size=20, poll_interval=0.2) as sub, asyncio.timeout(WAIT):
        assert [e.version for e in await sub.next_batch(20)] == list(range(1, 11))
        assert await kafka_provider.truncate_stream("s", 11) == 10
        nxt = asyncio.ensure_future(sub.next_batch(5))
        await asyncio.sleep(1.0)  # several polls of the emptied stream
        assert not nxt.done() or nxt.exception() is None, nxt.exception()
        await m.append_event(stream_id="s", event_type="T", data={"i": 10})
        assert [e.version for e in await nxt] == [11]


async def test_events_deleted_by_age_under_a_live_subscription_are_passed_over(
    kafka_provider: KafkaProvider,
) -> None:
    m = await manager_on(kafka_provider)
    old = utcnow() - timedelta(days=3)
    for i in range(6):
        await m.append_event(stream_id="s", event_type="T", data={"i": i}, timestamp=old if i < 5 else None)
    async with m.subscribe(stream_id="s", page_size=2, poll_interval=0.2) as sub, asyncio.timeout(WAIT):
        assert [(await anext(sub)).version for _ in range(2)] == [1, 2]
        assert await kafka_provider.delete_events_before(utcnow() - timedelta(days=1), "s") == 5
        assert (await anext(sub)).version == 6


async def test_a_checkpoint_whose_event_retention_deleted_resumes_at_the_next_stored_version(
    kafka_provider: KafkaProvider,
) -> None:
    m = await manager_on(kafka_provider)
    await ten(m)
    store, name = MemoryCheckpointStore(), f"cp-{uuid.uuid4().hex[:8]}"
    async with m.subscribe(stream_id="s", checkpoint=store, name=name, page_size=2) as sub:
        assert [(await anext(sub)).version for _ in range(4)] == [1, 2, 3, 4]
        await sub.commit()
    assert await kafka_provider.truncate_stream("s", 7) == 6
    async with m.subscribe(stream_id="s", checkpoint=store, name=name, poll_interval=0.2) as sub:
        async with asyncio.timeout(WAIT):
            assert [(await anext(sub)).version for _ in range(4)] == [7, 8, 9, 10]
    assert await kafka_provider.truncate_stream("s", 11) == 4  # now every event: the checkpoint (10) still resumes
    await m.append_event(stream_id="s", event_type="T", data={"i": 10})
    async with m.subscribe(stream_id="s", checkpoint=store, name=name, poll_interval=0.2) as sub:
        async with asyncio.timeout(WAIT):
            assert (await anext(sub)).version == 11


async def test_a_projection_resumed_past_events_retention_deleted_goes_on(
    kafka_provider: KafkaProvider, tmp_path: Path
) -> None:
    """Its sink's checkpoint names an event retention deleted (4), and the next ones (5, 6) are gone too; later,
    every event is gone and the stream grows again."""
    from eventsource.projections import Projection, ProjectionRunner, SqliteSink

    m = await manager_on(kafka_provider)
    seen: list[int] = []
    sink = SqliteSink(f"sqlite:///{tmp_path}/sink.db")

    def runner() -> ProjectionRunner:
        projection = Projection("p", {"T": lambda e, _tx: seen.append(e.version)}, stream_id="s")
        return ProjectionRunner(m, batch_size=3, poll_interval=0.1).add(projection, sink)

    for i in range(4):
        await m.append_event(stream_id="s", event_type="T", data={"i": i})
    await runner().catch_up(timeout=WAIT)
    for i in range(4, 10):
        await m.append_event(stream_id="s", event_type="T", data={"i": i})
    assert await kafka_provider.truncate_stream("s", 7) == 6
    await runner().catch_up(timeout=WAIT)
    assert await kafka_provider.truncate_stream("s", 11) == 4
    await m.append_event(stream_id="s", event_type="T", data={"i": 10})
    await runner().catch_up(timeout=WAIT)
    assert seen == [1, 2, 3, 4, 7, 8, 9, 10, 11]

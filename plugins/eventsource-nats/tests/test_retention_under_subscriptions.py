"""Retention beside live subscriptions on NATS (docs/subscriptions.md, "Retention does not wait for
subscriptions"): events deleted before a subscription reads them never come; it goes on at the next stored
event (live, or resumed from a checkpoint whose event is gone), without stalling, reading in a loop, or taking
the stream (or the store) for deleted or replaced. Envelopes (one message per multi-event append) lose events
one at a time (marks in the hidden bucket), which the one-stream tests of the kit do not reach."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, open_provider
from eventsource.checkpoints import MemoryCheckpointStore
from eventsource.manager import EventSourcingManager
from eventsource.model import EventData
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventsource_nats.provider import NatsProvider

WAIT = 30.0


@pytest.fixture
async def nats(machine_nats_url: str) -> AsyncIterator[tuple[NatsProvider, EventSourcingManager]]:
    p = await open_provider(machine_nats_url)
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="n", default=True)
    try:
        yield p, m
    finally:
        await dispose(p)


def batch(n: int, tag: str = "") -> list[EventData]:
    return [EventData("T", {"i": i, "tag": tag}) for i in range(n)]


async def test_an_envelope_truncated_inside_under_a_live_one_stream_subscription(
    nats: tuple[NatsProvider, EventSourcingManager], caplog: pytest.LogCaptureFixture
) -> None:
    p, m = nats
    caplog.set_level("WARNING", logger="eventsource.subscriptions")
    await m.append_events_batch(stream_id="s", events=batch(10))  # one message
    async with m.subscribe(stream_id="s", page_size=2, poll_interval=0.2) as sub, asyncio.timeout(WAIT):
        assert [e.version for e in await sub.next_batch(2)] == [1, 2]
        assert await p.truncate_stream("s", 6) == 5
        got = []
        while len(got) < 5:
            got += [e.version for e in await sub.next_batch(5)]
        assert got == [6, 7, 8, 9, 10]
    warned = [r.getMessage() for r in caplog.records if r.name == "eventsource.subscriptions"]
    assert len(warned) == 1 and "versions 3 to 5 of stream 's'" in warned[0], warned


async def test_an_envelope_truncated_inside_under_a_live_all_streams_subscription(
    nats: tuple[NatsProvider, EventSourcingManager],
) -> None:
    p, m = nats
    await m.append_events_batch(stream_id="a", events=batch(6))
    await m.append_events_batch(stream_id="b", events=batch(2))
    async with m.subscribe(page_size=2, poll_interval=0.2) as sub, asyncio.timeout(WAIT):
        assert [(e.stream_id, e.version) for e in await sub.next_batch(2)] == [("a", 1), ("a", 2)]
        assert await p.truncate_stream("a", 5) == 4
        got = []
        while len(got) < 4:
            got += [(e.stream_id, e.version) for e in await sub.next_batch(5)]
        assert got == [("a", 5), ("a", 6), ("b", 1), ("b", 2)]


async def test_a_stream_emptied_by_retention_under_a_live_subscription_is_not_taken_for_deleted(
    nats: tuple[NatsProvider, EventSourcingManager],
) -> None:
    p, m = nats
    await m.append_events_batch(stream_id="s", events=batch(4))
    await m.append_events_batch(stream_id="s", events=batch(4))
    async with m.subscribe(stream_id="s", page_size=20, poll_interval=0.2) as sub, asyncio.timeout(WAIT):
        assert [e.version for e in await sub.next_batch(20)] == list(range(1, 9))
        assert await p.truncate_stream("s", 9) == 8
        nxt = asyncio.ensure_future(sub.next_batch(5))
        await asyncio.sleep(1.0)  # several polls of the emptied stream
        assert not nxt.done() or nxt.exception() is None, nxt.exception()
        await m.append_event(stream_id="s", event_type="T", data={"i": 9})
        assert [e.version for e in await nxt] == [9]


@pytest.mark.parametrize("scope", ["stream", "all"])
async def test_a_checkpoint_whose_event_retention_deleted_inside_an_envelope_resumes_after_it(
    nats: tuple[NatsProvider, EventSourcingManager], scope: str
) -> None:
    p, m = nats
    await m.append_events_batch(stream_id="s", events=batch(6))
    store, name = MemoryCheckpointStore(), f"cp-{uuid.uuid4().hex[:8]}"
    target = {"stream_id": "s"} if scope == "stream" else {}
    async with m.subscribe(**target, checkpoint=store, name=name, page_size=3) as sub:
        assert [e.version for e in await sub.next_batch(3)] == [1, 2, 3]
        await sub.commit()
    assert await p.truncate_stream("s", 5) == 4  # the event the checkpoint counted (3) is gone, 4 too
    async with m.subscribe(**target, checkpoint=store, name=name, poll_interval=0.2) as sub:
        async with asyncio.timeout(WAIT):
            assert [e.version for e in await sub.next_batch(5)] == [5, 6]


@pytest.mark.parametrize("scope", ["stream", "all"])
async def test_a_projection_resumed_past_events_retention_deleted_inside_an_envelope_goes_on(
    nats: tuple[NatsProvider, EventSourcingManager], tmp_path: Path, scope: str
) -> None:
    """Its sink's checkpoint names an event retention deleted out of an envelope that keeps live events (marks
    in the hidden bucket); later the whole stream goes and it grows again."""
    from eventsource.projections import Projection, ProjectionRunner, SqliteSink

    p, m = nats
    seen: list[int] = []
    sink = SqliteSink(f"sqlite:///{tmp_path}/sink.db")

    def runner() -> ProjectionRunner:
        target = {"stream_id": "s"} if scope == "stream" else {}
        projection = Projection("p", {"T": lambda e, _tx: seen.append(e.version)}, **target)
        return ProjectionRunner(m, batch_size=3, poll_interval=0.1).add(projection, sink)

    await m.append_events_batch(stream_id="s", events=batch(4))
    await runner().catch_up(timeout=WAIT)
    await m.append_events_batch(stream_id="s", events=batch(6))  # versions 5 to 10, one message
    assert await p.truncate_stream("s", 7) == 6  # the whole first message, and 5, 6 out of the second
    await runner().catch_up(timeout=WAIT)
    assert await p.truncate_stream("s", 11) == 4
    await m.append_events_batch(stream_id="s", events=batch(2))
    await runner().catch_up(timeout=WAIT)
    assert seen == [1, 2, 3, 4, 7, 8, 9, 10, 11, 12]

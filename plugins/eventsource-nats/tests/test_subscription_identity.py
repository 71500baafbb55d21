"""Checkpoints of NATS stores on one server: each JetStream stream (subject prefix) is its own source."""

from __future__ import annotations

import pytest
from conftest import dispose, open_provider
from eventsource import EventData, EventSourcingManager
from eventsource.checkpoints import MemoryCheckpointStore
from eventsource.plugins import PluginHost
from eventsource_nats.provider import NatsProvider


async def test_two_stores_on_one_server_keep_their_own_checkpoints(machine_nats_url: str) -> None:
    a, b = await open_provider(machine_nats_url), await open_provider(machine_nats_url)
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(a, name="a", default=True)
    await m.register_provider(b, name="b")
    store = MemoryCheckpointStore()
    try:
        await m.append_events_batch(stream_id="orders-1", events=[EventData("Placed", {"n": n}) for n in range(3)])
        await m.append_events_batch(stream_id="orders-9", events=[EventData("Placed", {"n": 9})], provider="b")
        async with m.subscribe(checkpoint=store, name="proj", provider="a") as sub:
            assert len(await sub.next_batch(10)) == 3
            await sub.commit()
        assert a.checkpoint_source != b.checkpoint_source
        async with m.subscribe(checkpoint=store, name="proj", provider="b", poll_interval=0.05) as sub_b:
            assert sub_b.committed is None  # a's checkpoint (position 3) would skip b's only event
            assert [e.stream_id for e in await sub_b.next_batch(10)] == ["orders-9"]
    finally:
        await m.close()
        for p in (a, b):
            await dispose(p)


def test_the_default_stream_keeps_the_plain_url_as_its_source(machine_nats_url: str) -> None:
    p = NatsProvider(machine_nats_url)  # never connected: the identity is the settings'
    assert p.checkpoint_source == p.display_url
    assert NatsProvider(machine_nats_url, stream="X").checkpoint_source == f"{p.display_url}#stream=X"


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://app:s3cret@n1:4222", "nats://app:***@n1:4222"),
    ],
)
def test_the_source_is_pinned_literally(url: str, source: str) -> None:
    # literal, not "== display_url": a change to the masking would change the source, and every checkpoint
    # stored under the old one would be orphaned (subscriptions restart from the beginning)
    assert NatsProvider(url).checkpoint_source == source
    assert NatsProvider(url, stream="X").checkpoint_source == f"{source}#stream=X"

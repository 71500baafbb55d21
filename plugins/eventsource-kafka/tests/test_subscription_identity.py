"""Checkpoints of Kafka stores on one cluster: each topic prefix is its own source."""

from __future__ import annotations

import uuid

import pytest
from eventsource import EventData, EventSourcingManager
from eventsource.checkpoints import MemoryCheckpointStore
from eventsource.plugins import PluginHost
from eventsource_kafka.provider import KafkaProvider

from .conftest import drop_namespace


async def test_two_stores_on_one_cluster_keep_their_own_checkpoints(kafka_url: str) -> None:
    a, b = (KafkaProvider(kafka_url, topic_prefix=f"k{uuid.uuid4().hex[:12]}", request_timeout=60.0) for _ in "ab")
    for p in (a, b):
        await p.connect()
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(a, name="a", default=True)
    await m.register_provider(b, name="b")
    store = MemoryCheckpointStore()
    try:
        await m.append_events_batch(stream_id="orders-1", events=[EventData("Placed", {"n": n}) for n in range(3)])
        await m.append_events_batch(stream_id="orders-1", events=[EventData("Placed", {"n": 9})], provider="b")
        async with m.subscribe(stream_id="orders-1", checkpoint=store, name="proj", provider="a") as sub:
            assert len(await sub.next_batch(10)) == 3
            await sub.commit()
        assert a.checkpoint_source != b.checkpoint_source
        # b's own stream orders-1 is at version 1: a's checkpoint (version 3) was refused as ahead of it
        async with m.subscribe(stream_id="orders-1", checkpoint=store, name="proj", provider="b") as sub_b:
            assert sub_b.committed is None
            assert [e.data["n"] for e in await sub_b.next_batch(10)] == [9]
    finally:
        for p in (a, b):
            await drop_namespace(p)
        await m.close()


def test_the_default_prefix_keeps_the_plain_url_as_its_source() -> None:
    p = KafkaProvider("kafka://127.0.0.1:9092")  # never connected: the identity is the settings'
    assert p.checkpoint_source == p.display_url
    other = KafkaProvider("kafka://127.0.0.1:9092", topic_prefix="x")
    assert other.checkpoint_source == f"{p.display_url}#topic_prefix=x"


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("kafka://127.0.0.1:9092", "kafka://127.0.0.1:9092"),
        ("kafka://app:s3cret@b1:9092,b2:9092", "kafka://app:***@b1:9092,b2:9092"),
    ],
)
def test_the_source_is_pinned_literally(url: str, source: str) -> None:
    # literal, not "== display_url": a change to the masking would change the source, and every checkpoint
    # stored under the old one would be orphaned (subscriptions restart from the beginning)
    assert KafkaProvider(url).checkpoint_source == source
    assert KafkaProvider(url, topic_prefix="x").checkpoint_source == f"{source}#topic_prefix=x"

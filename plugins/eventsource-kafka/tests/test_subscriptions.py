"""The kit's SubscriptionSuite on Kafka (topic per stream, ``global_order=per_stream``): one-stream
subscriptions run, polling the stream's pages by version; all-streams ones are skipped naming the capability
(``subscribe`` raises ``UnsupportedOperationError`` there)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.model import ANY
from eventsource.testing.subscriptions import SubscriptionSuite

if TYPE_CHECKING:
    from eventsource_kafka import KafkaProvider


class TestKafkaSubscriptions(SubscriptionSuite):
    @pytest.fixture
    def provider(self, kafka_provider: KafkaProvider) -> KafkaProvider:
        return kafka_provider


async def test_a_one_stream_subscription_catching_up_decodes_each_record_about_once(
    kafka_provider: KafkaProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page of a one-stream subscription is a read of the stream from its last version, and every such read
    scanned (fetched and decoded) the topic from its first record: catching up on a stream of n records took
    about n * n / page decodes (past ~1,500 records Tansu answers a fetch with one record: as many round trips),
    so a stream of 100,000 events took ever longer to catch up. A read now starts at the resume point an earlier
    read of the topic left (the record it stopped in), and decodes records only as it hands their events out."""
    from eventsource.manager import EventSourcingManager
    from eventsource.model import EventData
    from eventsource.plugins import PluginHost
    from eventsource_kafka import records as kafka_records

    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(kafka_provider, name="k", default=True)
    n, per_record = 200, 5
    for r in range(n):
        batch = [EventData("A", {"r": r, "i": i}) for i in range(per_record)]
        await m.append_events_batch(stream_id="long", events=batch)
    decoded = 0
    decode = kafka_records.decode_events

    def counted(*args: Any) -> Any:
        nonlocal decoded
        decoded += 1
        return decode(*args)

    monkeypatch.setattr(kafka_records, "decode_events", counted)
    got: list[int] = []
    async with m.subscribe(stream_id="long", page_size=10, poll_interval=0.1) as sub:
        while len(got) < n * per_record:
            got += [e.version for e in await sub.next_batch(10)]
    assert got == list(range(1, n * per_record + 1))
    # from the first record each time: about n * (n * per_record / 10) / 2 = 10,000; from a resume point: 2 or 3 a page
    assert decoded < 5 * n, f"{decoded} records decoded to deliver {n} records once"


async def test_a_resume_point_whose_record_is_not_there_sends_the_read_back_to_the_start(
    kafka_provider: KafkaProvider,
) -> None:
    """A resume point names a record (its offset, and the version accepted before it). One whose record is not the
    one that follows (records deleted there, a topic made again by a broker that lost its data) is dropped and the
    read starts from the stream's start, as every read did before resume points, instead of accepting no record."""
    from eventsource.model import NewEvent, utcnow

    for _ in range(20):
        batch = [NewEvent(str(uuid.uuid4()), "A", b"{}", b"", "json", utcnow()) for _ in range(5)]
        await kafka_provider.append("s", batch, ANY)
    meta = await kafka_provider._reader.stream_meta("s")
    assert meta is not None
    kafka_provider._reader._resume[meta["topic"]] = [(3, 99)]  # offset 3 holds versions 16 to 20, not 100
    assert [e.version async for e in kafka_provider.read_stream("s", from_version=100)] == [100]
    assert kafka_provider._reader._resume.get(meta["topic"], []) != [(3, 99)]  # dropped


@pytest.mark.parametrize("how", ["streams", "store"])
async def test_a_one_stream_subscription_whose_store_another_instance_deleted_ends_with_stream_deleted(
    kafka_url: str, how: str
) -> None:
    """Another instance on the same prefix deletes every stream (``streams``) or every topic of the store, its
    metadata topic too (``store``, :func:`drop_namespace`). With the metadata topic gone the reader's view kept
    naming the stream's deleted topic, and a read of it from the offset its consumer had reached looked the topic
    up in that consumer's cached metadata, which still held it: each read ran to ``request_timeout`` (60 s here)
    in a pool thread, ignoring cancellation, and the subscription read again after every wait; ``next_batch``
    never returned (bounded here). It now ends as on the other stores, with ``StreamDeletedError``."""
    import asyncio

    from eventsource.errors import StreamDeletedError
    from eventsource.manager import EventSourcingManager
    from eventsource.model import EventData
    from eventsource.plugins import PluginHost
    from eventsource_kafka import KafkaProvider

    from .conftest import drop_namespace, fresh_provider

    async with fresh_provider(kafka_url) as p:
        other = KafkaProvider(kafka_url, topic_prefix=p.prefix, request_timeout=60.0)
        await other.connect()
        try:
            m = EventSourcingManager(
                {"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False)
            )
            await m.register_provider(p, name="k", default=True)
            await m.append_events_batch(stream_id="s", events=[EventData("A", {"i": i}) for i in range(3)])
            async with m.subscribe(stream_id="s", page_size=10, poll_interval=0.2) as sub:
                assert [e.version for e in await sub.next_batch(10)] == [1, 2, 3]
                if how == "streams":
                    for info in (await other.list_streams(limit=100, offset=0))[0]:
                        await other.delete_stream(info.stream_id)
                else:
                    await drop_namespace(other)
                with pytest.raises(StreamDeletedError):
                    await asyncio.wait_for(sub.next_batch(10), 50)  # below the read's 60 s request_timeout
        finally:
            await other.close()

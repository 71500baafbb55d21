"""A read running in the provider's thread pool stops when its caller gives up or the provider closes.

A read waits in a loop of short polls until its records come, its end is seen or ``request_timeout`` passes
with no progress. Cancelling the caller used to leave that loop running to its deadline in a pool thread
(kafka-python's ``poll`` cannot be interrupted), holding the thread and its consumer: with the pool's threads
taken, every later call of the provider, ``close()`` among them, waited behind it. A read beyond the log's
end stands here for any read that waits (a deleted topic's, a silent broker's): it only ends at its deadline.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ProviderUnavailableError
from eventsource_kafka import KafkaProvider

from .conftest import drop_namespace

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WAIT = 20.0
"""Bound on what must happen at once, well below the waiting read's ``request_timeout`` (60 s)."""


@pytest.fixture
async def one_thread(kafka_url: str) -> AsyncIterator[tuple[KafkaProvider, str]]:
    """A provider with one pool thread, and a topic of 3 records."""
    p = KafkaProvider(kafka_url, topic_prefix=f"r{uuid.uuid4().hex[:12]}", request_timeout=60.0, io_threads=1)
    await p.connect()
    topic = f"{p.prefix}.x"
    await p.io.ensure_topic(topic, replication_factor=1, configs={})
    for i in range(3):
        await p.io.produce(topic, b"%d" % i)
    try:
        yield p, topic
    finally:
        await p.connect()
        await p.io.delete_topic(topic)
        await drop_namespace(p)
        await p.close()


async def test_a_cancelled_read_lets_go_of_its_pool_thread(one_thread: tuple[KafkaProvider, str]) -> None:
    p, topic = one_thread
    waiting = asyncio.ensure_future(p.io.read_page(topic, 100))
    await asyncio.sleep(0.5)  # it is in the pool thread by now (or cancelled before it started: fine too)
    waiting.cancel()
    recs, _, at_end, _ = await asyncio.wait_for(p.io.read_page(topic, 0), WAIT)
    assert [r.value for r in recs] == [b"0", b"1", b"2"]
    assert at_end


async def test_close_stops_a_running_read_with_a_typed_error(one_thread: tuple[KafkaProvider, str]) -> None:
    p, topic = one_thread
    waiting = asyncio.ensure_future(p.io.read_page(topic, 100))
    await asyncio.sleep(0.5)
    await asyncio.wait_for(p.close(), WAIT)
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await asyncio.wait_for(waiting, WAIT)


async def test_a_store_deleted_and_created_again_by_another_process_is_read_anew(kafka_url: str) -> None:
    """Another process deletes every topic of the store and creates it again (``drop-store`` then a connect; or a
    Tansu restart, which loses every topic). This process's view read its metadata topic on from the offset it had
    reached, beyond the new topic's end: every call that reads the view ran to ``request_timeout`` and raised
    ``ProviderTimeoutError``, for ever (the view is shared by the process; reconnecting kept it). A read that stalls
    looks the topic up anyway (a deleted topic): an id other than the one this process read it under is a topic
    created again, and the process's view of the store is read anew."""
    from eventsource.model import ANY, NewEvent, utcnow

    from .conftest import Proc, prefix_topics

    def ev(eid: str) -> NewEvent:
        return NewEvent(eid, "A", b"{}", b"", "json", utcnow())

    args = {"url": kafka_url, "topic_prefix": f"r{uuid.uuid4().hex[:12]}", "request_timeout": 60.0}
    p = KafkaProvider(**args)
    await p.connect()
    other: Proc | None = None
    try:
        for sid in ("a", "b", "c"):
            await p.append(sid, [ev(str(uuid.uuid4()))], ANY)
        await asyncio.to_thread(prefix_topics, kafka_url, args["topic_prefix"], delete=True)
        other = await Proc.start(args)  # connects: the metadata and snapshot topics are created again
        assert (await other(op="append", stream="a", ids=["new-a"], expected="NO_STREAM"))["ok"]["last"] == 1
        info = await asyncio.wait_for(p.get_stream_info("a"), WAIT)
        assert info is not None and info.version == 1
        assert [e.event_id async for e in p.read_stream("a")] == ["new-a"]
        assert await asyncio.wait_for(p.get_stream_info("b"), WAIT) is None
    finally:
        if other is not None:
            await other.stop()
        await p.close()
        await asyncio.to_thread(prefix_topics, kafka_url, args["topic_prefix"], delete=True)

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

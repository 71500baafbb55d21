"""A server restarted under the provider: reads, appends and their retries on a private current server.

Each test starts its own nats-server (file storage, a free loopback port) and restarts it; the shared
server on 4222 is never touched.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, new_event, open_provider, retried, unique_store, until_given_up
from eventsource import EventSourcingManager
from eventsource.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import ANY, NewEvent

if TYPE_CHECKING:
    from servers import Servers


def _events(n: int) -> list[NewEvent]:
    return [new_event(data=json.dumps({"n": i}).encode()) for i in range(n)]


@pytest.mark.parametrize("read", ["read_stream", "read_all"])
async def test_a_read_goes_on_after_the_server_restarts_under_it(own_server: Servers, read: str) -> None:
    """The read's ephemeral consumer lives in the server's memory and is gone after a restart: the read must carry
    on from where it stopped with a new one (or fail with an error worth a retry, which the manager resumes), not
    end with "consumer not found", which the manager does not retry and which ends a subscription for good."""
    settings = {**unique_store(), "request_timeout": 2.0}
    config = {
        "retry_attempts": 50,
        "retry_delay": 0.1,
        "providers": {"main": {"url": own_server.url, "settings": settings}},
    }
    async with EventSourcingManager(config) as m:
        for _ in range(5):
            await m.append_events_batch(stream_id="r", events=[{"event_type": "E", "data": {}} for _ in range(100)])
        events = m.read_stream("r", page_size=50) if read == "read_stream" else m.read_all(page_size=50)
        got = [(await anext(events)).event_id for _ in range(50)]
        own_server.nodes[0].stop()
        own_server.nodes[0].start()
        got += [e.event_id async for e in events]
        assert len(got) == len(set(got)) == 500
        assert [e.version async for e in m.read_stream("r")] == list(range(1, 501))
        await m.get_provider().drop_store()


async def test_a_read_whose_consumer_the_server_deleted_goes_on(own_server: Servers) -> None:
    """The server deletes a read's consumer once it sat idle past its inactive threshold (a caller slow to ask for
    the next page): the read carries on with a new consumer from where it stopped."""
    p = await open_provider(own_server.url, request_timeout=2.0)
    try:
        for _ in range(4):
            await p.append("slow", _events(100), ANY)
        pages = p.read_all_pages(page_size=50)
        got = [e.event_id for e in await anext(pages)]
        stream = p.names.stream
        for name in (await p._conn.api(f"CONSUMER.NAMES.{stream}"))["consumers"]:
            await p._conn.api(f"CONSUMER.DELETE.{stream}.{name}")
        async for page in pages:
            got += [e.event_id for e in page]
        assert len(got) == len(set(got)) == 400
    finally:
        await dispose(p)


async def test_the_provider_connects_again_after_its_client_gave_up_reconnecting(own_server: Servers) -> None:
    """The server is down longer than the client's reconnect attempts (``max_reconnect_attempts``; 60 attempts a
    quarter of a second apart by default, so an outage of some 15 s), and nats-py closes the connection for good.
    Once the server is back, the provider must work again (every call failed with "not connected (call connect())"
    until the process was restarted: nothing in the manager calls connect() again)."""
    p = await open_provider(own_server.url, max_reconnect_attempts=2)
    try:
        await p.append("o", _events(1), ANY)
        own_server.nodes[0].stop()
        assert await until_given_up(p._conn.nc)  # (the client gives up after its two attempts)
        own_server.nodes[0].start()
        await retried(lambda: p.append("o", _events(1), ANY))
        assert [e.version async for e in p.read_stream("o")] == [1, 2]
    finally:
        await dispose(p)


async def test_an_append_buffered_while_the_server_is_down_fails_as_retriable_and_is_stored_once(
    own_server: Servers,
) -> None:
    """While the client reconnects, nats-py buffers publishes (at most 2 MiB); the append's retries buffer more copies
    of a big event until the buffer is full. The copies already buffered are sent once the server is back, so the
    append may well be stored: it must fail with an error that says so (unavailable or timed out: retried with the
    same ids), not a plain ProviderError, which the manager never retries; the retry then finds it stored once."""
    p = await open_provider(own_server.url, publish_timeout=0.3, publish_retry_seconds=3.0)
    try:
        await p.append("big", _events(1), ANY)
        big = new_event(event_type="Big", data=b"x" * 700_000)
        own_server.nodes[0].stop()
        with pytest.raises(ProviderError) as failed:
            await p.append("big", [big], 1)
        own_server.nodes[0].start()
        assert isinstance(failed.value, (ProviderUnavailableError, ProviderTimeoutError)), failed.value
        again = await retried(lambda: p.append("big", [big], 1))  # the caller's retry with the same event
        assert again.first_version == 2
        assert [e.event_id async for e in p.read_stream("big")][1:] == [big.event_id]
    finally:
        await dispose(p)

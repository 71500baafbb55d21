"""Attacks on PostgreSQL subscriptions: each test failed on the code before the fix its docstring names."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from conftest import manager_on
from eventsource.model import ANY, NewEvent, utcnow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")

HANG = 30.0
"""Seconds a test waits for what should come at once; the bugs they catch made it wait ``poll_interval``."""
POLL = 120.0
"""The subscriptions' poll_interval: far beyond :data:`HANG`, so only a wake-up can deliver in time."""


async def within(aw: Awaitable[T], what: str) -> T:
    """``aw``'s result, or the test fails with ``what`` after :data:`HANG` seconds."""
    try:
        async with asyncio.timeout(HANG):
            return await aw
    except TimeoutError:
        pytest.fail(what)


async def until(done: Callable[[], bool]) -> None:
    while True:
        if done():
            return
        await asyncio.sleep(0.001)


async def test_one_stream_subscription_wakes_for_an_append_running_during_its_read(
    make_provider: Callable[..., Any], url: str
) -> None:
    """An append of another process, running while a one-stream subscription read, wakes it when it commits.

    The wait started from the head taken before that read (``pg_snapshot_xmax``), above the running
    transaction's position, so its commit woke nobody: the event came ``poll_interval`` later.
    """
    p = await make_provider()
    m = await manager_on(p)
    await m.append_event(stream_id="mine", event_type="T", data={"i": 0})
    async with m.subscribe(stream_id="mine", poll_interval=POLL) as sub:
        assert (await anext(sub)).version == 1
        nxt = asyncio.ensure_future(anext(sub))
        other = await psycopg.AsyncConnection.connect(url)  # another process's append: no in-process wake-up
        try:
            event = NewEvent(str(uuid.uuid4()), "Late", b'{"n": 1}', b"", "json", utcnow())
            await other.execute(*p._appender.statement("mine", [event], ANY, None))  # its position is drawn
            reads = sub.reads
            await m.append_event(stream_id="others", event_type="T", data={"i": 0})  # wakes it: it reads "mine"
            await within(until(lambda: sub.reads > reads), "the append to another stream woke nobody")
            await other.commit()
            got = await within(nxt, "the commit of an append running during the read woke nobody")
            assert (got.version, got.event_id) == (2, event.event_id)
        finally:
            nxt.cancel()
            await other.close()


async def test_close_during_an_automatic_commit_keeps_it(url: str) -> None:
    """``close()`` while ``commit_every`` stores a checkpoint waits for that put before closing the store.

    It closed the store the subscription had opened from a URL under the put: the consumer's ``anext`` raised
    ``ProviderUnavailableError`` (connection socket closed), and the checkpoint of the handled events was lost.
    """
    from eventsource.manager import EventSourcingManager
    from eventsource_postgres.checkpoints import PostgresCheckpointStore

    name = f"close-commit-{uuid.uuid4().hex[:12]}"
    m = EventSourcingManager({"providers": {"m": f"memory://{name}"}})
    await m.connect()
    store = PostgresCheckpointStore(url)
    try:
        await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(5)])
        sub = m.subscribe(checkpoint=url, name=name, commit_every=1)
        await sub.start()
        first = await anext(sub)
        nxt = asyncio.ensure_future(anext(sub))  # commits ``first`` before anything else
        await asyncio.sleep(0)  # it is in the put now
        await sub.close()
        with pytest.raises(StopAsyncIteration):
            await within(nxt, "the anext whose commit close() interrupted hung")
        await store.connect()
        cp = await store.get(name, sub.source)
        assert cp is not None and cp.position == first.position
        await store.delete(name, sub.source)
    finally:
        await store.close()
        await m.close()


async def test_a_stalled_listen_connection_is_noticed_and_replaced(make_provider: Callable[..., Any], url: str) -> None:
    """A LISTEN connection that stops answering (a silent network drop, a stuck proxy) is found and reopened.

    ``notifies()`` waited on it for ever: no error, no log, and every live subscription of the provider
    silently fell back to its ``poll_interval``.
    """
    from conftest import own_ports
    from eventsource_postgres import PostgresProvider
    from test_sync_inline import _stalling_proxy

    writer = await make_provider(live_notify=True)  # another process: its appends wake nobody in-process
    parts = urlsplit(url)
    with _stalling_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as (port, send):
        proxied = urlunsplit(parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{port}"))
        p = PostgresProvider(proxied, schema=writer.names.schema, live_notify=True, pool_max_size=1)
        await p.connect()
        m = await manager_on(p)
        try:
            async with m.subscribe(poll_interval=POLL) as sub:
                await m.append_event(stream_id="s", event_type="T", data={"i": 0})
                assert (await anext(sub)).version == 1
                before = own_ports()
                nxt = asyncio.ensure_future(anext(sub))
                await within(p._live.listening.wait(), "the LISTEN connection never opened")
                for local in own_ports() - before:  # the LISTEN connection's port (and the proxy's side of it)
                    send(f"stall {local}")
                await asyncio.sleep(0.2)
                wm = await manager_on(writer)
                await wm.append_event(stream_id="s", event_type="T", data={"i": 1})  # its NOTIFY is stalled
                got = await within(nxt, "a stalled LISTEN connection left the subscription waiting poll_interval")
                assert got.version == 2
        finally:
            await p.close()


async def test_a_one_stream_start_beyond_the_streams_version_is_refused(make_provider: Callable[..., Any]) -> None:
    """``subscribe(stream_id=s, from_version=100)`` on a stream at version 3 waited, then handed out version 100
    on once the stream grew, the versions in between passed over unseen: now ``CheckpointAheadError``."""
    from eventsource.subscriptions import CheckpointAheadError

    p = await make_provider()
    m = await manager_on(p)
    await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(3)])
    for sid, version in [("s", 100), ("s", 5), ("new", 2)]:
        with pytest.raises(CheckpointAheadError):
            await m.subscribe(stream_id=sid, from_version=version).start()
    async with m.subscribe(stream_id="s", from_version=4, poll_interval=POLL) as sub:
        await m.append_event(stream_id="s", event_type="T", data={"i": 3})
        assert (await within(anext(sub), "version 4 never came")).version == 4


async def test_a_one_stream_subscription_says_which_versions_retention_deleted_before_it_read_them(
    make_provider: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A stream truncated past a live one-stream subscription's place was read on from the next stored version
    without a word: versions 4 to 7 never came and nothing said so. Now a warning names them."""
    p = await make_provider()
    m = await manager_on(p)
    await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(10)])
    caplog.set_level("WARNING", logger="eventsource.subscriptions")
    async with m.subscribe(stream_id="s", page_size=3, poll_interval=POLL) as sub:
        assert [(await within(anext(sub), "no event")).version for _ in range(3)] == [1, 2, 3]
        assert await p.truncate_stream("s", 8) == 7
        assert [(await within(anext(sub), "no event")).version for _ in range(3)] == [8, 9, 10]
    warned = [r.getMessage() for r in caplog.records if r.name == "eventsource.subscriptions"]
    assert len(warned) == 1 and "versions 4 to 7 of stream 's'" in warned[0], warned

"""Attacks on subscriptions over NATS: each test failed on the code before the fix its docstring names."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from urllib.parse import urlsplit

import pytest
from conftest import dispose, open_provider, unique_store
from eventsource.sync import SyncEventSourcingManager
from eventsource_nats.checkpoints import NatsCheckpointStore


async def stored_position(url: str, name: str, source: str) -> int | None:
    store = NatsCheckpointStore(url)
    await store.connect()
    try:
        cp = await store.get(name, source)
        return None if cp is None else cp.position
    finally:
        await store.close()


def test_commit_after_close_stores_the_checkpoint_on_a_store_the_subscription_opened(machine_nats_url: str) -> None:
    """The sync ``commit()`` once closed (after a Ctrl-C, after ``with``) stores the last event handed out.

    With the checkpoint store given as a URL, ``close()`` closed the store the subscription had opened, and
    the commit raised ``ProviderUnavailableError`` (not connected): the last batch's checkpoint was lost.
    """
    name = f"after-close-{uuid.uuid4().hex[:12]}"
    with SyncEventSourcingManager({"providers": {"m": f"memory://{name}"}}) as es:
        es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(5)])
        with es.subscribe(checkpoint=machine_nats_url, name=name) as sub:
            got = [next(sub) for _ in range(3)]
        cp = sub.commit()
        assert cp.position == got[-1].position
        source = sub.subscription.source
    assert asyncio.run(stored_position(machine_nats_url, name, source)) == got[-1].position


async def test_close_during_an_automatic_commit_keeps_it(machine_nats_url: str) -> None:
    """``close()`` while ``commit_every`` stores a checkpoint waits for that put before closing the store.

    It closed the store the subscription had opened from a URL under the put: the consumer's ``anext`` raised
    (a NATS timeout) instead of ending, and the checkpoint of the events it had handled was lost.
    """
    from eventsource.manager import EventSourcingManager

    name = f"close-commit-{uuid.uuid4().hex[:12]}"
    m = EventSourcingManager({"providers": {"m": f"memory://{name}"}})
    await m.connect()
    try:
        await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(5)])
        sub = m.subscribe(checkpoint=machine_nats_url, name=name, commit_every=1)
        await sub.start()
        first = await anext(sub)
        nxt = asyncio.ensure_future(anext(sub))  # commits ``first`` before anything else
        await asyncio.sleep(0)  # it is in the put now
        await sub.close()
        async with asyncio.timeout(30):
            with pytest.raises(StopAsyncIteration):
                await nxt
        assert await stored_position(machine_nats_url, name, sub.source) == first.position
    finally:
        await m.close()


class Forwarder:
    """A TCP forwarder to a server, on a port it keeps: ``stop()`` drops every connection, ``start()`` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_publish_while_the_wake_up_connection_was_down_is_read_once_it_reconnects(
    machine_nats_url: str,
) -> None:
    """Publishes missed while the provider's connection was down wake its waiting subscriptions on reconnect.

    Core NATS does not replay them, and nothing else woke the waiters: an event appended by another process
    during the outage came ``poll_interval`` later.
    """
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    store = unique_store()
    writer = await open_provider(machine_nats_url, **store)
    server = urlsplit(machine_nats_url)
    fwd = Forwarder((server.hostname or "127.0.0.1", server.port or 4222))
    await fwd.start()
    p = await open_provider(f"nats://127.0.0.1:{fwd.port}", **store)
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="n", default=True)
    wm = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await wm.register_provider(writer, name="n", default=True)
    try:
        async with m.subscribe(poll_interval=120) as sub:
            await wm.append_event(stream_id="s", event_type="T", data={"i": 0})
            assert (await anext(sub)).version == 1
            nxt = asyncio.ensure_future(anext(sub))
            await asyncio.sleep(0.3)  # waiting on the wake-up now
            await fwd.stop()  # the provider's connection drops; it retries every 0.25 s
            await wm.append_event(stream_id="s", event_type="T", data={"i": 1})  # its publish reaches nobody
            await asyncio.sleep(0.5)
            await fwd.start()
            try:
                async with asyncio.timeout(30):
                    got = await nxt
            except TimeoutError:
                pytest.fail("a publish missed during the outage left the subscription waiting poll_interval")
            assert got.version == 2
    finally:
        await p.close()
        await dispose(writer)
        await fwd.stop()


async def test_a_one_stream_start_beyond_the_streams_version_is_refused(machine_nats_url: str) -> None:
    """``subscribe(stream_id=s, from_version=100)`` on a stream at version 3 waited, then handed out version 100
    on once the stream grew, the versions in between passed over unseen: now ``CheckpointAheadError``."""
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost
    from eventsource.subscriptions import CheckpointAheadError

    p = await open_provider(machine_nats_url, **unique_store())
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="n", default=True)
    try:
        await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(3)])
        for sid, version in [("s", 100), ("s", 5), ("new", 2)]:
            with pytest.raises(CheckpointAheadError):
                await m.subscribe(stream_id=sid, from_version=version).start()
        async with m.subscribe(stream_id="s", from_version=4, poll_interval=120) as sub:
            await m.append_event(stream_id="s", event_type="T", data={"i": 3})
            async with asyncio.timeout(30):
                assert (await anext(sub)).version == 4
    finally:
        await dispose(p)


async def test_a_one_stream_subscription_says_which_versions_retention_deleted_before_it_read_them(
    machine_nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream truncated past a live one-stream subscription's place was read on from the next stored version
    without a word: versions 4 to 7 never came and nothing said so. Now a warning names them."""
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    p = await open_provider(machine_nats_url, **unique_store())
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="n", default=True)
    caplog.set_level("WARNING", logger="eventsource.subscriptions")
    try:
        for i in range(10):  # one message each: truncation purges whole messages
            await m.append_event(stream_id="s", event_type="T", data={"i": i})
        async with m.subscribe(stream_id="s", page_size=3, poll_interval=120) as sub, asyncio.timeout(30):
            assert [(await anext(sub)).version for _ in range(3)] == [1, 2, 3]
            assert await p.truncate_stream("s", 8) == 7
            assert [(await anext(sub)).version for _ in range(3)] == [8, 9, 10]
    finally:
        await dispose(p)
    warned = [r.getMessage() for r in caplog.records if r.name == "eventsource.subscriptions"]
    assert len(warned) == 1 and "versions 4 to 7 of stream 's'" in warned[0], warned

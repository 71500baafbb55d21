"""Attacks on subscriptions (core stores): each test failed on the code before the fix its docstring names."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, TypeVar

import pytest
from eventsource.memory import MemoryProvider
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.transfer import manager_on

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from eventsource.provider import Provider

    from tests.conftest import OpenSqlite

HANG = 2.5
"""Seconds a test waits for what should come at once; the bugs they catch made it take at least 4 s."""


@pytest.fixture(params=["memory", "sqlite"])
async def provider(request: pytest.FixtureRequest, open_sqlite: OpenSqlite, memory_provider: Provider) -> Provider:
    return await open_sqlite() if request.param == "sqlite" else memory_provider


async def test_one_stream_subscription_stays_live_while_other_streams_are_written(provider: Provider) -> None:
    """Appends to other streams wake a one-stream subscription and its read finds nothing: not a spinning wake-up.

    It counted each as an empty read and paused longer every time (up to 4 s), so on a busy store its own
    stream's events came as late as a poll.
    """
    m = await manager_on(provider)
    await m.append_event(stream_id="mine", event_type="T", data={"i": 0})
    late = "the one-stream subscription backed off as if wake-ups by other streams' appends were spurious"
    async with m.subscribe(stream_id="mine", poll_interval=60) as sub:
        assert (await anext(sub)).version == 1
        nxt = asyncio.ensure_future(anext(sub))
        try:
            for i in range(20):  # each wakes the subscription, whose read of "mine" finds nothing
                reads = sub.reads
                await m.append_event(stream_id="others", event_type="T", data={"i": i})
                await within(until(lambda r=reads: sub.reads > r), late)
            await m.append_event(stream_id="mine", event_type="T", data={"i": 1})
            assert (await within(nxt, late)).version == 2
        finally:
            nxt.cancel()
    await m.close()


async def until(done: Callable[[], bool]) -> None:
    while True:
        if done():
            return
        await asyncio.sleep(0.001)


async def within(aw: Awaitable[T], what: str) -> T:
    """``aw``'s result, or the test fails with ``what`` after :data:`HANG` seconds."""
    try:
        async with asyncio.timeout(HANG):
            return await aw
    except TimeoutError:
        pytest.fail(what)


class AppendBeforeHead(MemoryProvider):
    """A memory store where another writer's append lands just before an armed ``head_position`` answers.

    That is the window between a one-stream subscription's empty read and the head its wait starts from.
    """

    armed: NewEvent | None = None

    async def head_position(self) -> int:
        event, self.armed = self.armed, None
        if event is not None:
            writer = MemoryProvider(self.url)  # another instance of the same store
            await writer.connect()
            await writer.append("mine", [event], ANY)
        return await super().head_position()


async def test_an_append_between_the_read_after_a_full_page_and_the_head_wakes_the_subscription() -> None:
    """After a full page, the read that finds nothing more took no head first: an append before it was lost.

    The wait then started from a head taken after that read, already above the append, so nothing woke it
    and the event came ``poll_interval`` later.
    """
    p = AppendBeforeHead(f"memory://attack-{uuid.uuid4().hex}")
    await p.connect()
    m = await manager_on(p)
    await m.append_events_batch(stream_id="mine", events=[{"event_type": "T", "data": {"i": i}} for i in range(3)])
    async with m.subscribe(stream_id="mine", page_size=3, poll_interval=60) as sub:
        assert [e.version for e in await sub.next_batch(3)] == [1, 2, 3]  # a full page: not at the tail
        p.armed = NewEvent(str(uuid.uuid4()), "T", b'{"i": 3}', b"", "json", utcnow())
        event = await within(anext(sub), "an append just before the head was taken woke nobody")
        assert event.version == 4
    await m.close()


def test_closing_the_sync_facade_from_the_loop_body_ends_the_loop(tmp_path: Path) -> None:
    """``es.close()`` in the body of ``for event in sub`` ends the loop, as it does for a thread waiting in it.

    The next ``next(sub)`` handed out what it had fetched, then raised ``ProviderUnavailableError`` (the
    facade is closed) instead of ending the iteration.
    """
    es = SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path / 'e.db'}"}})
    es.connect()
    es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(3)])
    got = []
    for event in es.subscribe(page_size=2):
        got.append(event.version)
        if len(got) == 1:
            es.close()  # a stop condition the handler found
    assert got == [1, 2]  # the rest of the batch it had fetched, then the end

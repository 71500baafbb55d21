"""Checkpoints of in-process stores: two private stores (``memory://``, ``sqlite:///:memory:``) are two sources.

Both checkpointed under one source ("memory://", "sqlite:///:memory:"), so a subscription on one store
picked up the other's checkpoint of the same stream id: refused as ahead, or resumed at the wrong version.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource import EventData, EventSourcingManager
from eventsource.checkpoints import MemoryCheckpointStore
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.sqlite import SqliteProvider

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.provider import Provider


PRIVATE = [MemoryProvider, lambda: SqliteProvider("sqlite:///:memory:")]


@pytest.mark.parametrize("make", PRIVATE, ids=["memory", "sqlite"])
async def test_two_private_in_memory_stores_keep_their_own_checkpoints(make: Callable[[], Provider]) -> None:
    a, b = make(), make()
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
        # b's own orders-1 is at version 1: with a shared source, a's checkpoint (version 3) was refused as ahead
        async with m.subscribe(stream_id="orders-1", checkpoint=store, name="proj", provider="b") as sub_b:
            assert sub_b.committed is None
            assert [e.data["n"] for e in await sub_b.next_batch(10)] == [9]
        assert a.checkpoint_source != b.checkpoint_source
    finally:
        await m.close()


def test_a_named_memory_store_is_one_source_for_every_instance() -> None:
    name = f"memory://ident-{uuid.uuid4().hex}"
    assert MemoryProvider(name).checkpoint_source == MemoryProvider(name).checkpoint_source == name
    assert MemoryProvider().checkpoint_source.startswith("memory://#store=")


def test_a_file_database_keeps_its_url_as_its_source() -> None:
    assert SqliteProvider("sqlite:///a.db").checkpoint_source == "sqlite:///a.db"


@pytest.mark.parametrize(
    "url",
    ["sqlite:///a.db", "sqlite:////var/lib/app/events.db", "sqlite:///data/x.db?synchronous=normal", "memory://shared"],
)
def test_every_store_with_a_url_keeps_the_source_it_had(url: str) -> None:
    # literal: a changed source orphans every checkpoint stored under the old one (subscriptions restart
    # from the beginning and redo their side effects); only private in-memory stores got their own
    make = MemoryProvider if url.startswith("memory:") else SqliteProvider
    assert make(url).checkpoint_source == url

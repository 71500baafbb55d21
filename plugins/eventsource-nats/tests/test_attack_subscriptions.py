"""Attacks on subscriptions over NATS: each test failed on the code before the fix its docstring names."""

from __future__ import annotations

import asyncio
import uuid

import pytest
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

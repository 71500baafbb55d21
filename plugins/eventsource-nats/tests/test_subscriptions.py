"""The kit's SubscriptionSuite on both servers, the NATS KV checkpoint store, and the core-NATS wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.checkpoints import Checkpoint
from eventsource.checkpoints.base import CheckpointBehindError
from eventsource.testing.subscriptions import SubscriptionSuite
from eventsource_nats.checkpoints import NatsCheckpointStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.checkpoints import CheckpointStore
    from eventsource_nats.provider import NatsProvider


class TestNatsSubscriptionsMachineServer(SubscriptionSuite):
    @pytest.fixture
    async def provider(self, machine_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        yield machine_provider

    @pytest.fixture
    async def checkpoint_store(self, machine_nats_url: str) -> AsyncIterator[CheckpointStore]:
        store = NatsCheckpointStore(machine_nats_url, bucket=f"cp_{uuid.uuid4().hex[:12]}")
        await store.connect()
        yield store
        await store._nc.jetstream().delete_key_value(store.bucket)
        await store.close()


class TestNatsSubscriptionsCurrentServer(SubscriptionSuite):
    @pytest.fixture
    async def provider(self, current_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        yield current_provider


async def test_checkpoint_store_is_registered_and_compare_and_sets(machine_nats_url: str) -> None:
    from eventsource.plugins import PluginHost

    assert isinstance(PluginHost().create_checkpoint_store(machine_nats_url), NatsCheckpointStore)
    a = NatsCheckpointStore(machine_nats_url, bucket=f"cp_{uuid.uuid4().hex[:12]}")
    b = NatsCheckpointStore(machine_nats_url, bucket=a.bucket)  # another runner on the same bucket
    await a.connect()
    await b.connect()
    try:
        name = "a name with spaces/and.dots"
        await a.put(Checkpoint(name, "src", "all", 10))
        results = await asyncio.gather(
            *(s.put(Checkpoint(name, "src", "all", p)) for s, p in ((a, 30), (b, 20), (a, 25), (b, 40))),
            return_exceptions=True,
        )
        assert all(r is None or isinstance(r, (Checkpoint, CheckpointBehindError)) for r in results), results
        got = await b.get(name, "src")
        assert got is not None and got.position == 40
        with pytest.raises(CheckpointBehindError):
            await a.put(Checkpoint(name, "src", "all", 39))
        assert await a.delete(name, "src") is True
        assert await b.get(name, "src") is None
        assert (await b.put(Checkpoint(name, "src", "all", 1))).position == 1  # a deleted key is created again
    finally:
        await a._nc.jetstream().delete_key_value(a.bucket)
        await a.close()
        await b.close()


@pytest.fixture(params=["machine", "current"])
def either_provider(request: pytest.FixtureRequest) -> NatsProvider:
    """conftest's ``machine_provider``, then its ``current_provider``."""
    return request.getfixturevalue(f"{request.param}_provider")


async def test_a_publish_wakes_a_waiting_subscription(either_provider: NatsProvider) -> None:
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost
    from eventsource.testing.subscriptions import take

    p = either_provider
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="n", default=True)
    async with m.subscribe(poll_interval=600) as sub:  # no poll within the test: only the wake-up delivers
        waiting = asyncio.create_task(take(sub, 3))
        await asyncio.sleep(0.05)
        await m.append_event(stream_id="a", event_type="T", data={"n": 1})
        await m.append_events_batch(stream_id="b", events=[{"event_type": "T", "data": {"n": i}} for i in (2, 3)])
        assert [e.data["n"] for e in await waiting] == [1, 2, 3]


async def test_every_checkpoint_is_listed_by_a_fresh_connection_and_beside_writers(machine_nats_url: str) -> None:
    """``list`` reads the bucket's stream state: no key missed while deliveries are on their way (keys() could)."""
    a = NatsCheckpointStore(machine_nats_url, bucket=f"cp_{uuid.uuid4().hex[:12]}")
    await a.connect()
    names = [f"sub-{i:03d}" for i in range(200)]
    try:
        for n in names:
            await a.put(Checkpoint(n, "src", "all", 1))
        await a.delete(names[0], "src")  # a purged key leaves a marker: not listed
        moving = asyncio.create_task(_keep_moving(a, names[1:50]))
        try:
            for _ in range(25):
                fresh = NatsCheckpointStore(machine_nats_url, bucket=a.bucket)
                await fresh.connect()
                try:
                    listed = await fresh.list("src")
                finally:
                    await fresh.close()
                assert [cp.name for cp in listed] == names[1:]
        finally:
            moving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await moving
    finally:
        await a._nc.jetstream().delete_key_value(a.bucket)
        await a.close()


async def _keep_moving(store: NatsCheckpointStore, names: list[str]) -> None:
    position = 2
    while True:
        for n in names:
            await store.put(Checkpoint(n, "src", "all", position))
        position += 1

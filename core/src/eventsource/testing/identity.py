"""``check_own_checkpoints``: two stores that share a checkpoint store never resume each other's checkpoints.

A store kind that keeps several stores behind one URL (a schema, a topic prefix, a JetStream stream) must
tell them apart in ``checkpoint_source``; otherwise a subscription on one store resumes the other's
checkpoint of the same name and is refused as ahead, or skips events. A suite calls the check with two
connected providers on two distinct, empty stores of its kind; it opens and closes them itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.checkpoints import MemoryCheckpointStore
from eventsource.manager import EventSourcingManager
from eventsource.subscriptions import CheckpointAheadError
from eventsource.testing.base import _host, ev, sid
from eventsource.testing.subscriptions import WAIT

if TYPE_CHECKING:
    from eventsource.checkpoints import CheckpointStore
    from eventsource.model import Event
    from eventsource.provider import Provider
    from eventsource.subscriptions import Subscription


async def check_own_checkpoints(
    a: Provider, b: Provider, checkpoint: CheckpointStore | None = None, *, name: str = "proj"
) -> None:
    """Fail the test if a subscription on ``b`` resumes the checkpoint ``a``'s subscription of that name stored.

    ``a`` and ``b`` are connected and empty; both get one stream id (3 events in ``a``, 1 in ``b``). A
    one-stream subscription ``<name>-stream`` runs on each, then (on stores with ``global_order="total"``) an
    all-streams one ``<name>``: ``a`` commits after its 3 events, ``b`` must start with no checkpoint and
    deliver exactly its own event; then a projection ``<name>-projection`` runs on each into one sink on that
    store and must apply exactly b's own event on b. ``checkpoint`` defaults to a fresh in-memory store.
    """
    store = checkpoint if checkpoint is not None else MemoryCheckpointStore()
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=_host())
    await m.register_provider(a, name="a", default=True)  # the caller owns closing both providers
    await m.register_provider(b, name="b")
    s = sid("orders")
    await m.append_events_batch(stream_id=s, events=[ev("Placed", {"n": n}) for n in range(3)], provider="a")
    own = (await m.append_events_batch(stream_id=s, events=[ev("Placed", {"n": 9})], provider="b")).event_ids
    await _resume_apart(m, store, f"{name}-stream", own, stream_id=s)  # b's stream is at version 1, a's at 3
    total = a.capabilities.global_order == "total" and b.capabilities.global_order == "total"
    if total:
        await _resume_apart(m, store, name, own)  # a's checkpoint (position 3) would skip b's only event
    # a projection of that name, run on each store into one sink, keeps one checkpoint per store as well
    await _project_apart(m, store, f"{name}-projection", own, stream_id=None if total else s)
    assert a.checkpoint_source != b.checkpoint_source


async def _project_apart(
    m: EventSourcingManager, store: CheckpointStore, name: str, own: list[str], *, stream_id: str | None
) -> None:
    from eventsource.projections import CheckpointStoreSink, Projection, ProjectionRunner

    seen: dict[str, list[str]] = {"a": [], "b": []}
    for provider in ("a", "b"):

        async def placed(event: Event, _tx: None, provider: str = provider) -> None:
            seen[provider].append(event.event_id)

        projection: Projection[None] = Projection(name, {"Placed": placed}, stream_id=stream_id, provider=provider)
        runner = ProjectionRunner(m, poll_interval=0.05).add(projection, CheckpointStoreSink(store))
        await runner.catch_up(timeout=WAIT)
    assert len(seen["a"]) == 3
    assert seen["b"] == own, f"projection {name!r} on b resumed a's checkpoint: one checkpoint source"


async def _resume_apart(
    m: EventSourcingManager, store: CheckpointStore, name: str, own: list[str], **target: Any
) -> None:
    async with m.subscribe(**target, checkpoint=store, name=name, provider="a") as sub:
        assert len(await _batch(sub)) == 3
        await sub.commit()
    what = f"subscription {name!r} on b ({target or 'all streams'})"
    try:
        async with m.subscribe(**target, checkpoint=store, name=name, provider="b", poll_interval=0.05) as sub_b:
            assert sub_b.committed is None, f"{what} resumed a's checkpoint {sub_b.committed}: one checkpoint source"
            assert [e.event_id for e in await _batch(sub_b)] == own, f"{what} did not deliver b's own event"
    except CheckpointAheadError as err:
        pytest.fail(f"{what} was refused a's checkpoint as ahead (one checkpoint source): {err}")


async def _batch(sub: Subscription) -> list[Event]:
    """What the subscription has (up to 10 events), waiting a bounded time for the first."""
    try:
        return await asyncio.wait_for(sub.next_batch(10), WAIT)
    except TimeoutError:
        pytest.fail(f"subscription {sub.name!r} delivered nothing within {WAIT}s")

"""Attack review of subscriptions, checkpoints and projections (core stores): each test failed before its fix."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from eventsource.checkpoints import MemoryCheckpointStore
from eventsource.memory import MemoryProvider
from eventsource.projections import CheckpointStoreSink, Projection, ProjectionRunner
from eventsource.sqlite import SqliteProvider
from eventsource.sqlite.lease import SqliteFileLease
from eventsource.testing.subscriptions import WAIT, take
from eventsource.testing.transfer import manager_on
from eventsource.transfer import PositionMap, copy_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from eventsource.model import Event
    from eventsource.subscriptions import Subscription


async def until_seen(sub: Subscription, wanted: set[str], seen: set[str]) -> list[Event]:
    """What ``sub`` delivers until every id of ``wanted`` was delivered (or is in ``seen``); fails after ``WAIT``."""
    out: list[Event] = []

    async def run() -> None:
        while not wanted <= seen | {e.event_id for e in out}:
            out.append(await anext(sub))

    try:
        await asyncio.wait_for(run(), WAIT)
    except TimeoutError:
        missing = wanted - seen - {e.event_id for e in out}
        pytest.fail(f"the subscription passed over {len(missing)} of {len(wanted)} events")
    return out


async def test_a_filtered_checkpoint_is_translated_to_the_target_store_like_an_unfiltered_one(tmp_path: Path) -> None:
    """A filtered subscription's checkpoint counts global positions too (scope ``all filter=...``).

    ``translate_checkpoint`` returned it unchanged, as if it counted one stream's versions: on a target whose
    positions run below the source's (here the source had deleted events; a PostgreSQL or NATS source always
    has sparse ones), the resumed subscription passed over every event copied between the two positions.
    """
    source = await manager_on(MemoryProvider())
    target = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}"))
    try:
        await source.append_events_batch(stream_id="gone", events=[{"event_type": "A", "data": {}}] * 10)
        await source.delete_stream("gone")  # positions 1-10 are not copied: the target's run 10 lower
        for i in range(20):
            await source.append_event(stream_id=f"s-{i % 3}", event_type="AB"[i % 2], data={"i": i})
        store = MemoryCheckpointStore()
        async with source.subscribe(event_types=["A"], checkpoint=store, name="sub") as sub:
            handled = await take(sub, 5)
            cp = await sub.commit()
        assert cp.scope.startswith("all filter=")
        positions = PositionMap(tmp_path / "map.db")
        try:
            src, dst = source.get_default_provider(), target.get_default_provider()
            await copy_store(src, dst, position_map=tmp_path / "map.db")
            moved = positions.translate_checkpoint(cp)
        finally:
            positions.close()
        # the counted event's id moves with the position: the event the copy wrote there (a copy writes stream by
        # stream, so it is not the one the source held at the checkpoint's position); kept, the resume refused
        assert cp.event_id is not None
        there = [e async for e in target.read_all(from_position=moved.position, page_size=1)][:1]
        assert moved.event_id == there[0].event_id
        assert there[0].position == moved.position
        await store.put(replace(moved, source=dst.checkpoint_source))
        wanted = [e.event_id async for e in source.read_all() if e.event_type == "A"]
        async with target.subscribe(event_types=["A"], checkpoint=store, name="sub") as resumed:
            rest = await until_seen(resumed, set(wanted), {e.event_id for e in handled})
        # nothing is passed over; events copied around the checkpoint may come again (at least once)
        assert {e.event_id for e in rest} <= set(wanted)
    finally:
        await source.close()
        await target.close()


async def test_one_projection_name_on_two_stores_runs_on_both_under_one_lease(tmp_path: Path) -> None:
    """The checkpoint is keyed by (name, source), so one projection name may run on several stores (a schema
    per tenant) into one sink; the lease was keyed by the name alone (``projection:<name>``), so the runner of
    the second store waited for a lease the first one held for as long as it ran: that store never advanced.
    """
    lease = SqliteFileLease(f"sqlite:///{tmp_path / 'lease.db'}")
    sink = CheckpointStoreSink(MemoryCheckpointStore(f"memory://{uuid.uuid4().hex}"))
    stores = [await manager_on(MemoryProvider()) for _ in range(2)]
    applied: list[list[str]] = [[], []]
    came = [asyncio.Event(), asyncio.Event()]

    def on(i: int) -> Callable[[Event, None], None]:
        def placed(event: Event, _tx: None) -> None:
            applied[i].append(event.event_id)
            came[i].set()

        return placed

    runners = [
        ProjectionRunner(es, lease=lease, poll_interval=0.05, lease_wait=0.05).add(
            Projection("orders", {"Placed": on(i)}), sink
        )
        for i, es in enumerate(stores)
    ]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        for es in stores:
            await es.append_event(stream_id="o-1", event_type="Placed", data={})
        try:
            await asyncio.wait_for(asyncio.gather(*(c.wait() for c in came)), WAIT)
        except TimeoutError:
            pytest.fail(f"applied on each store: {[len(seen) for seen in applied]} (one event each expected)")
    finally:
        for r in runners:
            await r.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for es in stores:
            await es.close()

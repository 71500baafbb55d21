"""``read_all``: every stream in version order, one total order where declared, and a follower.

The total order, resuming by position and the follower that must see every concurrent write once apply
to ``global_order="total"``; on ``"per_stream"`` they are skipped naming the capability.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider


class GlobalOrderSuite(ProviderSuiteBase):
    """``read_all``: every stream in version order, and one total order where declared."""

    async def test_read_all_covers_every_stream_each_in_version_order(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        streams = [sid("g") for _ in range(3)]
        appended = []
        for i in range(4):
            for s in streams:
                r = await manager.append_event(stream_id=s, event_type="E", data={"i": i})
                appended.append((s, r.version, r.event_id))
        seen = [e async for e in manager.read_all()]
        assert sorted(e.event_id for e in seen) == sorted(a[2] for a in appended)
        for s in streams:
            assert [e.version for e in seen if e.stream_id == s] == [1, 2, 3, 4]
            assert [e.event_id for e in seen if e.stream_id == s] == [a[2] for a in appended if a[0] == s]

    async def test_read_all_is_one_total_order_resumable_by_position(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        order = provider.capabilities.global_order
        if order != "total":
            pytest.skip(f"global_order={order}: read_all promises no order across streams and no resumable position")
        streams = [sid("g") for _ in range(3)]
        appended = []
        for i in range(4):
            for s in streams:
                r = await manager.append_event(stream_id=s, event_type="E", data={"i": i})
                appended.append(r.event_id)
        seen = [e async for e in manager.read_all()]
        positions = [e.position for e in seen]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        # sequential appends: the global order is the append order
        assert [e.event_id for e in seen] == appended
        middle = seen[len(seen) // 2]
        tail = [e.event_id async for e in manager.read_all(from_position=middle.position)]
        assert tail == [e.event_id for e in seen[len(seen) // 2 :]]
        after_last = [e.event_id async for e in manager.read_all(from_position=seen[-1].position + 1)]
        assert after_last == []

    async def test_a_follower_of_read_all_sees_every_concurrent_write_once(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        order = provider.capabilities.global_order
        if order != "total":
            pytest.skip(f"global_order={order}: read_all has no position a follower could resume from")
        writers, per_writer = 4, 15
        done = asyncio.Event()
        seen: list[str] = []

        async def follow() -> None:
            nxt = 0
            while True:
                finished = done.is_set()
                async for e in manager.read_all(from_position=nxt):
                    seen.append(e.event_id)
                    nxt = e.position + 1
                if finished:
                    return
                await asyncio.sleep(0.005)

        async def write(w: int) -> list[str]:
            ids = []
            for i in range(per_writer):
                if i % 3 == 0:
                    r = await manager.append_events_batch(stream_id=f"fw-{w}", events=[ev(), ev()])
                    ids.extend(r.event_ids)
                else:
                    ids.append(
                        (await manager.append_event(stream_id=f"fw-{w}", event_type="E", data={"i": i})).event_id
                    )
            return ids

        follower = asyncio.create_task(follow())
        written = await asyncio.gather(*(write(w) for w in range(writers)))
        done.set()
        await asyncio.wait_for(follower, timeout=60)
        expected = sorted(i for ids in written for i in ids)
        assert sorted(seen) == expected, "the follower skipped or repeated events"

"""Tasks sharing one subscription (a worker pool): each event goes to one of them, once."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

from eventsource import EventSourcingManager

if TYPE_CHECKING:
    from pathlib import Path


async def test_tasks_sharing_one_subscription_each_get_distinct_events_and_none_is_lost(tmp_path: Path) -> None:
    """Four tasks iterating one subscription each read the same next page at once: 8 events came twice and 11
    never (489 distinct of 500). Page reads now take turns."""
    config = {"providers": {"s": f"sqlite:///{tmp_path}/x.db"}, "default_provider": "s"}
    async with EventSourcingManager(config) as m:
        ids = []
        for i in range(50):
            res = await m.append_events_batch(
                stream_id=f"s{i % 5}", events=[{"event_type": "E", "data": {"i": i * 10 + j}} for j in range(10)]
            )
            ids.extend(res.event_ids)
        seen: collections.Counter[str] = collections.Counter()
        async with m.subscribe(page_size=13) as sub:

            async def consumer() -> None:
                while sum(seen.values()) < len(ids):
                    try:
                        event = await asyncio.wait_for(anext(sub), 2.0)
                    except TimeoutError:
                        return  # nothing more comes (an event lost)
                    seen[event.event_id] += 1
                    await asyncio.sleep(0)  # the others' turn

            await asyncio.wait_for(asyncio.gather(*(consumer() for _ in range(4))), 30)
            batches: collections.Counter[str] = collections.Counter()
            more = await m.append_events_batch(stream_id="t", events=[{"event_type": "E", "data": {}}] * 30)

            async def batcher() -> None:
                while sum(batches.values()) < 30:
                    try:
                        got = await asyncio.wait_for(sub.next_batch(4), 2.0)
                    except TimeoutError:
                        return
                    for event in got:
                        batches[event.event_id] += 1
                    await asyncio.sleep(0)

            await asyncio.wait_for(asyncio.gather(*(batcher() for _ in range(3))), 30)
    assert {k: v for k, v in seen.items() if v > 1} == {}, "an event went to two consumers"
    assert set(seen) == set(ids), f"{len(set(ids) - set(seen))} events never reached any consumer"
    assert batches == dict.fromkeys(more.event_ids, 1)

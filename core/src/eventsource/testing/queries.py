"""Queries: read by event id, and ``get_events`` filters, paging and sort order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import EventNotFoundError, ValidationError
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager


class QuerySuite(ProviderSuiteBase):
    """Read by id, and ``get_events`` filters, paging and sort order."""

    async def test_get_event_by_id(self, manager: EventSourcingManager) -> None:
        s, other = sid(), sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(3)])
        await manager.append_event(stream_id=other, event_type="E", data={})
        e = await manager.get_event_by_id(r.event_ids[1])
        assert (e.stream_id, e.version, e.data) == (s, 2, {"i": 1})
        e = await manager.get_event_by_id(r.event_ids[2], stream_id=s)
        assert e.version == 3
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(r.event_ids[0], stream_id=other)
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(str(uuid.uuid4()))

    # ------------------------------------------------------------------ filters, paging, sorting

    async def _seed_query_data(self, manager: EventSourcingManager) -> tuple[str, str, datetime]:
        a, b = sid("qa"), sid("qb")
        t0 = datetime(2030, 1, 1, tzinfo=UTC)
        for i in range(12):
            await manager.append_event(
                stream_id=a if i % 2 == 0 else b,
                event_type="Created" if i % 3 == 0 else "Updated",
                data={"i": i},
                tenant_id="t1" if i < 6 else "t2",
                correlation_id=f"c{i % 4}",
                aggregate_id=f"agg-{i % 2}",
                aggregate_type="Thing",
                timestamp=t0 + timedelta(minutes=i),
            )
        return a, b, t0

    async def test_get_events_filters(self, manager: EventSourcingManager) -> None:
        a, b, t0 = await self._seed_query_data(manager)

        async def idx(**kw: Any) -> list[int]:
            res = await manager.get_events(limit=100, **kw)
            assert res.total_count == len(res.events)
            return [e.data["i"] for e in res.events]

        assert await idx(stream_id=a) == [0, 2, 4, 6, 8, 10]
        assert await idx(stream_id=b, event_types=["Created"]) == [3, 9]
        assert await idx(event_types=["Created"]) == [0, 3, 6, 9]
        assert await idx(stream_id=a, from_version=2, to_version=4) == [2, 4, 6]
        assert await idx(from_timestamp=t0 + timedelta(minutes=3), to_timestamp=t0 + timedelta(minutes=5)) == [3, 4, 5]
        assert await idx(tenant_id="t2") == [6, 7, 8, 9, 10, 11]
        assert await idx(correlation_id="c1") == [1, 5, 9]
        assert await idx(aggregate_id="agg-1", tenant_id="t1") == [1, 3, 5]
        assert await idx(aggregate_type="Thing", event_types=["Updated"], stream_id=a) == [2, 4, 8, 10]
        assert await idx(stream_id=sid("none")) == []

    async def test_get_events_paging_and_sort_order(self, manager: EventSourcingManager) -> None:
        a, _, _ = await self._seed_query_data(manager)
        pages: list[int] = []
        offset = 0
        while True:
            res = await manager.get_events(limit=5, offset=offset)
            assert res.total_count == 12
            pages.extend(e.data["i"] for e in res.events)
            offset += len(res.events)  # a page may be short while has_more (a store holding back late commits)
            if not res.has_more:
                break
        assert pages == list(range(12))
        desc = await manager.get_events(stream_id=a, limit=4, offset=1, sort_order="desc")
        assert [e.version for e in desc.events] == [5, 4, 3, 2]
        assert desc.total_count == 6
        assert desc.has_more
        by_stream = await manager.get_events_by_stream(a, limit=2, offset=4)
        assert [e.version for e in by_stream.events] == [5, 6]
        assert not by_stream.has_more
        with pytest.raises(ValidationError):
            await manager.get_events(limit=0)
        with pytest.raises(ValidationError):
            await manager.get_events(sort_order="sideways")

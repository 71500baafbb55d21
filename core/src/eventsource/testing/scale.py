"""Costs that do not grow with the store: cursors, count modes, and stats bounded by ``top_streams``.

Keyset cursors for ``get_events`` and ``list_streams`` return every item once across pages while writers append;
stats hold ``top_streams`` and their counts stay exact through appends, stream deletion and retention.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import ValidationError
from eventsource.model import MAX_NUMBER
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider


class ScaleSuite(ProviderSuiteBase):
    """Cursor paging returns every event once while writers append; stats hold ``top_streams`` and stay exact."""

    def _total_order(self, provider: Provider) -> None:
        if provider.capabilities.global_order != "total":
            pytest.skip(f"global_order={provider.capabilities.global_order}: positions order no page across streams")

    async def _pages(self, manager: EventSourcingManager, writer: Any = None, **kw: Any) -> list[Any]:
        """Every page of ``get_events`` by ``next_cursor``; ``writer`` runs between pages."""
        seen: list[Any] = []
        cursor = None
        for _ in range(1000):
            page = await manager.get_events(limit=4, after_position=cursor, **kw)
            seen.extend(page.events)
            assert len(page.events) <= 4
            if not page.has_more:
                assert page.next_cursor is None
                return seen
            if not page.events:  # a transaction that may still commit below the page: same cursor, call again
                assert page.next_cursor == cursor
                await asyncio.sleep(0.01)
                continue
            assert page.next_cursor == page.events[-1].position
            cursor = page.next_cursor
            if writer is not None:
                await writer()
        pytest.fail("cursor paging did not end")

    async def test_cursor_pages_every_event_once_while_writers_append(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        self._total_order(provider)
        streams = [sid("cur"), sid("cur"), sid("cur")]
        ids = []
        for i in range(23):
            r = await manager.append_event(stream_id=streams[i % 3], event_type="Seeded", data={"i": i})
            ids.append(r.event_id)
        late = sid("late")
        n = 0

        async def writer() -> None:
            nonlocal n
            n += 1
            await asyncio.gather(
                manager.append_event(stream_id=late, event_type="Seeded", data={"late": n}),
                manager.append_event(stream_id=streams[n % 3], event_type="Other", data={"late": n}),
            )

        for count in ("exact", "estimate", "none"):
            seen = await self._pages(manager, writer, event_types=["Seeded"], count=count)
            got = [e.event_id for e in seen]
            assert len(got) == len(set(got)), "an event came twice"
            assert set(ids) <= set(got), "a seeded event was skipped"
            assert all(e.event_type == "Seeded" for e in seen)
            assert [e.position for e in seen] == sorted(e.position for e in seen)
        down = await self._pages(manager, None, event_types=["Seeded"], sort_order="desc", count="none")
        assert [e.position for e in down] == sorted((e.position for e in down), reverse=True)
        assert len({e.event_id for e in down}) == len(down) >= len(ids)

    async def test_cursor_within_one_stream(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(10)])
        await manager.append_event(stream_id=sid(), event_type="Happened", data={})
        up = await self._pages(manager, stream_id=s)
        assert [e.version for e in up] == list(range(1, 11))
        down = await self._pages(manager, stream_id=s, sort_order="desc", count="none")
        assert [e.version for e in down] == list(range(10, 0, -1))
        page = await manager.get_events(stream_id=s, after_position=up[5].position, limit=100)
        assert [e.version for e in page.events] == list(range(7, 11))
        assert (page.total_count, page.has_more, page.next_cursor) == (4, False, None)

    async def test_count_modes(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev("Counted", data={"i": i}) for i in range(5)])
        deadline = time.monotonic() + 30
        while len((await manager.get_events(event_types=["Counted"], limit=5, count="none")).events) < 5:
            # held back (PostgreSQL): a transaction older than the append, as another client's may be, still runs
            # on the server; pages across streams stop below it until it ends
            assert time.monotonic() < deadline, "the appended events were never readable across streams"
            await asyncio.sleep(0.1)
        exact = await manager.get_events(event_types=["Counted"], limit=2)
        assert (exact.total_count, exact.total_exact, exact.has_more) == (5, True, True)
        none = await manager.get_events(event_types=["Counted"], limit=2, count="none")
        assert none.has_more
        assert [e.event_id for e in none.events] == [e.event_id for e in exact.events]
        assert none.total_count in (None, 5)
        est = await manager.get_events(event_types=["Counted"], tenant_id=None, limit=5, count="estimate")
        assert not est.has_more
        assert est.next_cursor is None
        assert est.total_count is None or not est.total_exact or est.total_count == 5
        empty = await manager.get_events(event_types=["NeverAppended"], limit=10, count="none")
        assert (empty.events, empty.has_more, empty.next_cursor) == ([], False, None)

    @pytest.mark.parametrize(
        ("kw", "field"),
        [
            ({"after_position": -1}, "after_position"),
            ({"after_position": True}, "after_position"),
            ({"after_position": "12"}, "after_position"),
            ({"after_position": 2**63}, "after_position"),
            ({"after_position": 3, "offset": 1}, "after_position"),
            ({"count": "approximately"}, "count"),
            ({"count": None}, "count"),
        ],
    )
    async def test_bad_cursor_is_refused(self, manager: EventSourcingManager, kw: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationError) as e:
            await manager.get_events(**kw)
        assert e.value.details.get("field") == field

    async def test_cursor_past_the_end_is_an_empty_last_page(self, manager: EventSourcingManager) -> None:
        await manager.append_event(stream_id=sid(), event_type="Happened", data={})
        for order in ("asc", "desc"):
            cursor = MAX_NUMBER if order == "asc" else 0
            page = await manager.get_events(after_position=cursor, sort_order=order, count="none")
            assert (page.events, page.has_more, page.next_cursor) == ([], False, None)

    async def test_list_streams_after(self, manager: EventSourcingManager) -> None:
        prefix = sid("ls")
        made = [f"{prefix}-{c}" for c in "bdfhjln"]
        for s in made:
            await manager.create_stream(stream_id=s)
        got: list[str] = []
        cursor = None
        for _ in range(100):
            page = await manager.list_streams(limit=3, after=cursor)
            assert page.total_count >= len(made)
            got.extend(i.stream_id for i in page.streams)
            if not page.has_more:
                assert page.next_cursor is None
                break
            cursor = page.next_cursor
            assert cursor == page.streams[-1].stream_id
            await manager.create_stream(stream_id=f"{prefix}-{cursor[-1]}z")  # sorts after the cursor: seen once
            await manager.create_stream(stream_id=f"{prefix}-a{len(got)}")  # sorts before it: not seen
        assert got == sorted(got)
        assert len(got) == len(set(got))
        assert set(made) <= set(got)
        assert not any(g.startswith(f"{prefix}-a") for g in got)
        with pytest.raises(ValidationError):
            await manager.list_streams(after=made[0], offset=1)
        with pytest.raises(ValidationError):
            await manager.list_streams(after="")
        assert (await manager.list_streams(after="\U0010ffff" * 3)).streams == []

    async def test_stats_hold_top_streams(self, manager: EventSourcingManager, provider: Provider) -> None:
        streams = [sid("top") for _ in range(5)]
        for i, s in enumerate(streams):
            await manager.append_events_batch(stream_id=s, events=[ev("Ranked") for _ in range(i + 1)])
        await manager.create_stream(stream_id=sid("empty"))
        st = (await manager.get_stats(top_streams=2))["under-test"]
        assert (st.total_streams, st.top_streams) == (6, 2)
        assert len(st.events_by_stream) <= 2
        assert set(st.estimated) <= {"total_events", "events_by_type", "events_by_stream", "last_event_at"}
        if "events_by_stream" not in st.estimated:  # a store names every figure it only estimates
            assert st.events_by_stream == {streams[4]: 5, streams[3]: 4}
        if "total_events" not in st.estimated:
            assert st.total_events == 15
        if "events_by_type" not in st.estimated:
            assert st.events_by_type == {"Ranked": 15}
        direct = await provider.stats(top_streams=2)  # the store itself holds the bound, not only the manager
        assert len(direct.events_by_stream) <= 2
        assert direct.total_streams == 6
        assert (await manager.get_stats(top_streams=0))["under-test"].events_by_stream == {}
        everything = (await manager.get_stats(top_streams=2**63 - 1))["under-test"]
        if "events_by_stream" not in everything.estimated:
            assert {k: n for k, n in everything.events_by_stream.items() if n} == {
                s: i + 1 for i, s in enumerate(streams)
            }
        unbounded = (await manager.get_stats())["under-test"]
        assert unbounded.top_streams is None
        assert len(unbounded.events_by_stream) >= 5
        for bad in (-1, True, 2**63, "3", 1.5):
            with pytest.raises(ValidationError):
                await manager.get_stats(top_streams=bad)  # type: ignore[arg-type]

    async def test_stats_stay_exact_through_deletes(self, manager: EventSourcingManager, provider: Provider) -> None:
        t0 = datetime(2021, 1, 1, tzinfo=UTC)
        a, b, c = sid("ex"), sid("ex"), sid("ex")
        await manager.append_events_batch(
            stream_id=a, events=[ev("A" if i % 2 else "B", timestamp=t0 + timedelta(days=i)) for i in range(10)]
        )
        await manager.append_events_batch(stream_id=b, events=[ev("A", timestamp=t0) for _ in range(3)])
        await manager.append_events_batch(stream_id=c, events=[ev("C", timestamp=t0) for _ in range(4)])
        await manager.delete_stream(c)
        if self.supports(provider, "truncate_stream"):
            await provider.truncate_stream(a, 3)
        if self.supports(provider, "delete_events_before"):
            await provider.delete_events_before(t0 + timedelta(days=5), a)
        await manager.append_event(stream_id=b, event_type="C", data={})
        recount: dict[str, int] = {}
        per_stream: dict[str, int] = {}
        async for e in manager.read_all():
            recount[e.event_type] = recount.get(e.event_type, 0) + 1
            per_stream[e.stream_id] = per_stream.get(e.stream_id, 0) + 1
        st = (await manager.get_stats(top_streams=10))["under-test"]
        if "events_by_type" not in st.estimated:
            assert st.events_by_type == recount
        if "total_events" not in st.estimated:
            assert st.total_events == sum(recount.values())
        if "events_by_stream" not in st.estimated:
            assert {k: n for k, n in st.events_by_stream.items() if n} == per_stream
        assert st.total_streams == 2

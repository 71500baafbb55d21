"""Stream reads: bounded memory, early stops, ranges, backwards, and page views that agree.

The manager reads through a provider's page views (``read_stream_pages`` / ``read_all_pages``); here they
must hold exactly the events of the record views, in pages never empty and never over ``page_size``. A store
that declares ``read_all`` unsupported must refuse it (the refusal test); the ``read_all`` tests of the kit
are then skipped naming it.
"""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import UnsupportedOperationError
from eventsource.model import Event, RecordedEvent, RowPage
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider

REFUSED = "checked by the refusal test of reads.py"


async def _flat(pages: AsyncIterator[Any], page_size: int) -> list[RecordedEvent]:
    """The records of a page view, each page checked never empty and never over ``page_size``."""
    out: list[RecordedEvent] = []
    async for page in pages:
        assert 0 < len(page) <= page_size, f"a page of {len(page)} events (page_size {page_size})"
        out.extend(page.records() if isinstance(page, RowPage) else page)
    return out


class PagedReadSuite(ProviderSuiteBase):
    """Stream reads: bounded memory, early stops, ranges, and page views that agree with record views."""

    async def test_reads_stream_in_bounded_memory(self, manager: EventSourcingManager) -> None:
        s = sid("big")
        payload = "x" * 4000
        for _ in range(20):
            await manager.append_events_batch(stream_id=s, events=[ev(data={"p": payload}) for _ in range(100)])
        # 2,000 events of ~4 KB = ~8 MB stored; a paged reader must never hold them all
        readers: tuple[Callable[[], AsyncIterator[Event]], ...] = (
            lambda: manager.read_stream(s, page_size=100),
            lambda: manager.read_all(page_size=100),
        )
        for reader in readers:
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                n = 0
                async for e in reader():
                    assert len(e.data["p"]) == len(payload)
                    n += 1
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            assert n == 2000
            assert peak < 4_000_000, f"reading held {peak} bytes at once"

    async def test_stopping_a_read_early_is_clean(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(30)])
        got = []
        async for e in manager.read_stream(s, page_size=5):
            got.append(e.version)
            if len(got) == 7:
                break
        assert got == list(range(1, 8))
        # the store is still usable afterwards
        assert (await manager.append_event(stream_id=s, event_type="E", data={})).version == 31

    async def test_read_stream_ranges_and_backwards(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(12)])
        assert [e.version async for e in manager.read_stream(s, from_version=5)] == list(range(5, 13))
        assert [e.version async for e in manager.read_stream(s, from_version=3, to_version=6)] == [3, 4, 5, 6]
        assert [e.version async for e in manager.read_stream(s, backwards=True, page_size=5)] == list(range(12, 0, -1))
        assert [e.version async for e in manager.read_stream(s, from_version=3, to_version=6, backwards=True)] == [
            6,
            5,
            4,
            3,
        ]
        assert [e.version async for e in manager.read_stream(s, page_size=5)] == list(range(1, 13))
        assert [e async for e in manager.read_stream(sid("missing"))] == []

    async def test_page_views_hold_the_same_events_as_the_record_views(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        # the manager reads through read_stream_pages; it must agree with read_stream event for event, in
        # pages that are never empty and never larger than page_size (read_all_pages: the next test)
        s = sid("pages")
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(12)])
        for size in (1, 5, 12, 500):
            for kw in ({}, {"from_version": 3, "to_version": 9}, {"backwards": True}, {"from_version": 13}):
                records = [e async for e in provider.read_stream(s, page_size=size, **kw)]
                paged = await _flat(provider.read_stream_pages(s, page_size=size, **kw), size)
                assert paged == records, (size, kw)
        assert await _flat(provider.read_stream_pages(sid("missing"), page_size=5), 5) == []

    async def test_read_all_page_view_holds_the_same_events_as_read_all(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        if not provider.capabilities.supports("read_all"):
            pytest.skip(f"capability: the store declares 'read_all' unsupported ({REFUSED})")
        s = sid("pages")
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(12)])
        stored = [e async for e in provider.read_stream(s)]
        first = stored[0]
        records = [e async for e in provider.read_all(from_position=first.position, page_size=5)]
        paged = await _flat(provider.read_all_pages(from_position=first.position, page_size=5), 5)
        assert [e.event_id for e in paged if e.stream_id == s] == [e.event_id for e in records if e.stream_id == s]
        assert len([e for e in paged if e.stream_id == s]) == 12

    async def test_store_that_cannot_read_all_refuses_it(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """Declared unsupported: the page view and the manager's ``read_all`` both raise."""
        if provider.capabilities.supports("read_all"):
            pytest.skip("capability: the store supports 'read_all' (the other tests run it)")
        await manager.append_event(stream_id=sid(), event_type="E", data={})
        with pytest.raises(UnsupportedOperationError):
            await anext(aiter(provider.read_all_pages(page_size=5)))
        with pytest.raises(UnsupportedOperationError):
            [e async for e in manager.read_all()]

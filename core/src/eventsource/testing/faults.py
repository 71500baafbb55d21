"""Faults on the page path: a connection lost between two of a store's own pages mid-read.

:class:`PageFaults` wraps the provider's page views to drop a page in flight; the manager must resume
right after the last event delivered (every event once, in order), and give up with the error once the
faults outnumber its retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import ProviderUnavailableError
from eventsource.manager import EventSourcingManager
from eventsource.testing.base import ProviderSuiteBase, _host, ev, sid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventsource.provider import Provider

REFUSED = "checked by the refusal test of reads.py"


class PageFaults:
    """Makes a provider's own page views (``read_stream_pages`` / ``read_all_pages``) lose the connection mid-read.

    Each page iterator the manager opens delivers ``after`` pages of the store's real iterator, then,
    while ``left`` faults remain, raises :class:`ProviderUnavailableError` in place of the next page
    (which the real iterator has already fetched: the fault drops a page in flight). ``opened`` counts
    the iterators opened, so a test can tell that the reads really were resumed.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, provider: Provider, *, after: int = 2) -> None:
        self.after = after
        self.left = 0
        self.opened = 0
        for name in ("read_stream_pages", "read_all_pages"):
            monkeypatch.setattr(provider, name, self._wrap(getattr(provider, name)))

    def _wrap(self, real: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        def pages(*args: Any, **kw: Any) -> AsyncIterator[Any]:
            self.opened += 1
            return self._faulty(real(*args, **kw))

        return pages

    async def _faulty(self, it: AsyncIterator[Any]) -> AsyncIterator[Any]:
        delivered = 0
        try:
            async for page in it:
                if delivered == self.after and self.left:
                    self.left -= 1
                    msg = "connection lost mid-read (injected by the conformance kit)"
                    raise ProviderUnavailableError(msg)
                yield page
                delivered += 1
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()


class ReadFaultSuite(ProviderSuiteBase):
    """A connection lost between two of the store's pages: the read resumes, every event once."""

    def _fault_manager(self) -> EventSourcingManager:
        return EventSourcingManager(
            {
                "providers": {},
                "default_provider": None,
                "max_batch_size": self.max_batch_size,
                "retry_attempts": 2,  # each fault is followed by delivered pages, so 2 attempts suffice
                "retry_delay": 0.001,
                "retry_max_delay": 0.002,
            },
            host=_host(),
        )

    async def test_read_stream_resumes_after_a_fault_mid_read_on_the_page_path(
        self, provider: Provider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # the manager reads through read_stream_pages; a connection lost between two of the store's own
        # pages must resume right after the last event delivered: every event once, in order
        m = self._fault_manager()
        await m.register_provider(provider, name="under-test", default=True)
        s = sid("fault")
        await m.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(23)])
        faults = PageFaults(monkeypatch, provider)
        cases: list[tuple[dict[str, Any], list[int]]] = [
            ({"page_size": 5}, list(range(1, 24))),
            ({"page_size": 5, "backwards": True}, list(range(23, 0, -1))),
            ({"page_size": 3, "from_version": 4, "to_version": 20}, list(range(4, 21))),
            ({"page_size": 3, "from_version": 4, "to_version": 20, "backwards": True}, list(range(20, 3, -1))),
            ({"page_size": 1}, list(range(1, 24))),
        ]
        for kw, expected in cases:
            faults.left, faults.opened = 2, 0
            got = [(e.version, e.data["i"]) async for e in m.read_stream(s, **kw)]
            assert got == [(v, v - 1) for v in expected], kw
            assert faults.left == 0, f"the faults never fired: {kw}"
            assert faults.opened == 3, f"expected the read to be re-opened twice: {kw}"
        assert m.metrics("under-test")["under-test"]["read_stream"]["errors"] == 0
        # more faults in a row than retry attempts: the caller gets the error, not a short read
        faults.left, faults.after = 2, 0
        with pytest.raises(ProviderUnavailableError):
            [e async for e in m.read_stream(s, page_size=5)]

    async def test_read_all_resumes_after_a_fault_mid_read_on_the_page_path(
        self, provider: Provider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        m = self._fault_manager()
        await m.register_provider(provider, name="under-test", default=True)
        if not provider.capabilities.supports("read_all"):
            pytest.skip(f"capability: the store declares 'read_all' unsupported ({REFUSED})")
        order = provider.capabilities.global_order
        if order != "total":
            pytest.skip(f"global_order={order}: read_all has no position to resume from after a fault")
        a, b = sid("fa"), sid("fb")
        for i in range(8):  # interleaved, so a resume by position crosses streams
            await m.append_events_batch(
                stream_id=a if i % 2 == 0 else b, events=[ev(data={"i": 3 * i + j}) for j in range(3)]
            )
        events = [e async for e in m.read_all(page_size=4)]
        clean = [(e.event_id, e.data["i"]) for e in events]
        assert [i for _, i in clean] == list(range(24))
        faults = PageFaults(monkeypatch, provider)
        for size in (4, 5, 1):
            faults.left, faults.opened = 2, 0
            got = [(e.event_id, e.data["i"]) async for e in m.read_all(page_size=size)]
            assert got == clean, size
            assert faults.left == 0, f"the faults never fired (page_size {size})"
            assert faults.opened == 3, f"expected the read to be re-opened twice (page_size {size})"
        faults.left, faults.opened = 2, 0
        got = [(e.event_id, e.data["i"]) async for e in m.read_all(from_position=events[10].position, page_size=3)]
        assert got == clean[10:]
        assert faults.left == 0

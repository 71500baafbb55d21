"""The conformance kit on the in-memory provider."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.memory import MemoryProvider
from eventsource.provider import Capabilities
from eventsource.testing import AbsentStore, ProviderSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime


class TestMemoryProvider(ProviderSuite):
    @pytest.fixture
    def absent_store(self, absent_memory: AbsentStore) -> AbsentStore:
        return absent_memory

    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = MemoryProvider(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()


class NoRetentionPrimitivesProvider(MemoryProvider):
    """A store that declares it cannot delete events (and raises if asked anyway)."""

    kind = "memory-noretention"
    capabilities = Capabilities(
        global_order="total",
        concurrency="in_process",
        unsupported=frozenset({"truncate_stream", "delete_events_before"}),
    )

    async def truncate_stream(self, stream_id: str, before_version: int, *, if_holds: object = None) -> int:
        raise self.unsupported("truncate_stream")

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        raise self.unsupported("delete_events_before")


class TestMemoryProviderDeclaringUnsupportedOperations(ProviderSuite):
    """The kit's refusal tests run too (they assert the error); the tests of the missing operations skip."""

    @pytest.fixture
    def absent_store(self, absent_memory: AbsentStore) -> AbsentStore:
        return absent_memory

    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = NoRetentionPrimitivesProvider(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()


async def test_a_closed_instance_refuses_until_reconnected_and_a_named_stores_data_stays() -> None:
    """close() refuses on this instance only (as a closed connection would); the data stays for the others."""
    from eventsource.errors import ProviderUnavailableError
    from eventsource.model import ANY, NewEvent, utcnow

    url = f"memory://closed-{uuid.uuid4().hex}"
    first, second = MemoryProvider(url), MemoryProvider(url)
    await first.connect()
    await second.connect()
    ev = NewEvent(uuid.uuid4().hex, "Counted", b"{}", b"{}", "json", utcnow())
    await first.append("s", [ev], ANY)
    await first.close()
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await first.get_stream_info("s")
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await first.append("s", [ev], ANY)
    with pytest.raises(ProviderUnavailableError, match="closed"):
        [rec async for rec in first.read_all()]
    assert not (await first.health()).healthy
    info = await second.get_stream_info("s")
    assert info is not None and info.version == 1
    await first.connect()
    assert [rec.event_id async for rec in first.read_all()] == [ev.event_id]
    assert (await first.health()).healthy
    await first.close()
    await first.close()  # idempotent


async def test_a_read_begun_before_close_is_refused_at_its_next_page() -> None:
    """A read under way when the instance closes stops at its next page, as on a store whose connection closed."""
    from eventsource.errors import ProviderUnavailableError
    from eventsource.model import ANY, NewEvent, utcnow

    p = MemoryProvider(f"memory://closed-{uuid.uuid4().hex}")
    await p.connect()
    evs = [NewEvent(uuid.uuid4().hex, "Counted", b"{}", b"{}", "json", utcnow()) for _ in range(3)]
    await p.append("s", evs, ANY)
    by_stream, by_position = p.read_stream_pages("s", page_size=1), p.read_all_pages(page_size=1)
    assert [e.version for e in await anext(by_stream)] == [1]
    assert [e.position for e in await anext(by_position)] == [1]
    await p.close()
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await anext(by_stream)
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await anext(by_position)

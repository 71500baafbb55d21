"""Retention primitives: ``truncate_stream`` and ``delete_events_before`` keep versions.

A provider that declares either unsupported must raise :class:`UnsupportedOperationError` for it (one
refusal test each, the store unchanged); the tests of that primitive are then skipped naming it. The
policies built on these primitives are :class:`~eventsource.testing.RetentionSuite`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from eventsource.errors import StreamNotFoundError, UnsupportedOperationError
from eventsource.testing.base import ProviderSuiteBase, ev, sid

REFUSED = "checked by the refusal test"

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider


class RetentionPrimitiveSuite(ProviderSuiteBase):
    """``truncate_stream`` and ``delete_events_before``, or the error declaring them unsupported."""

    async def test_store_that_cannot_truncate_refuses_unchanged(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        if self.supports(provider, "truncate_stream"):
            pytest.skip("capability: the store supports 'truncate_stream' (the other tests run it)")
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(10)])
        with pytest.raises(UnsupportedOperationError):
            await provider.truncate_stream(s, 4)
        assert await self.versions(manager, s) == list(range(1, 11))

    async def test_store_that_cannot_delete_by_time_refuses_unchanged(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        if self.supports(provider, "delete_events_before"):
            pytest.skip("capability: the store supports 'delete_events_before' (the other tests run it)")
        s = sid()
        t0 = datetime(2020, 1, 1, tzinfo=UTC)
        await manager.append_events_batch(
            stream_id=s, events=[ev(data={"i": i}, timestamp=t0 + timedelta(days=i)) for i in range(6)]
        )
        with pytest.raises(UnsupportedOperationError):
            await provider.delete_events_before(t0 + timedelta(days=3), s)
        assert await self.versions(manager, s) == list(range(1, 7))

    async def test_truncate_stream_keeps_versions(self, manager: EventSourcingManager, provider: Provider) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(10)])
        if not self.supports(provider, "truncate_stream"):
            pytest.skip(f"capability: the store declares 'truncate_stream' unsupported ({REFUSED})")
        assert await provider.truncate_stream(s, 4) == 3
        assert await self.versions(manager, s) == list(range(4, 11))
        info = await manager.get_stream_info(s)
        assert (info.version, info.event_count, info.first_version) == (10, 7, 4)
        assert (await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=10)).version == 11
        assert (await manager.get_events(stream_id=s)).total_count == 8
        assert await provider.truncate_stream(s, 4) == 0

    @pytest.mark.parametrize("before_version", [0, 1, 5])
    async def test_truncating_a_missing_stream_raises_stream_not_found(
        self, provider: Provider, before_version: int
    ) -> None:
        """Whatever the bound: a truncation below version 1 deleted nothing but still names a missing stream."""
        if not self.supports(provider, "truncate_stream"):
            pytest.skip(f"capability: the store declares 'truncate_stream' unsupported ({REFUSED})")
        with pytest.raises(StreamNotFoundError):
            await provider.truncate_stream(sid(), before_version)

    async def test_truncate_if_holds_leaves_another_incarnation(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """``if_holds=(version, event_id)``: truncates only while the stream holds that event there."""
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(10)])
        if not self.supports(provider, "truncate_stream"):
            pytest.skip(f"capability: the store declares 'truncate_stream' unsupported ({REFUSED})")
        ids = {e.version: e.event_id async for e in manager.read_stream(s)}
        assert await provider.truncate_stream(s, 6, if_holds=(10, "not-this-stream's-event")) == 0
        assert await provider.truncate_stream(s, 6, if_holds=(9, ids[10])) == 0
        assert await self.versions(manager, s) == list(range(1, 11))
        assert await provider.truncate_stream(s, 4, if_holds=(10, ids[10])) == 3
        assert await provider.truncate_stream(s, 6, if_holds=(7, ids[7])) == 2
        assert await self.versions(manager, s) == list(range(6, 11))
        if not self.supports(provider, "delete_stream"):
            pytest.skip("capability: the store declares 'delete_stream' unsupported (no other incarnation)")
        await manager.delete_stream(s)
        await manager.append_events_batch(stream_id=s, events=[ev(data={"new": i}) for i in range(12)])
        assert await provider.truncate_stream(s, 9, if_holds=(10, ids[10])) == 0  # the old incarnation's event
        assert await self.versions(manager, s) == list(range(1, 13))

    async def test_delete_events_before_a_time(self, manager: EventSourcingManager, provider: Provider) -> None:
        s, other = sid(), sid()
        t0 = datetime(2020, 1, 1, tzinfo=UTC)
        await manager.append_events_batch(
            stream_id=s, events=[ev(data={"i": i}, timestamp=t0 + timedelta(days=i)) for i in range(6)]
        )
        await manager.append_event(stream_id=other, event_type="E", data={}, timestamp=t0)
        if not self.supports(provider, "delete_events_before"):
            pytest.skip(f"capability: the store declares 'delete_events_before' unsupported ({REFUSED})")
        assert await provider.delete_events_before(t0 + timedelta(days=3), s) == 3
        assert await self.versions(manager, s) == [4, 5, 6]
        assert await self.versions(manager, other) == [1]
        assert await provider.delete_events_before(t0 + timedelta(days=1)) == 1
        assert await self.versions(manager, other) == []
        assert (await manager.get_stream_info(other)).version == 1

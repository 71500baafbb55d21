"""Stats and health: exact totals per type and per stream, and a healthy health check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager


class StatsSuite(ProviderSuiteBase):
    """Exact stats and a healthy health check."""

    async def test_stats_are_exact(self, manager: EventSourcingManager) -> None:
        a, b = sid(), sid()
        await manager.append_events_batch(stream_id=a, events=[ev("A"), ev("A"), ev("B")])
        await manager.append_event(stream_id=b, event_type="B", data={})
        await manager.create_stream(stream_id=sid("empty"))
        await manager.create_snapshot(stream_id=a, data={})
        st = (await manager.get_stats())["under-test"]
        assert (st.total_events, st.total_streams, st.total_snapshots) == (4, 3, 1)
        assert st.events_by_type == {"A": 2, "B": 2}
        assert st.events_by_stream[a] == 3
        assert st.events_by_stream[b] == 1
        assert st.last_event_at is not None
        # the bytes it holds, or None where it cannot say: never a placeholder 0 for a store holding events
        assert st.storage_size is None or st.storage_size > 0, st.storage_size
        assert st.uptime_seconds >= 0

    async def test_health_reports_healthy(self, manager: EventSourcingManager) -> None:
        h = (await manager.health_check())["under-test"]
        assert h.healthy, h.message

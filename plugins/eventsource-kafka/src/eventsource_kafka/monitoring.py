"""Monitoring: exact store-wide statistics (a scan of every stream) and the cluster's health.

``stats`` counts what reads return (retention markers applied, lost records dropped), so its counts
match :meth:`get_stream_info`; ``health`` describes the cluster and never raises.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING

from eventsource.model import HealthStatus, ProviderStats
from eventsource.provider import top_of

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.reads import Reader
    from eventsource_kafka.views import Views


class Monitor:
    """Statistics and health of one provider instance."""

    def __init__(self, conn: Connection, views: Views, reader: Reader, name: Callable[[], str]) -> None:
        self.conn = conn
        self.views = views
        self.reader = reader
        self._name = name  # the provider's name, which its owner may change after construction

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Exact counts from a scan of every stream (O(store)), snapshot count from the snapshot view.

        ``top_streams`` bounds the size of ``events_by_stream``, not the cost: topic offsets count records,
        and records that lost a version race or were deleted are not events, so the scan stays.
        """
        metas = dict(await self.views.meta())
        snaps = await self.views.snaps()
        by_type: dict[str, int] = {}
        by_stream: dict[str, int] = {}
        size = 0
        last: datetime | None = None
        for sid in sorted(metas):
            n = 0
            async for e in self.reader.scan(sid, metas[sid]):
                n += 1
                by_type[e.event_type] = by_type.get(e.event_type, 0) + 1
                size += len(e.data) + len(e.metadata)
                if last is None or e.timestamp > last:
                    last = e.timestamp
            by_stream[sid] = n
        return ProviderStats(
            total_events=sum(by_stream.values()),
            total_streams=len(metas),
            total_snapshots=sum(len(v) for k, v in snaps.items() if k in metas),
            events_by_type=by_type,
            events_by_stream=top_of(by_stream, top_streams),
            storage_size=size,
            last_event_at=last,
            uptime_seconds=monotonic() - self.conn.started,
            provider=self._name(),
            extra={"topic_prefix": self.conn.prefix, "layout": "topic-per-stream"},
            top_streams=top_streams,
        )

    async def health(self) -> HealthStatus:
        """Describe the cluster; unhealthy (never raising) when it cannot be reached."""
        t0 = monotonic()
        try:
            if not self.conn.connected:
                return HealthStatus(healthy=False, provider=self._name(), message="not connected")
            async with asyncio.timeout(min(5.0, self.conn.settings["request_timeout"])):
                desc = await self.conn.io.describe_cluster()
        except Exception as e:  # noqa: BLE001 - health reports, it never raises
            return HealthStatus(healthy=False, provider=self._name(), message=f"{type(e).__name__}: {e}")
        brokers = desc.get("brokers", []) if isinstance(desc, dict) else []
        return HealthStatus(
            healthy=True,
            provider=self._name(),
            message="ok",
            details={"brokers": len(brokers), "cluster_id": desc.get("cluster_id") if isinstance(desc, dict) else None},
            latency_ms=(monotonic() - t0) * 1000,
        )

"""Monitoring: exact statistics from the tables, and a health check through the pool that never raises."""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import EventSourceError
from eventsource.model import HealthStatus, ProviderStats

if TYPE_CHECKING:
    from collections.abc import Callable

    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.statements import Statements


EXACT_TYPES_UP_TO = 100_000
"""Bounded stats count events by type exactly in a store of at most this many events (the count stays cheap)."""


class Monitor:
    """Stats and health of one store (``name``: the provider's current name, which the manager sets)."""

    def __init__(self, conn: Connection, sql: Statements, name: Callable[[], str]) -> None:
        self.conn = conn
        self.sql = sql
        self._name = name
        self.started = monotonic()

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Exact counts from the tables; with ``top_streams``, figures that do not grow with the events.

        Bounded: totals from the streams rows (``event_count`` is kept by every write), the top streams by
        ``event_count``, and events by type counted exactly up to :data:`EXACT_TYPES_UP_TO` events, beyond
        that the planner's most-common-value shares (``pg_stats``) times the exact total, named estimated.
        """
        if top_streams is not None:
            return await self._bounded(min(top_streams, 2**63 - 1))

        async def run(conn: AsyncConnection[Any]) -> ProviderStats:
            head = (await self.conn.fetchall(conn, self.sql.stats, []))[0]
            by_type = await self.conn.fetchall(conn, self.sql.by_type, [])
            by_stream = await self.conn.fetchall(conn, self.sql.by_stream, [])
            return ProviderStats(
                total_events=int(head[0]),
                total_streams=int(head[1]),
                total_snapshots=int(head[2]),
                events_by_type={t: int(c) for t, c in by_type},
                events_by_stream={s: int(c) for s, c in by_stream},
                storage_size=int(head[4]),
                last_event_at=head[3],
                uptime_seconds=monotonic() - self.started,
                provider=self._name(),
                extra={"schema": self.conn.names.schema, "table_prefix": self.conn.names.prefix},
            )

        return await self.conn.call("stats", run, retry=True)

    async def _bounded(self, top: int) -> ProviderStats:
        async def run(conn: AsyncConnection[Any]) -> ProviderStats:
            head = (await self.conn.fetchall(conn, self.sql.bounded_stats, []))[0]
            total = int(head[0])
            estimated: tuple[str, ...] = ()
            if total <= EXACT_TYPES_UP_TO:
                by_type = {t: int(c) for t, c in await self.conn.fetchall(conn, self.sql.by_type, [])}
            else:
                shares = await self.conn.fetchall(conn, self.sql.type_shares, list(self.sql.events_table))
                by_type = (
                    {v: round(f * total) for v, f in zip(*shares[0], strict=True)} if shares and shares[0][0] else {}
                )
                estimated = ("events_by_type",)
            by_stream = await self.conn.fetchall(conn, self.sql.top_streams, [top])
            return ProviderStats(
                total_events=total,
                total_streams=int(head[1]),
                total_snapshots=int(head[2]),
                events_by_type=by_type,
                events_by_stream={s: int(c) for s, c in by_stream},
                storage_size=int(head[4]),
                last_event_at=head[3],
                uptime_seconds=monotonic() - self.started,
                provider=self._name(),
                extra={"schema": self.conn.names.schema, "table_prefix": self.conn.names.prefix},
                top_streams=top,
                estimated=estimated,
            )

        return await self.conn.call("stats", run, retry=True)

    async def health(self) -> HealthStatus:
        """Run ``SELECT 1`` through the pool; report pool statistics. Never raises."""
        if self.conn.pool is None:
            return HealthStatus(healthy=False, provider=self._name(), message="not connected")
        t0 = monotonic()
        limit = min(5.0, self.conn.settings["pool_timeout"])
        try:
            async with asyncio.timeout(limit):
                await self.conn.call("health", lambda c: self.conn.fetchall(c, "SELECT 1", []), retry=True)
        except EventSourceError as e:
            return HealthStatus(healthy=False, provider=self._name(), message=e.message)
        except TimeoutError:
            msg = f"no answer from {self.conn.display_url} within {limit}s (pool exhausted or server stalled)"
            return HealthStatus(healthy=False, provider=self._name(), message=msg)
        latency = (monotonic() - t0) * 1000
        stats = self.conn.pool.get_stats() if self.conn.pool is not None else {}
        return HealthStatus(
            healthy=True,
            provider=self._name(),
            message="ok",
            details={"url": self.conn.display_url, "schema": self.conn.names.schema, "pool": stats},
            latency_ms=latency,
        )

"""Monitoring: exact statistics from the tables, and a health check through the pool that never raises.

The health check is also the durability audit: ``fsync``, ``full_page_writes`` and ``synchronous_commit``
read on a pooled connection (the value in force and the one new sessions start with), and ``synchronous_commit``
as ``ALTER ROLE/DATABASE ... SET`` left it in the catalog since that connection logged in, see :func:`audit`.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import EventSourceError
from eventsource.manager.monitoring import risk, with_durability
from eventsource.model import HealthStatus, ProviderStats

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.statements import Statements


AUDIT = (
    "SELECT name, setting, reset_val, source FROM pg_settings"
    " WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name"
)
"""The settings under which PostgreSQL can lose (or corrupt) acknowledged commits, as the connection sees them."""

CATALOG = (
    "SELECT s.setdatabase <> 0, s.setrole <> 0, split_part(c, '=', 2)"
    " FROM pg_db_role_setting s, unnest(s.setconfig) c"
    " WHERE split_part(c, '=', 1) = 'synchronous_commit'"
    " AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))"
    " AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))"
    " ORDER BY (s.setdatabase <> 0 AND s.setrole <> 0) DESC, s.setrole <> 0 DESC, s.setdatabase <> 0 DESC LIMIT 1"
)
"""``ALTER ROLE/DATABASE ... SET synchronous_commit`` for this login and database, as the catalog holds it now.

A pooled session's ``reset_val`` is fixed at its login: a change made after the pool connected applies to
every connection it opens from then on (growth, ``pool_max_lifetime``, a reconnect) but not to that session.
The most specific entry wins (database and role, then role, then database, then ``ALTER ROLE ALL``), as at login.
"""

WRITABLE = "SELECT pg_is_in_recovery(), setting, source FROM pg_settings WHERE name = 'default_transaction_read_only'"
"""Whether this connection can write at all: a standby in recovery, or sessions read-only by default, cannot."""


def read_only(row: tuple[Any, ...]) -> str | None:
    """Why the connection that read :data:`WRITABLE`'s ``row`` cannot write; ``None`` when it can."""
    recovery, setting, source = row
    if recovery:
        return "the server is a standby in recovery: every write is refused"
    if setting == "on":
        return f"default_transaction_read_only=on (set by: {source}): every write is refused"
    return None


WHY = {
    "fsync": "the server never forces writes to disk: an OS crash or power loss can lose or corrupt commits",
    "full_page_writes": "torn pages after an OS crash or power loss can corrupt the data (and lose commits)",
    "synchronous_commit": "a commit is acknowledged before its WAL is flushed: a server crash loses the last commits",
}


def audit(rows: list[tuple[Any, ...]], catalog: Sequence[tuple[Any, ...]] = ()) -> list[dict[str, str]]:
    """Each setting that is ``off``: where it is in force now (``session``) or where new sessions get it.

    ``setting`` is the value on this connection (a pooled one, configured like every other); ``reset_val`` is
    what a new session of this role, database and connection options starts with; ``source`` says where the
    value in force comes from (configuration file, database, user, client options, session). ``catalog``
    (:data:`CATALOG`'s row) is what new sessions get since a later ``ALTER ROLE/DATABASE ... SET``.
    """
    out = []
    for name, setting, reset, source in rows:
        if setting == "off":
            scope = "server" if name != "synchronous_commit" else f"session (set by: {source})"
            out.append(risk(name, setting, scope, WHY[name]))
        elif reset == "off":
            out.append(risk(name, reset, "new sessions (reset value)", WHY[name]))
        elif name == "synchronous_commit" and source != "client" and catalog and catalog[0][2] == "off":
            # (options in the connection URL, the same on every pooled connection, override the catalog)
            by_db, by_role, value = catalog[0]
            where = " and ".join(w for w, on in (("database", by_db), ("role", by_role)) if on) or "role all"
            out.append(risk(name, value, f"new sessions (ALTER {where.upper()} ... SET)", WHY[name]))
    return out


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
        """Read the durability settings through the pool (:func:`audit`); report pool statistics. Never raises.

        Unhealthy (``reason: read_only``) when the pooled connection cannot write (:func:`read_only`).
        """
        if self.conn.pool is None:
            return HealthStatus(healthy=False, provider=self._name(), message="not connected")
        t0 = monotonic()
        limit = min(5.0, self.conn.settings["pool_timeout"])
        try:
            async with asyncio.timeout(limit):
                rows, catalog, writable = await self.conn.call("health", self._audit_rows, retry=True)
        except EventSourceError as e:
            return HealthStatus(healthy=False, provider=self._name(), message=e.message)
        except TimeoutError:
            msg = f"no answer from {self.conn.display_url} within {limit}s (pool exhausted or server stalled)"
            return HealthStatus(healthy=False, provider=self._name(), message=msg)
        latency = (monotonic() - t0) * 1000
        stats = self.conn.pool.get_stats() if self.conn.pool is not None else {}
        if (why := read_only(writable)) is not None:  # it answers reads, and refuses every append
            details = {"url": self.conn.display_url, "schema": self.conn.names.schema, "reason": "read_only"}
            return HealthStatus(healthy=False, provider=self._name(), message=why, details=details, latency_ms=latency)
        ok = HealthStatus(
            healthy=True,
            provider=self._name(),
            message="ok",
            details={"url": self.conn.display_url, "schema": self.conn.names.schema, "pool": stats},
            latency_ms=latency,
        )
        return with_durability(ok, audit(rows, catalog))

    async def _audit_rows(
        self, conn: AsyncConnection[Any]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], tuple[Any, ...]]:
        writable = (await self.conn.fetchall(conn, WRITABLE, []))[0]
        return await self.conn.fetchall(conn, AUDIT, []), await self.conn.fetchall(conn, CATALOG, []), writable

"""Reads from a standby: a second pool on ``read_url``, and read-your-writes when asked for.

With ``read_url`` set (e.g. ``postgresql://app@db2/events?target_session_attrs=prefer-standby``), the
page views, ``get_event`` and ``get_events`` run on that pool; writes, stream facts, snapshots,
retention and stats stay on the primary. A standby trails the primary by its replication lag, so a read
right after an append may not see it. With ``read_your_writes``, every write of this provider records
the primary's WAL insert position afterwards (one more round trip), and a read first waits until the
standby has replayed up to it, at most ``read_your_writes_timeout`` seconds, then reads from the
primary instead (counted in health as ``fallbacks``). The guarantee covers this provider instance's own
writes, not other processes' writes. A write whose position cannot be read stays committed (no error), and one
that ends without an answer may have committed: reads go to the primary until a later position read, which
covers it, succeeds (health: ``unrecorded_writes``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar, cast

from eventsource.errors import EventSourceError
from eventsource.model import utcnow

from eventsource_postgres.connection import IDENTITY
from eventsource_postgres.errors import may_have_committed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from psycopg import AsyncConnection

    from eventsource_postgres.connection import Connection

T = TypeVar("T")

log = logging.getLogger("eventsource.postgres")

INSERT_LSN = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
"""The primary's WAL insert position as a number: at or past the commit record of every finished write."""
REPLAY_LSN = "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() - '0/0'::pg_lsn END"
"""How far a standby has replayed; NULL on a server not in recovery, which has every write (a promoted
standby still answers ``pg_last_wal_replay_lsn()`` with where its recovery ended, hence the guard)."""


class Replica:
    """Routes reads to the standby pool and keeps the read-your-writes bookkeeping of one provider."""

    def __init__(self, primary: Connection, standby: Connection) -> None:
        self.primary = primary
        self.standby = standby
        self.read_your_writes: bool = primary.settings["read_your_writes"]
        self.timeout: float = primary.settings["read_your_writes_timeout"]
        self.written = 0
        """The highest WAL position this provider's writes are known to end at (0: nothing written)."""
        self._seen: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        """The replay position last seen per pooled connection (a read up to it needs no check there)."""
        self.waits = 0
        """Reads that waited for the standby's replay."""
        self.fallbacks = 0
        self.unrecorded = 0
        """Writes that committed but whose WAL position could not be read afterwards."""
        self._covered = 0
        """How many of those a later position read covers (it started after their commits)."""
        self.last_error: str | None = None
        self.failed_at: str | None = None

    @property
    def position_unknown(self) -> bool:
        """Whether a write of this provider may end past :attr:`written` (reads then go to the primary)."""
        return self._covered < self.unrecorded

    async def after_write(self) -> None:
        """Record where the primary's WAL stands now (only with ``read_your_writes``).

        The write has committed: failing to read the position must not make it look failed (a caller
        would retry it into a conflict, or a duplicate). It is logged and counted, and reads go to the
        primary until a position read succeeds again.
        """
        if not self.read_your_writes:
            return
        try:
            await self._record()
        except Exception as e:  # noqa: BLE001 - reported in health and the log, never as the write's failure
            self.unrecorded += 1
            self.last_error, self.failed_at = f"{type(e).__name__}: {e}", utcnow().isoformat()
            log.warning(
                "a write committed, but the primary's WAL position after it could not be read (%s); "
                "reads go to the primary until it can be",
                e,
            )
        except BaseException as e:  # cancelled after the commit: its position is unknown all the same
            self.unrecorded += 1
            self.last_error, self.failed_at = f"{type(e).__name__} after the commit", utcnow().isoformat()
            raise

    def outcome_unknown(self, e: BaseException) -> None:
        """A write ended with ``e``: count its position unknown if it may have committed all the same.

        A write that gives no answer (cancelled, connection lost, timed out) may have committed; a refusal
        (conflict, bad input) did not.
        """
        if self.read_your_writes and may_have_committed(e):
            self.unrecorded += 1
            self.last_error, self.failed_at = f"{type(e).__name__} before the write answered", utcnow().isoformat()

    async def _record(self) -> None:
        """Read the primary's insert position: it covers every write committed before the read began."""
        before = self.unrecorded
        rows = await self.primary.call(
            "read_your_writes", lambda c: self.primary.fetchall(c, INSERT_LSN, ()), retry=True
        )
        self.written = max(self.written, int(rows[0][0]))
        self._covered = max(self._covered, before)

    async def connect(self) -> None:
        """Open the standby pool; wait (up to ``connect_timeout``) until it has replayed the primary's WAL.

        The position is the primary's as it stands now, so the schema it just created or migrated is there.
        A ``read_url`` reaching another cluster or database is refused: a server not in recovery reports no
        replay position, which reads as "has every write", so its rows would pass for this store's.
        """
        self.standby.identity = await self._identity()  # every standby connection is checked against it
        self.standby.current_identity = self._identity
        await self.standby.connect()
        rows = await self.primary.call("connect", lambda c: self.primary.fetchall(c, INSERT_LSN, ()), retry=True)
        target = int(rows[0][0])
        deadline = monotonic() + self.primary.settings["connect_timeout"]
        while True:
            replayed = await self._replay_position()
            if replayed is None or replayed >= target:
                return
            if monotonic() >= deadline:
                log.warning(
                    "standby %s is behind the primary; reads may fail until it catches up", self.standby.display_url
                )
                return
            await asyncio.sleep(0.01)

    async def _identity(self) -> tuple[str, str]:
        """The cluster and database the primary pool reaches."""
        rows = await self.primary.call("read_url", lambda c: self.primary.fetchall(c, IDENTITY, ()), retry=True)
        return str(rows[0][0]), str(rows[0][1])

    async def route(self) -> Connection | Checked:
        """The pool a read runs on: the standby's, checked per connection when this provider has written."""
        if not self.read_your_writes:
            return self.standby
        if self.position_unknown:
            try:
                await self._record()
            except Exception:  # noqa: BLE001 - still unknown: the primary has every committed write
                return self.primary
        if self.written == 0:
            return self.standby
        return Checked(self, self.written)

    async def caught_up(self, c: Any, target: int) -> bool:
        """Whether the server behind connection ``c`` has replayed up to ``target``, waiting up to the timeout.

        Asked on the connection the read then runs on: a read pool may reach several servers (a
        ``prefer-standby`` URL that fell back to the primary, ``load_balance_hosts``), and one server's
        answer says nothing about another's. A server not in recovery (the primary: the identity check at
        connect keeps other clusters out) has every write.
        """
        if self._seen.get(c, 0) >= target:
            return True
        deadline = monotonic() + self.timeout
        delay = 0.001
        waited = False
        while True:
            rows = await self.standby.fetchall(c, REPLAY_LSN, ())
            value = rows[0][0]
            if value is None or int(value) >= target:
                if value is not None:
                    self._seen[c] = int(value)
                self.waits += waited
                return True
            if monotonic() >= deadline:
                self.waits += waited
                self.fallbacks += 1
                log.warning(
                    "standby %s has not replayed this provider's writes within %.3gs; reading from the primary",
                    self.standby.display_url,
                    self.timeout,
                )
                return False
            waited = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _replay_position(self) -> int | None:
        rows = await self.standby.call(
            "read_your_writes", lambda c: self.standby.fetchall(c, REPLAY_LSN, ()), retry=True
        )
        value = rows[0][0]
        return None if value is None else int(value)

    async def probe(self, limit: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Health's view of the read pool: :meth:`details` with ``replay_lag_bytes``, and the faults.

        The standby is asked how far it has replayed (within ``limit`` seconds): one that does not answer, or
        reaches another cluster, is a fault (reads fail there). The lag is the primary's WAL insert position less
        the standby's replay position (0 on a server not in recovery); ``None`` when either cannot be read.
        """
        details, faults = self.details(), self.faults()
        details["replay_lag_bytes"] = None
        try:
            async with asyncio.timeout(limit):
                replayed = await self.standby.call(
                    "health", lambda c: self.standby.fetchall(c, REPLAY_LSN, ()), retry=True
                )
        except (EventSourceError, TimeoutError) as e:
            error = e.message if isinstance(e, EventSourceError) else f"no answer within {limit}s"
            faults.append({"component": "read_replica", "error": error, "since": utcnow().isoformat()})
            return details, faults
        if replayed[0][0] is None:
            details["replay_lag_bytes"] = 0
            return details, faults
        try:  # (the primary's own health is the monitor's; a position it cannot give leaves the lag unknown)
            async with asyncio.timeout(limit):
                head = await self.primary.call("health", lambda c: self.primary.fetchall(c, INSERT_LSN, ()), retry=True)
        except (EventSourceError, TimeoutError):
            return details, faults
        details["replay_lag_bytes"] = max(0, int(head[0][0]) - int(replayed[0][0]))
        return details, faults

    def faults(self) -> list[dict[str, Any]]:
        """A fault for health while a write's position is unknown (reads then go to the primary)."""
        if not self.position_unknown:
            return []
        return [{"component": "read_your_writes", "error": self.last_error, "since": self.failed_at}]

    def details(self) -> dict[str, Any]:
        """What health reports about the read pool."""
        pool = self.standby.pool
        return {
            "url": self.standby.display_url,
            "read_your_writes": self.read_your_writes,
            "waits": self.waits,
            "fallbacks": self.fallbacks,
            "unrecorded_writes": self.unrecorded,
            "position_unknown": self.position_unknown,
            "last_error": self.last_error,
            "pool": pool.get_stats() if pool is not None else {},
        }


class Checked:
    """The standby pool for one read under read-your-writes: each call first checks its own connection.

    When that connection's server has not replayed ``target`` within the timeout, the call runs on the
    primary instead.
    """

    def __init__(self, replica: Replica, target: int) -> None:
        self.replica = replica
        self.target = target
        self.settings = replica.standby.settings

    async def call(self, operation: str, fn: Callable[[AsyncConnection[Any]], Awaitable[T]], *, retry: bool) -> T:
        """Run ``fn`` on a standby connection that has replayed ``target``, else on the primary."""
        behind = False

        async def checked(c: AsyncConnection[Any]) -> T | None:
            nonlocal behind
            if await self.replica.caught_up(c, self.target):
                return await fn(c)
            behind = True
            return None

        result = await self.replica.standby.call(operation, checked, retry=retry)
        if behind:
            return await self.replica.primary.call(operation, fn, retry=retry)
        return cast("T", result)

    async def fetchall(
        self, conn: AsyncConnection[Any], query: str, params: Sequence[Any], *, binary: bool = False
    ) -> list[tuple[Any, ...]]:
        """As :meth:`Connection.fetchall` (the statement itself does not depend on the pool)."""
        return await self.replica.standby.fetchall(conn, query, params, binary=binary)

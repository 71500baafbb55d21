"""Reads from a standby: a second pool on ``read_url``, and read-your-writes when asked for.

With ``read_url`` set (e.g. ``postgresql://app@db2/events?target_session_attrs=prefer-standby``), the
page views, ``get_event`` and ``get_events`` run on that pool; writes, stream facts, snapshots,
retention and stats stay on the primary. A standby trails the primary by its replication lag, so a read
right after an append may not see it. With ``read_your_writes``, every write of this provider records
the primary's WAL insert position afterwards (one more round trip), and a read first waits until the
standby has replayed up to it, at most ``read_your_writes_timeout`` seconds, then reads from the
primary instead (counted in health as ``fallbacks``). The guarantee covers this provider instance's own
writes, not other processes' writes.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import ConfigurationError

if TYPE_CHECKING:
    from eventsource_postgres.connection import Connection

log = logging.getLogger("eventsource.postgres")

INSERT_LSN = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
"""The primary's WAL insert position as a number: at or past the commit record of every finished write."""
IDENTITY = "SELECT system_identifier::text, current_database() FROM pg_control_system()"
"""Which cluster (kept by its standbys, also once promoted) and which database a pool reaches."""
REPLAY_LSN = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"
"""How far a standby has replayed (NULL on a server that is not in recovery: it has every write)."""


class Replica:
    """Routes reads to the standby pool and keeps the read-your-writes bookkeeping of one provider."""

    def __init__(self, primary: Connection, standby: Connection) -> None:
        self.primary = primary
        self.standby = standby
        self.read_your_writes: bool = primary.settings["read_your_writes"]
        self.timeout: float = primary.settings["read_your_writes_timeout"]
        self.written = 0
        """The highest WAL position this provider's writes are known to end at (0: nothing written)."""
        self.replayed = 0
        """The highest replay position seen on the standby (a read up to it needs no check)."""
        self.waits = 0
        self.fallbacks = 0

    async def after_write(self) -> None:
        """Record where the primary's WAL stands now (only with ``read_your_writes``)."""
        if not self.read_your_writes:
            return
        rows = await self.primary.call(
            "read_your_writes", lambda c: self.primary.fetchall(c, INSERT_LSN, ()), retry=True
        )
        self.written = max(self.written, int(rows[0][0]))

    async def connect(self) -> None:
        """Open the standby pool; wait (up to ``connect_timeout``) until it has replayed the primary's WAL.

        The position is the primary's as it stands now, so the schema it just created or migrated is there.
        A ``read_url`` reaching another cluster or database is refused: a server not in recovery reports no
        replay position, which reads as "has every write", so its rows would pass for this store's.
        """
        await self.standby.connect()
        await self._check_same_store()
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

    async def _check_same_store(self) -> None:
        mine = await self.primary.call("connect", lambda c: self.primary.fetchall(c, IDENTITY, ()), retry=True)
        theirs = await self.standby.call("connect", lambda c: self.standby.fetchall(c, IDENTITY, ()), retry=True)
        if tuple(mine[0]) != tuple(theirs[0]):
            msg = (
                f"read_url {self.standby.display_url} reaches another cluster or database (system identifier "
                f"{theirs[0][0]}, database {theirs[0][1]!r}) than url (system identifier {mine[0][0]}, database "
                f"{mine[0][1]!r}): it must name a standby of the primary, and the same database"
            )
            raise ConfigurationError(msg, field="read_url")

    async def route(self) -> Connection:
        """The pool a read runs on: the standby once it has replayed this provider's writes, else the primary."""
        target = self.written
        if not self.read_your_writes or target <= self.replayed:
            return self.standby
        self.waits += 1
        deadline = monotonic() + self.timeout
        delay = 0.001
        while True:
            replayed = await self._replay_position()
            if replayed is None or replayed >= target:
                self.replayed = max(self.replayed, replayed or target)
                return self.standby
            if monotonic() >= deadline:
                self.fallbacks += 1
                log.warning(
                    "standby %s has not replayed this provider's writes within %.3gs; reading from the primary",
                    self.standby.display_url,
                    self.timeout,
                )
                return self.primary
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _replay_position(self) -> int | None:
        rows = await self.standby.call(
            "read_your_writes", lambda c: self.standby.fetchall(c, REPLAY_LSN, ()), retry=True
        )
        value = rows[0][0]
        return None if value is None else int(value)

    def details(self) -> dict[str, Any]:
        """What health reports about the read pool."""
        pool = self.standby.pool
        return {
            "url": self.standby.display_url,
            "read_your_writes": self.read_your_writes,
            "waits": self.waits,
            "fallbacks": self.fallbacks,
            "pool": pool.get_stats() if pool is not None else {},
        }

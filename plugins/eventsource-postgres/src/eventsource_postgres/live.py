"""Live subscriptions on PostgreSQL: an in-process wake-up, a cheap head probe, and optional LISTEN/NOTIFY.

Subscriptions follow ``read_all`` (which never passes a transaction that may still commit below it), so this module
only decides *when* to read again. An append through the provider wakes its waiting subscriptions as soon as it
commits (:class:`~eventsource.subscriptions.ChangeSignal`), or ends unanswered (it may have committed). Other
processes' commits are found by probing ``position > after`` soon after a subscription began to wait
(:data:`FIRST_PROBE`), then at doubling pauses up to ``live_poll_interval``: appends pay nothing, an idle subscription
what a fixed interval would. With ``live_notify`` on, a statement-level trigger sends one ``pg_notify`` per inserting
transaction to one dedicated LISTEN connection outside the pool, shared by every subscription of the provider; a
notification wakes them all. NOTIFY takes a cluster-wide lock at commit, which is why it is opt-in. A dropped LISTEN
connection is reopened, and every waiter reads again at once (notifications sent while it was down are lost); the
subscription's own ``poll_interval`` bounds any wake-up that never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from eventsource.subscriptions import ChangeSignal, CheckpointAheadError

from eventsource_postgres.settings import libpq_kwargs, lock_key

if TYPE_CHECKING:
    from eventsource_postgres.connection import Connection

log = logging.getLogger("eventsource.postgres")

FIRST_PROBE = 0.001
"""The pause before a waiting subscription's second probe; each later pause doubles, up to ``live_poll_interval``."""
RECONNECT_DELAY = 1.0
"""Seconds between attempts to reopen a dropped LISTEN connection."""
HEARTBEAT = 5.0
"""Seconds between checks that the LISTEN connection still answers (and the longest such a check may take)."""
RUNNING_KEPT = 64
"""Heads whose running transactions are remembered (the latest; a wait from an older head is woken by new ones)."""
HEAD_XID = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
"""The next transaction id (every position handed out is below it shifted like positions); never goes back."""
SQL_HEAD = (
    "SELECT (pg_snapshot_xmax(s)::text::bigint << 20) - 1, "
    "ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x) FROM pg_current_snapshot() AS s"
)
"""The head position and the ids of the transactions running (which may still commit below it)."""


class Live:
    """Change detection for one store (one schema and table prefix)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        n = conn.names
        digest = hashlib.blake2b(f"{n.schema}\x00{n.prefix}".encode(), digest_size=8).hexdigest()
        self.channel = f"eventsource_{digest}"  # at most 63 bytes whatever the schema and prefix
        self.signal = ChangeSignal()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._running: dict[int, list[int]] = {}  # a head handed out -> ids of the transactions running then

    @property
    def notify(self) -> bool:
        """Whether the LISTEN/NOTIFY wake-up is on (the ``live_notify`` setting)."""
        return bool(self.conn.settings["live_notify"])

    # ------------------------------------------------------------------ set-up

    @property
    def trigger(self) -> str:
        """The name of the trigger :meth:`install` creates (on the events table)."""
        return self.conn.names.prefix + "events_notify"

    async def installed(self) -> bool:
        """Whether the trigger is on the events table (checked, never created: ``create_store`` off)."""

        async def run(c: Any) -> bool:
            cur = await c.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s)",
                [self.conn.names.events, self.trigger],
            )
            row = await cur.fetchone()
            return bool(row and row[0])

        return await self.conn.call("live_notify", run, retry=True)

    async def install(self) -> None:
        """Create (or replace) the trigger that notifies :attr:`channel` after each inserting statement."""
        n = self.conn.names
        fn = f"{n.quoted_schema}.{_ident(n.prefix + 'notify_events')}"
        trigger = _ident(self.trigger)
        ddl = (  # under an advisory lock: two providers connecting at once would race on the catalog rows
            f"SELECT pg_advisory_xact_lock({lock_key('live_notify', n.schema, n.prefix)}); "
            f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_notify('{self.channel}', ''); RETURN NULL; END $$; "
            f"CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT ON {n.events} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
        )

        async def run(c: Any) -> None:
            await c.execute(ddl)

        await self.conn.call("live_notify", run, retry=True)

    async def close(self) -> None:
        """Stop the LISTEN connection and wake every waiter (they read again and find the store closed)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.signal.notify()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._closed = False
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name=f"eventsource LISTEN {self.channel}"
            )

    async def _listen(self) -> None:
        """Hold the LISTEN connection; on every notification (and every reconnect) bump the signal."""
        import psycopg

        kwargs = {"autocommit": True, **libpq_kwargs(self.conn.settings)}
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conn.url, **kwargs)
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    self.listening.set()
                    self.signal.notify()  # anything committed while nobody listened: read again now
                    while True:
                        async for _ in conn.notifies(timeout=HEARTBEAT):
                            self.signal.notify()
                        # a connection that stopped answering (a silent drop) delivers nothing and raises nothing
                        async with asyncio.timeout(HEARTBEAT):
                            await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a dropped listener is reopened; polling covers the gap
                log.warning("LISTEN connection for %s lost (%s); reconnecting", self.conn.display_url, type(e).__name__)
            self.listening.clear()
            self.signal.notify()
            await asyncio.sleep(RECONNECT_DELAY)

    # ------------------------------------------------------------------ the provider's hooks

    async def head_position(self) -> int:
        """A position above every one handed out so far: below ``pg_snapshot_xmax`` shifted like positions.

        The transactions running then may still commit below it: their ids are kept with it, so a
        ``wait_for_change`` from this head also wakes when one of them commits events (:data:`RUNNING_KEPT`).
        """

        async def run(c: Any) -> tuple[int, list[int]]:
            cur = await c.execute(SQL_HEAD)
            row = await cur.fetchone()
            return int(row[0]), [int(x) for x in row[1]]

        head, running = await self.conn.call("head_position", run, retry=True)
        if running:
            self._running[head] = running
            while len(self._running) > RUNNING_KEPT:
                del self._running[next(iter(self._running))]
        return head

    async def end_position(self) -> int:
        """The safe horizon: the first position of the oldest transaction still running (``pg_snapshot_xmin``).

        A transaction that has not committed yet, anywhere in the cluster, has an xid at or above it (one that
        has no xid yet draws one above ``xmax``), so every event committed from now on is at or above it.
        """

        async def run(c: Any) -> int:
            cur = await c.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20")
            row = await cur.fetchone()
            return int(row[0])

        return await self.conn.call("end_position", run, retry=True)

    async def _has_after(self, after_position: int) -> bool:
        """Whether an event above ``after_position`` is stored, or one of a transaction running at that head."""
        events = self.conn.names.events
        running = self._running.get(after_position, [])
        # (and the head, for a store gone back below after_position: a position handed out is below it for good)
        query = f"SELECT {HEAD_XID} << 20 <= %s, EXISTS (SELECT 1 FROM {events} WHERE position > %s)"  # noqa: S608
        args: tuple[Any, ...] = (after_position, after_position)
        if running:
            query += (
                f" OR EXISTS (SELECT 1 FROM unnest(%s::bigint[]) AS r(xid) WHERE EXISTS (SELECT 1 FROM {events} "  # noqa: S608
                "WHERE position >= r.xid << 20 AND position < (r.xid + 1) << 20))"
            )
            args = (after_position, after_position, running)

        async def run(c: Any) -> tuple[bool, bool]:
            cur = await c.execute(query, args, prepare=self.conn.prepare)
            row = await cur.fetchone()
            return bool(row[0]), bool(row[1])

        behind, found = await self.conn.call("wait_for_change", run, retry=True)
        if behind:
            raise self._gone_back(after_position)
        return found

    def _gone_back(self, after_position: int) -> CheckpointAheadError:
        """The error for a wait from a position the store's transaction ids are now below (its events were lost)."""
        msg = (
            f"{self.conn.display_url} has gone back below position {after_position}, which this reader was given: "
            "the events up to it are gone (an asynchronous failover promoted a standby that had not received them), "
            "and new events take positions below it, which a read after it would pass over. Rebuild what was read "
            "from the events the store holds now, or start again from a position below its head"
        )
        return CheckpointAheadError(msg, position=after_position)

    def committed(self) -> None:
        """An append through this provider committed: wake the waiting subscriptions of this process now."""
        self.signal.notify()

    async def wait_for_change(self, after_position: int, max_wait: float) -> None:
        """Return when an event above ``after_position`` is committed, on a wake-up, or after ``max_wait``.

        The signal's count is taken before the first probe, so an append of this process committing between
        a probe and the wait still ends the wait. The caller then reads through ``read_all``, which hands out
        nothing at or above the safe horizon, so an early wake-up can never make it skip a late commit.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        seen = self.signal.count
        if self.notify:
            if await self._has_after(after_position):
                return
            self._start()  # after the probe: a closed provider raises there and starts no listener
            await self.signal.wait(seen, max_wait)  # an append here, or a notification: the caller reads again
            return
        interval = self.conn.settings["live_poll_interval"]
        pause = min(interval, FIRST_PROBE)  # soon after a read (events tend to come in runs), then less often
        while True:
            if await self._has_after(after_position):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if await self.signal.wait(seen, min(pause, remaining)):
                return  # an append through this provider committed
            pause = min(pause * 2, interval)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

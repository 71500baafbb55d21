"""The PostgreSQL provider: the provider contract, each operation handed to the module that owns its role.

psycopg 3 on an ``AsyncConnectionPool``. :mod:`~eventsource_postgres.connection` owns the pool and the call policy
(stale connections, retries,
error mapping), :mod:`~eventsource_postgres.statements` every SQL text; the roles are
:mod:`~eventsource_postgres.append`, :mod:`~eventsource_postgres.reads` (the page views, and the global
order that never skips a late commit), :mod:`~eventsource_postgres.queries`,
:mod:`~eventsource_postgres.streams`, :mod:`~eventsource_postgres.snapshots`,
:mod:`~eventsource_postgres.retention` and :mod:`~eventsource_postgres.monitoring`. The plugin README
explains how the contract maps onto the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.create_store import store_not_found
from eventsource.errors import ConfigurationError
from eventsource.inline import inline_io_allowed
from eventsource.manager.monitoring import with_faults
from eventsource.provider import Capabilities, Provider

from eventsource_postgres.append import Appender
from eventsource_postgres.connection import Connection
from eventsource_postgres.errors import may_have_committed
from eventsource_postgres.live import Live
from eventsource_postgres.monitoring import Monitor
from eventsource_postgres.queries import Queries
from eventsource_postgres.reads import Reader
from eventsource_postgres.replica import Replica
from eventsource_postgres.retention import Retention
from eventsource_postgres.rewrite import rewrite_events
from eventsource_postgres.schema import Names
from eventsource_postgres.settings import DEFAULT_SCHEMA, PostgresSettingsSchema, check_target, with_url_timeout
from eventsource_postgres.snapshots import Snapshots
from eventsource_postgres.statements import Statements
from eventsource_postgres.streams import Streams

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Sequence
    from datetime import datetime

    from eventsource.domain.rewrite import EventRewrite
    from eventsource.model import (
        AppendResult,
        CountMode,
        EventFilter,
        Expected,
        HealthStatus,
        NewEvent,
        NewSnapshot,
        NewStream,
        ProviderStats,
        QueryPage,
        RecordedEvent,
        RecordedSnapshot,
        RowPage,
        StreamInfo,
    )


class PostgresProvider(Provider):
    """``postgresql://user:password@host:port/db`` (or ``postgres://``) with settings in the plugin README."""

    kind = "postgres"
    capabilities = Capabilities(
        global_order="total",
        concurrency="cross_process",
        deleted_stream_ids="reusable",
        late_commits=True,
        head_position=True,
        live_wakeup=True,
        max_event_size=None,
        max_batch_bytes=(1 << 30) - (1 << 20),  # one array parameter (all payloads of a batch) must stay under 1 GB
        extra={
            "position": "(transaction id << 20) + index in the transaction; read_all stops below the oldest "
            "running transaction (pg_snapshot_xmin), so a late commit is never skipped",
        },
    )
    settings_schema = PostgresSettingsSchema

    def __init__(self, url: str | None = None, **settings: Any) -> None:
        if not url:
            msg = "the postgres provider needs a URL: postgresql://user:password@host:port/database"
            raise ConfigurationError(msg, field="url")
        check_target(url, "provider")
        super().__init__(url, **settings)
        self.settings = with_url_timeout(url, settings, self.settings)
        self.names = Names(self.settings["schema"], self.settings["table_prefix"])
        conn = self._conn = Connection(url, self.settings, self.names, lambda: self.name)
        self._replica: Replica | None = None
        route = None
        if self.settings["read_url"] is not None:
            read_url = check_target(self.settings["read_url"], "read_url")
            read = with_url_timeout(read_url, settings, self.settings)  # its own URL's, or the setting, or url's
            standby = Connection(read_url, read, self.names, lambda: self.name, migrate=False)
            self._replica = Replica(conn, standby)
            route = self._replica.route
        sql = Statements(self.names)
        streams = self._streams = Streams(conn, sql)
        self._appender = Appender(conn, sql, streams)
        self._reader = Reader(conn, sql, route)
        self._queries = Queries(conn, sql, route)
        self._snapshots = Snapshots(conn, sql)
        self._retention = Retention(conn, sql)
        self._monitor = Monitor(conn, sql, lambda: self.name)
        self._live = Live(conn)

    def __repr__(self) -> str:
        return f"PostgresProvider({self.display_url!r}, schema={self.names.schema!r}, prefix={self.names.prefix!r})"

    @property
    def display_url(self) -> str | None:
        """The URL or DSN with any password masked (safe to print or log)."""
        return self._conn.display_url

    @property
    def checkpoint_source(self) -> str:
        """The masked URL, with ``#schema=...`` (and ``&table_prefix=...``) unless both are the defaults.

        Stores in two schemas (or with two table prefixes) of one database are two sources: a checkpoint
        of one is never resumed, nor its lag measured, against the other.
        """
        schema, prefix = self.names.schema, self.names.prefix
        if schema == DEFAULT_SCHEMA and not prefix:
            return self.display_url or self.kind
        return f"{self.display_url}#schema={schema}" + (f"&table_prefix={prefix}" if prefix else "")

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the pool (waiting for ``pool_min_size`` connections) and create or migrate the schema.

        With ``create_store`` off nothing is created or changed: a missing or older store is refused
        (:class:`~eventsource.errors.StoreNotFoundError`), as is ``live_notify`` without its trigger installed.
        """
        await self._conn.connect()
        try:
            if self._replica is not None:
                await self._replica.connect()  # after the primary: waits until the standby has its schema
            if self.settings["live_notify"]:
                await self._notify_trigger()
        except BaseException:
            await self.close()
            raise
        if self.settings["sync_inline"] and inline_io_allowed():
            # connected by the sync API, whose caller blocks on each call anyway: the pool's sockets and
            # upkeep need the private loop only while a call runs, so it may run in the caller's thread
            # (no thread hop per call); anything that must run between calls moves the loop to a thread
            self.loop_free = True  # per instance: only the sync API connects this way

    async def _notify_trigger(self) -> None:
        """``live_notify``: install the trigger, or, with ``create_store`` off, refuse a store without it."""
        if self.settings["create_store"]:
            await self._live.install()
        elif not await self._live.installed():
            why = "live_notify is on, but the store has no notify trigger (installed by a connect with it on)"
            raise store_not_found(self.names.at(self._conn.display_url), why, missing=[self._live.trigger])

    async def close(self) -> None:
        """Close every pooled connection (and the LISTEN one). Idempotent."""
        await self._conn.close()
        if self._replica is not None:
            await self._replica.standby.close()
        await self._live.close()

    async def _write(self, op: Awaitable[T]) -> T:
        """Run a write, then record where the primary's WAL stands, for reads on a standby (read-your-writes).

        A write that ends without an answer (cancelled, connection lost, timed out) may have committed: its
        position is unknown as much as one whose position read fails, and reads go to the primary until
        a position read covers it.
        """
        try:
            result = await op
        except BaseException as e:
            if self._replica is not None:
                self._replica.outcome_unknown(e)
            raise
        if self._replica is not None:
            await self._replica.after_write()
        return result

    # ------------------------------------------------------------------ streams

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Insert the streams row at version 0 (under the stream's lock); refuse an existing id."""
        return await self._write(self._streams.create_stream(stream))

    async def delete_stream(self, stream_id: str) -> None:
        """Delete the events, then the streams row (snapshots follow by cascade), in one transaction."""
        await self._write(self._streams.delete_stream(stream_id))

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """The streams row (kept exact by every write), or ``None``."""
        return await self._streams.get_stream_info(stream_id)

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page of streams in code-point order of their ids (``COLLATE "C"``) and the total."""
        return await self._streams.list_streams(limit=limit, offset=offset, after=after)

    # ------------------------------------------------------------------ events

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """One statement: lock the stream, write the streams row conditionally, insert the events."""
        append = self._appender.append(stream_id, events, expected, stream)
        try:  # (without a standby to track, awaited directly: one coroutine frame less on the hot path)
            result = await (append if self._replica is None else self._write(append))
        except BaseException as e:
            if may_have_committed(e):  # e.g. cancelled after the commit, while its WAL position was read
                self._live.committed()
            raise
        self._live.committed()  # this process's subscriptions on the store read again now
        return result

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        stream: NewStream | None,
        *,
        timeout: float | None,
    ) -> AppendResult | None:
        """The sync API's append, blocking on the connection kept for inline calls (see :meth:`Provider.append_now`).

        Only connected by the sync API in the caller's thread (``sync_inline``) and without a standby to track;
        else, and whenever the statement wrote nothing (:meth:`Appender.append_now`), it declines: :meth:`append` runs.
        """
        if not self.loop_free or self._replica is not None:
            return None
        try:
            result = self._appender.append_now(stream_id, events, expected, stream, timeout)
        except BaseException as e:
            if may_have_committed(e):
                self._live.committed()
            raise
        if result is not None:
            self._live.committed()
        return result

    def read_stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RowPage]:
        """Pages of ``page_size`` rows through the ``(stream_id, version)`` index.

        No connection is held between pages.
        """
        return self._reader.stream_pages(
            stream_id, from_version=from_version, to_version=to_version, backwards=backwards, page_size=page_size
        )

    def read_all_pages(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RowPage]:
        """Every event at ``position >= from_position``, in position order, never past a running transaction."""
        return self._reader.all_pages(from_position=from_position, page_size=page_size)

    async def wait_for_change(self, after_position: int, max_wait: float) -> None:
        """Return when a later event is committed, or after ``max_wait`` (see :mod:`~eventsource_postgres.live`)."""
        await self._live.wait_for_change(after_position, max_wait)

    async def head_position(self) -> int:
        """A position at or above every one handed out so far (from ``pg_snapshot_xmax``)."""
        return await self._live.head_position()

    async def end_position(self) -> int:
        """The safe horizon (``pg_snapshot_xmin``): an append still running commits above it, never below."""
        return await self._live.end_position()

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look the id up through its unique index."""
        return await self._reader.get_event(event_id, stream_id)

    async def query(
        self, flt: EventFilter, *, limit: int, offset: int, descending: bool = False, count: CountMode = "exact"
    ) -> QueryPage:
        """Every filter becomes a ``WHERE`` clause; one count and one page query on one connection."""
        return await self._queries.query(flt, limit=limit, offset=offset, descending=descending, count=count)

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Check the stream backs it, then upsert on ``(stream_id, version)``, under the stream's lock."""
        await self._snapshots.save_snapshot(snapshot)

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The highest version at or below ``max_version``."""
        return await self._snapshots.get_snapshot(stream_id, max_version)

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Delete one or all snapshots of a stream."""
        return await self._snapshots.delete_snapshots(stream_id, version)

    # ------------------------------------------------------------------ retention primitives

    async def truncate_stream(
        self, stream_id: str, before_version: int, *, if_holds: tuple[int, str] | None = None
    ) -> int:
        """``DELETE ... WHERE version < before_version`` under the stream's lock; versions stay as they are.

        ``if_holds`` is checked in every batch's transaction, under that lock (:mod:`eventsource_postgres.retention`).
        """
        return await self._write(self._retention.truncate_stream(stream_id, before_version, if_holds))

    async def rewrite_events(self, stream_id: str, rewrites: Sequence[EventRewrite]) -> int:
        """Swap payloads in place with one UPDATE in one transaction (:mod:`eventsource_postgres.rewrite`)."""
        return await self._write(rewrite_events(self._conn, self.names.events, stream_id, rewrites))

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """``DELETE ... WHERE ts < cutoff`` (one stream under its lock, or all), fixing the streams rows."""
        return await self._write(self._retention.delete_events_before(cutoff, stream_id))

    # ------------------------------------------------------------------ monitoring

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Counts from the tables (bounded by ``top_streams``: see the monitor) and the store's on-disk size."""
        return await self._monitor.stats(top_streams=top_streams)

    async def health(self) -> HealthStatus:
        """Run ``SELECT 1`` through the pool; report pool statistics. Never raises."""
        status = await self._monitor.health()
        if self._replica is not None and status.details is not None:
            # degraded while reads must go to the primary, or the standby does not answer
            details, faults = await self._replica.probe(min(5.0, self.settings["pool_timeout"]))
            status.details["read_replica"] = details
            status = with_faults(status, faults)
        return status

"""The PostgreSQL provider: psycopg 3 on an ``AsyncConnectionPool``.

How the contract maps onto the database (the plugin README explains the global order in full):

* one append is one call of a server-side function in one autocommit transaction (one round trip):
  it takes a per-stream transaction-level advisory lock, looks the event ids up (idempotent retry),
  checks the expected version against the streams row, inserts the events and updates the streams
  row conditionally (``WHERE version = <read version>``); ``UNIQUE (stream_id, version)`` and
  ``UNIQUE (event_id)`` back it in the database, so no race can write a gap or a duplicate;
* a position is ``(transaction id << 20) + index in the transaction``; ``read_all`` returns only rows
  below the oldest transaction still running (``pg_snapshot_xmin``), so a reader never passes a
  transaction that may still commit with a lower position, and no table lock is needed;
* deleted stream ids are reusable: ``delete_stream`` removes the streams row, the events and (by
  cascade) the snapshots, and the next append starts again at version 1.
"""

from __future__ import annotations

import asyncio
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    ConfigurationError,
    EventSourceError,
    ProviderError,
    StreamExistsError,
    StreamNotFoundError,
    ValidationError,
)
from eventsource.model import (
    AppendResult,
    ExpectedVersion,
    HealthStatus,
    NewSnapshot,
    ProviderStats,
    QueryPage,
    RecordedEvent,
    RowPage,
    StreamInfo,
    utcnow,
)
from eventsource.provider import Capabilities, Provider, check_duplicate, check_expected, check_snapshot

from eventsource_postgres.connection import RACE_ATTEMPTS, Connection
from eventsource_postgres.schema import MAX_EVENTS_PER_APPEND, Names
from eventsource_postgres.settings import PostgresSettingsSchema, check_target
from eventsource_postgres.statements import EVENT_COLS, MAX_VERSION, Statements

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from datetime import datetime

    from eventsource.model import EventFilter, Expected, NewEvent, NewStream, RecordedSnapshot
    from psycopg import AsyncConnection


class PostgresProvider(Provider):
    """``postgresql://user:password@host:port/db`` (or ``postgres://``) with settings in the plugin README."""

    kind = "postgres"
    capabilities = Capabilities(
        global_order="total",
        concurrency="cross_process",
        deleted_stream_ids="reusable",
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
        self.names = Names(self.settings["schema"], self.settings["table_prefix"])
        self._conn = Connection(url, self.settings, self.names, lambda: self.name)
        self._sql = Statements(self.names)
        self._started = monotonic()

    def __repr__(self) -> str:
        return f"PostgresProvider({self.display_url!r}, schema={self.names.schema!r}, prefix={self.names.prefix!r})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def display_url(self) -> str | None:
        """The URL or DSN with any password masked (safe to print or log)."""
        return self._conn.display_url

    async def connect(self) -> None:
        """Open the pool (waiting for ``pool_min_size`` connections) and create or migrate the schema."""
        await self._conn.connect()

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        await self._conn.close()

    # ------------------------------------------------------------------ streams

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Insert the streams row at version 0 (under the stream's lock); refuse an existing id."""
        from psycopg.types.json import Jsonb

        now = utcnow()
        params = (
            stream.stream_id,
            now,
            now,
            stream.name,
            stream.aggregate_id,
            stream.aggregate_type,
            Jsonb(dict(stream.metadata)),
            self._conn.lock(stream.stream_id),
        )
        rows = await self._conn.call("create_stream", lambda c: self._conn.fetchall(c, self._sql.create_stream, params), retry=False)
        if not rows:
            msg = f"stream {stream.stream_id!r} already exists"
            raise StreamExistsError(msg, stream_id=stream.stream_id)
        return StreamInfo(*rows[0])

    async def delete_stream(self, stream_id: str) -> None:
        """Delete the events, then the streams row (snapshots follow by cascade), in one transaction."""

        async def run(conn: AsyncConnection[Any]) -> bool:
            async with conn.transaction():
                await conn.execute(self._sql.lock, [self._conn.lock(stream_id)])
                await conn.execute(self._sql.delete_stream_events, [stream_id])
                cur = await conn.execute(self._sql.delete_stream_row, [stream_id])
                return cur.rowcount > 0

        if not await self._conn.call("delete_stream", run, retry=False):
            msg = f"stream {stream_id!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=stream_id)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """The streams row (kept exact by every write), or ``None``."""
        rows = await self._conn.call("get_stream_info", lambda c: self._conn.fetchall(c, self._sql.stream_info, [stream_id]), retry=True)
        return StreamInfo(*rows[0]) if rows else None

    async def list_streams(self, *, limit: int, offset: int) -> tuple[list[StreamInfo], int]:
        """A page of streams in code-point order of their ids (``COLLATE "C"``) and the total."""

        async def run(conn: AsyncConnection[Any]) -> tuple[list[StreamInfo], int]:
            rows = await self._conn.fetchall(conn, self._sql.list_streams, [limit, offset])
            total = await self._conn.fetchall(conn, self._sql.count_streams, [])
            return [StreamInfo(*r) for r in rows], int(total[0][0])

        return await self._conn.call("list_streams", run, retry=True)

    # ------------------------------------------------------------------ events

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """One statement: lock the stream, write the streams row conditionally, insert the events.

        Nothing comes back when the expected version does not hold, and ``UNIQUE (event_id)`` fails the
        statement when an id is already stored; both (rare) paths then look the ids up, so an identical
        retry returns the original result even with a stale expected version.
        """
        from psycopg.errors import UniqueViolation

        if not events:
            msg = "append needs at least one event"
            raise ValidationError(msg, field="events")
        if len(events) >= MAX_EVENTS_PER_APPEND:
            msg = f"one append holds at most {MAX_EVENTS_PER_APPEND - 1} events, got {len(events)}"
            raise ValidationError(msg, field="events")
        if len(events) > 1 and len({e.event_id for e in events}) != len(events):
            msg = "an event id appears twice in one batch"
            raise ValidationError(msg, field="event_id")
        query, params = self._append_statement(stream_id, events, expected, stream)

        async def run(conn: AsyncConnection[Any]) -> tuple[Any, ...] | bool | None:
            try:
                cur = await conn.execute(query, params, prepare=self._conn.prepare)
            except UniqueViolation:
                return False  # an event id is already stored: decide below whether this is a retry
            return await cur.fetchone()

        for _ in range(RACE_ATTEMPTS):
            row = await self._conn.call("append", run, retry=True)
            if row:
                prev, base = row  # type: ignore[misc]
                return AppendResult(
                    stream_id=stream_id,
                    first_version=prev + 1,
                    last_version=prev + len(events),
                    positions=tuple(range(base, base + len(events))),
                    event_ids=tuple(e.event_id for e in events),
                    timestamp=events[0].timestamp,
                )
            stored = await self._events_by_ids([e.event_id for e in events])
            dup = check_duplicate(stream_id, events, [stored.get(e.event_id) for e in events])
            if dup is not None:
                return dup
            if row is None:  # the expected version did not hold
                info = await self.get_stream_info(stream_id)
                check_expected(
                    stream_id, expected, exists=info is not None, version=info.version if info is not None else 0
                )
            # else: the ids were gone again (deleted meanwhile), or the stream changed between the
            # statement and the look-up: run the statement again
        msg = f"append to stream {stream_id!r} kept racing with concurrent writers; try again"
        raise ProviderError(msg, stream_id=stream_id, operation="append")

    def _append_statement(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None
    ) -> tuple[str, dict[str, Any]]:
        """The statement for this kind of expected version and batch size, and its parameters."""
        exp = int(expected)
        if exp == ExpectedVersion.ANY:
            kind = "any"
        elif exp == ExpectedVersion.NO_STREAM:
            kind = "new"
        elif exp == ExpectedVersion.STREAM_EXISTS:
            kind = "exists"
        elif exp == 0:
            kind = "zero"
        else:
            kind = "exact"
        first, last = events[0], events[-1]
        single = len(events) == 1
        params: dict[str, Any] = {"s": stream_id, "k": self._conn.lock(stream_id)}
        if not single:
            params["n"] = len(events)
            params["last_id"] = last.event_id
            params["last_ts"] = last.timestamp
        if kind == "exact":
            params["e"] = exp
        if kind in ("any", "new", "zero"):
            if not single:
                params["first_ts"] = first.timestamp
            if stream is not None:
                from psycopg.types.json import Jsonb

                params["name"] = stream.name
                params["agg_id"] = stream.aggregate_id
                params["agg_type"] = stream.aggregate_type
                params["meta_s"] = Jsonb(dict(stream.metadata)) if stream.metadata else None
            else:
                params["name"] = None
                params["agg_id"] = first.aggregate_id
                params["agg_type"] = first.aggregate_type
                params["meta_s"] = None
        if single:
            e = first
            params.update(
                id=e.event_id, typ=e.event_type, dat=e.data, met=e.metadata, enc=e.encoding, ts=e.timestamp,
                corr=e.correlation_id, cause=e.causation_id, usr=e.user_id, ten=e.tenant_id,
                aid=e.aggregate_id, aty=e.aggregate_type,
            )  # fmt: skip
        else:
            params.update(
                id=[e.event_id for e in events],
                typ=[e.event_type for e in events],
                dat=[e.data for e in events],
                met=[e.metadata for e in events],
                enc=[e.encoding for e in events],
                ts=[e.timestamp for e in events],
                corr=[e.correlation_id for e in events],
                cause=[e.causation_id for e in events],
                usr=[e.user_id for e in events],
                ten=[e.tenant_id for e in events],
                aid=[e.aggregate_id for e in events],
                aty=[e.aggregate_type for e in events],
            )
        return self._sql.append[kind, single], params

    async def _events_by_ids(self, ids: list[str]) -> dict[str, RecordedEvent]:
        rows = await self._conn.call("append", lambda c: self._conn.fetchall(c, self._sql.events_by_ids, [ids]), retry=True)
        return {r[0]: RecordedEvent(*r) for r in rows}

    async def read_stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RowPage]:
        """Pages of ``page_size`` rows through the ``(stream_id, version)`` index; no connection is held between pages."""
        lo = max(1, from_version)
        hi = MAX_VERSION if to_version is None else to_version
        query = self._sql.read_backward if backwards else self._sql.read_forward
        while lo <= hi:
            params = (stream_id, lo, hi, page_size + 1)  # one extra row says whether another page follows
            rows = await self._conn.call("read_stream", partial(self._conn.fetchall, query=query, params=params, binary=True), retry=True)
            if not rows:
                return
            more = len(rows) > page_size
            if more:
                nxt = rows[page_size][3]
                del rows[page_size:]
            yield RowPage(rows)  # the columns are RecordedEvent's, in its order
            if not more:
                return
            if backwards:
                hi = nxt
            else:
                lo = nxt

    async def read_all_pages(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RowPage]:
        """Every event at ``position >= from_position``, in position order, never past a running transaction.

        Each page flags the rows whose transaction id is below ``pg_snapshot_xmin`` (the oldest
        transaction still running); only those are yielded. When committed rows are held back by an
        older transaction that is still running, the reader waits for it (polling, at most
        ``visibility_wait`` seconds in all) and then stops: a follower resumes from its last position
        and gets them then, in order, never skipping one.
        """
        nxt = from_position
        waiting_since: float | None = None
        delay = 0.001
        while True:
            params = (nxt, page_size)
            rows = await self._conn.call("read_all", partial(self._conn.fetchall, query=self._sql.read_all, params=params, binary=True), retry=True)
            safe = 0
            for r in rows:
                if not r[-1]:
                    break
                safe += 1
            if safe:
                nxt = rows[safe - 1][4] + 1
                yield RowPage([r[:-1] for r in rows[:safe]])
            if safe == page_size:
                continue
            if safe == len(rows):
                return
            now = monotonic()
            if waiting_since is None:
                waiting_since = now
            if now - waiting_since >= self.settings["visibility_wait"]:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look the id up through its unique index."""
        if stream_id is None:
            query, params = self._sql.get_event, [event_id]
        else:
            query, params = self._sql.get_event_in, [event_id, stream_id]
        rows = await self._conn.call("get_event", lambda c: self._conn.fetchall(c, query, params), retry=True)
        return RecordedEvent(*rows[0]) if rows else None

    async def query(self, flt: EventFilter, *, limit: int, offset: int, descending: bool = False) -> QueryPage:
        """Every filter becomes a ``WHERE`` clause; one count and one page query on one connection."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("stream_id = %s", flt.stream_id),
            ("event_type = ANY (%s::text[])", list(flt.event_types) if flt.event_types is not None else None),
            ("version >= %s", flt.from_version),
            ("version <= %s", flt.to_version),
            ("ts >= %s", flt.from_timestamp),
            ("ts <= %s", flt.to_timestamp),
            ("tenant_id = %s", flt.tenant_id),
            ("correlation_id = %s", flt.correlation_id),
            ("aggregate_id = %s", flt.aggregate_id),
            ("aggregate_type = %s", flt.aggregate_type),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        cond = " AND ".join(where) if where else "TRUE"
        order = "version" if flt.stream_id is not None else "position"
        direction = "DESC" if descending else "ASC"
        count_q = f"SELECT count(*) FROM {self._sql.events} WHERE {cond}"  # noqa: S608 - fixed clauses, values bound
        page_q = (
            f"SELECT {EVENT_COLS} FROM {self._sql.events} WHERE {cond} "  # noqa: S608
            f"ORDER BY {order} {direction} LIMIT %s OFFSET %s"
        )

        async def run(conn: AsyncConnection[Any]) -> QueryPage:
            total = await self._conn.fetchall(conn, count_q, params)
            rows = await self._conn.fetchall(conn, page_q, [*params, limit, offset]) if limit > 0 else []
            return QueryPage(events=[RecordedEvent(*r) for r in rows], total_count=int(total[0][0]))

        return await self._conn.call("query", run, retry=True)

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Check the stream backs it (:func:`check_snapshot`), then upsert on ``(stream_id, version)``.

        One transaction, under the stream's advisory lock, the row held FOR SHARE between the check and
        the write.
        """
        s = snapshot
        params = (
            s.snapshot_id, s.stream_id, s.version, s.data, s.metadata, s.encoding, s.created_at,
            s.aggregate_id, s.aggregate_type, s.position,
        )  # fmt: skip

        async def run(conn: AsyncConnection[Any]) -> None:
            async with conn.transaction():
                # the stream's lock first (appends and creates take it): the next statement then reads the
                # row and the event at the version from one committed state (FOR SHARE alone could re-read
                # the row after an append committed while its subquery still saw the state before it)
                await conn.execute(self._sql.lock, [self._conn.lock(s.stream_id)])
                rows = await self._conn.fetchall(conn, self._sql.snapshot_backing, [s.version, s.stream_id])
                version, position_at = rows[0] if rows else (0, None)
                check_snapshot(s, exists=bool(rows), version=version, position_at=position_at)
                await conn.execute(self._sql.save_snapshot, params)

        await self._conn.call("save_snapshot", run, retry=True)

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The highest version at or below ``max_version``."""
        params = (stream_id, MAX_VERSION if max_version is None else max_version)
        rows = await self._conn.call("get_snapshot", lambda c: self._conn.fetchall(c, self._sql.get_snapshot, params), retry=True)
        return NewSnapshot(*rows[0]) if rows else None

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Delete one or all snapshots of a stream."""

        async def run(conn: AsyncConnection[Any]) -> int:
            if version is None:
                cur = await conn.execute(self._sql.delete_snapshots, [stream_id])
            else:
                cur = await conn.execute(self._sql.delete_snapshot, [stream_id, version])
            return max(cur.rowcount, 0)

        return await self._conn.call("delete_snapshots", run, retry=False)

    # ------------------------------------------------------------------ retention primitives

    async def _retention(self, operation: str, fn: Callable[[AsyncConnection[Any]], Awaitable[int]]) -> int:
        """Run a deleting transaction, again if the server broke a deadlock by aborting it (nothing was kept)."""
        from psycopg.errors import DeadlockDetected, SerializationFailure

        async def run(conn: AsyncConnection[Any]) -> int:
            for attempt in range(1, RACE_ATTEMPTS + 1):
                try:
                    async with conn.transaction():
                        return await fn(conn)
                except (DeadlockDetected, SerializationFailure):
                    if attempt == RACE_ATTEMPTS:
                        raise
            msg = "unreachable"
            raise AssertionError(msg)

        return await self._conn.call(operation, run, retry=False)

    async def _recount(self, conn: AsyncConnection[Any], deleted: list[tuple[str, int]]) -> None:
        """Lock the touched streams rows (in id order), then fix ``event_count`` and ``first_version``."""
        if not deleted:
            return
        ids = [d[0] for d in deleted]
        await conn.execute(self._sql.lock_stream_rows, [ids])
        await conn.execute(self._sql.recount, [ids, [d[1] for d in deleted]])

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """``DELETE ... WHERE version < before_version`` under the stream's lock; versions stay as they are."""

        async def run(conn: AsyncConnection[Any]) -> int:
            await conn.execute(self._sql.lock, [self._conn.lock(stream_id)])
            cur = await conn.execute(self._sql.stream_info, [stream_id])
            if await cur.fetchone() is None:
                msg = f"stream {stream_id!r} does not exist"
                raise StreamNotFoundError(msg, stream_id=stream_id)
            rows = await self._conn.fetchall(conn, self._sql.truncate, [stream_id, before_version])
            n = int(rows[0][0])
            await self._recount(conn, [(stream_id, n)] if n else [])
            return n

        return await self._retention("truncate_stream", run)

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """``DELETE ... WHERE ts < cutoff`` (one stream under its lock, or all), fixing the streams rows."""

        async def one(conn: AsyncConnection[Any]) -> int:
            await conn.execute(self._sql.lock, [self._conn.lock(stream_id or "")])
            rows = await self._conn.fetchall(conn, self._sql.delete_before_in, [stream_id, cutoff])
            n = int(rows[0][0])
            await self._recount(conn, [(stream_id or "", n)] if n else [])
            return n

        async def every(conn: AsyncConnection[Any]) -> int:
            rows = await self._conn.fetchall(conn, self._sql.delete_before_all, [cutoff])
            deleted = [(r[0], int(r[1])) for r in rows]
            await self._recount(conn, deleted)
            return sum(d[1] for d in deleted)

        return await self._retention("delete_events_before", one if stream_id is not None else every)

    # ------------------------------------------------------------------ monitoring

    async def stats(self) -> ProviderStats:
        """Exact counts from the tables and the on-disk size of the store's relations."""

        async def run(conn: AsyncConnection[Any]) -> ProviderStats:
            head = (await self._conn.fetchall(conn, self._sql.stats, []))[0]
            by_type = await self._conn.fetchall(conn, self._sql.by_type, [])
            by_stream = await self._conn.fetchall(conn, self._sql.by_stream, [])
            return ProviderStats(
                total_events=int(head[0]),
                total_streams=int(head[1]),
                total_snapshots=int(head[2]),
                events_by_type={t: int(c) for t, c in by_type},
                events_by_stream={s: int(c) for s, c in by_stream},
                storage_size=int(head[4]),
                last_event_at=head[3],
                uptime_seconds=monotonic() - self._started,
                provider=self.name,
                extra={"schema": self.names.schema, "table_prefix": self.names.prefix},
            )

        return await self._conn.call("stats", run, retry=True)

    async def health(self) -> HealthStatus:
        """Run ``SELECT 1`` through the pool; report pool statistics. Never raises."""
        if self._conn.pool is None:
            return HealthStatus(healthy=False, provider=self.name, message="not connected")
        t0 = monotonic()
        limit = min(5.0, self.settings["pool_timeout"])
        try:
            async with asyncio.timeout(limit):
                await self._conn.call("health", lambda c: self._conn.fetchall(c, "SELECT 1", []), retry=True)
        except EventSourceError as e:
            return HealthStatus(healthy=False, provider=self.name, message=e.message)
        except TimeoutError:
            msg = f"no answer from {self.display_url} within {limit}s (pool exhausted or server stalled)"
            return HealthStatus(healthy=False, provider=self.name, message=msg)
        latency = (monotonic() - t0) * 1000
        stats = self._conn.pool.get_stats() if self._conn.pool is not None else {}
        return HealthStatus(
            healthy=True,
            provider=self.name,
            message="ok",
            details={"url": self.display_url, "schema": self.names.schema, "pool": stats},
            latency_ms=latency,
        )

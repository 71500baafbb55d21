"""The append path: one statement per append, then, only when it wrote nothing, the idempotency check.

The statement (built in :mod:`~eventsource_postgres.statements`) takes the stream's advisory lock,
writes the streams row on the expected-version condition and inserts the events; ``UNIQUE (event_id)``
and ``UNIQUE (stream_id, version)`` back it. When it writes nothing, the event ids are looked up: an
identical retry gets the original result, anything else the typed conflict (the README has the detail).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderError, ValidationError
from eventsource.model import AppendResult, ExpectedVersion, RecordedEvent, make_append_result
from eventsource.provider import check_duplicate, check_expected
from eventsource.timestamps import in_utc

from eventsource_postgres.connection import RACE_ATTEMPTS
from eventsource_postgres.schema import MAX_EVENTS_PER_APPEND
from eventsource_postgres.streams import metadata_text

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from eventsource.model import Expected, NewEvent, NewStream

    from eventsource_postgres.connection import Connection
    from eventsource_postgres.inline import InlineConnection
    from eventsource_postgres.statements import Statements
    from eventsource_postgres.streams import Streams


def _unique_violation() -> type[Exception]:
    from psycopg.errors import UniqueViolation  # (psycopg is imported on connect, not with the plugin)

    return UniqueViolation


class Appender:
    """Appends to one store."""

    def __init__(self, conn: Connection, sql: Statements, streams: Streams) -> None:
        self.conn = conn
        self.sql = sql
        self.streams = streams

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """One statement: lock the stream, write the streams row conditionally, insert the events.

        Nothing comes back when the expected version does not hold, and ``UNIQUE (event_id)`` fails the
        statement when an id is already stored; both (rare) paths then look the ids up, so an identical
        retry returns the original result even with a stale expected version.
        """
        run = self._run(stream_id, events, expected, stream)
        for _ in range(RACE_ATTEMPTS):
            row = await self.conn.call("append", run, retry=True)
            if row:
                return _result(stream_id, events, row)  # type: ignore[arg-type]
            stored = await self._events_by_ids([e.event_id for e in events])
            dup = check_duplicate(stream_id, events, [stored.get(e.event_id) for e in events])
            if dup is not None:
                await self._durable()
                return dup
            if row is None:  # the expected version did not hold
                info = await self.streams.get_stream_info(stream_id)
                check_expected(
                    stream_id, expected, exists=info is not None, version=info.version if info is not None else 0
                )
            # else: the ids were gone again (deleted meanwhile), or the stream changed between the
            # statement and the look-up: run the statement again
        msg = f"append to stream {stream_id!r} kept racing with concurrent writers; try again"
        raise ProviderError(msg, stream_id=stream_id, operation="append")

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        stream: NewStream | None,
        timeout: float | None,
    ) -> AppendResult | None:
        """:meth:`append`'s statement right here, blocking (the sync API's lane, :meth:`Connection.now`); or ``None``.

        ``None`` when the connection declined, or when the statement wrote nothing (the expected version did not
        hold, or an id is stored): :meth:`append` then runs it again and looks the ids up, as after any such race.
        """
        row = self.conn.now("append", self._run(stream_id, events, expected, stream), timeout)
        return _result(stream_id, events, row) if isinstance(row, tuple) else None

    def _run(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None
    ) -> Callable[[InlineConnection], Coroutine[Any, Any, tuple[Any, ...] | bool | None]]:
        """The checked append's statement, as a call on a connection: its row, ``None`` (version), ``False`` (id)."""
        if not events:
            msg = "append needs at least one event"
            raise ValidationError(msg, field="events")
        if len(events) >= MAX_EVENTS_PER_APPEND:
            msg = f"one append holds at most {MAX_EVENTS_PER_APPEND - 1} events, got {len(events)}"
            raise ValidationError(msg, field="events")
        if len(events) > 1 and len({e.event_id for e in events}) != len(events):
            msg = "an event id appears twice in one batch"
            raise ValidationError(msg, field="event_id")
        query, params = self.statement(stream_id, events, expected, stream)
        prepare = self.conn.prepare

        async def run(conn: InlineConnection) -> tuple[Any, ...] | bool | None:
            try:
                cur = await conn.append_cursor().execute(query, params, prepare=prepare)
            except _unique_violation():
                return False  # an event id is already stored: decide below whether this is a retry
            return await cur.fetchone()

        return run

    def statement(  # noqa: C901, PLR0912 - one statement per expected-version kind, side by side
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
        params: dict[str, Any] = {"s": stream_id, "k": self.conn.lock(stream_id)}
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
                params["name"] = stream.name
                params["agg_id"] = stream.aggregate_id
                params["agg_type"] = stream.aggregate_type
                params["meta_s"] = metadata_text(stream.metadata) if stream.metadata else None
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
        return self.sql.append[kind, single], params

    async def _durable(self) -> None:
        """Before a retry is answered as a duplicate: wait until what is committed is as durable as a commit is now.

        (As ``synchronous_commit`` says.) The earlier attempt may have committed without that: a cancel (the
        manager's timeout) ends a commit's wait for the synchronous standby, and the commit stands on the primary
        alone. A transaction that writes WAL (a transactional logical message, which changes nothing) waits at its
        commit for the standby to have its later WAL position, so all before it too.
        """

        async def run(c: InlineConnection) -> list[tuple[Any, ...]]:
            return await self.conn.fetchall(c, "SELECT pg_logical_emit_message(true, 'eventsource', '')", ())

        await self.conn.call("append", run, retry=True)

    async def _events_by_ids(self, ids: list[str]) -> dict[str, RecordedEvent]:
        rows = await self.conn.call(
            "append", lambda c: self.conn.fetchall(c, self.sql.events_by_ids, [ids]), retry=True
        )
        return {r[0]: RecordedEvent(*r) for r in rows}


def _result(stream_id: str, events: Sequence[NewEvent], row: tuple[Any, ...]) -> AppendResult:
    """The result of the append whose statement answered ``row`` (the previous version, the first position)."""
    prev, base = row
    n = len(events)
    return make_append_result(  # positional, in AppendResult's field order
        stream_id,
        prev + 1,
        prev + n,
        (base,) if n == 1 else tuple(range(base, base + n)),
        (events[0].event_id,) if n == 1 else tuple(e.event_id for e in events),
        in_utc(events[0].timestamp),  # as reads give it (timestamptz, read in UTC)
        False,  # noqa: FBT003 - duplicate
    )

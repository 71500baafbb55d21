"""Append transactions on one SQLite connection: the one-statement fast path, then the careful path."""

from __future__ import annotations

import sqlite3
from datetime import UTC
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    ConcurrencyError,
)
from eventsource.model import make_append_result
from eventsource.provider import (
    check_duplicate,
    check_expected,
)
from eventsource.sqlite.rows import _NO_OPTIONAL, _OPTIONAL, _dump_meta, _event_rows, _events_from_rows
from eventsource.sqlite.statements import (
    _EVENT_COLS,
    MAX_VERSION,
    SQL_APPEND_AT,
    SQL_APPEND_AT_SHORT,
    SQL_INSERT_STREAM,
    SQL_LAST_ROWID,
    SQL_STREAM_STATE,
)
from eventsource.timestamps import in_utc, to_us

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import (
        AppendResult,
        Expected,
        NewEvent,
        NewStream,
        RecordedEvent,
    )


def append_sync(
    stream_id: str,
    events: Sequence[NewEvent],
    expected: Expected,
    stream: NewStream | None,
    db: sqlite3.Connection,
) -> AppendResult:
    """Fast path first; on a version mismatch or a unique violation, the careful path decides.

    One event at an exact version of a stream that has events (the usual case) is one autocommit
    ``INSERT ... SELECT ... WHERE <the stream is at version - 1>``: a single statement, its own
    transaction, the write lock taken first (SQLite starts a write statement's transaction as a
    write transaction), so nothing can slip in between the check and the insert.
    """
    if len(events) == 1 and 1 <= expected < MAX_VERSION:  # (at MAX_VERSION, version + 1 would not bind)
        result = append_at(db, stream_id, events[0], expected + 1)
    else:
        result = append_tx(db, stream_id, events, expected, stream, careful=False)
    if result is None:
        result = append_tx(db, stream_id, events, expected, stream, careful=True)
    if result is None:  # pragma: no cover - the careful path returns or raises
        msg = "unreachable: the careful append path always decides"
        raise AssertionError(msg)
    return result


def append_at(db: sqlite3.Connection, stream_id: str, event: NewEvent, version: int) -> AppendResult | None:
    """``event`` as ``version`` in one autocommit statement; ``None`` when the careful path must decide."""
    if _OPTIONAL(event) == _NO_OPTIONAL:  # the short form, as _event_rows would pick it
        sql = SQL_APPEND_AT_SHORT
        args: tuple[Any, ...] = (
            event.event_id,
            stream_id,
            event.event_type,
            stream_id,  # the version, if the stream stands at version - 1 (_AT_VERSION)
            stream_id,
            version,
            version,
            event.data,
            event.metadata,
            event.encoding,
            to_us(event.timestamp),
        )
    else:
        sql = SQL_APPEND_AT
        row = _event_rows(stream_id, (event,), version)[1][0]
        args = (*row[:3], stream_id, stream_id, version, version, *row[4:])
    try:
        cur = db.execute(sql, args)
    except sqlite3.IntegrityError:
        return None  # the stream is not at version - 1 (or does not exist), or the id is taken (a retry?)
    if cur.rowcount != 1:  # pragma: no cover - an INSERT ... VALUES that did not raise wrote its row
        return None
    # positional, in AppendResult's field order (see _append_tx)
    ts = event.timestamp  # as reads give it: UTC (the manager hands every store UTC; a direct caller may not)
    if ts.tzinfo is not UTC:
        ts = in_utc(ts)
    return make_append_result(stream_id, version, version, (cur.lastrowid,), (event.event_id,), ts, False)  # noqa: FBT003


def append_tx(  # noqa: C901, PLR0912 - one write transaction, read top to bottom
    db: sqlite3.Connection,
    stream_id: str,
    events: Sequence[NewEvent],
    expected: Expected,
    stream: NewStream | None,
    *,
    careful: bool,
) -> AppendResult | None:
    """One ``BEGIN IMMEDIATE`` attempt; ``None`` when the fast path must give way to the careful one.

    Fast path (4 statements for one event): ``BEGIN IMMEDIATE``; read the stream's state (row
    present, version floor, highest stored version); check the expected version; insert the stream
    row if it is new; ``INSERT`` the events; ``COMMIT``. Careful path: the stored rows under the
    batch's ids are compared first (:func:`check_duplicate`), then the version, then the same writes.
    """
    n = len(events)
    db.execute("BEGIN IMMEDIATE")
    try:
        if careful:
            dup = check_duplicate(stream_id, events, stored(db, [e.event_id for e in events]))
            if dup is not None:
                db.execute("ROLLBACK")
                return dup
        state = db.execute(SQL_STREAM_STATE, (stream_id, stream_id)).fetchone()
        exists = state is not None
        version = max(state[0], state[1] or 0) if exists else 0
        try:
            check_expected(stream_id, expected, exists=exists, version=version)
        except ConcurrencyError:
            db.execute("ROLLBACK")
            if careful:
                raise
            return None  # an idempotent retry is checked before the version: the careful path decides
        if not exists:
            first = events[0]
            if stream is not None:
                attrs = (stream.name, stream.aggregate_id, stream.aggregate_type, _dump_meta(stream.metadata))
            else:
                attrs = (None, first.aggregate_id, first.aggregate_type, "{}")
            created = to_us(first.timestamp)
            db.execute(SQL_INSERT_STREAM, (stream_id, created, created, *attrs))
        sql, rows = _event_rows(stream_id, events, version + 1)
        try:
            if n == 1:
                pos = db.execute(sql, rows[0]).lastrowid
                positions: tuple[int, ...] = (pos,)  # type: ignore[assignment]
            else:
                db.executemany(sql, rows)
                # one writer holds the lock: each row takes the highest position + 1, so they are consecutive
                top = db.execute(SQL_LAST_ROWID).fetchone()[0]
                positions = tuple(range(top - n + 1, top + 1))
        except sqlite3.IntegrityError:
            if careful:
                raise
            db.execute("ROLLBACK")
            return None
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    ids = (events[0].event_id,) if n == 1 else tuple(e.event_id for e in events)
    # positional, in AppendResult's field order, without the frozen __init__'s cost
    return make_append_result(stream_id, version + 1, version + n, positions, ids, in_utc(events[0].timestamp), False)  # noqa: FBT003 - duplicate


def stored(db: sqlite3.Connection, ids: list[str]) -> list[RecordedEvent | None]:
    """The stored event under each id (``None`` where there is none), in ``ids`` order."""
    found: dict[str, RecordedEvent] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        sql = f"SELECT {_EVENT_COLS} FROM es_events WHERE event_id IN ({', '.join('?' * len(chunk))})"  # noqa: S608 - placeholders only
        for rec in _events_from_rows(db.execute(sql, chunk).fetchall()):
            found[rec.event_id] = rec
    return [found.get(i) for i in ids]

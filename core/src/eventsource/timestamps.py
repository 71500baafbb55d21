"""Timestamps as whole microseconds since the Unix epoch (UTC): the one conversion every store shares.

Stores that keep a timestamp as an integer (SQLite columns, Kafka record headers) use these, so an event
written on one store and copied to another keeps its timestamp to the microsecond. An event's timestamp is an
instant, given back in UTC on every store (:func:`in_utc`, :func:`utc_events`); one kept as ISO 8601 text is
read with :func:`from_iso`, which keeps the sub-second UTC offsets ``datetime.fromisoformat`` drops.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import NewEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FLOAT_EXACT_US = 2**31 * 1_000_000
"""Below this many microseconds from the epoch (until 2038) a float holds every microsecond exactly:
``us / 1e6`` is within 0.12 µs of the true value, so ``fromtimestamp`` rounds back to it."""
_fromtimestamp = datetime.fromtimestamp


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch (UTC); naive datetimes are taken as UTC. Exact, no float."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - EPOCH) // _US


def from_us(us: int) -> datetime:
    """The timezone-aware UTC datetime of :func:`to_us`, exactly (a fast path for present-day times)."""
    if -_FLOAT_EXACT_US < us < _FLOAT_EXACT_US:
        return _fromtimestamp(us / 1e6, UTC)
    return EPOCH + timedelta(microseconds=us)


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def in_utc(ts: datetime) -> datetime:
    """The same instant in UTC (``ts`` itself when it is already); a naive datetime is taken as UTC, as by to_us."""
    if ts.tzinfo is UTC:
        return ts
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def utc_events(events: Sequence[NewEvent]) -> Sequence[NewEvent]:
    """``events`` with every timestamp in UTC (:func:`in_utc`): ``events`` itself when each already is."""
    for ev in events:
        if ev.timestamp.tzinfo is not UTC:
            return [dataclasses.replace(e, timestamp=in_utc(e.timestamp)) for e in events]
    return events


_SUBSECOND_OFFSET = re.compile(r"([+-])(\d\d):(\d\d):(\d\d)\.(\d{1,6})\Z")


def from_iso(text: str) -> datetime:
    """An ISO 8601 timestamp with its UTC offset as the same instant in UTC (naive text stays naive).

    ``datetime.fromisoformat`` drops a sub-second offset (``+00:00:00.500000`` reads as ``+00:00``), which moved
    the instant; it is read here. Raises ``ValueError`` as ``fromisoformat`` does.
    """
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None or (ts.tzinfo is UTC and text.endswith("+00:00")):
        return ts
    found = _SUBSECOND_OFFSET.search(text)
    if found is not None:
        sign, hours, minutes, seconds, fraction = found.groups()
        offset = timedelta(
            hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=int(fraction.ljust(6, "0"))
        )
        ts = ts.replace(tzinfo=timezone(-offset if sign == "-" else offset))
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # outside years 1-9999 in UTC (never written since appends check it): as it was
        return ts

"""Timestamps as whole microseconds since the Unix epoch (UTC): the one conversion every store shares.

Stores that keep a timestamp as an integer (SQLite columns, Kafka record headers) use these, so an event
written on one store and copied to another keeps its timestamp to the microsecond.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

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

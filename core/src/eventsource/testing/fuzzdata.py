"""Seeded random values for the fidelity part of the kit, and the exact fingerprint that compares them.

:class:`Values` draws ids, event types, envelope texts, timestamps and nested payloads from pools of the
values stores get wrong (big ints, ``1e20``, ``-0.0``, astral and decomposed text, quotes, ``$es`` keys, tagged
datetimes with odd offsets); :func:`fingerprint` turns a value into a plain structure that keeps what ``==``
hides (types, dict key order, float signs, UTC offsets), so two values with the same fingerprint are the same.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

ID_TEXTS: tuple[str, ...] = (
    "plain",
    " lead",
    "trail ",
    "  ",
    'q"uote',
    "it's",
    "back\\slash",
    "$es",
    "{0} %s %(x)s",
    "caf\u00e9",
    "cafe\u0301",
    "\u540d\u524d",
    "\U0001f600",
    "\U0010ffff",
    "\u2028sep",
    "nel\x85",
    "\ufeffbom",
    "\ufffd",
    "a.b*c>d",
    "'; DROP TABLE events; --",
    "\u00a0nbsp\u00a0",
    "\u200bzw",
)
"""Texts every id-like field (ids, event types, tenant, correlation, user, aggregate, stream name) must keep exactly."""

DATA_TEXTS: tuple[str, ...] = (
    *ID_TEXTS,
    "",
    "new\nline",
    "tab\t",
    "nul\x00",
    "\r\n",
    "\\u0000",
    "lone\ud800",
    "\udfff",
    '{"$es": "datetime", "v": "2020-01-01"}',
)
"""Texts payloads (event data and metadata, snapshots) must keep exactly: any ``str``, even NUL or a lone surrogate."""

INTS: tuple[int, ...] = (0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**300))
FLOATS: tuple[float, ...] = (
    0.0,
    -0.0,
    0.1,
    1.0,
    1e16,
    1e20,
    -1e20,
    5e-324,
    2.2250738585072014e-308,
    1.5e300,
    1.7976931348623157e308,
    float(2**53 + 2),
    123456789.12345679,
)
_ODD = timezone(timedelta(hours=5, minutes=45))
TAGGED: tuple[object, ...] = (
    datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=_ODD),
    datetime(2024, 2, 29, 12, 30, 15),  # noqa: DTZ001 - naive: kept naive
    datetime(1, 1, 1),  # noqa: DTZ001
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=-23, minutes=-59, seconds=-59, microseconds=-1))),
    datetime(2000, 1, 1, tzinfo=timezone(timedelta(seconds=30))),
    date(1, 1, 1),
    time(23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3))),
    time(0, 0),
    timedelta(days=-1, microseconds=1),
    timedelta.max,
    uuid.UUID(int=0),
    uuid.UUID(int=2**128 - 1),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("1E+1000"),
    Decimal("-Infinity"),
    Decimal("NaN"),
    Decimal("0.000000000000000000000000000001"),
    b"",
    b"\x00\xff$es",
    set(),
    {1, "a", None},
)
"""Values the JSON codec tags; each comes back as the same type and value."""

EVENT_TIMES: tuple[datetime, ...] = (
    datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 2, tzinfo=UTC),
    datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
    datetime(2262, 4, 11, 23, 47, 16, 854776, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 6, 1, 8, 0, 0, 1, tzinfo=timezone(timedelta(hours=-7))),
    datetime(2024, 6, 1, 8, 0, 0, 999999, tzinfo=_ODD),
)
"""Event timestamps within years 1-9999 (UTC): each comes back as the same instant, to the microsecond."""


class Values:
    """Random values from the pools above, drawn from one seeded :class:`random.Random`."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, pool: tuple[Any, ...]) -> Any:
        """One value of ``pool``."""
        return pool[self.rng.randrange(len(pool))]

    def text(self, *, limit: int = 256, pool: tuple[str, ...] = ID_TEXTS) -> str:
        """An id-like text of one to three pool parts plus a unique tail, at most ``limit`` characters."""
        parts = [self.pick(pool) for _ in range(self.rng.randint(1, 3))]
        tail = uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]
        if self.rng.random() < 0.1:  # at the length limit
            return ("".join(parts) + tail + "x" * limit)[:limit]
        return ("".join(parts) + tail)[:limit]

    def maybe(self, limit: int = 256) -> str | None:
        """``None`` or an id-like text."""
        return None if self.rng.random() < 0.3 else self.text(limit=limit)

    def leaf(self) -> Any:
        """A scalar of any kind the codec keeps."""
        kind = self.rng.randrange(6)
        if kind == 0:
            return self.pick(INTS)
        if kind == 1:
            return self.pick(FLOATS)
        if kind == 2:
            return self.pick(TAGGED)
        if kind == 3:
            return self.pick((True, False, None))
        return self.pick(DATA_TEXTS)

    def value(self, depth: int = 0) -> Any:
        """A nested value: dicts (keys of any text, ``$es`` among them), lists, and leaves."""
        roll = self.rng.random()
        if depth >= 4 or roll < 0.5:
            return self.leaf()
        if roll < 0.8:
            return {
                self.pick(DATA_TEXTS) + str(i % 3 or ""): self.value(depth + 1) for i in range(self.rng.randrange(5))
            }
        return [self.value(depth + 1) for _ in range(self.rng.randrange(5))]

    def mapping(self) -> dict[str, Any]:
        """A dict payload (event metadata, snapshot metadata)."""
        return {self.pick(DATA_TEXTS): self.value(1) for _ in range(self.rng.randrange(4))}

    def json_mapping(self) -> dict[str, Any]:
        """A plain JSON dict (stream metadata: no tagged values, no NUL, no lone surrogate)."""
        plain = tuple(t for t in DATA_TEXTS if "\x00" not in t and "\ud800" not in t and "\udfff" not in t)

        def inner(depth: int) -> Any:
            roll = self.rng.random()
            if depth >= 3 or roll < 0.5:
                return self.pick((*INTS, *FLOATS, True, False, None, *plain))
            if roll < 0.8:
                return {self.pick(plain): inner(depth + 1) for _ in range(self.rng.randrange(4))}
            return [inner(depth + 1) for _ in range(self.rng.randrange(4))]

        return {self.pick(plain) + str(i): inner(1) for i in range(self.rng.randrange(5))}

    def timestamp(self) -> datetime | None:
        """``None`` (the store's now) or an event timestamp of :data:`EVENT_TIMES`."""
        return None if self.rng.random() < 0.3 else self.pick(EVENT_TIMES)


def fingerprint(value: Any) -> Any:  # noqa: PLR0911 - one branch per kind of value
    """A plain structure that differs whenever two values differ in type, order, float sign or UTC offset."""
    t = type(value)
    if t is dict:
        return ("dict", [(fingerprint(k), fingerprint(v)) for k, v in value.items()])
    if t is list:
        return ("list", [fingerprint(v) for v in value])
    if t is set:
        return ("set", sorted(repr(fingerprint(v)) for v in value))
    if t is float:
        return ("float", repr(value))
    if t in (str, int, bool, type(None), bytes, uuid.UUID, date, timedelta):
        return (t.__name__, value)
    if t is Decimal:
        return ("Decimal", str(value))
    if t in (datetime, time):
        return (t.__name__, value.isoformat(), value.utcoffset())
    return ("unexpected", t.__name__, repr(value))


def utc_instant(ts: datetime) -> tuple[datetime, timedelta | None]:
    """An event timestamp as stores keep it: its UTC instant, and its offset."""
    return ts.astimezone(UTC), ts.utcoffset()

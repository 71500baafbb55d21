"""Verifying a copy: every stream's event count and a rolling digest of its events, on both stores.

The digest runs over each event's id, type, version, encoding descriptor, payload bytes (data and metadata),
timestamp and envelope fields, in version order, a page at a time; the stream's attributes and its snapshots
(id, version, descriptor, bytes, creation time, aggregate id and type) are compared as well. Positions are each
store's own and are left out. Compared whole, the stores must hold the same streams: the target's extra ones
are a difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from eventsource.provider import records_of
from eventsource.timestamps import to_us
from eventsource.transfer.source import StreamFilter, check_provider, list_all_streams, page_records, snapshots_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsource.model import RecordedEvent, RecordedSnapshot, StreamInfo
    from eventsource.provider import Provider


@dataclass(frozen=True, slots=True)
class StreamDigest:
    """What verification compares for one stream."""

    count: int
    digest: str
    attributes: tuple[object, ...]
    snapshots: str
    snapshot_count: int


@dataclass(slots=True)
class VerifyReport:
    """The outcome of :func:`verify_stores`: how much was compared and every difference found."""

    streams: int = 0
    events: int = 0
    snapshots: int = 0
    differences: list[str] = field(default_factory=list)
    target_only: int = 0
    """Streams the target holds and the source does not (looked for when whole stores are compared)."""

    @property
    def ok(self) -> bool:
        """Whether the target matches the source."""
        return not self.differences


def _put(h: hashlib._Hash, value: str | bytes | None) -> None:
    if value is None:
        h.update(b"\xff")
        return
    raw = value.encode() if isinstance(value, str) else value
    h.update(len(raw).to_bytes(8, "big"))
    h.update(raw)


_FIELDS = (
    "event id",
    "event type",
    "version",
    "encoding",
    "data",
    "metadata",
    "timestamp",
    "correlation id",
    "causation id",
    "user id",
    "tenant id",
    "aggregate id",
    "aggregate type",
)


def _compared(rec: RecordedEvent) -> tuple[str | bytes | None, ...]:
    """What verification compares of one event, in :data:`_FIELDS` order (every field but stream and position)."""
    return (
        rec.event_id,
        rec.event_type,
        str(rec.version),
        rec.encoding,
        rec.data,
        rec.metadata,
        str(to_us(rec.timestamp)),
        rec.correlation_id,
        rec.causation_id,
        rec.user_id,
        rec.tenant_id,
        rec.aggregate_id,
        rec.aggregate_type,
    )


def event_difference(a: RecordedEvent, b: RecordedEvent) -> str | None:
    """The name of the first field in which two copies of an event differ (``None``: they are the same)."""
    return _first_field(_FIELDS, _compared(a), _compared(b))


def _first_field(names: Sequence[str], a: Sequence[object], b: Sequence[object]) -> str | None:
    return next((name for name, x, y in zip(names, a, b, strict=True) if x != y), None)


def event_digest(h: hashlib._Hash, rec: RecordedEvent) -> None:
    """Fold one event into the rolling digest ``h`` (every field but stream and position)."""
    for value in _compared(rec):
        _put(h, value)


def json_value(value: object) -> object:
    """``value`` (stream metadata) in a form whose ``==`` is JSON's: ``true`` is not ``1``, numbers are equal by value.

    Python's ``==`` holds ``True == 1``, so metadata ``{"tier": true}`` matched ``{"tier": 1}``. A number is
    compared as the decimal its JSON text names, so ``1.0``, ``1`` and ``1e+20`` written as ``100000000000000000000``
    (PostgreSQL's jsonb keeps numbers so) stay equal.
    """
    if value is None or isinstance(value, (bool, str)):
        return (type(value).__name__, value)
    if isinstance(value, int):
        return ("number", Decimal(value))
    if isinstance(value, float):
        return ("number", Decimal(repr(value)) if math.isfinite(value) else repr(value))
    if isinstance(value, dict):
        return ("object", sorted((str(k), json_value(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("array", [json_value(v) for v in value])
    return (type(value).__name__, repr(value))


async def stream_digest(provider: Provider, info: StreamInfo, page_size: int = 500) -> StreamDigest:
    """Count, digest, attributes and snapshot digest of one stream of ``provider``."""
    h = hashlib.sha256()
    count = 0
    async for page in provider.read_stream_pages(info.stream_id, page_size=page_size):
        for rec in page_records(page):
            event_digest(h, rec)
            count += 1
    s = hashlib.sha256()
    snaps = await snapshots_of(provider, info.stream_id)
    for snap in snaps:
        for value in _snapshot_compared(snap):
            _put(s, value)
    attributes = (info.name, info.aggregate_id, info.aggregate_type, json_value(info.metadata), info.version)
    return StreamDigest(count, h.hexdigest(), attributes, s.hexdigest(), len(snaps))


_SNAPSHOT_FIELDS = ("id", "version", "encoding", "data", "metadata", "creation time", "aggregate id", "aggregate type")
_ATTRIBUTES = ("name", "aggregate id", "aggregate type", "metadata", "version")


def _snapshot_compared(snap: RecordedSnapshot) -> tuple[str | bytes | None, ...]:
    """What verification compares of one snapshot, in :data:`_SNAPSHOT_FIELDS` order."""
    return (
        snap.snapshot_id,
        str(snap.version),
        snap.encoding,
        snap.data,
        snap.metadata,
        str(to_us(snap.created_at)),  # every store keeps it to the microsecond, as event timestamps
        snap.aggregate_id,
        snap.aggregate_type,
    )


def snapshot_field_difference(a: RecordedSnapshot, b: RecordedSnapshot) -> str | None:
    """The name of the first field in which two copies of a snapshot differ (``None``: they are the same)."""
    return _first_field(_SNAPSHOT_FIELDS, _snapshot_compared(a), _snapshot_compared(b))


async def first_event_difference(source: Provider, target: Provider, stream_id: str, page_size: int = 500) -> str:
    """Where the events of ``stream_id`` first differ between two stores: the version, and the field or side."""
    mine = records_of(source.read_stream_pages(stream_id, page_size=page_size))
    theirs = records_of(target.read_stream_pages(stream_id, page_size=page_size))
    async with contextlib.aclosing(mine), contextlib.aclosing(theirs):  # type: ignore[type-var]
        a, b = await anext(mine, None), await anext(theirs, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a.version < b.version):
                return f"version {a.version}: missing on the target"  # type: ignore[union-attr]
            if a is None or b.version < a.version:
                return f"version {b.version}: on the target only"
            field = event_difference(a, b)
            if field is not None:
                return f"version {a.version}: the {field} differs"
            a, b = await anext(mine, None), await anext(theirs, None)
    return "the events differ while read (written to meanwhile?)"


async def snapshot_difference(source: Provider, target: Provider, stream_id: str) -> str:
    """Which snapshot of ``stream_id`` differs between two stores first, and how."""
    mine = {s.version: s for s in await snapshots_of(source, stream_id)}
    theirs = {s.version: s for s in await snapshots_of(target, stream_id)}
    for version in sorted(mine.keys() | theirs.keys()):
        a, b = mine.get(version), theirs.get(version)
        if b is None:
            return f"the snapshot at version {version} is missing on the target"
        if a is None:
            return f"the snapshot at version {version} is on the target only"
        field = snapshot_field_difference(a, b)
        if field is not None:
            return f"the snapshot at version {version}: its {field} differs"
    return "the snapshots differ while read (written to meanwhile?)"


async def verify_stores(
    source: Provider,
    target: Provider,
    *,
    streams: Sequence[str] | None = None,
    page_size: int = 500,
    progress: Callable[[int, float], None] | None = None,
) -> VerifyReport:
    """Compare every stream of ``source`` (matching ``streams`` patterns) with the same stream of ``target``.

    Both providers must be connected. Without ``streams``, the target's streams the source does not hold
    (deleted on the source after a copy, or there before it) are a difference too: one, naming how many and
    the first :data:`TARGET_ONLY_SHOWN`. ``progress`` is called after every stream with the source events
    compared so far and the seconds taken.
    """
    check_provider(source, "source", "verify_stores")
    check_provider(target, "target", "verify_stores")
    report = VerifyReport()
    start = time.monotonic()
    async for info in list_all_streams(source, StreamFilter(streams)):
        sid = info.stream_id
        report.streams += 1
        theirs = await target.get_stream_info(sid)
        if theirs is None:
            report.differences.append(f"stream {sid!r}: missing on the target")
            continue
        a = await stream_digest(source, info, page_size)
        b = await stream_digest(target, theirs, page_size)
        report.events += a.count
        report.snapshots += a.snapshot_count
        if a.count != b.count or a.digest != b.digest:
            where = await first_event_difference(source, target, sid, page_size)
            counts = f" ({a.count} events on the source, {b.count} on the target)" if a.count != b.count else ""
            report.differences.append(f"stream {sid!r}: {where}{counts}")
        for name, x, y in zip(_ATTRIBUTES, a.attributes, b.attributes, strict=True):
            if x != y:
                values = "" if name == "metadata" else f" ({x!r} on the source, {y!r} on the target)"
                report.differences.append(f"stream {sid!r}: the {name} differs{values}")
        if a.snapshots != b.snapshots:
            report.differences.append(f"stream {sid!r}: {await snapshot_difference(source, target, sid)}")
        if progress is not None:
            progress(report.events, time.monotonic() - start)
    if not streams:
        await _target_only(source, target, report)
    return report


TARGET_ONLY_SHOWN = 5
"""Stream ids of the target only that a report names (it counts them all)."""


async def _target_only(source: Provider, target: Provider, report: VerifyReport) -> None:
    """Count the target's streams the source lacks into ``report`` (asked one by one: no set of ids in memory)."""
    shown: list[str] = []
    async for info in list_all_streams(target, StreamFilter()):
        if await source.get_stream_info(info.stream_id) is None:
            report.target_only += 1
            if len(shown) < TARGET_ONLY_SHOWN:
                shown.append(info.stream_id)
    if not report.target_only:
        return
    n = report.target_only
    more = f" (and {n - len(shown)} more)" if n > len(shown) else ""
    ids = ", ".join(repr(sid) for sid in shown)
    report.differences.append(f"{n} stream{'s' if n != 1 else ''} on the target only (not on the source): {ids}{more}")

"""Verifying a copy: every stream's event count and a rolling digest of its events, on both stores.

The digest runs over each event's id, type, version, encoding descriptor, payload bytes (data and metadata),
timestamp and envelope fields, in version order, a page at a time; the stream's attributes and its snapshots
(id, version, descriptor, bytes, creation time, aggregate id and type) are compared as well. Positions are each
store's own and are left out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventsource.timestamps import to_us
from eventsource.transfer.source import StreamFilter, list_all_streams, page_records, snapshots_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import RecordedEvent, StreamInfo
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
    return next((name for name, x, y in zip(_FIELDS, _compared(a), _compared(b), strict=True) if x != y), None)


def event_digest(h: hashlib._Hash, rec: RecordedEvent) -> None:
    """Fold one event into the rolling digest ``h`` (every field but stream and position)."""
    for value in _compared(rec):
        _put(h, value)


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
        for value in (
            snap.snapshot_id,
            str(snap.version),
            snap.encoding,
            snap.data,
            snap.metadata,
            str(to_us(snap.created_at)),  # every store keeps it to the microsecond, as event timestamps
            snap.aggregate_id,
            snap.aggregate_type,
        ):
            _put(s, value)
    attributes = (info.name, info.aggregate_id, info.aggregate_type, sorted(info.metadata.items()), info.version)
    return StreamDigest(count, h.hexdigest(), attributes, s.hexdigest(), len(snaps))


async def verify_stores(
    source: Provider, target: Provider, *, streams: Sequence[str] | None = None, page_size: int = 500
) -> VerifyReport:
    """Compare every stream of ``source`` (matching ``streams`` patterns) with the same stream of ``target``.

    Both providers must be connected. Streams the target holds and the source does not are not compared.
    """
    report = VerifyReport()
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
        if a.count != b.count:
            report.differences.append(f"stream {sid!r}: {a.count} events on the source, {b.count} on the target")
        elif a.digest != b.digest:
            report.differences.append(f"stream {sid!r}: the events differ (digest {a.digest[:12]} != {b.digest[:12]})")
        if a.attributes != b.attributes:
            report.differences.append(f"stream {sid!r}: attributes or version differ")
        if a.snapshots != b.snapshots:
            report.differences.append(f"stream {sid!r}: the snapshots differ")
    return report

"""Binary layout of the records the provider writes.

Event records (one per append, in the stream's topic) hold an envelope, so a batch of events is one
Kafka record and is atomic on any broker:: More in docs/internals/kafka.md.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderError
from eventsource.model import NewSnapshot, RecordedEvent
from eventsource.timestamps import from_us, to_us

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import NewEvent

MAGIC = b"VX1"
_LEN = struct.Struct(">I")


def _frame(rows: list[Any], payloads: list[bytes]) -> bytes:
    head = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
    return b"".join([MAGIC, _LEN.pack(len(head)), head, *payloads])


def _unframe(value: bytes) -> tuple[list[Any], memoryview, int]:
    if value[:3] != MAGIC:
        msg = "a record in an eventsource topic is not in the eventsource envelope format"
        raise ProviderError(msg)
    (n,) = _LEN.unpack_from(value, 3)
    rows = json.loads(value[7 : 7 + n])
    return rows, memoryview(value), 7 + n


def encode_events(
    stream_id: str, events: Sequence[NewEvent], first_version: int, first_position: int
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of one envelope record for ``events``."""
    rows = []
    payloads = []
    for i, ev in enumerate(events):
        rows.append(
            [
                ev.event_id,
                ev.event_type,
                first_version + i,
                first_position + i,
                to_us(ev.timestamp),
                ev.encoding,
                len(ev.data),
                len(ev.metadata),
                ev.correlation_id,
                ev.causation_id,
                ev.user_id,
                ev.tenant_id,
                ev.aggregate_id,
                ev.aggregate_type,
            ]
        )
        payloads.append(ev.data)
        payloads.append(ev.metadata)
    headers = [
        ("vx-stream", stream_id.encode("utf-8", "surrogatepass")),
        ("vx-version", str(first_version).encode()),
        ("vx-count", str(len(events)).encode()),
    ]
    headers.extend(("vx-event-id", ev.event_id.encode()) for ev in events)
    return _frame(rows, payloads), headers


def decode_events(stream_id: str, value: bytes) -> list[RecordedEvent]:
    """The events of one envelope record."""
    rows, view, at = _unframe(value)
    out = []
    for r in rows:
        dl, ml = r[6], r[7]
        data = bytes(view[at : at + dl])
        at += dl
        meta = bytes(view[at : at + ml])
        at += ml
        out.append(
            RecordedEvent(
                event_id=r[0],
                stream_id=stream_id,
                event_type=r[1],
                version=r[2],
                position=r[3],
                data=data,
                metadata=meta,
                encoding=r[5],
                timestamp=from_us(r[4]),
                correlation_id=r[8],
                causation_id=r[9],
                user_id=r[10],
                tenant_id=r[11],
                aggregate_id=r[12],
                aggregate_type=r[13],
            )
        )
    return out


def accepts(last_version: int, first_version: int) -> bool:
    """THE rule deciding which records make up a stream; every reader and writer of the provider applies it.

    A stream's topic is one totally ordered log, read from its first record. A record belongs to the
    stream exactly when its first version is one more than the last version accepted before it
    (``last_version``; 0 before the first record). Any other record is ignored by every reader: a
    writer that lost a race for that version (its append reported :class:`ConcurrencyError`), or a
    record written twice by a producer retry. A record holds a whole append, so an append wins or
    loses whole.
    """
    return first_version == last_version + 1


def peek_rows(value: bytes) -> list[Any]:
    """The envelope rows without copying payloads (ids, versions, positions, timestamps, sizes)."""
    return _unframe(value)[0]


def encode_snapshot(snap: NewSnapshot) -> bytes:
    """The value of a snapshot record."""
    row = [
        snap.snapshot_id,
        snap.version,
        snap.position,
        to_us(snap.created_at),
        snap.encoding,
        len(snap.data),
        len(snap.metadata),
        snap.aggregate_id,
        snap.aggregate_type,
    ]
    return _frame([row], [snap.data, snap.metadata])


def decode_snapshot(stream_id: str, value: bytes) -> NewSnapshot:
    """The snapshot of one snapshot record."""
    rows, view, at = _unframe(value)
    r = rows[0]
    data = bytes(view[at : at + r[5]])
    meta = bytes(view[at + r[5] : at + r[5] + r[6]])
    return NewSnapshot(
        snapshot_id=r[0],
        stream_id=stream_id,
        version=r[1],
        data=data,
        metadata=meta,
        encoding=r[4],
        created_at=from_us(r[3]),
        aggregate_id=r[7],
        aggregate_type=r[8],
        position=r[2],
    )


def snapshot_key(stream_id: str, version: int) -> bytes:
    """Record key of a snapshot: exact stream id and version."""
    return json.dumps([stream_id, version], ensure_ascii=False).encode("utf-8", "surrogatepass")


def parse_snapshot_key(key: bytes) -> tuple[str, int]:
    """Inverse of :func:`snapshot_key`."""
    sid, version = json.loads(key)
    return sid, int(version)

"""The bytes of one JetStream message: one event, or a batch of events (an envelope).

Each event is a 12-byte frame header, a compact JSON head and the opaque ``data`` and ``metadata`` bytes
as the codec pipeline produced them; headers (``Vx-Version`` of the last event, ``Vx-Count``,
``Nats-Msg-Id``, the expected sequence) carry what the server or a scan needs without opening the body.
The layout is in ``docs/internals/nats.md``.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

from eventsource.model import NewSnapshot, RecordedEvent
from eventsource.timestamps import from_iso

from eventsource_nats.naming import position

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from eventsource.model import NewEvent

HDR_VERSION = "Vx-Version"
HDR_COUNT = "Vx-Count"
HDR_MSG_ID = "Nats-Msg-Id"
HDR_EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
HDR_EXPECTED_SEQ = "Nats-Expected-Last-Sequence"

_FRAME = struct.Struct(">III")
_OPTIONAL = (
    ("c", "correlation_id"),
    ("k", "causation_id"),
    ("u", "user_id"),
    ("n", "tenant_id"),
    ("a", "aggregate_id"),
    ("y", "aggregate_type"),
)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ESC = json.encoder.encode_basestring
"""A JSON string literal, non-ASCII kept (what ``_JSON`` writes for a ``str``)."""


def _head(ev: NewEvent, stream_id: str | None) -> bytes:
    """The compact JSON head of an event, written directly (byte-identical to :func:`_head_json`)."""
    try:
        parts = [
            '{"i":',
            _ESC(ev.event_id),
            ',"t":',
            _ESC(ev.event_type),
            ',"ts":"',
            ev.timestamp.isoformat(),
            '","e":',
            _ESC(ev.encoding),
        ]
        for short, name in _OPTIONAL:
            value = getattr(ev, name)
            if value is not None:
                parts += (',"', short, '":', _ESC(value))
        if stream_id is not None:
            parts += (',"s":', _ESC(stream_id))
    except TypeError:  # a field that is not a string: the general encoder
        return _head_json(ev, stream_id)
    parts.append("}")
    return "".join(parts).encode("utf-8")


def _head_json(ev: NewEvent, stream_id: str | None) -> bytes:
    head: dict[str, Any] = {"i": ev.event_id, "t": ev.event_type, "ts": ev.timestamp.isoformat(), "e": ev.encoding}
    for short, name in _OPTIONAL:
        value = getattr(ev, name)
        if value is not None:
            head[short] = value
    if stream_id is not None:
        head["s"] = stream_id
    return _JSON(head).encode("utf-8")


def encode(events: Sequence[NewEvent], stream_id: str | None = None) -> bytes:
    """The body of a message holding ``events`` (``stream_id`` only when the token is hashed).

    The stream id goes into the first event's head only: repeated in every head of an envelope, a long id
    (up to 64 Ki characters) made a batch of small events larger than ``max_payload``.
    """
    parts: list[bytes] = []
    for n, ev in enumerate(events):
        head = _head(ev, stream_id if n == 0 else None)
        parts.append(_FRAME.pack(len(head), len(ev.data), len(ev.metadata)))
        parts.append(head)
        parts.append(ev.data)
        parts.append(ev.metadata)
    return b"".join(parts)


def frames(body: bytes) -> Iterator[tuple[dict[str, Any], bytes, bytes]]:
    """``(head, data, metadata)`` of each event in a message body."""
    view = memoryview(body)
    off = 0
    end = len(body)
    while off < end:
        hl, dl, ml = _FRAME.unpack_from(view, off)
        off += _FRAME.size
        head = json.loads(view[off : off + hl].tobytes())
        off += hl
        data = view[off : off + dl].tobytes()
        off += dl
        meta = view[off : off + ml].tobytes()
        off += ml
        yield head, data, meta


def message_versions(headers: dict[str, str] | None) -> tuple[int, int]:
    """``(first_version, last_version)`` of the events a message holds."""
    if not headers or HDR_VERSION not in headers:
        msg = "message without a Vx-Version header in the events stream"
        raise ValueError(msg)
    last = int(headers[HDR_VERSION])
    count = int(headers.get(HDR_COUNT, "1"))
    return last - count + 1, last


def decode(
    body: bytes, headers: dict[str, str] | None, seq: int, stream_id: str | None, hidden: frozenset[int] = frozenset()
) -> list[RecordedEvent]:
    """The events of one message (those whose index is in ``hidden`` were deleted and are left out).

    ``stream_id`` is ``None`` when the subject token is hashed: the id is then read from the first head (messages
    written before :func:`encode` carried it once hold it in every head).
    """
    first, _ = message_versions(headers)
    out = []
    for idx, (head, data, meta) in enumerate(frames(body)):
        if stream_id is None:
            stream_id = head["s"]
        if idx in hidden:
            continue
        out.append(
            RecordedEvent(
                event_id=head["i"],
                stream_id=stream_id,
                event_type=head["t"],
                version=first + idx,
                position=position(seq, idx),
                data=data,
                metadata=meta,
                encoding=head["e"],
                timestamp=from_iso(head["ts"]),  # written in UTC; older records may hold an offset
                correlation_id=head.get("c"),
                causation_id=head.get("k"),
                user_id=head.get("u"),
                tenant_id=head.get("n"),
                aggregate_id=head.get("a"),
                aggregate_type=head.get("y"),
            )
        )
    return out


def encode_snapshot(snap: NewSnapshot) -> bytes:
    """The KV value of a snapshot (same framing as an event: head, data, metadata)."""
    head = {
        "i": snap.snapshot_id,
        "s": snap.stream_id,
        "v": snap.version,
        "e": snap.encoding,
        "ts": snap.created_at.isoformat(),
        "a": snap.aggregate_id,
        "y": snap.aggregate_type,
        "p": snap.position,
    }
    raw = _JSON(head).encode("utf-8")
    return _FRAME.pack(len(raw), len(snap.data), len(snap.metadata)) + raw + snap.data + snap.metadata


def decode_snapshot(value: bytes) -> NewSnapshot:
    """A :class:`~eventsource.model.NewSnapshot` from its KV value."""
    head, data, meta = next(frames(value))
    return NewSnapshot(
        snapshot_id=head["i"],
        stream_id=head["s"],
        version=head["v"],
        data=data,
        metadata=meta,
        encoding=head["e"],
        created_at=from_iso(head["ts"]),
        aggregate_id=head.get("a"),
        aggregate_type=head.get("y"),
        position=head.get("p"),
    )

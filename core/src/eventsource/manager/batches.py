"""Turning a batch of :class:`EventData` into the :class:`NewEvent` records a provider stores.

Each event's fields are validated, its payloads encoded by the event codec, and the sizes checked
against ``max_event_size`` (serialized) and the provider's own limits (encoded) before any store is
touched.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NoReturn

from eventsource.domain.upcasting import SCHEMA_KEY
from eventsource.errors import ValidationError
from eventsource.manager.ids import event_id
from eventsource.manager.validation import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    check_metadata,
    check_optional_text,
    check_text,
    check_time,
)
from eventsource.model import NewEvent, positional_constructor, utcnow
from eventsource.timestamps import in_utc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.config import ManagerConfig
    from eventsource.domain.upcasting import _Chains
    from eventsource.manager.codec import EventCodec
    from eventsource.model import EventData
    from eventsource.provider import Provider

_make_new_event = positional_constructor(NewEvent)


class BatchEncoder:
    """Validates and encodes batches for one manager's configuration and codec."""

    __slots__ = ("codec", "config")

    def __init__(self, config: ManagerConfig, codec: EventCodec) -> None:
        self.config = config
        self.codec = codec

    def encode(self, sid: str, events: Sequence[EventData], p: Provider, first_version: int) -> list[NewEvent]:
        """Encode a batch for versions ``first_version...`` and check batch-wide limits."""
        if len(events) == 1 and self.codec.cipher is None:  # the usual append: no batch check, nothing sealed
            return [self.encode_one(sid, events[0], p, first_version)]
        encoded = self.codec.once(lambda: [self.encode_one(sid, e, p, first_version + i) for i, e in enumerate(events)])
        if len(encoded) > 1:
            ids = [e.event_id for e in encoded]
            if len(set(ids)) != len(ids):
                msg = "a batch holds the same event id twice"
                raise ValidationError(msg, field="event_id")
            limit = p.capabilities.max_batch_bytes
            if limit is not None:
                total = sum(e.size for e in encoded)
                if total > limit:
                    msg = (
                        f"the batch is {total} bytes encoded; provider {p.name!r} can write at most {limit} atomically"
                    )
                    raise ValidationError(msg, field="events", size=total, limit=limit)
        return encoded

    def _check_size(self, event_type: str, size: int) -> None:
        """Refuse an event whose serialized data and metadata are over ``max_event_size``."""
        limit = self.config.max_event_size
        if size > limit:
            msg = f"event of type {event_type!r} is {size} bytes serialized; the limit is {limit} (max_event_size)"
            raise ValidationError(msg, field="data", size=size, limit=limit)

    def refuse(self, event_type: str, size: int, p: Provider) -> None:
        """Raise what :meth:`encode_one` raises for a plain event of ``size`` bytes over a limit.

        Plain: no metadata, nothing compressed or sealed, so its serialized bytes are its stored ones; the limit
        is ``max_event_size`` or ``p``'s own.
        """
        self._check_size(event_type, size)
        store_limit = p.capabilities.max_event_size
        if store_limit is not None and size > store_limit:
            _refuse_stored(event_type, size, p, store_limit)

    def encode_one(self, sid: str, ev: EventData, p: Provider, version: int = 0) -> NewEvent:
        """Validate and encode one event; ``version`` is bound into the associated data when encrypting."""
        event_type = check_text("event type", ev.event_type, MAX_EVENT_TYPE_LENGTH, field_name="event_type")
        if ev.event_id is None:
            eid = event_id()  # valid by construction
        else:
            eid = check_text("event id", ev.event_id, MAX_EVENT_ID_LENGTH, field_name="event_id")
        metadata = {} if ev.metadata is None else check_metadata(ev.metadata)
        chains = self.codec.chain.events
        if event_type in chains.types:  # (a set lookup: only types with a chain or an event class)
            _check_readable(chains, event_type, metadata)
        tenant_id = ev.tenant_id
        if tenant_id is not None:
            tenant_id = check_text("tenant id", tenant_id, MAX_EVENT_ID_LENGTH, field_name="tenant_id")
        ts = ev.timestamp
        if ts is not None:
            check_time("timestamp", ts)
        correlation_id, causation_id, user_id = ev.correlation_id, ev.causation_id, ev.user_id
        aggregate_id, aggregate_type = ev.aggregate_id, ev.aggregate_type
        if not (
            correlation_id is None
            and causation_id is None
            and user_id is None
            and aggregate_id is None
            and aggregate_type is None
        ):
            correlation_id = check_optional_text("correlation id", correlation_id, field_name="correlation_id")
            causation_id = check_optional_text("causation id", causation_id, field_name="causation_id")
            user_id = check_optional_text("user id", user_id, field_name="user_id")
            aggregate_id = check_optional_text("aggregate id", aggregate_id, field_name="aggregate_id")
            aggregate_type = check_optional_text("aggregate type", aggregate_type, field_name="aggregate_type")
        codec = self.codec
        if codec.cipher is None:
            data, meta, encoding, size = codec.encode_event(
                sid, eid, tenant_id, ev.data, metadata, version=version, event_type=event_type
            )
            if size > self.config.max_event_size:
                self._check_size(event_type, size)
        else:  # the size is checked before anything is sealed: a refused event mints no data key
            check = functools.partial(self._check_size, event_type)
            data, meta, encoding, size = codec.encode_event(
                sid, eid, tenant_id, ev.data, metadata, version=version, event_type=event_type, check=check
            )
        store_limit = p.capabilities.max_event_size
        if store_limit is not None and len(data) + len(meta) > store_limit:
            _refuse_stored(event_type, len(data) + len(meta), p, store_limit)
        return _make_new_event(  # positional, in NewEvent's field order, without the frozen __init__'s cost
            eid,
            event_type,
            data,
            meta,
            encoding,
            utcnow() if ts is None else in_utc(ts),  # an instant: every store gives it back in UTC
            correlation_id,
            causation_id,
            user_id,
            tenant_id,
            aggregate_id,
            aggregate_type,
        )


def _check_readable(chains: _Chains, event_type: str, metadata: dict[str, Any]) -> None:
    """Refuse an event this manager's own upcasting chains could not read back (every read would raise)."""
    why = chains.unreadable(event_type, metadata.get(SCHEMA_KEY, 1))
    if why is not None:
        msg = (
            f"event of type {event_type!r} would not read back: {why}; append an instance of its event class, "
            f"put the schema version the data is at in metadata[{SCHEMA_KEY!r}], or register the missing upcaster"
        )
        raise ValidationError(msg, field="metadata", event_type=event_type)


def _refuse_stored(event_type: str, stored: int, p: Provider, limit: int) -> NoReturn:
    """Refuse an event of ``stored`` encoded bytes, over what ``p`` can hold (``limit``)."""
    msg = (
        f"event of type {event_type!r} is {stored} bytes encoded; "
        f"the limit is {limit} (what provider {p.name!r} can hold)"
    )
    raise ValidationError(msg, field="data", size=stored, limit=limit)

"""Input validation: every argument of a manager call is checked here before any store is touched."""

from __future__ import annotations

import json
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.codecs.builtin import MAX_NESTING, json_change
from eventsource.errors import ValidationError
from eventsource.model import (
    COUNT_MODES,
    MAX_NUMBER,
    MAX_PAGE_LIMIT,
    EventData,
    EventFilter,
    ExpectedVersion,
    NewStream,
    SortOrder,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from eventsource.model import AppendEventRequest, CountMode, CreateStreamRequest, Expected, GetEventsRequest

R = TypeVar("R")

MAX_EVENT_TYPE_LENGTH = 256
MAX_EVENT_ID_LENGTH = 256
_CONTROL = frozenset(chr(c) for c in (*range(32), 127))


def coerce(cls: type[R], request: R | None, kwargs: Mapping[str, Any]) -> R:
    """A request object from either the object itself or keyword fields."""
    if request is not None:
        if kwargs:
            msg = f"pass either a {cls.__name__} or keyword arguments, not both"
            raise ValidationError(msg)
        if not isinstance(request, cls):
            msg = f"expected a {cls.__name__}, got {type(request).__name__}"
            raise ValidationError(msg)
        return request
    try:
        return cls(**kwargs)
    except TypeError as e:
        msg = f"invalid arguments for {cls.__name__}: {e}"
        raise ValidationError(msg) from e


def check_text(what: str, value: object, max_len: int, *, field_name: str) -> str:
    """A non-empty str of at most ``max_len`` characters, without control characters or lone surrogates.

    Returned as a plain ``str`` (a subclass, such as a ``StrEnum`` member, as its value).
    """
    if type(value) is str and value.isascii() and value.isprintable() and 0 < len(value) <= max_len:
        return value  # printable ASCII (the usual id or type name): no control character, nothing to encode
    if not isinstance(value, str):
        msg = f"{what} must be a string, got {type(value).__name__}"
        raise ValidationError(msg, field=field_name)
    if not value:
        msg = f"{what} must not be empty"
        raise ValidationError(msg, field=field_name)
    if len(value) > max_len:
        msg = f"{what} is {len(value)} characters long; the limit is {max_len}"
        raise ValidationError(msg, field=field_name, length=len(value), limit=max_len)
    if not _CONTROL.isdisjoint(value):
        bad = next(c for c in value if c in _CONTROL)
        msg = f"{what} contains the control character {bad!r}, which no store can hold safely"
        raise ValidationError(msg, field=field_name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        msg = f"{what} is not valid Unicode text (lone surrogate)"
        raise ValidationError(msg, field=field_name) from e
    return value if type(value) is str else str.__str__(value)  # a StrEnum member: its value, as stores give it back


def check_optional_text(what: str, value: object, *, field_name: str) -> str | None:
    """``None`` or an id-like text (see :func:`check_text`)."""
    if value is None:
        return None
    return check_text(what, value, MAX_EVENT_ID_LENGTH, field_name=field_name)


def check_number(name: str, value: object, *, minimum: int = 0) -> int:
    """An int from ``minimum`` to :data:`MAX_NUMBER` (never a bool), else :class:`ValidationError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise ValidationError(msg, field=name)
    if not minimum <= value <= MAX_NUMBER:
        msg = f"{name} must be from {minimum} to {MAX_NUMBER}, got {value}"
        raise ValidationError(msg, field=name)
    return value


def check_flag(name: str, value: object) -> bool:
    """``True`` or ``False`` and nothing else (``1``, ``"no"``, ``None``: :class:`ValidationError`, not truthiness)."""
    if not isinstance(value, bool):
        msg = f"{name} must be True or False, got {type(value).__name__}"
        raise ValidationError(msg, field=name)
    return value


def check_optional_number(name: str, value: object, *, minimum: int = 0) -> int | None:
    """``None`` or :func:`check_number`."""
    return None if value is None else check_number(name, value, minimum=minimum)


def check_time(name: str, value: object) -> datetime | None:
    """``None`` or a timezone-aware datetime, else :class:`ValidationError`."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        msg = f"{name} must be a timezone-aware datetime, got {type(value).__name__}"
        raise ValidationError(msg, field=name)
    if value.utcoffset() is None:
        msg = f"{name} must be timezone-aware"
        raise ValidationError(msg, field=name)
    try:  # stores keep the UTC instant: 9999-12-31T23:59-23:00 is in year 10000 there
        value.astimezone(UTC)
    except OverflowError:
        msg = f"{name} {value.isoformat()} is not an instant any store can hold (its UTC time is outside years 1-9999)"
        raise ValidationError(msg, field=name) from None
    return value


def check_event_types(value: object) -> tuple[str, ...] | None:
    """``None``, one type name, or a sequence or set of them (a str is one name, never its letters)."""
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else value
    if isinstance(names, (bytes, bytearray)) or not isinstance(names, (Sequence, AbstractSet)):
        msg = f"event_types must be a list of event type names, got {type(value).__name__}"
        raise ValidationError(msg, field="event_types")
    return tuple(check_text("event type", n, MAX_EVENT_TYPE_LENGTH, field_name="event_types") for n in names) or None


def check_expected(expected: object) -> Expected:
    """An exact version (int >= 0) or one of ANY / NO_STREAM / STREAM_EXISTS."""
    if isinstance(expected, ExpectedVersion):
        return expected
    if isinstance(expected, bool) or not isinstance(expected, int):
        msg = f"expected_version must be an int >= 0 or ANY/NO_STREAM/STREAM_EXISTS, got {expected!r}"
        raise ValidationError(msg, field="expected_version")
    if expected > MAX_NUMBER:
        msg = f"expected_version must be at most {MAX_NUMBER}, got {expected}"
        raise ValidationError(msg, field="expected_version")
    if expected < 0:
        try:
            return ExpectedVersion(expected)
        except ValueError:
            msg = f"expected_version must be >= 0 or ANY/NO_STREAM/STREAM_EXISTS, got {expected}"
            raise ValidationError(msg, field="expected_version") from None
    return expected


def check_metadata(value: object, *, field_name: str = "metadata") -> dict[str, Any]:
    """A dict (``None`` is ``{}``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        msg = f"{field_name} must be a dict, got {type(value).__name__}"
        raise ValidationError(msg, field=field_name)
    return value


def plain_metadata(metadata: object, max_size: int) -> dict[str, Any]:
    """Stream metadata as the stores keep it: plain JSON, normalised once here, at most ``max_size`` bytes.

    No codec runs on it (so no tagged datetimes or Decimals). What JSON would give back changed (a tuple,
    a non-string key) is refused, naming where, as in event data; every store is given, and returns, the
    same value.
    """
    md = check_metadata(metadata)
    found = json_change(md)
    if found is not None:
        path, problem = found
        msg = f"stream metadata at ${path} is {problem}: stored as JSON it would not come back as it was"
        raise ValidationError(msg, field="metadata", path=f"${path}")
    try:
        text = json.dumps(md, allow_nan=False)
        plain: dict[str, Any] = json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:
        msg = f"stream metadata must be plain JSON (str keys; str, number, bool, null, list, dict values): {e}"
        raise ValidationError(msg, field="metadata") from None
    if len(text) > max_size:  # ASCII (ensure_ascii): characters are bytes
        msg = f"stream metadata is {len(text)} bytes serialized; the limit is {max_size} (max_event_size)"
        raise ValidationError(msg, field="metadata", size=len(text), limit=max_size)
    stack: list[tuple[object, int]] = [(plain, 1)]  # no recursion: the check must not depend on the stack
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_metadata_text(value)
            continue
        if isinstance(value, dict):
            children: Iterable[object] = [*value, *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_NESTING:
            msg = f"stream metadata is nested more than {MAX_NESTING} levels deep: it might not read back"
            raise ValidationError(msg, field="metadata", limit=MAX_NESTING)
        stack.extend((v, depth + 1) for v in children)
    return plain


def _check_metadata_text(text: str) -> None:
    """A stream metadata key or string every store can hold (PostgreSQL's jsonb refuses NUL and lone surrogates)."""
    if "\x00" in text:
        msg = "stream metadata holds a NUL character, which not every store can hold"
        raise ValidationError(msg, field="metadata")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        msg = "stream metadata holds text that is not valid Unicode (a lone surrogate)"
        raise ValidationError(msg, field="metadata") from None


def check_scope_names(tenant_id: object, stream_id: object, scope: object, max_stream_id_length: int) -> None:
    """What a key scope is named by (``shred``, ``rotate_key``): id-like texts, as on the append path."""
    check_optional_text("tenant id", tenant_id, field_name="tenant_id")
    if stream_id is not None:
        check_text("stream id", stream_id, max_stream_id_length, field_name="stream_id")
    if scope is not None:  # "tenant:<tenant id>" or "stream:<stream id>": the only scopes an event's key has
        check_text("scope", scope, max(max_stream_id_length, MAX_EVENT_ID_LENGTH) + 7, field_name="scope")
        kind, _, name = str(scope).partition(":")
        if kind not in ("tenant", "stream") or not name:
            msg = f"a key scope is 'tenant:<tenant id>' or 'stream:<stream id>', got {scope!r}"
            raise ValidationError(msg, field="scope")


def check_paging(limit: object, offset: object) -> None:
    """``limit`` from 1 to :data:`MAX_PAGE_LIMIT`, ``offset`` from 0 to :data:`MAX_NUMBER`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_LIMIT:
        msg = f"limit must be an int from 1 to {MAX_PAGE_LIMIT}, got {limit!r}"
        raise ValidationError(msg, field="limit")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_NUMBER:
        msg = f"offset must be an int from 0 to {MAX_NUMBER}, got {offset!r}"
        raise ValidationError(msg, field="offset")


def event_of(req: AppendEventRequest) -> EventData:
    """The event of a single-event append request."""
    return EventData(  # positional, in EventData's field order
        req.event_type,
        req.data,
        req.metadata,
        req.event_id,
        req.correlation_id,
        req.causation_id,
        req.user_id,
        req.tenant_id,
        req.aggregate_id,
        req.aggregate_type,
        req.timestamp,
    )


def event_list(events: object) -> list[EventData]:
    """A list of :class:`EventData` (dicts are converted)."""
    if not isinstance(events, (list, tuple)):
        msg = "events must be a list of EventData"
        raise ValidationError(msg, field="events")
    return [e if isinstance(e, EventData) else _event_data(e) for e in events]


def check_batch_size(n: int, max_batch_size: int) -> None:
    """At least one event and at most ``max_batch_size``."""
    if not n:
        msg = "a batch must hold at least one event"
        raise ValidationError(msg, field="events")
    if n > max_batch_size:
        msg = f"a batch of {n} events exceeds max_batch_size={max_batch_size}"
        raise ValidationError(msg, field="events", size=n, limit=max_batch_size)


def check_size(what: str, size: int, limit: int, setting: str) -> None:
    """A serialized payload of ``size`` bytes within ``limit`` (named by its ``setting``)."""
    if size > limit:
        msg = f"{what} is {size} bytes serialized; the limit is {limit} ({setting})"
        raise ValidationError(msg, field="data", size=size, limit=limit)


def _event_data(value: object) -> EventData:
    if isinstance(value, dict):
        try:
            return EventData(**value)
        except TypeError as e:
            msg = f"invalid event: {e}"
            raise ValidationError(msg, field="events") from e
    from eventsource.domain.events import DomainEvent

    if isinstance(value, DomainEvent):
        return value.event_data()
    msg = f"events must be EventData, dicts or DomainEvent instances, got {type(value).__name__}"
    raise ValidationError(msg, field="events")


def check_sort_order(value: str) -> SortOrder:
    """``"asc"`` or ``"desc"`` as a :class:`SortOrder`."""
    try:
        return SortOrder(value)
    except ValueError:
        msg = f"sort_order must be 'asc' or 'desc', got {value!r}"
        raise ValidationError(msg, field="sort_order") from None


def event_filter(req: GetEventsRequest, max_stream_id_length: int) -> EventFilter:
    """The filter of a ``get_events`` request, every field checked."""
    sid = req.stream_id
    return EventFilter(
        stream_id=check_text("stream id", sid, max_stream_id_length, field_name="stream_id")
        if sid is not None
        else None,
        event_types=check_event_types(req.event_types),
        from_version=check_optional_number("from_version", req.from_version),
        to_version=check_optional_number("to_version", req.to_version),
        from_timestamp=check_time("from_timestamp", req.from_timestamp),
        to_timestamp=check_time("to_timestamp", req.to_timestamp),
        tenant_id=check_optional_text("tenant id", req.tenant_id, field_name="tenant_id"),
        correlation_id=check_optional_text("correlation id", req.correlation_id, field_name="correlation_id"),
        aggregate_id=check_optional_text("aggregate id", req.aggregate_id, field_name="aggregate_id"),
        aggregate_type=check_optional_text("aggregate type", req.aggregate_type, field_name="aggregate_type"),
    )


def check_count_mode(value: object) -> CountMode:
    """One of :data:`~eventsource.model.COUNT_MODES`, else :class:`ValidationError`."""
    if not isinstance(value, str) or value not in COUNT_MODES:
        msg = f"count must be one of {', '.join(COUNT_MODES)}, got {value!r}"
        raise ValidationError(msg, field="count")
    return value  # type: ignore[return-value]


def check_cursor(name: str, cursor: object, offset: int) -> None:
    """A keyset cursor comes instead of an offset: both at once is a :class:`ValidationError`."""
    if cursor is not None and offset:
        msg = f"{name} continues after a cursor: pass it with offset 0, got offset {offset}"
        raise ValidationError(msg, field=name)


def check_top_streams(value: object) -> int | None:
    """``None`` (every stream) or an int from 0 to :data:`MAX_NUMBER`, else :class:`ValidationError`."""
    return check_optional_number("top_streams", value)


def new_stream(sid: str, req: CreateStreamRequest, max_event_size: int) -> NewStream:
    """The checked :class:`NewStream` of a ``create_stream`` request for the (checked) stream id ``sid``."""
    return NewStream(
        stream_id=sid,
        name=check_optional_text("stream name", req.name, field_name="name"),
        aggregate_id=check_optional_text("aggregate id", req.aggregate_id, field_name="aggregate_id"),
        aggregate_type=check_optional_text("aggregate type", req.aggregate_type, field_name="aggregate_type"),
        metadata=plain_metadata(req.metadata, max_event_size),
    )

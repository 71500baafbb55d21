"""Records, requests and responses.

Two layers: what a **provider** sees (:class:`NewEvent` to write, :class:`RecordedEvent` read back,
:class:`NewSnapshot` / :class:`RecordedSnapshot`; payloads as opaque encoded ``bytes`` plus plain
envelope fields), and what a **user** sees (:class:`Event` and :class:`Snapshot` with decoded ``data`` /
``metadata``, and the seed's request/response objects in Python names).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.domain.events import DomainEvent

T = TypeVar("T")

MAX_NUMBER = 2**63 - 1
"""The largest version, position or count any store can hold (a signed 64-bit integer)."""
MAX_PAGE_LIMIT = 10_000
"""The most items one page of ``get_events`` or ``list_streams`` holds (``limit``)."""


class ExpectedVersion(IntEnum):
    """Symbolic expected versions for ``append``.

    An ``int >= 0`` means "the stream is exactly at this version" (0: no events yet).
    """

    ANY = -1
    """No check."""
    NO_STREAM = -2
    """The stream must not exist: never created explicitly and no events (or deleted)."""
    STREAM_EXISTS = -3
    """The stream must exist: created explicitly or holding at least one event."""


ANY = ExpectedVersion.ANY
NO_STREAM = ExpectedVersion.NO_STREAM
STREAM_EXISTS = ExpectedVersion.STREAM_EXISTS

Expected = int | ExpectedVersion

EventAt = tuple[int, str]
"""``(version, event_id)`` of one stored event: ``truncate_stream(if_holds=...)`` names the incarnation with it."""


class SortOrder(StrEnum):
    """Order of ``get_events`` results."""

    ASC = "asc"
    DESC = "desc"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh event/snapshot id (UUID4 string)."""
    return str(uuid.uuid4())


SHREDDED_KEY = "eventsource.shredded"
"""Metadata key of a redacted event (``shredded_events = "redact"``): the shredded scope."""


def redacted_scope(event: Event) -> str | None:
    """The shredded scope of an event redacted by ``shredded_events = "redact"``, else ``None``.

    Such an event has ``data=None`` and ``{SHREDDED_KEY: scope}`` as its whole metadata.
    """
    if event.data is not None or len(event.metadata) != 1:
        return None
    scope = event.metadata.get(SHREDDED_KEY)
    return scope if isinstance(scope, str) else None


# --------------------------------------------------------------------------- provider layer


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An encoded event on its way to a provider. The provider assigns version and position."""

    event_id: str
    event_type: str
    data: bytes
    metadata: bytes
    encoding: str
    timestamp: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None

    @property
    def size(self) -> int:
        """Bytes of payload (data + metadata) as stored."""
        return len(self.data) + len(self.metadata)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An encoded event as a provider stores and returns it."""

    event_id: str
    stream_id: str
    event_type: str
    version: int
    position: int
    data: bytes
    metadata: bytes
    encoding: str
    timestamp: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None

    @classmethod
    def from_new(cls, stream_id: str, version: int, position: int, ev: NewEvent) -> RecordedEvent:
        """Build the stored form of ``ev`` (helper for providers)."""
        return cls(
            event_id=ev.event_id,
            stream_id=stream_id,
            event_type=ev.event_type,
            version=version,
            position=position,
            data=ev.data,
            metadata=ev.metadata,
            encoding=ev.encoding,
            timestamp=ev.timestamp,
            correlation_id=ev.correlation_id,
            causation_id=ev.causation_id,
            user_id=ev.user_id,
            tenant_id=ev.tenant_id,
            aggregate_id=ev.aggregate_id,
            aggregate_type=ev.aggregate_type,
        )


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What a provider returns from ``append``: the versions and positions it assigned.

    For an idempotent retry (the batch's event ids are already in the stream) it returns the original
    result and ``duplicate=True``.
    """

    stream_id: str
    first_version: int
    last_version: int
    positions: tuple[int, ...]
    event_ids: tuple[str, ...]
    timestamp: datetime
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class NewSnapshot:
    """An encoded snapshot on its way to a provider."""

    snapshot_id: str
    stream_id: str
    version: int
    data: bytes
    metadata: bytes
    encoding: str
    created_at: datetime
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    position: int | None = None


RecordedSnapshot = NewSnapshot
"""Snapshots come back exactly as written."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Exact facts about one stream (the seed's ``StreamInfo``)."""

    stream_id: str
    version: int
    event_count: int
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    last_event_id: str | None = None
    first_version: int | None = None
    """Lowest version still stored (after truncation it is above 1); ``None`` while empty."""

    @classmethod
    def new(cls, stream: NewStream, at: datetime) -> StreamInfo:
        """The info of ``stream`` just created (explicitly or by its first append): version 0, no events."""
        return cls(
            stream_id=stream.stream_id,
            version=0,
            event_count=0,
            created_at=at,
            updated_at=at,
            name=stream.name,
            aggregate_id=stream.aggregate_id,
            aggregate_type=stream.aggregate_type,
            metadata=dict(stream.metadata),
        )


@dataclass(frozen=True, slots=True)
class NewStream:
    """Stream attributes for ``create_stream`` (and implicit creation)."""

    stream_id: str
    name: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters for ``query``. Providers push down what they can; ``None`` means no filter."""

    stream_id: str | None = None
    event_types: tuple[str, ...] | None = None
    from_version: int | None = None
    to_version: int | None = None
    from_timestamp: datetime | None = None
    to_timestamp: datetime | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    after_position: int | None = None
    """Keyset cursor of an ascending page: only events with ``position > after_position``."""
    before_position: int | None = None
    """Keyset cursor of a descending page: only events with ``position < before_position``."""

    def matches(self, ev: RecordedEvent) -> bool:
        """Whether ``ev`` passes every filter (the reference semantics providers must match)."""
        return (
            (self.stream_id is None or ev.stream_id == self.stream_id)
            and (self.after_position is None or ev.position > self.after_position)
            and (self.before_position is None or ev.position < self.before_position)
            and (self.event_types is None or ev.event_type in self.event_types)
            and (self.from_version is None or ev.version >= self.from_version)
            and (self.to_version is None or ev.version <= self.to_version)
            and (self.from_timestamp is None or ev.timestamp >= self.from_timestamp)
            and (self.to_timestamp is None or ev.timestamp <= self.to_timestamp)
            and (self.tenant_id is None or ev.tenant_id == self.tenant_id)
            and (self.correlation_id is None or ev.correlation_id == self.correlation_id)
            and (self.aggregate_id is None or ev.aggregate_id == self.aggregate_id)
            and (self.aggregate_type is None or ev.aggregate_type == self.aggregate_type)
        )


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One page of ``query`` results plus the total number of matches.

    ``total_count`` is exact unless ``total_exact`` is ``False`` (an estimate, asked for with ``count="estimate"``);
    ``None`` when the caller asked for no count (``count="none"``), unless the store has the exact figure for free.
    """

    events: list[RecordedEvent]
    total_count: int | None
    total_exact: bool = True
    held_back: bool = False
    """More matches follow the page that the store does not hand out yet (a transaction that may commit an
    event at a lower position is still running): the caller continues from the same cursor later."""


CountMode = Literal["exact", "estimate", "none"]
"""How ``get_events`` counts matches: ``"exact"`` (the seed's promise; its cost grows with the matches),
``"estimate"`` (exact where the store can count cheaply, else the planner's estimate), ``"none"`` (no count)."""
COUNT_MODES: tuple[str, ...] = ("exact", "estimate", "none")


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """The seed's stats fields for one provider."""

    total_events: int
    total_streams: int
    total_snapshots: int
    events_by_type: dict[str, int]
    events_by_stream: dict[str, int]
    storage_size: int | None
    last_event_at: datetime | None
    uptime_seconds: float
    provider: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    top_streams: int | None = None
    """The bound asked for: ``events_by_stream`` then holds at most this many streams, those with the most
    events (``None``: every stream). ``total_streams`` stays the exact number of streams."""
    estimated: tuple[str, ...] = ()
    """Names of the figures above that are estimates on this store (every other one is exact)."""


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """Result of a health check: ``healthy`` plus what is wrong, if anything."""

    healthy: bool
    provider: str = ""
    message: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """Describes a registered provider instance."""

    name: str
    kind: str
    url: str | None
    distribution: str | None
    version: str | None
    capabilities: dict[str, Any]
    is_default: bool = False


# --------------------------------------------------------------------------- user layer


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event (the seed's ``Event``)."""

    event_id: str
    stream_id: str
    event_type: str
    data: Any
    metadata: dict[str, Any]
    version: int
    position: int
    timestamp: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded snapshot (the seed's ``Snapshot``)."""

    snapshot_id: str
    stream_id: str
    version: int
    data: Any
    metadata: dict[str, Any]
    created_at: datetime
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    position: int | None = None


@dataclass(slots=True)
class CreateStreamRequest:
    """Arguments of ``create_stream``."""

    stream_id: str
    name: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None


@dataclass(slots=True)
class EventData:
    """One event to append (the per-event part of the seed's ``AppendEventRequest``)."""

    event_type: str
    data: Any
    metadata: dict[str, Any] | None = None
    event_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    timestamp: datetime | None = None


@dataclass(slots=True)
class AppendEventRequest:
    """Arguments of ``append_event``."""

    stream_id: str
    event_type: str
    data: Any
    metadata: dict[str, Any] | None = None
    expected_version: Expected = ANY
    event_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    timestamp: datetime | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class AppendEventResponse:
    """Result of ``append_event``."""

    event_id: str
    stream_id: str
    version: int
    position: int
    timestamp: datetime
    duplicate: bool = False
    snapshot_due: bool = False


@dataclass(slots=True)
class AppendEventsBatchRequest:
    """Arguments of ``append_events_batch``: events for one stream, written all-or-nothing.

    ``events`` (a list or tuple) may mix :class:`EventData`, dicts of its fields and
    :class:`~eventsource.domain.DomainEvent` instances.
    """

    stream_id: str
    events: Sequence[EventData | DomainEvent | dict[str, Any]]
    expected_version: Expected = ANY
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class AppendEventsBatchResponse:
    """Result of ``append_events_batch``."""

    stream_id: str
    event_ids: list[str]
    first_version: int
    last_version: int
    positions: list[int]
    timestamp: datetime
    duplicate: bool = False
    snapshot_due: bool = False


@dataclass(slots=True)
class GetEventsRequest:
    """Arguments of ``get_events``: every seed filter plus paging and sort order."""

    stream_id: str | None = None
    event_types: Sequence[str] | None = None
    from_version: int | None = None
    to_version: int | None = None
    from_timestamp: datetime | None = None
    to_timestamp: datetime | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    limit: int = 100
    offset: int = 0
    sort_order: SortOrder | str = SortOrder.ASC
    provider: str | None = None
    after_position: int | None = None
    count: CountMode = "exact"


@dataclass(frozen=True, slots=True)
class GetEventsResponse:
    """A page of events, the total number of matches and whether more follow."""

    events: list[Event]
    total_count: int | None
    has_more: bool
    limit: int
    offset: int
    next_cursor: int | None = None
    """Pass as ``after_position`` (same filters and sort order) for the next page; ``None`` on the last page."""
    total_exact: bool = True
    """Whether ``total_count`` is exact (``False``: an estimate, or ``None`` for ``count="none"`` when not free)."""


@dataclass(slots=True)
class CreateSnapshotRequest:
    """Arguments of ``create_snapshot``; ``version`` defaults to the stream's current version."""

    stream_id: str
    data: Any
    version: int | None = None
    aggregate_id: str | None = None
    aggregate_type: str | None = None
    metadata: dict[str, Any] | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class CreateSnapshotResponse:
    """Result of ``create_snapshot``."""

    snapshot_id: str
    stream_id: str
    version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ListStreamsResponse:
    """A page of streams."""

    streams: list[StreamInfo]
    total_count: int
    has_more: bool
    next_cursor: str | None = None
    """Pass as ``after`` for the next page; ``None`` on the last page."""


# The records' fast constructors and the plain-row read path live in :mod:`eventsource.rows`; re-exported here
# (after the records they build are defined) so ``from eventsource.model import ...`` keeps working.
from eventsource.rows import RECORD_FIELDS as RECORD_FIELDS  # noqa: E402, PLC0414 - re-export
from eventsource.rows import EventRow as EventRow  # noqa: E402, PLC0414 - re-export
from eventsource.rows import RowPage as RowPage  # noqa: E402, PLC0414 - re-export
from eventsource.rows import make_append_result as make_append_result  # noqa: E402, PLC0414 - re-export
from eventsource.rows import make_event as make_event  # noqa: E402, PLC0414 - re-export
from eventsource.rows import make_recorded_event as make_recorded_event  # noqa: E402, PLC0414 - re-export
from eventsource.rows import positional_constructor as positional_constructor  # noqa: E402, PLC0414 - re-export

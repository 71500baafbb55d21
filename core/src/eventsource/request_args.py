"""The keyword form of each request object, as a :class:`~typing.TypedDict` (``**kwargs: Unpack[...]``).

``es.append_event(stream_id="s", event_type="E", data={})`` takes the fields of
:class:`~eventsource.AppendEventRequest` as keywords; these dicts list them, field for field, so mypy and an
IDE check the keyword form as strictly as the request object (a key is required when its field has no
default). Nothing uses them at run time: the manager builds the request object and validates it.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Required, TypedDict

from eventsource.domain.events import DomainEvent
from eventsource.model import CountMode, EventData, Expected, SortOrder


class CreateStreamArgs(TypedDict, total=False):
    """The fields of :class:`~eventsource.CreateStreamRequest`, as keywords of ``create_stream``."""

    stream_id: Required[str]
    name: str | None
    aggregate_id: str | None
    aggregate_type: str | None
    metadata: dict[str, Any]
    provider: str | None


class AppendEventArgs(TypedDict, total=False):
    """The fields of :class:`~eventsource.AppendEventRequest`, as keywords of ``append_event``."""

    stream_id: Required[str]
    event_type: Required[str]
    data: Required[Any]
    metadata: dict[str, Any] | None
    expected_version: Expected
    event_id: str | None
    correlation_id: str | None
    causation_id: str | None
    user_id: str | None
    tenant_id: str | None
    aggregate_id: str | None
    aggregate_type: str | None
    timestamp: datetime | None
    provider: str | None


class AppendEventsBatchArgs(TypedDict, total=False):
    """The fields of :class:`~eventsource.AppendEventsBatchRequest`, as keywords of ``append_events_batch``."""

    stream_id: Required[str]
    events: Required[Sequence[EventData | DomainEvent | dict[str, Any]]]
    expected_version: Expected
    provider: str | None


class GetEventsArgs(TypedDict, total=False):
    """The fields of :class:`~eventsource.GetEventsRequest`, as keywords of ``get_events`` (all optional)."""

    stream_id: str | None
    event_types: Sequence[str] | None
    from_version: int | None
    to_version: int | None
    from_timestamp: datetime | None
    to_timestamp: datetime | None
    tenant_id: str | None
    correlation_id: str | None
    aggregate_id: str | None
    aggregate_type: str | None
    limit: int
    offset: int
    sort_order: SortOrder | str
    provider: str | None
    after_position: int | None
    count: CountMode


class CreateSnapshotArgs(TypedDict, total=False):
    """The fields of :class:`~eventsource.CreateSnapshotRequest`, as keywords of ``create_snapshot``."""

    stream_id: Required[str]
    data: Required[Any]
    version: int | None
    aggregate_id: str | None
    aggregate_type: str | None
    metadata: dict[str, Any] | None
    provider: str | None

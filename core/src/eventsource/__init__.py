"""eventsource: one async event-sourcing API over SQLite, PostgreSQL, Kafka and NATS JetStream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    DecryptionError,
    DuplicateEventError,
    ErrorType,
    EventNotFoundError,
    EventSourceError,
    KeyProviderError,
    KeyShreddedError,
    KeysNotConfiguredError,
    NotFoundError,
    PluginLoadError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    SchemaVersionError,
    SnapshotNotFoundError,
    StoreNotFoundError,
    StreamExistsError,
    StreamNotFoundError,
    UnknownKeyError,
    UnsupportedOperationError,
    UpcastError,
    ValidationError,
)
from eventsource.hookspecs import hookimpl
from eventsource.model import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendEventRequest,
    AppendEventsBatchRequest,
    CreateSnapshotRequest,
    CreateStreamRequest,
    Event,
    EventData,
    ExpectedVersion,
    GetEventsRequest,
    Snapshot,
    SortOrder,
    StreamInfo,
)

if TYPE_CHECKING:  # imported lazily at run time (below); named here so type checkers see the real classes
    from eventsource.config import ManagerConfig
    from eventsource.manager import EventSourcingManager
    from eventsource.sync import SyncEventSourcingManager

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendEventRequest",
    "AppendEventsBatchRequest",
    "ConcurrencyError",
    "ConfigurationError",
    "ConflictError",
    "CreateSnapshotRequest",
    "CreateStreamRequest",
    "DecryptionError",
    "DuplicateEventError",
    "ErrorType",
    "Event",
    "EventData",
    "EventNotFoundError",
    "EventSourceError",
    "EventSourcingManager",
    "ExpectedVersion",
    "GetEventsRequest",
    "KeyProviderError",
    "KeyShreddedError",
    "KeysNotConfiguredError",
    "ManagerConfig",
    "NotFoundError",
    "PluginLoadError",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "SchemaVersionError",
    "Snapshot",
    "SnapshotNotFoundError",
    "SortOrder",
    "StoreNotFoundError",
    "StreamExistsError",
    "StreamInfo",
    "StreamNotFoundError",
    "SyncEventSourcingManager",
    "UnknownKeyError",
    "UnsupportedOperationError",
    "UpcastError",
    "ValidationError",
    "hookimpl",
]


def __getattr__(name: str) -> object:  # lazy: importing eventsource loads no manager machinery
    if name == "EventSourcingManager":
        from eventsource.manager import EventSourcingManager

        return EventSourcingManager
    if name == "SyncEventSourcingManager":
        from eventsource.sync import SyncEventSourcingManager

        return SyncEventSourcingManager
    if name == "ManagerConfig":
        from eventsource.config import ManagerConfig

        return ManagerConfig
    raise AttributeError(name)

"""The domain model: event classes, upcasting chains, aggregates and repositories over the manager.

:class:`DomainEvent` declares an event as a frozen dataclass with a type name, schema version and an
optional marshmallow schema; :class:`Upcasters` brings stored events and snapshots to the newest schema
version on every read; :class:`Aggregate` applies events by class; :class:`Repository` (and
:class:`SyncRepository`) loads an aggregate from its latest snapshot plus the tail of its stream, saves
its new events with the loaded version as the expected version, snapshots it every
``snapshot_threshold`` events, and retries an update on a concurrency conflict; :func:`rewrite_stream`
brings a stream's stored events to the newest schema version in place, as an explicit, reported run.
"""

from __future__ import annotations

from eventsource.domain.aggregate import Aggregate, applies
from eventsource.domain.events import DomainEvent, EventClasses
from eventsource.domain.repository import Repository, SyncRepository
from eventsource.domain.rewrite import RewriteReport, rewrite_stream, rewrite_stream_sync
from eventsource.domain.upcasting import SCHEMA_KEY, Upcasters

__all__ = [
    "SCHEMA_KEY",
    "Aggregate",
    "DomainEvent",
    "EventClasses",
    "Repository",
    "RewriteReport",
    "SyncRepository",
    "Upcasters",
    "applies",
    "rewrite_stream",
    "rewrite_stream_sync",
]

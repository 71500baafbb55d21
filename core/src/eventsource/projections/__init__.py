"""Projections: handlers per event type applied from subscriptions into a sink, with their checkpoint.

:class:`Projection` declares the handlers, :class:`ProjectionRunner` runs many of them, and a sink decides the
guarantee: :class:`SqliteSink` and :class:`~eventsource.projections.postgres.PostgresSink` commit the
checkpoint in the handlers' transaction (exactly once); :class:`CheckpointStoreSink` stores it after them
(at least once). ``docs/projections.md`` has the guarantees, the error policy, rebuilds and leases.
"""

from __future__ import annotations

from eventsource.projections.leasing import lease_key
from eventsource.projections.parking import PARKED_TYPE
from eventsource.projections.projection import (
    CheckpointMovedError,
    ErrorPolicy,
    Projection,
    ProjectionError,
    ProjectionStoppedError,
    SinkUnavailableError,
)
from eventsource.projections.runner import ProjectionRunner, ProjectionState
from eventsource.projections.sinks import CheckpointStoreSink, Sink, SqliteSink

__all__ = [
    "PARKED_TYPE",
    "CheckpointMovedError",
    "CheckpointStoreSink",
    "ErrorPolicy",
    "Projection",
    "ProjectionError",
    "ProjectionRunner",
    "ProjectionState",
    "ProjectionStoppedError",
    "Sink",
    "SinkUnavailableError",
    "SqliteSink",
    "lease_key",
]

"""Subscriptions: catch-up then live delivery of a store's events, with checkpoints.

:class:`Subscription` (built by ``EventSourcingManager.subscribe``) is the async iterator;
:class:`ChangeSignal` is the in-process wake-up stores use; checkpoints live in :mod:`eventsource.checkpoints`.
``docs/subscriptions.md`` describes the API, the mechanism on each store and the guarantees.
"""

from __future__ import annotations

from eventsource.subscriptions.signal import ChangeSignal
from eventsource.subscriptions.subscription import (
    CheckpointAheadError,
    CheckpointFilterError,
    EventDecodeError,
    SkippedEvent,
    Subscription,
    Target,
)

__all__ = [
    "ChangeSignal",
    "CheckpointAheadError",
    "CheckpointFilterError",
    "EventDecodeError",
    "SkippedEvent",
    "Subscription",
    "Target",
]

"""Checkpoints: where a named subscription got to in one source store.

A :class:`Checkpoint` names the subscription, the source store and a position (the global position of the
last event handled, or its stream version for a one-stream subscription, as ``scope`` says). A
:class:`CheckpointStore` keeps them: ``get``/``put``/``delete`` by (subscription name, source). Stores are a
plugin kind, registered by ``eventsource_register_checkpoint_stores`` and picked by URL scheme; the built-ins
are ``memory://`` and ``sqlite:///file.db``, the postgres plugin adds ``postgresql://``.
"""

from __future__ import annotations

from eventsource.checkpoints.base import Checkpoint, CheckpointStore
from eventsource.checkpoints.memory import MemoryCheckpointStore
from eventsource.checkpoints.sqlite import SqliteCheckpointStore

__all__ = ["Checkpoint", "CheckpointStore", "MemoryCheckpointStore", "SqliteCheckpointStore"]

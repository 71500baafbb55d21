"""Entry point of the ``eventsource-nats`` distribution: registers the NATS JetStream provider, checkpoints, leases.

nats-py is imported only when a NATS provider is built, not when the plugin host starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import eventsource

if TYPE_CHECKING:
    from eventsource.registry import CheckpointRegistry, LeaseRegistry, ProviderRegistry


@eventsource.hookimpl
def eventsource_register_providers(registry: ProviderRegistry) -> None:
    """Register :class:`~eventsource_nats.provider.NatsProvider` for ``nats://`` and ``nats+tls://`` URLs."""
    from eventsource_nats.provider import NatsProvider

    registry.add(NatsProvider, schemes=("nats", "nats+tls"))


@eventsource.hookimpl
def eventsource_register_checkpoint_stores(registry: CheckpointRegistry) -> None:
    """Register :class:`~eventsource_nats.checkpoints.NatsCheckpointStore` (a key-value bucket)."""
    from eventsource_nats.checkpoints import NatsCheckpointStore

    registry.add(NatsCheckpointStore, schemes=("nats", "nats+tls"))


@eventsource.hookimpl
def eventsource_register_leases(registry: LeaseRegistry) -> None:
    """Register :class:`~eventsource_nats.lease.NatsKvLease` (a key-value entry that expires unless refreshed)."""
    from eventsource_nats.lease import NatsKvLease

    registry.add(NatsKvLease, schemes=("nats", "nats+tls"))

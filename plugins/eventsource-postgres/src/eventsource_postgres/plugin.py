"""Entry point of the ``eventsource-postgres`` distribution: registers the provider, the lease and checkpoints.

psycopg is imported only when a provider or lease is used, not when the plugin host starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import eventsource

if TYPE_CHECKING:
    from eventsource.registry import CheckpointRegistry, LeaseRegistry, ProviderRegistry


@eventsource.hookimpl
def eventsource_register_providers(registry: ProviderRegistry) -> None:
    """Register :class:`~eventsource_postgres.provider.PostgresProvider` for ``postgresql://`` and ``postgres://``."""
    from eventsource_postgres.provider import PostgresProvider
    from eventsource_postgres.settings import SCHEMES

    registry.add(PostgresProvider, schemes=SCHEMES)


@eventsource.hookimpl
def eventsource_register_leases(registry: LeaseRegistry) -> None:
    """Register :class:`~eventsource_postgres.lease.PostgresAdvisoryLease` (session advisory locks)."""
    from eventsource_postgres.lease import PostgresAdvisoryLease
    from eventsource_postgres.settings import SCHEMES

    registry.add(PostgresAdvisoryLease, schemes=SCHEMES)


@eventsource.hookimpl
def eventsource_register_checkpoint_stores(registry: CheckpointRegistry) -> None:
    """Register :class:`~eventsource_postgres.checkpoints.PostgresCheckpointStore` (a table of checkpoints)."""
    from eventsource_postgres.checkpoints import PostgresCheckpointStore
    from eventsource_postgres.settings import SCHEMES

    registry.add(PostgresCheckpointStore, schemes=SCHEMES)

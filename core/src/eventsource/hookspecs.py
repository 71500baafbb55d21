"""pluggy hook specifications.

Every hook runs at start-up (when a :class:`~eventsource.plugins.PluginHost` is built, or when a plugin
registers later: the registration hooks are ``historic``); none runs per event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from eventsource.codecs.keys import KeyProvider
    from eventsource.config import ManagerConfig
    from eventsource.domain.upcasting import Upcasters
    from eventsource.registry import (
        CheckpointRegistry,
        CodecRegistry,
        LeaseRegistry,
        ProviderRegistry,
        RetentionRegistry,
    )

NAME = "eventsource"
"""pluggy project name, entry-point group and hook prefix."""

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


@hookspec(historic=True)
def eventsource_register_providers(registry: ProviderRegistry) -> None:
    """Register provider classes.

    Call ``registry.add(ProviderClass, schemes=("myscheme",))`` once per store type. A name or URL scheme
    that is already registered raises :class:`~eventsource.errors.PluginLoadError`.

    :param registry: the host's provider registry.
    :returns: nothing; results are ignored.

    .. versionadded:: 0.1
    """


@hookspec(historic=True)
def eventsource_register_codecs(registry: CodecRegistry) -> None:
    """Register serializers, compressors and ciphers.

    Call ``registry.add_serializer(obj)``, ``registry.add_compressor(obj)`` or ``registry.add_cipher(obj)``;
    names are recorded in each payload's encoding descriptor, so a name must never change meaning.

    :param registry: the host's codec registry.
    :returns: nothing; results are ignored.

    .. versionadded:: 0.1
    """


@hookspec(historic=True)
def eventsource_register_retention_policies(registry: RetentionRegistry) -> None:
    """Register retention policy classes.

    Call ``registry.add(PolicyClass)``; policies are built from configuration by name.

    :param registry: the host's retention-policy registry.
    :returns: nothing; results are ignored.

    .. versionadded:: 0.1
    """


@hookspec(historic=True)
def eventsource_register_leases(registry: LeaseRegistry) -> None:
    """Register distributed lease classes (per-stream locks for stores without conditional append).

    Call ``registry.add(LeaseClass, schemes=("postgresql",))``.

    :param registry: the host's lease registry.
    :returns: nothing; results are ignored.

    .. versionadded:: 0.1
    """


@hookspec(historic=True)
def eventsource_register_checkpoint_stores(registry: CheckpointRegistry) -> None:
    """Register checkpoint store classes (where subscriptions record how far they got).

    Call ``registry.add(StoreClass, schemes=("postgresql",))``; the class subclasses
    :class:`~eventsource.checkpoints.CheckpointStore` and is built from a URL of one of its schemes.

    :param registry: the host's checkpoint store registry.
    :returns: nothing; results are ignored.

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def eventsource_key_provider(config: ManagerConfig) -> KeyProvider | None:
    """Supply the key provider of a manager (keys per tenant or per stream from a KMS, Vault...).

    Called once when an :class:`~eventsource.manager.EventSourcingManager` is built, never per event.
    Return ``None`` to let the next plugin (and finally the built-in key ring from
    ``encryption_keys`` / ``encryption_key_store``) answer. A key provider passed to the manager
    directly (``EventSourcingManager(..., key_provider=...)``) wins over this hook.

    Stops at first non-None result.

    :param config: the manager's configuration (``encryption_scope`` says how payloads are scoped).
    :returns: a :class:`~eventsource.codecs.keys.KeyProvider`, or ``None``.

    .. versionadded:: 0.1
    """


@hookspec(historic=True)
def eventsource_register_upcasters(registry: Upcasters) -> None:
    """Register event and snapshot upcasters (schema migrations a plugin ships).

    Call ``registry.add(event_type, from_version, fn, to_type=None)`` (``fn(data)`` returns the data at
    ``from_version + 1``), ``registry.rename(old_type, new_type)`` or
    ``registry.add_snapshot(aggregate_type, from_version, fn)``. A second upcaster for the same
    ``(type, from_version)`` raises :class:`~eventsource.errors.ConfigurationError`. Each manager copies
    the host's registrations when it is built; upcasters run on every read, never on write.

    :param registry: the host's :class:`~eventsource.domain.upcasting.Upcasters`.
    :returns: nothing; results are ignored.

    .. versionadded:: 0.2
    """

"""Which key provider a manager's event codec uses: the one passed in, a plugin's, or a ring from configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.errors import ConfigurationError

if TYPE_CHECKING:
    from eventsource.codecs.keys import KeyProvider
    from eventsource.config import ManagerConfig
    from eventsource.plugins import PluginHost


def build_key_provider(config: ManagerConfig, host: PluginHost, explicit: KeyProvider | None) -> KeyProvider | None:
    """Explicit provider, else the ``eventsource_key_provider`` hook, else the ring from configuration."""
    if explicit is not None:
        return explicit
    hooked = host.key_provider(config)
    if hooked is not None:
        return hooked
    if not config.encryption_keys:
        if config.encryption:
            msg = (
                "encryption is on but no key is configured (encryption_keys, a key_provider, or a key-provider plugin)"
            )
            raise ConfigurationError(msg, field="encryption_keys")
        return None
    from eventsource.codecs.keys import ScopedKeyStore, StaticKeyRing

    ring = StaticKeyRing(config.encryption_keys, config.active_key_id)
    if config.encryption_scope == "global" and config.encryption_key_store is None:
        return ring
    # a key store configured under "global" still opens what was sealed with scoped keys before the switch
    if config.encryption_key_store is None:
        msg = (
            f"encryption_scope={config.encryption_scope!r} needs a key store for per-scope keys: set "
            "encryption_key_store to a file path (or 'memory' for throw-away stores), or install a key-provider plugin"
        )
        raise ConfigurationError(msg, field="encryption_key_store")
    path = None if config.encryption_key_store == "memory" else config.encryption_key_store
    return ScopedKeyStore(ring, path)

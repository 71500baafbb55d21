"""NATS JetStream store for eventsource (distribution ``eventsource-nats``).

The provider class lives in :mod:`eventsource_nats.provider`; it is imported lazily so that the plugin
host can start without nats-py being imported.
"""

from __future__ import annotations

__all__ = ["NatsProvider"]


def __getattr__(name: str) -> object:
    if name == "NatsProvider":
        from eventsource_nats.provider import NatsProvider

        return NatsProvider
    raise AttributeError(name)

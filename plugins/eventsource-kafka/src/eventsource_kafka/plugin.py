"""Entry point of the ``eventsource-kafka`` distribution: registers the Kafka provider.

kafka-python is imported only when a Kafka provider is built, not when the plugin host starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import eventsource

if TYPE_CHECKING:
    from eventsource.registry import ProviderRegistry


@eventsource.hookimpl
def eventsource_register_providers(registry: ProviderRegistry) -> None:
    """Register :class:`~eventsource_kafka.provider.KafkaProvider` for ``kafka://`` URLs."""
    from eventsource_kafka.provider import KafkaProvider

    registry.add(KafkaProvider, schemes=("kafka",))

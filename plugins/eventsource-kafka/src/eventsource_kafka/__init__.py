"""Kafka store for eventsource: a topic per stream on kafka-python (see the package README)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["KafkaProvider"]

if TYPE_CHECKING:
    from eventsource_kafka.provider import KafkaProvider


def __getattr__(name: str) -> object:
    if name == "KafkaProvider":
        from eventsource_kafka.provider import KafkaProvider

        return KafkaProvider
    raise AttributeError(name)

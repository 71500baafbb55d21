"""The kit's ProjectionSuite on Kafka (``global_order=per_stream``: the projection follows one stream, by
version): a runner SIGKILLed 20 times applies every event exactly once to a SQLite sink, and a SQLite file
lease hands the projection over."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.testing.projections import ProjectionSuite

if TYPE_CHECKING:
    from eventsource_kafka import KafkaProvider


class TestKafkaProjections(ProjectionSuite):
    @pytest.fixture
    def provider(self, kafka_provider: KafkaProvider) -> KafkaProvider:
        return kafka_provider

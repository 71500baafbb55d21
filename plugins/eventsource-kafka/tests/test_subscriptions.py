"""The kit's SubscriptionSuite on Kafka (topic per stream, ``global_order=per_stream``): one-stream
subscriptions run, polling the stream's pages by version; all-streams ones are skipped naming the capability
(``subscribe`` raises ``UnsupportedOperationError`` there)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.testing.subscriptions import SubscriptionSuite

if TYPE_CHECKING:
    from eventsource_kafka import KafkaProvider


class TestKafkaSubscriptions(SubscriptionSuite):
    @pytest.fixture
    def provider(self, kafka_provider: KafkaProvider) -> KafkaProvider:
        return kafka_provider

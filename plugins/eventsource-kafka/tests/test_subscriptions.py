"""The kit's SubscriptionSuite on Kafka (topic per stream, ``global_order=per_stream``): one-stream
subscriptions run, polling the stream's pages by version; all-streams ones are skipped naming the capability
(``subscribe`` raises ``UnsupportedOperationError`` there)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.testing.subscriptions import SubscriptionSuite
from eventsource_kafka import KafkaProvider

from .test_provider import drop_namespace

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestKafkaSubscriptions(SubscriptionSuite):
    @pytest.fixture
    async def provider(self, kafka_url: str) -> AsyncIterator[KafkaProvider]:
        p = KafkaProvider(kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:12]}", request_timeout=60.0)
        await p.connect()
        try:
            yield p
        finally:
            await p.connect()  # a test closes it under a live subscription; reopen to drop the topics
            await drop_namespace(p)
            await p.close()

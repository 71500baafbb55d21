"""The kit's ProjectionSuite on Kafka (``global_order=per_stream``: the projection follows one stream, by
version): a runner SIGKILLed 20 times applies every event exactly once to a SQLite sink, and a SQLite file
lease hands the projection over."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.testing.projections import ProjectionSuite
from eventsource_kafka import KafkaProvider

from .test_provider import drop_namespace

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestKafkaProjections(ProjectionSuite):
    @pytest.fixture
    async def provider(self, kafka_url: str) -> AsyncIterator[KafkaProvider]:
        p = KafkaProvider(kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:12]}", request_timeout=60.0)
        await p.connect()
        try:
            yield p
        finally:
            await drop_namespace(p)
            await p.close()

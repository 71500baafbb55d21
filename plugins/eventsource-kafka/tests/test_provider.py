"""The conformance kit on the Kafka provider (single writer per stream, no lease)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.testing import DomainSuite, ProviderSuite, RetentionSuite, RewriteSuite
from eventsource_kafka.provider import KafkaProvider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


async def drop_namespace(p: KafkaProvider) -> None:
    """Delete every topic of the provider's prefix (streams, metadata, snapshots)."""
    metas = await p._views.meta()
    for meta in list(metas.values()):
        await p.io.delete_topic(meta["topic"])
    await p.io.delete_topic(p._conn.meta_topic)
    await p.io.delete_topic(p._conn.snap_topic)


class TestKafkaProvider(ProviderSuite):
    """Every rule of the contract, on a fresh topic prefix per test."""

    @pytest.fixture
    async def provider(self, kafka_url: str) -> AsyncIterator[KafkaProvider]:
        p = KafkaProvider(kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:12]}", request_timeout=60.0)
        await p.connect()
        try:
            yield p
        finally:
            await drop_namespace(p)
            await p.close()


class TestKafkaRetention(RetentionSuite):
    """Retention policies on a fresh topic prefix per test."""

    provider = TestKafkaProvider.provider


class TestKafkaDomain(DomainSuite):
    """Event classes, upcasting chains and repositories on a fresh topic prefix per test."""

    provider = TestKafkaProvider.provider


class TestKafkaRewrite(RewriteSuite):
    """A topic is an append-only log: the offline rewrite refuses, declared."""

    provider = TestKafkaProvider.provider

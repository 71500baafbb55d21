"""The conformance kit on the Kafka provider (single writer per stream, no lease)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.testing import AbsentStore, DomainSuite, ProviderSuite, RetentionSuite, RewriteSuite

if TYPE_CHECKING:
    from eventsource_kafka.provider import KafkaProvider


class TestKafkaProvider(ProviderSuite):
    """Every rule of the contract, on a fresh topic prefix per test."""

    @pytest.fixture
    def provider(self, kafka_provider: KafkaProvider) -> KafkaProvider:
        return kafka_provider

    @pytest.fixture
    def absent_store(self, absent_kafka: AbsentStore) -> AbsentStore:
        return absent_kafka


class TestKafkaRetention(RetentionSuite):
    """Retention policies on a fresh topic prefix per test."""

    provider = TestKafkaProvider.provider


class TestKafkaDomain(DomainSuite):
    """Event classes, upcasting chains and repositories on a fresh topic prefix per test."""

    provider = TestKafkaProvider.provider


class TestKafkaRewrite(RewriteSuite):
    """A topic is an append-only log: the offline rewrite refuses, declared."""

    provider = TestKafkaProvider.provider

"""Checkpoints of Kafka stores on one cluster: each topic prefix is its own source."""

from __future__ import annotations

import pytest
from eventsource.testing.identity import check_own_checkpoints
from eventsource_kafka.provider import KafkaProvider

from .conftest import fresh_provider


async def test_two_stores_on_one_cluster_keep_their_own_checkpoints(
    kafka_provider: KafkaProvider, kafka_url: str
) -> None:
    async with fresh_provider(kafka_url) as other:  # per-stream order: the kit's check runs one-stream subscriptions
        await check_own_checkpoints(kafka_provider, other)


def test_the_default_prefix_keeps_the_plain_url_as_its_source() -> None:
    p = KafkaProvider("kafka://127.0.0.1:9092")  # never connected: the identity is the settings'
    assert p.checkpoint_source == p.display_url
    other = KafkaProvider("kafka://127.0.0.1:9092", topic_prefix="x")
    assert other.checkpoint_source == f"{p.display_url}#topic_prefix=x"


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("kafka://127.0.0.1:9092", "kafka://127.0.0.1:9092"),
        ("kafka://app:s3cret@b1:9092,b2:9092", "kafka://app:***@b1:9092,b2:9092"),
    ],
)
def test_the_source_is_pinned_literally(url: str, source: str) -> None:
    # literal, not "== display_url": a change to the masking would change the source, and every checkpoint
    # stored under the old one would be orphaned (subscriptions restart from the beginning)
    assert KafkaProvider(url).checkpoint_source == source
    assert KafkaProvider(url, topic_prefix="x").checkpoint_source == f"{source}#topic_prefix=x"

"""The durability audit on Kafka: the producer's ``acks``, each topic's replicas and configs, read from the broker.

Tansu (one broker) answers DescribeConfigs with only the configs set on a topic, so ``min.insync.replicas``
is declared unread there; the grouping rules are checked on described topics as a broker returns them.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.testing import DurabilitySuite
from eventsource_kafka.monitoring import STORAGE_UNREAD, Audit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource_kafka.provider import KafkaProvider


def _swap_producer(p: KafkaProvider, **config: Any) -> None:
    """Replace the provider's producer by one with ``config`` (what an application's own producer could be)."""
    from kafka import KafkaProducer

    old, p.io._producer = p.io._producer, KafkaProducer(**p.io.config, **config)
    old.close(timeout=5)


class TestKafkaDurability(DurabilitySuite):
    """``acks=all`` (the provider's) is healthy; an ``acks=1`` producer makes the store degraded."""

    @pytest.fixture
    def provider(self, kafka_provider: KafkaProvider) -> KafkaProvider:
        return kafka_provider

    @pytest.fixture
    async def unsafe(self, provider: KafkaProvider) -> AsyncIterator[tuple[KafkaProvider, str]]:
        await provider.io.run("swapping the producer", lambda: _swap_producer(provider, acks=1))
        yield provider, "acks"


async def test_every_stream_topic_is_audited(kafka_provider: KafkaProvider) -> None:
    """Stream topics are described with the store's own (a one-broker cluster: a note, not a risk)."""
    from eventsource.model import ANY, NewEvent, utcnow

    p = kafka_provider
    await p.append("audited", [NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())], ANY)
    h = await DurabilitySuite.health_of(p)
    audit = Audit(brokers=1)
    await p._monitor.audit(audit)
    assert h.details["status"] == "healthy", h.message
    assert any("replication factor 1 on a single broker" in n for n in h.details["durability_notes"])
    assert audit.notes == h.details["durability_notes"]
    assert h.details["durability_unread"][-1] == STORAGE_UNREAD
    for what in h.details["durability_unread"][:-1]:
        assert "min.insync.replicas" in what


def _topic(name: str, replicas: int) -> dict[str, Any]:
    return {"name": name, "partitions": [{"partition_index": 0, "replica_nodes": list(range(replicas))}]}


def _cfg(**values: str) -> dict[str, Any]:
    return {k.replace("_", "."): {"value": v} for k, v in values.items()}


def test_replication_and_insync_rules_on_a_three_broker_cluster() -> None:
    a = Audit(brokers=3)
    a.producer(-1)
    a.topics(
        [_topic("one", 1), _topic("low", 3), _topic("ok", 3), _topic("unclean", 3)],
        {
            "one": _cfg(min_insync_replicas="1"),
            "low": _cfg(min_insync_replicas="1"),
            "ok": _cfg(min_insync_replicas="2"),
            "unclean": _cfg(min_insync_replicas="2", unclean_leader_election_enable="true"),
        },
    )
    assert [(r["setting"], r["value"], r["scope"]) for r in a.risks] == [
        ("replication_factor", "1", "topics one"),
        ("min.insync.replicas", "1", "topics low"),
        ("unclean.leader.election.enable", "true", "topics unclean"),
    ]
    assert (a.notes, a.unread) == ([], [STORAGE_UNREAD])
    single = Audit(brokers=1)
    single.producer(1)
    single.topics([_topic("one", 1)], {})
    assert [r["setting"] for r in single.risks] == ["acks"]
    assert len(single.notes) == 1
    assert len(single.unread) == 2

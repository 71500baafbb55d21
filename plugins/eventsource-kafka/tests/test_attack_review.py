"""Attacker review of the Kafka provider: data loss and silent wrong results, each shown on a real broker.

A test marked ``xfail(strict=True)`` shows a defect left open (its reason names the fix it needs); the
others failed before the fix that follows them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from eventsource.model import ANY, NewEvent, utcnow
from eventsource_kafka.provider import KafkaProvider

from .conftest import Proc, drop_namespace


def ev() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


async def test_two_clusters_sharing_a_cluster_id_never_share_one_process_state(kafka_url: str) -> None:
    """One process, a store on each of two clusters with the same topic prefix (a copy between clusters).

    Every Tansu broker answers cluster id ``tansu_cluster``, as do Kafka clusters formatted with the
    same ``CLUSTER_ID`` (one docker-compose file for two environments). The process-wide state was keyed
    by cluster id and prefix only, so the store on cluster B used the tail it had read from cluster A:
    an append to B was acknowledged as version 6 after B's version 1, and no reader of B ever saw it.
    """
    from eventsource_kafka.tansu import start_tansu

    other = start_tansu()
    prefix = f"x{uuid.uuid4().hex[:12]}"
    a = b = None
    on_a = KafkaProvider(kafka_url, topic_prefix=prefix, request_timeout=10.0)
    on_b = KafkaProvider(other.url, topic_prefix=prefix, request_timeout=10.0)
    try:
        a = await Proc.start({"url": kafka_url, "topic_prefix": prefix, "request_timeout": 10.0})
        b = await Proc.start({"url": other.url, "topic_prefix": prefix, "request_timeout": 10.0})
        assert "ok" in await a(op="append", stream="s", ids=ids(5), expected="ANY")  # on A: versions 1-5
        assert "ok" in await b(op="append", stream="s", ids=ids(1), expected="ANY")  # on B: version 1
        await on_a.connect()
        await on_b.connect()
        info = await on_a.get_stream_info("s")
        assert info is not None
        assert info.version == 5
        x = ev()
        r = await asyncio.wait_for(on_b.append("s", [x], ANY), 60)
        assert r.first_version == 2, f"cluster B holds version 1, the append was acknowledged as {r.first_version}"
        stored: Any = (await b(op="read", stream="s"))["ok"]
        assert [v for v, _ in stored] == [1, 2]
        assert stored[1][1] == x.event_id
    finally:
        for proc in (a, b):
            if proc is not None:
                await proc.stop()
        await on_a.close()
        await on_b.close()
        cleanup = KafkaProvider(kafka_url, topic_prefix=prefix, request_timeout=10.0)
        await cleanup.connect()
        await drop_namespace(cleanup)
        await cleanup.close()
        other.stop()


async def test_a_delete_that_fails_after_its_delete_record_leaves_no_snapshot_to_the_next_stream(
    kafka_provider: KafkaProvider,
) -> None:
    """``delete_stream`` whose topic deletion fails (a broker with ``delete.topic.enable=false`` answers
    TOPIC_DELETION_DISABLED; an admin timeout) after the delete record is written.

    The stream is gone for every reader (a retry of the delete raises StreamNotFoundError), but its
    snapshots were tombstoned only after the topic deletion, so they never were: the stream created
    again under that id got the old stream's snapshot at version 5 while it held 2 events, and an
    aggregate loaded from it would start from the deleted stream's state.
    """
    from eventsource.errors import ProviderError, StreamNotFoundError
    from eventsource.model import NewSnapshot

    p = kafka_provider
    r = await p.append("s", [ev() for _ in range(5)], ANY)
    await p.save_snapshot(
        NewSnapshot(str(uuid.uuid4()), "s", 5, b"{}", b"", "json", utcnow(), position=r.positions[-1])
    )
    assert (await p.get_snapshot("s")) is not None
    doomed = p._conn.ns.meta["s"]["topic"]
    io = p.io
    real = io.delete_topic

    async def refused(topic: str) -> None:
        if topic == doomed:
            msg = f"deleting topic {topic}: TopicDeletionDisabledError"
            raise ProviderError(msg)
        await real(topic)

    io.delete_topic = refused  # type: ignore[method-assign]
    try:
        with pytest.raises(ProviderError):
            await p.delete_stream("s")
        with pytest.raises(StreamNotFoundError):
            await p.delete_stream("s")  # the caller retries the failed delete: the stream is gone already
    finally:
        io.delete_topic = real  # type: ignore[method-assign]
    assert (await p.get_stream_info("s")) is None
    await p.append("s", [ev(), ev()], ANY)
    snap = await p.get_snapshot("s")
    assert snap is None, f"the new stream (version 2) got the deleted stream's snapshot at version {snap.version}"

"""Odd input through the public manager API on the real broker: what the user gets, and what the store keeps.

Each test failed before the fix it names.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventSourcingManager
from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError, ValidationError
from eventsource.model import NO_STREAM
from eventsource_kafka import naming

from .conftest import drop_namespace, prefix_topics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

RECORD_BYTES = 20_000
"""``max_record_bytes`` of these tests: small, so a record over the broker's limit is quick to build."""


@pytest.fixture
async def manager(kafka_url: str) -> AsyncIterator[EventSourcingManager]:
    """A manager on a fresh prefix whose own limits never refuse first (the Kafka store's are the ones tried)."""
    settings: dict[str, Any] = {
        "topic_prefix": f"o{uuid.uuid4().hex[:12]}",
        "request_timeout": 3.0,
        "max_record_bytes": RECORD_BYTES,
    }
    m = EventSourcingManager(
        {
            "providers": {"kafka": {"url": kafka_url, "settings": settings}},
            "default_provider": "kafka",
            "max_event_size": 16 * 1024 * 1024,  # e.g. for a PostgreSQL store beside it in the same manager
        }
    )
    await m.connect()
    yield m
    p = m.get_provider()
    await p.connect()
    await drop_namespace(p)  # type: ignore[arg-type]
    await m.close()


def _topics(kafka_url: str, m: EventSourcingManager) -> list[str]:
    return prefix_topics(kafka_url, m.get_provider().prefix)  # type: ignore[attr-defined]


async def test_stream_metadata_too_large_for_one_record_is_refused_before_anything_is_created(
    kafka_url: str, manager: EventSourcingManager
) -> None:
    """The stream's topic was created, then its metadata record was refused by the producer.

    The user got ``ValidationError`` naming ``events`` (and kafka-python's ``max_request_size``), the
    topic stayed behind, and the next ``create_stream`` with small metadata wrote the stream but raised
    ``StreamExistsError`` for a stream ``stream_exists`` had just called missing.
    """
    before = await asyncio.to_thread(_topics, kafka_url, manager)
    with pytest.raises(ValidationError) as err:
        await manager.create_stream(stream_id="s", metadata={"x": "y" * 10 * RECORD_BYTES})
    assert err.value.details.get("field") == "metadata", err.value
    assert not await manager.stream_exists("s")
    assert await asyncio.to_thread(_topics, kafka_url, manager) == before
    info = await manager.create_stream(stream_id="s", metadata={"x": 1})
    assert (info.stream_id, info.metadata) == ("s", {"x": 1})


async def test_a_stream_created_with_the_largest_metadata_accepted_can_still_be_truncated(
    manager: EventSourcingManager,
) -> None:
    """Retention markers go into the stream's metadata record, which grows by them.

    Metadata that just fitted at creation left no room for a marker: every retention run on the
    stream failed with ``ValidationError`` ("record too large"), for input the user gave long before.
    """
    lo, hi = 0, 10 * RECORD_BYTES  # the largest metadata create_stream accepts
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            await manager.create_stream(stream_id=f"probe{mid}", metadata={"x": "y" * mid})
        except ValidationError:
            hi = mid - 1
        else:
            lo = mid
    assert lo > 0
    await manager.create_stream(stream_id="big", metadata={"x": "y" * lo})
    for _ in range(3):
        await manager.append_event(stream_id="big", event_type="E", data={})
    await manager.apply_retention([{"policy": "max_count", "max_events": 1}], provider="kafka")
    info = await manager.get_stream_info("big")
    assert (info.event_count, info.metadata) == (1, {"x": "y" * lo})
    assert [e.version async for e in manager.read_stream("big")] == [3]


def _strand(kafka_url: str, m: EventSourcingManager, stream_id: str) -> None:
    """What a process stopped between creating a stream's topic and writing its create record leaves behind."""
    from kafka import KafkaAdminClient

    topic = naming.stream_topic(m.get_provider().prefix, stream_id, 1)  # type: ignore[attr-defined]
    admin = KafkaAdminClient(bootstrap_servers=kafka_url.removeprefix("kafka://").split(","))
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    finally:
        admin.close()


async def test_create_stream_that_writes_a_stranded_incarnations_record_reports_it_created(
    kafka_url: str, manager: EventSourcingManager
) -> None:
    """A process stopped between creating a stream's topic and writing its create record.

    ``create_stream`` waits for that record, then writes its own (the incarnation is not stranded), but
    reported ``StreamExistsError``: the caller was told someone else made the stream, with its own
    metadata stored and the stream created by this very call.
    """
    await asyncio.to_thread(_strand, kafka_url, manager, "s")
    assert not await manager.stream_exists("s")
    info = await manager.create_stream(stream_id="s", metadata={"who": "me"})
    assert (info.stream_id, info.version, info.metadata) == ("s", 0, {"who": "me"})
    r = await manager.append_event(stream_id="s", event_type="E", data={}, expected_version=0)
    assert r.version == 1


async def test_a_snapshot_too_large_for_one_record_is_refused_naming_the_snapshot_and_the_setting(
    manager: EventSourcingManager,
) -> None:
    """Refused by kafka-python's producer: ``ValidationError`` naming ``events`` and ``max_request_size``.

    Neither is what the user sent or set: the field is the snapshot's data, the limit ``max_record_bytes``.
    """
    await manager.append_event(stream_id="s", event_type="E", data={})
    await manager.create_snapshot(stream_id="s", data={"n": 1})
    with pytest.raises(ValidationError) as err:
        await manager.create_snapshot(stream_id="s", data={"x": "y" * 10 * RECORD_BYTES})
    assert err.value.details.get("field") == "data", err.value
    assert "max_record_bytes" in str(err.value)
    assert (await manager.get_snapshot("s")).data == {"n": 1}


SAME_READABLE = ["a.b", "a_b", "a b", "a/b", "a*b", "a>b", 'a"b', "a'b", "a\u00e9b", "a\U0001f389b"]
"""Ids whose topic names share everything but the hash: each character outside ``[A-Za-z0-9-]`` reads ``_``."""
SAME_START = ["x" * 60 + ".", "x" * 60 + "_", "x" * 60, "x" * 10_000, "x" * 9_999 + "y", "\u00e9", "e\u0301"]
"""Ids alike in the first 60 characters (all the readable part keeps), and two spellings of one letter."""


async def test_ids_alike_after_the_topic_name_mapping_never_share_events_snapshots_metadata_or_a_delete(
    kafka_url: str,
) -> None:
    """Stream, metadata and snapshot records are keyed by the exact id, topics by a digest of it: no collision.

    Each stream gets its own events, metadata and snapshot, read back exactly; deleting half of them leaves
    the other half whole, and a stream id deleted and used again starts empty.
    """
    m = EventSourcingManager(
        {
            "providers": {"kafka": {"url": kafka_url, "settings": {"topic_prefix": f"o{uuid.uuid4().hex[:12]}"}}},
            "default_provider": "kafka",
            "max_stream_id_length": 10_000,
        }
    )
    await m.connect()
    try:
        ids = SAME_READABLE + SAME_START
        for n, sid in enumerate(ids, start=1):
            await m.create_stream(stream_id=sid, metadata={"sid": sid})
            await m.append_events_batch(stream_id=sid, events=[{"event_type": "E", "data": {"sid": sid}}] * n)
            await m.create_snapshot(stream_id=sid, data={"sid": sid})
        listed = (await m.list_streams(limit=100)).streams
        assert sorted(i.stream_id for i in listed) == sorted(ids)
        gone = ids[::2]
        for sid in gone:
            await m.delete_stream(sid)
        for n, sid in enumerate(ids, start=1):
            events = [e async for e in m.read_stream(sid)]
            if sid in gone:
                assert events == [], sid[:20]
                assert not await m.stream_exists(sid)
                continue
            assert [(e.version, e.data) for e in events] == [(v, {"sid": sid}) for v in range(1, n + 1)], sid[:20]
            assert (await m.get_stream_info(sid)).metadata == {"sid": sid}
            assert (await m.get_snapshot(sid)).data == {"sid": sid}
        sid = gone[0]
        r = await m.append_event(stream_id=sid, event_type="E", data={"again": True}, expected_version=NO_STREAM)
        assert r.version == 1
        assert [e.data async for e in m.read_stream(sid)] == [{"again": True}]
    finally:
        p = m.get_provider()
        await drop_namespace(p)  # type: ignore[arg-type]
        await m.close()


async def test_a_broker_nobody_answers_at_is_unavailable_not_a_timeout() -> None:
    """kafka-python reports a bootstrap no broker answered as ``KafkaTimeoutError``; it was mapped to a timeout.

    The user got ``ProviderTimeoutError`` ("Kafka timed out while connecting") for a refused connection: code
    catching ``ProviderUnavailableError`` (``ConnectionError``, "the store cannot be reached") missed it.
    Nothing is sent before a bootstrap, so "cannot be reached" is also the honest answer.
    """
    import socket

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = EventSourcingManager(
        {
            "providers": {"kafka": {"url": f"kafka://127.0.0.1:{port}", "settings": {"request_timeout": 1.0}}},
            "default_provider": "kafka",
        }
    )
    try:
        with pytest.raises(ProviderUnavailableError, match=r"127\.0\.0\.1"):
            await m.connect()
    finally:
        await m.close()


async def test_last_event_at_is_the_last_appended_events_time_in_both_stats_modes_as_on_other_stores(
    kafka_url: str,
) -> None:
    """Events stamped out of append order (an import, a copy between stores, a client's clock).

    ``get_stats()`` answered the greatest timestamp of any event, ``get_stats(top_streams=N)`` the greatest
    of the streams' last events: two answers from one store in one process (both called exact there), and
    neither the memory and SQLite stores' (the event appended last, the highest position).
    """
    from datetime import UTC, datetime

    m = EventSourcingManager(
        {
            "providers": {
                "kafka": {"url": kafka_url, "settings": {"topic_prefix": f"o{uuid.uuid4().hex[:12]}"}},
                "memory": {"url": "memory://"},
            },
            "default_provider": "kafka",
        }
    )
    await m.connect()
    try:
        for provider in ("kafka", "memory"):
            for sid, year in (("a", 2100), ("a", 2000), ("b", 1990)):
                stamp = datetime(year, 1, 1, tzinfo=UTC)
                await m.append_event(stream_id=sid, event_type="E", data={}, timestamp=stamp, provider=provider)
        stats = await m.get_stats()
        bounded = await m.get_stats(top_streams=10)
        assert stats["memory"].last_event_at == datetime(1990, 1, 1, tzinfo=UTC)
        assert stats["kafka"].last_event_at == stats["memory"].last_event_at
        assert bounded["kafka"].last_event_at == stats["memory"].last_event_at
        assert "last_event_at" not in bounded["kafka"].estimated  # this process wrote every stream
    finally:
        await drop_namespace(m.get_provider("kafka"))  # type: ignore[arg-type]
        await m.close()


async def test_a_topic_stranded_by_a_stopped_process_does_not_block_its_stream_through_the_manager(
    kafka_url: str,
) -> None:
    """Waiting for the stopped process's create record took ``request_timeout``, the manager's call timeout too.

    With the two equal (both 30 s by default) every attempt was cut off before it wrote the record itself,
    and each retry (the manager's, of an append; the caller's, of ``create_stream``) started the wait
    again: the stream id could never be created nor appended to.
    """
    settings = {"topic_prefix": f"o{uuid.uuid4().hex[:12]}", "request_timeout": 2.0}
    m = EventSourcingManager(
        {
            "providers": {"kafka": {"url": kafka_url, "settings": settings}},
            "default_provider": "kafka",
            "timeout": 2.0,
            "retry_attempts": 3,
            "retry_delay": 0.01,
        }
    )
    await m.connect()
    try:
        await asyncio.to_thread(_strand, kafka_url, m, "s")
        await asyncio.to_thread(_strand, kafka_url, m, "t")
        try:  # not retried by the manager (not idempotent): cut off, "its outcome is unknown"
            info = await m.create_stream(stream_id="s", metadata={"who": "me"})
        except ProviderTimeoutError:
            assert not await m.stream_exists("s")
            info = await m.create_stream(stream_id="s", metadata={"who": "me"})  # the caller's retry
        assert (info.version, info.metadata) == (0, {"who": "me"})
        r = await m.append_event(stream_id="t", event_type="E", data={})  # retried by the manager
        assert r.version == 1
        assert [e.version async for e in m.read_stream("t")] == [1]
    finally:
        await drop_namespace(m.get_provider())  # type: ignore[arg-type]
        await m.close()

"""Attacker review of the Kafka provider: data loss and silent wrong results, each shown on a real broker.

Each test failed before the fix that follows it (the two first left open as strict xfails are fixed now).
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
        await real(doomed)  # no metadata names it any more: the fixture's drop would leave it
    assert (await p.get_stream_info("s")) is None
    await p.append("s", [ev(), ev()], ANY)
    snap = await p.get_snapshot("s")
    assert snap is None, f"the new stream (version 2) got the deleted stream's snapshot at version {snap.version}"


async def _tied_streams(p: KafkaProvider, monkeypatch: pytest.MonkeyPatch, n: int) -> tuple[Any, set[str]]:
    """Streams a, b, c of ``n`` events each, appended from one clock reading (every position a three-way tie).

    Returns a manager over ``p`` and the ids of every event the store holds.
    """
    import eventsource_kafka.append
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost
    from eventsource.timestamps import now_us

    t = now_us()
    monkeypatch.setattr(eventsource_kafka.append, "now_us", lambda: t)  # the batches from one clock reading
    for s in ("a", "b", "c"):
        await p.append(s, [ev() for _ in range(n)], ANY)
    monkeypatch.undo()
    everything = {e.event_id async for e in p.read_all()}
    assert len(everything) == 3 * n and len({e.position async for e in p.read_all()}) == n  # three-way ties
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="k", default=True)
    return m, everything


async def _paged(m: Any, limit: int, count: str, order: str = "asc") -> list[str]:
    """Every event id ``get_events`` hands out, paged by ``next_cursor`` (at most 100 pages)."""
    got: list[str] = []
    cursor = None
    for _ in range(100):
        page = await m.get_events(limit=limit, after_position=cursor, count=count, sort_order=order)
        got.extend(e.event_id for e in page.events)
        if not page.has_more:
            break
        cursor = page.next_cursor
    return got


async def test_get_events_paged_by_cursor_over_every_stream_returns_every_event(
    kafka_provider: KafkaProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Positions are append times, bumped per stream only: two streams appended in the same microseconds (two
    processes, or one clock read twice) share positions. ``get_events`` without a stream pages by
    ``next_cursor`` (the next page holds positions after it): a page that ended on a shared position passed
    over the other stream's event there. The manager now never ends a page inside such a tie.
    """
    m, everything = await _tied_streams(kafka_provider, monkeypatch, 40)
    for count in ("exact", "none"):
        for limit in (4, 7, 9):
            got = await _paged(m, limit, count)
            assert len(got) == len(set(got)), f"count={count}, limit={limit}: an event came twice"
            assert set(got) == everything, f"count={count}, limit={limit}: passed over {len(everything - set(got))}"


@pytest.mark.parametrize("limit", [1, 2])
async def test_a_tie_larger_than_the_page_is_never_passed_over_by_the_cursor(
    kafka_provider: KafkaProvider, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """A page of ``limit`` < 3 events lies wholly inside a three-way tie: the manager kept it whole (it cannot
    end before it), and handed out its position as ``next_cursor``, so the next page (positions after it)
    passed over the rest of the tie. A page now holds the whole tie it would end inside, even when it is
    larger than ``limit``.
    """
    m, everything = await _tied_streams(kafka_provider, monkeypatch, 5)
    for count in ("exact", "none"):
        for order in ("asc", "desc"):
            got = await _paged(m, limit, count, order)
            assert len(got) == len(set(got)), f"{count}, {order}: an event came twice"
            assert set(got) == everything, f"{count}, {order}: passed over {len(everything - set(got))} of 15"


async def test_a_stream_with_a_retention_marker_survives_compaction_of_the_metadata_topic(
    kafka_provider: KafkaProvider, kafka_url: str
) -> None:
    """``<prefix>.meta`` is compacted (``cleanup.policy=compact``): a real cluster keeps only the last record
    per stream id once the segment rolls. After ``truncate_stream`` that is the ``update`` record holding the
    marker. A process started after compaction (simulated: a second prefix whose metadata topic holds the
    compacted copy, naming the same stream topic) must still see the stream; it saw none.
    """
    import json

    p = kafka_provider
    await p.append("s", [ev() for _ in range(5)], ANY)
    assert await p.truncate_stream("s", 3) == 2
    recs, _, _ = await p.io.read(p._conn.meta_topic, 0)
    compacted: dict[bytes, bytes] = {}
    for r in recs:  # what compaction leaves: the latest record of every key
        compacted[r.key] = r.value
    assert [json.loads(v)["op"] for v in compacted.values()] == ["update"]
    later = KafkaProvider(kafka_url, topic_prefix=f"x{uuid.uuid4().hex[:12]}", request_timeout=30.0)
    await later.connect()
    try:
        for key, value in compacted.items():
            await later.io.produce(later._conn.meta_topic, value, key=key)
        assert [e.version async for e in later.read_stream("s")] == [3, 4, 5]
        info = await later.get_stream_info("s")
        assert info is not None
        assert info.version == 5
    finally:
        await later.io.delete_topic(later._conn.meta_topic)
        await later.io.delete_topic(later._conn.snap_topic)
        await later.close()


def _topic_configs(p: KafkaProvider, topic: str) -> dict[str, Any]:
    from kafka.admin import ConfigResource, ConfigResourceType

    io = p.io
    res = io.admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    return {k: (v or {}).get("value") for k, v in ((res or {}).get("topic", {}).get(topic) or {}).items()}


async def test_stream_topics_keep_their_events_forever_unless_told_otherwise(kafka_provider: KafkaProvider) -> None:
    """A stream topic created with the broker's defaults inherits ``log.retention.hours=168``: on a real cluster
    the broker deletes every event older than a week. Worse, a stream whose first records are gone reads
    empty (a reader starts at the log start, and the first record there does not carry version 1, so
    ``records.accepts`` refuses it and every record after it), and its next append is version 1 again.

    Tansu keeps records regardless, so this checks what the provider asks the broker for: ``retention.ms``
    and ``retention.bytes`` of ``-1`` (keep forever) on every stream topic, as an event store needs.
    """
    p = kafka_provider
    await p.append("s", [ev()], ANY)
    topic = p._conn.ns.meta["s"]["topic"]
    configs = await p.io.run("describing", _topic_configs, p, topic)
    assert configs.get("retention.ms") == "-1", f"stream topic configs: {configs}"
    assert configs.get("retention.bytes") == "-1", f"stream topic configs: {configs}"


async def test_health_names_a_stream_topic_whose_broker_deletes_events(kafka_url: str) -> None:
    """A stream topic with a finite ``retention.ms`` (set through ``topic_configs``, or created by an earlier
    version under the broker's default of a week) loses acknowledged events: health says ``degraded``."""
    from eventsource.testing import DurabilitySuite

    p = KafkaProvider(kafka_url, topic_prefix=f"x{uuid.uuid4().hex[:12]}", topic_configs={"retention.ms": "604800000"})
    await p.connect()
    try:
        await p.append("s", [ev()], ANY)
        h = await DurabilitySuite.health_of(p)
        assert h.details["status"] == "degraded", h.message
        assert [(r["setting"], r["value"]) for r in h.details["durability_risks"]] == [("retention.ms", "604800000")]
    finally:
        await drop_namespace(p)
        await p.close()


async def test_periodic_time_retention_keeps_one_marker_not_one_per_run(kafka_provider: KafkaProvider) -> None:
    """Every ``delete_events_before`` run that hid something added an entry to the stream's metadata record,
    which never shrank: each read checks every entry, and the record grows until the broker refuses it. A
    marker the new one covers (an earlier cutoff, no more versions) now goes."""
    from datetime import timedelta

    p = kafka_provider
    t0 = utcnow() - timedelta(days=30)
    for day in range(6):
        e = NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", t0 + timedelta(days=day))
        await p.append("s", [e], ANY)
    for day in range(4):  # a daily max_age run
        assert await p.delete_events_before(t0 + timedelta(days=day, hours=1), "s") == 1
    markers = p._conn.ns.meta["s"]["hide_before"]
    assert len(markers) == 1, markers
    assert [e.version async for e in p.read_stream("s")] == [5, 6]
    info = await p.get_stream_info("s")
    assert info is not None and (info.event_count, info.first_version) == (2, 5)

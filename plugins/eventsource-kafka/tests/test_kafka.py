"""Kafka-specific behaviour the kit does not reach: naming, settings, layout, tails, retention markers."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    StreamExistsError,
)
from eventsource.model import NewEvent, NewStream, utcnow
from eventsource.plugins import PluginHost
from eventsource_kafka import connection as connection_module
from eventsource_kafka import naming, records
from eventsource_kafka import provider as provider_module
from eventsource_kafka import state as state_module
from eventsource_kafka.provider import KafkaProvider

from .conftest import drop_namespace

LEGAL = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def new(data: dict | None = None, ts: datetime | None = None, event_type: str = "E") -> NewEvent:
    return NewEvent(str(uuid.uuid4()), event_type, json.dumps(data or {}).encode(), b"", "json", ts or utcnow())


@pytest.fixture
def kp(kafka_provider: KafkaProvider) -> KafkaProvider:
    return kafka_provider


# ---------------------------------------------------------------------------- naming and settings


@pytest.mark.parametrize(
    "stream_id", ["a.b", "a_b", "a b", "a/b", "名前", "x" * 1000, ".", "..", "-", "'; DROP", "\U0001f389"]
)
def test_topic_names_are_legal_and_short(stream_id: str) -> None:
    topic = naming.stream_topic("p" * naming.MAX_PREFIX_LENGTH, stream_id, 10**12)
    assert LEGAL.match(topic), topic


def test_topic_names_never_collide() -> None:
    ids = ["a.b", "a_b", "a b", "a/b", "A.b", "a.b ", "x" * 1000, "x" * 999 + "y"]
    hashes = {naming.stream_hash(i) for i in ids}
    assert len(hashes) == len(ids)
    # a new incarnation of the same stream gets a different topic; every process names it the same
    assert naming.stream_topic("p", "a.b", 1) != naming.stream_topic("p", "a.b", 2)
    assert naming.stream_topic("p", "a.b", 1) == naming.stream_topic("p", "a.b", 1)


@pytest.mark.parametrize("prefix", ["", "a b", "a/b", "-x", "x" * 121, "é", "orders\n"])  # "orders\n": "$" matched it
def test_bad_topic_prefix_is_a_configuration_error(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        KafkaProvider("kafka://127.0.0.1:9092", topic_prefix=prefix)


@pytest.mark.parametrize(
    "url",
    # a port no socket can have was taken, and connect() then timed out (retried) or failed as a ProviderError
    [
        "kafka://",
        "kafka://host",
        "kafka://:9092",
        "nats://127.0.0.1:4222",
        "kafka://h:port",
        "kafka://h:99999",
        "kafka://h:0",
        "kafka://h:\u00b2",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        KafkaProvider(url)


def test_url_with_several_brokers_and_credentials() -> None:
    p = KafkaProvider("kafka://alice:s%3Acret@b1:9092,b2:9093", security_protocol="SASL_SSL", ssl_cafile="/ca.pem")
    cfg = p._conn.client_config
    assert cfg["bootstrap_servers"] == ["b1:9092", "b2:9093"]
    assert (cfg["sasl_plain_username"], cfg["sasl_plain_password"]) == ("alice", "s:cret")
    assert (cfg["security_protocol"], cfg["sasl_mechanism"], cfg["ssl_cafile"]) == ("SASL_SSL", "PLAIN", "/ca.pem")
    assert "s:cret" not in (p.display_url or "")
    assert "s%3Acret" not in (p.display_url or "")
    assert p.display_url == "kafka://alice:***@b1:9092,b2:9093"


def test_display_url_masks_secrets_in_the_query_string_too() -> None:
    """The provider shows its URL through core's one masking function, query-string secrets included."""
    p = KafkaProvider("kafka://b1:9092?sasl_plain_password=T0pS3cret")
    assert "T0pS3cret" not in (p.display_url or "")


def test_unknown_setting_names_the_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        KafkaProvider("kafka://127.0.0.1:9092", replication_factor=0)
    assert info.value.details["field"] == "replication_factor"


@pytest.mark.parametrize("size", [1024, 4096, 5119])
def test_a_record_size_that_leaves_too_little_room_for_an_event_is_refused(size: int) -> None:
    """``max_record_bytes`` took 1,024, while 4,096 bytes of each record are kept for the envelope: a provider
    built so declared a negative (or zero) ``max_event_size``, and every append was refused with "the limit is
    -3072"."""
    with pytest.raises(ConfigurationError) as info:
        KafkaProvider("kafka://127.0.0.1:9092", max_record_bytes=size)
    assert info.value.details["field"] == "max_record_bytes"


def test_the_smallest_record_size_leaves_a_kibibyte_for_an_event() -> None:
    caps = KafkaProvider("kafka://127.0.0.1:9092", max_record_bytes=5120).capabilities
    assert (caps.max_event_size, caps.max_batch_bytes) == (1024, 1024)


def test_plugin_is_discovered(kafka_url: str) -> None:
    host = PluginHost()
    assert host.providers.get("kafka") is KafkaProvider
    p = host.create_provider(kafka_url, topic_prefix="discovered")
    assert isinstance(p, KafkaProvider)
    assert p.capabilities.global_order == "per_stream"
    assert p.capabilities.concurrency == "cross_process"  # the log decides, no lease needed
    assert p.capabilities.unsupported == frozenset({"rewrite_events"})  # a record cannot change in place


# ---------------------------------------------------------------------------- layout


async def test_a_batch_is_one_record_with_headers(kp: KafkaProvider) -> None:
    evs = [new({"i": i}) for i in range(3)]
    await kp.append("hdr", evs, 0)
    meta = kp._conn.ns.meta["hdr"]
    recs, end, at_end = await kp.io.read(meta["topic"], 0)
    assert (len(recs), end, at_end) == (1, 1, True)
    headers = recs[0].headers
    assert ("vx-stream", b"hdr") in headers
    assert ("vx-version", b"1") in headers
    assert [v.decode() for k, v in headers if k == "vx-event-id"] == [e.event_id for e in evs]
    assert [e.version for e in records.decode_events("hdr", recs[0].value)] == [1, 2, 3]


async def test_a_call_that_outlives_close_gets_a_typed_error_not_an_attribute_error(kp: KafkaProvider) -> None:
    """An append racing ``close()`` reached the producer after close set it to ``None`` (AttributeError)."""
    io = kp.io  # what a call in flight holds while close() runs
    await kp.append("racing-close", [new({"i": 0})], 0)
    await kp.close()
    with pytest.raises(ProviderUnavailableError, match="closed"):
        io.producer  # noqa: B018 - the access itself is what raised AttributeError


async def test_stream_topics_have_one_partition(kp: KafkaProvider) -> None:
    await kp.append("parts", [new()], 0)
    topic = kp._conn.ns.meta["parts"]["topic"]
    desc = await kp.io.run("describe", lambda: kp.io.admin.describe_topics([topic]))
    assert len(desc[0]["partitions"]) == 1


async def test_delete_and_recreate_uses_a_new_topic(kp: KafkaProvider) -> None:
    await kp.append("again", [new(), new()], 0)
    old = kp._conn.ns.meta["again"]["topic"]
    await kp.delete_stream("again")
    r = await kp.append("again", [new()], 0)
    assert r.first_version == 1
    assert kp._conn.ns.meta["again"]["topic"] != old
    assert [e.version async for e in kp.read_stream("again")] == [1]


# ---------------------------------------------------------------------------- tails


async def test_tail_is_read_to_the_high_watermark_in_a_fresh_process(kp: KafkaProvider, kafka_url: str) -> None:
    """Batched sends make Tansu's ListOffsets too low; a new process must still find the true tail."""
    for _ in range(5):
        await kp.append("tail", [new() for _ in range(7)], -1)
    # several records in one produce batch (concurrent sends), then a fresh process-wide state
    topic = kp._conn.ns.meta["tail"]["topic"]
    assert topic
    saved = dict(state_module._NAMESPACES)
    state_module._NAMESPACES.clear()
    try:
        other = KafkaProvider(**kp.spawn_args())
        await other.connect()
        try:
            info = await other.get_stream_info("tail")
            assert (info.version, info.event_count) == (35, 35)
            r = await other.append("tail", [new()], 35)
            assert r.first_version == 36
        finally:
            await other.close()
    finally:
        state_module._NAMESPACES.clear()
        state_module._NAMESPACES.update(saved)


async def test_instances_in_one_process_share_the_tail(kp: KafkaProvider) -> None:
    second = KafkaProvider(**kp.spawn_args())
    await second.connect()
    try:
        await kp.append("shared", [new()], 0)
        assert (await second.append("shared", [new()], 1)).first_version == 2
        assert (await kp.append("shared", [new()], 2)).first_version == 3
    finally:
        await second.close()


async def test_a_repeated_record_is_dropped_by_readers(kp: KafkaProvider) -> None:
    """A producer retry after a restart can write the same envelope twice: readers and counts ignore it."""
    first = await kp.append("rep", [new({"i": 1}), new({"i": 2})], 0)
    meta = kp._conn.ns.meta["rep"]
    recs, _, _ = await kp.io.read(meta["topic"], 0)
    await kp.io.produce(meta["topic"], recs[0].value, headers=recs[0].headers)  # the duplicate
    await kp.append("rep", [new({"i": 3})], -1)
    got = [e async for e in kp.read_stream("rep")]
    assert [e.version for e in got] == [1, 2, 3]
    assert [e.version async for e in kp.read_stream("rep", backwards=True)] == [3, 2, 1]
    assert got[0].event_id == first.event_ids[0]
    stats = await kp.stats()
    assert stats.events_by_stream["rep"] == 3
    assert (await kp.get_stream_info("rep")).event_count == 3


async def test_an_idempotent_retry_across_instances_returns_the_original(kp: KafkaProvider) -> None:
    second = KafkaProvider(**kp.spawn_args())
    await second.connect()
    try:
        ev = new()
        a = await kp.append("idem", [ev], 0)
        b = await second.append("idem", [ev], 0)
        assert b.duplicate
        assert (b.first_version, b.positions) == (a.first_version, a.positions)
    finally:
        await second.close()


# ---------------------------------------------------------------------------- positions, retention, stats


async def test_positions_increase_per_stream_and_read_all_merges_by_position(kp: KafkaProvider) -> None:
    a = await kp.append("pa", [new() for _ in range(3)], 0)
    b = await kp.append("pb", [new()], 0)
    c = await kp.append("pa", [new()], 3)
    assert list(a.positions) == sorted(a.positions)
    assert a.positions[-1] < c.positions[0]
    seen = [e async for e in kp.read_all()]
    assert [e.position for e in seen] == sorted(e.position for e in seen)
    tail = [e.event_id async for e in kp.read_all(from_position=b.positions[0])]
    assert tail == [b.event_ids[0], c.event_ids[0]]


async def test_retention_markers_hide_events_everywhere(kp: KafkaProvider) -> None:
    t0 = datetime(2021, 1, 1, tzinfo=UTC)
    await kp.create_stream(NewStream("ret", name="n"))
    r = await kp.append("ret", [new({"i": i}, ts=t0 + timedelta(days=i)) for i in range(6)], 0)
    assert await kp.truncate_stream("ret", 3) == 2
    assert await kp.delete_events_before(t0 + timedelta(days=4)) == 2  # versions 3 and 4
    info = await kp.get_stream_info("ret")
    assert (info.version, info.event_count, info.first_version, info.name) == (6, 2, 5, "n")
    assert [e.version async for e in kp.read_stream("ret")] == [5, 6]
    assert [e.version async for e in kp.read_all()] == [5, 6]
    assert await kp.get_event(r.event_ids[0]) is None
    assert (await kp.get_event(r.event_ids[5])).version == 6
    stats = await kp.stats()
    assert (stats.total_events, stats.events_by_stream["ret"]) == (2, 2)
    # new events are not hidden by an earlier time cutoff, even with old timestamps
    assert (await kp.append("ret", [new(ts=t0)], 6)).first_version == 7
    assert [e.version async for e in kp.read_stream("ret")] == [5, 6, 7]
    assert (await kp.get_stream_info("ret")).event_count == 3


# ---------------------------------------------------------------------------- failures


async def test_unreachable_broker_is_a_typed_error_and_unhealthy() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = KafkaProvider(f"kafka://127.0.0.1:{port}", request_timeout=2.0)
    with pytest.raises((ProviderUnavailableError, ProviderTimeoutError)):
        await p.connect()
    h = await p.health()
    assert not h.healthy
    await p.close()


def test_the_plugin_never_deletes_records() -> None:
    """``delete_records`` crashes Tansu (STORES.md): the plugin must not call it anywhere."""
    from pathlib import Path

    src = Path(provider_module.__file__).parent
    for f in src.glob("*.py"):
        assert "delete_records" not in f.read_text(encoding="utf-8"), f


async def test_a_cancelled_read_hands_its_consumer_back_only_when_done(kp: KafkaProvider) -> None:
    import asyncio

    await kp.append("cancel", [new()], 0)
    topic = kp._conn.ns.meta["cancel"]["topic"]
    await kp.io.delete_topic(topic)  # a read of it now waits ~1 s before it reads as empty
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(kp.io.read(topic, 0), 0.1)
    running = [c for c in kp.io._consumers if c not in kp.io._idle]
    assert running, "the consumer still used by the thread must not be idle"
    assert [e async for e in kp.read_stream("other")] == []  # the provider keeps working meanwhile
    for _ in range(150):  # up to 15 s: ~1 s of stall, then a metadata round trip
        if all(c not in kp.io._consumers for c in running):
            break
        await asyncio.sleep(0.1)
    assert all(c not in kp.io._consumers for c in running)


# ---------------------------------------------------------------------------- found by a review (session 3)


async def test_a_refused_first_append_creates_no_stream_and_a_failed_one_can_be_retried(kp: KafkaProvider) -> None:
    from eventsource.errors import ValidationError
    from eventsource.model import NO_STREAM

    with pytest.raises(ValidationError):
        await kp.append(
            "big",
            [
                NewEvent(
                    str(uuid.uuid4()),
                    "E",
                    b"x" * (kp.max_record_bytes + connection_module.ENVELOPE_SLACK),
                    b"",
                    "json",
                    utcnow(),
                )
            ],
            NO_STREAM,
        )
    assert await kp.get_stream_info("big") is None
    first = new()
    real = kp.io.produce

    async def lost(*args: object, **kwargs: object) -> int:
        raise ProviderUnavailableError("the broker went away")

    kp.io.produce = lost  # type: ignore[method-assign]
    with pytest.raises(ProviderUnavailableError):
        await kp.append("s", [first], NO_STREAM)  # the stream was created, its first write failed
    kp.io.produce = real  # type: ignore[method-assign]
    r = await kp.append("s", [first], NO_STREAM)  # the retry of that very append still counts as new
    assert (r.first_version, r.duplicate) == (1, False)
    from eventsource.errors import ConcurrencyError

    with pytest.raises(ConcurrencyError):
        await kp.append("s", [new()], NO_STREAM)


async def test_an_identical_retry_is_recognised_whole_at_the_edge_of_the_dedup_window(kafka_url: str) -> None:
    p = KafkaProvider(kafka_url, topic_prefix=f"k{uuid.uuid4().hex[:12]}", request_timeout=60.0, dedup_window=5)
    await p.connect()
    try:
        batch = [new() for _ in range(4)]
        a = await p.append("s", batch, 0)
        await p.append("s", [new()], 4)  # 5 ids in the window: the batch must not be half evicted
        again = await p.append("s", batch, 0)
        assert (again.duplicate, again.first_version) == (True, a.first_version)
        big = [new() for _ in range(8)]  # larger than the window: the latest append always stays
        b = await p.append("s", big, 5)
        assert (await p.append("s", big, 5)).duplicate
        assert b.last_version == 13
    finally:
        await drop_namespace(p)
        await p.close()


async def test_truncating_above_the_version_leaves_later_events_visible(kp: KafkaProvider) -> None:
    await kp.append("s", [new() for _ in range(3)], 0)
    assert await kp.truncate_stream("s", 8) == 3
    await kp.append("s", [new() for _ in range(5)], 3)
    assert [e.version async for e in kp.read_stream("s")] == [4, 5, 6, 7, 8]
    info = await kp.get_stream_info("s")
    assert info is not None
    assert (info.version, info.event_count) == (8, 5)


async def test_the_send_is_bounded_by_request_timeout(kafka_url: str) -> None:
    p = KafkaProvider(kafka_url, topic_prefix=f"k{uuid.uuid4().hex[:12]}", request_timeout=7.0)
    await p.connect()
    try:
        assert p.io.producer.config["delivery_timeout_ms"] == 7000  # kafka-python's default is 120 s
    finally:
        await drop_namespace(p)
        await p.close()


async def test_two_spellings_of_one_broker_share_the_in_process_state(kafka_url: str) -> None:
    import asyncio

    prefix = f"k{uuid.uuid4().hex[:12]}"
    other_spelling = kafka_url.replace("127.0.0.1", "localhost")
    assert other_spelling != kafka_url
    a = KafkaProvider(kafka_url, topic_prefix=prefix, request_timeout=60.0)
    b = KafkaProvider(other_spelling, topic_prefix=prefix, request_timeout=60.0)
    await a.connect()
    await b.connect()
    try:
        assert a._conn.ns is b._conn.ns
        await a.append("s", [new()], 0)
        results = await asyncio.gather(a.append("s", [new()], 1), b.append("s", [new()], 1), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["AppendResult", "ConcurrencyError"]
        assert [e.version async for e in a.read_stream("s")] == [1, 2]
    finally:
        await drop_namespace(a)
        await a.close()
        await b.close()


async def test_a_record_that_lost_its_version_is_invisible_and_never_a_duplicate(kp: KafkaProvider) -> None:
    """Issue #11: a record that lost the race for a version (same ids as a later retry) counts nowhere."""
    first = await kp.append("lost", [new()], 0)
    loser = new({"lost": True})
    meta = kp._conn.ns.meta["lost"]
    value, headers = records.encode_events("lost", [loser], 1, first.positions[0] + 1)
    await kp.io.produce(meta["topic"], value, headers=headers)  # another process's record, too late for version 1
    assert [e.event_id async for e in kp.read_stream("lost")] == [first.event_ids[0]]
    assert await kp.get_event(loser.event_id) is None
    assert (await kp.stats()).events_by_stream["lost"] == 1
    saved = dict(state_module._NAMESPACES)
    state_module._NAMESPACES.clear()  # a process that never saw either append
    try:
        other = KafkaProvider(**kp.spawn_args())
        await other.connect()
        try:
            r = await other.append("lost", [loser], 1)  # the loser's writer tries again: a new append
            assert (r.first_version, r.duplicate) == (2, False)
            again = await other.append("lost", [loser], 1)  # and its retry is the duplicate of THAT one
            assert (again.first_version, again.duplicate) == (2, True)
        finally:
            await other.close()
    finally:
        state_module._NAMESPACES.clear()
        state_module._NAMESPACES.update(saved)
    assert [(e.version, e.event_id) async for e in kp.read_stream("lost")] == [
        (1, first.event_ids[0]),
        (2, loser.event_id),
    ]
    assert [e.version async for e in kp.read_stream("lost", backwards=True)] == [2, 1]
    found = await kp.get_event(loser.event_id, "lost")
    assert found is not None
    assert found.version == 2
    info = await kp.get_stream_info("lost")
    assert (info.version, info.event_count) == (2, 2)


async def test_a_stale_tail_is_refreshed_before_a_conflict_is_reported(kp: KafkaProvider) -> None:
    """Issue #11 part 3: another process wrote; this one's cached tail is behind; the right version still wins."""
    await kp.append("stale", [new()], 0)
    meta = kp._conn.ns.meta["stale"]
    value, headers = records.encode_events("stale", [new()], 2, 10**15)  # another process appends version 2
    await kp.io.produce(meta["topic"], value, headers=headers)
    r = await kp.append("stale", [new()], 2)
    assert r.first_version == 3
    with pytest.raises(ConcurrencyError) as caught:
        await kp.append("stale", [new()], 1)
    assert caught.value.actual == 3


async def test_truncation_lets_reads_skip_the_hidden_records(kp: KafkaProvider) -> None:
    """A max_count marker records where the first visible record is; reads (and new processes) start there."""
    for i in range(12):
        await kp.append("skip", [new({"i": i})], i)
    assert await kp.truncate_stream("skip", 10) == 9
    meta = await kp._reader.stream_meta("skip")
    assert meta is not None
    assert meta["skip"] == [9, 9]
    assert [e.version async for e in kp.read_stream("skip")] == [10, 11, 12]
    saved = dict(state_module._NAMESPACES)
    state_module._NAMESPACES.clear()
    try:
        other = KafkaProvider(**kp.spawn_args())
        await other.connect()
        try:
            info = await other.get_stream_info("skip")
            assert (info.version, info.event_count, info.first_version) == (12, 3, 10)
            assert (await other.append("skip", [new()], 12)).first_version == 13
        finally:
            await other.close()
    finally:
        state_module._NAMESPACES.clear()
        state_module._NAMESPACES.update(saved)
    assert [e.version async for e in kp.read_stream("skip", backwards=True)] == [13, 12, 11, 10]


async def test_racing_creators_with_separate_state_agree_on_one_topic_and_the_winners_attributes(
    kp: KafkaProvider,
) -> None:
    """Two instances that share nothing (as two processes): one create_stream wins, with its own name."""
    saved = dict(state_module._NAMESPACES)
    state_module._NAMESPACES.clear()
    other = KafkaProvider(**kp.spawn_args())
    await other.connect()  # its own process-wide state
    state_module._NAMESPACES.clear()
    state_module._NAMESPACES.update(saved)
    try:
        for r in range(10):
            sid = f"both-{r}"
            outcomes = await asyncio.gather(
                kp.create_stream(NewStream(stream_id=sid, name="from-kp")),
                other.create_stream(NewStream(stream_id=sid, name="from-other")),
                return_exceptions=True,
            )
            ok = [o for o in outcomes if not isinstance(o, BaseException)]
            assert len(ok) == 1, outcomes
            assert all(isinstance(o, StreamExistsError) for o in outcomes if isinstance(o, BaseException)), outcomes
            for p in (kp, other):
                info = await p.get_stream_info(sid)
                assert info is not None
                assert info.name == ok[0].name
            a = await kp.append(sid, [new()], 0)
            with pytest.raises(ConcurrencyError):
                await other.append(sid, [new()], 0)
            assert [e.event_id async for e in other.read_stream(sid)] == [a.event_ids[0]]
    finally:
        await other.close()

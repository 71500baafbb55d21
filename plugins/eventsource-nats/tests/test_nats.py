"""NATS-specific behaviour beyond the kit: naming, URLs, discovery, duplicate ids across streams, the
duplicate window, durability reporting, batch modes, and old replicated servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import appended_new, created, dispose, new_event, open_provider, unique_store
from eventsource.errors import ConcurrencyError, ConfigurationError, DuplicateEventError, StreamExistsError
from eventsource.model import ANY, NO_STREAM, STREAM_EXISTS, NewStream, utcnow
from eventsource.plugins import PluginHost
from eventsource.testing import HOSTILE_VALID_STREAM_IDS
from eventsource_nats.naming import MAX_PLAIN_TOKEN, position, split_position, stream_id_of, stream_token
from eventsource_nats.provider import NatsProvider
from eventsource_nats.settings import parse_url
from servers import Servers, start_cluster


def test_plugin_is_discovered() -> None:
    host = PluginHost()
    assert "nats" in host.providers.names()
    p = host.create_provider("nats://127.0.0.1:4222", stream="DISCOVERY")
    assert isinstance(p, NatsProvider)
    assert isinstance(host.create_provider("nats+tls://127.0.0.1:4222"), NatsProvider)


@pytest.mark.parametrize("sid", [*HOSTILE_VALID_STREAM_IDS, "x" * 5000, "名" * 1024])
def test_every_stream_id_becomes_one_legal_token(sid: str) -> None:
    token = stream_token(sid)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token), token
    assert len(token) <= MAX_PLAIN_TOKEN + 1
    decoded = stream_id_of(token)
    assert decoded == sid or (decoded is None and token.startswith("h"))


def test_positions_order_messages_then_indexes() -> None:
    assert position(5, 0) < position(5, 1) < position(5, 999) < position(6, 0)
    assert split_position(position(123, 45)) == (123, 45)


def test_a_scheme_repeated_per_server_is_refused_not_half_read() -> None:
    # it was read as h1 plus a server named "nats:", dropping h2 (and two clusters shared checkpoint ids)
    with pytest.raises(ConfigurationError, match="names its scheme once") as caught:
        parse_url("nats://alice:s3cret@h1:4222,nats://h2:4222")
    assert "s3cret" not in str(caught.value)


def test_url_parsing_and_masking() -> None:
    u = parse_url("nats://alice:s3cret@h1:4222,h2,h3:5222")
    assert u.servers == ("nats://h1:4222", "nats://h2:4222", "nats://h3:5222")
    assert (u.user, u.password) == ("alice", "s3cret")
    assert "s3cret" not in u.display
    assert u.display == "nats://alice:***@h1:4222,h2:4222,h3:5222"
    assert parse_url("nats://tok3n@h1").display == "nats://***@h1:4222"
    assert parse_url("nats+tls://h1:4443").servers == ("tls://h1:4443",)
    with pytest.raises(ConfigurationError):
        parse_url("http://h1")
    p = NatsProvider("nats://bob:hunter2@127.0.0.1:4222,127.0.0.1:4223")
    assert "hunter2" not in (p.display_url or "")


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        NatsProvider("nats://127.0.0.1:4222", stream="bad.name")
    with pytest.raises(ConfigurationError):
        NatsProvider("nats://127.0.0.1:4222", subject_prefix="a.*")
    with pytest.raises(ConfigurationError):
        NatsProvider("nats://127.0.0.1:4222", batch_mode="sometimes")


async def test_unreachable_server_is_a_connection_error() -> None:
    from eventsource.errors import ProviderUnavailableError
    from servers import free_port

    p = NatsProvider(f"nats://127.0.0.1:{free_port()}", connect_timeout=0.5, max_reconnect_attempts=1)
    with pytest.raises(ProviderUnavailableError):
        await p.connect()


async def test_a_second_store_on_the_same_subjects_is_refused_naming_the_setting(machine_nats_url: str) -> None:
    """Another ``stream`` name on an existing store's ``subject_prefix`` (the README's example beside the default
    store): JetStream refuses the overlap, and the error said only 'stream not found'."""
    first = await open_provider(machine_nats_url)
    prefix = first.settings["subject_prefix"]
    second = NatsProvider(machine_nats_url, stream=f"{first.settings['stream']}x", subject_prefix=prefix)
    try:
        with pytest.raises(ConfigurationError) as caught:
            await second.connect()
        message = str(caught.value)
        assert "overlap" in message
        assert f"'{prefix}.e.*'" in message
        assert "subject_prefix" in message
        assert caught.value.details["field"] == "subject_prefix"
    finally:
        await second.close()
        await dispose(first)


async def test_an_event_id_reused_in_another_stream_is_refused(machine_provider: NatsProvider) -> None:
    p = machine_provider
    ev = new_event()
    await p.append("first", [ev], 0)
    other = await open_provider(p.url or "", **{k: p.settings[k] for k in ("stream", "subject_prefix")})
    try:  # another instance: nothing cached, JetStream's dedup answers with the first stream's seq
        with pytest.raises(DuplicateEventError):
            await other.append("second", [ev], 0)
    finally:
        await other.close()
    assert [e.event_id async for e in p.read_stream("second")] == []
    assert await p.get_stream_info("second") is None


async def test_retries_after_the_duplicate_window_stay_idempotent(machine_nats_url: str) -> None:
    p = await open_provider(machine_nats_url, duplicate_window=1.0)
    try:
        first = new_event()
        a = await p.append("s", [first], 0)
        await p.append("s", [new_event()], 1)
        await asyncio.sleep(1.5)  # the server has forgotten the message id
        other = NatsProvider(**p.spawn_args())
        await other.connect()
        try:
            b = await other.append("s", [first], 0)  # stale expected version: found through the id index
            assert b.duplicate
            assert (b.first_version, b.positions) == (a.first_version, a.positions)
            c = await p.append("s", [first], ANY)  # this process remembers the id
            assert c.duplicate
            with pytest.raises(ConcurrencyError):
                await other.append("s", [new_event()], 0)
        finally:
            await other.close()
        assert [e.version async for e in p.read_stream("s")] == [1, 2]
    finally:
        await dispose(p)


async def test_create_stream_and_a_no_stream_append_racing_never_both_win(machine_nats_url: str) -> None:
    # both read "no such stream" before either writes; the NO_STREAM append claims the id in the
    # info bucket (KV create) before publishing, so exactly one of the two succeeds every round
    p = await open_provider(machine_nats_url)
    other = NatsProvider(**p.spawn_args())
    await other.connect()
    try:
        for r in range(15):
            sid = f"race-{r}"
            outcomes = await asyncio.gather(created(p, sid), appended_new(other, sid))
            assert sorted(outcomes) in (["append", "lost"], ["create", "lost"]), (r, outcomes)
            versions = [e.version async for e in p.read_stream(sid)]
            assert versions == ([1] if "append" in outcomes else []), (r, outcomes)
    finally:
        await other.close()
        await dispose(p)


async def test_a_no_stream_append_retried_after_it_claimed_the_id_still_succeeds(
    machine_provider: NatsProvider,
) -> None:
    # the claim (the info record naming the append's first event) is in place but the publish never
    # happened (a lost connection): the retry with the same event ids is not a conflict
    p = machine_provider
    first = new_event()
    assert await p._appender.claim(p._appender.token("s"), "s", None, first)
    res = await p.append("s", [first], NO_STREAM)
    assert (res.first_version, res.duplicate) == (1, False)
    again = await p.append("s", [first], NO_STREAM)
    assert again.duplicate
    with pytest.raises(ConcurrencyError):
        await p.append("s", [new_event()], NO_STREAM)
    with pytest.raises(StreamExistsError):
        await p.create_stream(NewStream(stream_id="s"))
    assert [e.version async for e in p.read_stream("s")] == [1]


async def test_a_failed_no_stream_append_leaves_no_stream_behind(machine_nats_url: str) -> None:
    # the claim is given back when the append fails, and an emptied stream is never "new" again
    p = await open_provider(machine_nats_url, duplicate_window=1.0)
    other = NatsProvider(**p.spawn_args())
    await other.connect()
    try:
        taken = new_event()
        await p.append("a", [taken], NO_STREAM)
        with pytest.raises(DuplicateEventError):
            await other.append("b", [taken], NO_STREAM)  # the id is stored in stream a
        assert await other.get_stream_info("b") is None
        assert (await other.append("b", [new_event()], NO_STREAM)).first_version == 1

        first = new_event()
        await p.append("c", [first], NO_STREAM)
        await p.append("c", [new_event()], 1)
        assert await p.truncate_stream("c", 3) == 2  # version 2, no events left
        await asyncio.sleep(1.5)  # past the server's duplicate window
        p._tails.clear()
        with pytest.raises(ConcurrencyError):
            await p.append("c", [new_event(event_id=first.event_id)], NO_STREAM)
        info = await p.get_stream_info("c")
        assert info is not None
        assert (info.version, info.event_count) == (2, 0)
    finally:
        await other.close()
        await dispose(p)


async def test_health_reports_durability_settings(machine_provider: NatsProvider) -> None:
    h = await machine_provider.health()
    assert h.healthy
    warnings = h.details["durability_warnings"]
    assert any("1 replica" in w for w in warnings)
    assert h.details["replicas"] == 1
    mem = await open_provider(machine_provider.url or "", storage="memory")
    try:
        h = await mem.health()
        assert any("memory storage" in w for w in h.details["durability_warnings"])
    finally:
        await dispose(mem)


async def test_batch_modes_follow_the_server(machine_provider: NatsProvider, current_server: Servers) -> None:
    assert machine_provider.server_version < (2, 12, 0)
    assert not machine_provider.uses_atomic_batches
    with pytest.raises(ConfigurationError):
        await open_provider(machine_provider.url or "", batch_mode="atomic")
    env = await open_provider(current_server.url, batch_mode="envelope")
    try:
        assert not env.uses_atomic_batches
        r = await env.append("b", [new_event() for _ in range(3)], 0)
        assert [split_position(x)[1] for x in r.positions] == [0, 1, 2]  # one message
    finally:
        await dispose(env)
    atomic = await open_provider(current_server.url)
    try:
        assert atomic.uses_atomic_batches
        r = await atomic.append("b", [new_event() for _ in range(3)], 0)
        assert [split_position(x)[1] for x in r.positions] == [0, 0, 0]  # one message per event
        assert await atomic.truncate_stream("b", 3) == 2
        assert [e.version async for e in atomic.read_stream("b")] == [3]
    finally:
        await dispose(atomic)


async def test_an_id_from_a_default_batch_is_not_stored_again_by_another_process(current_server: Servers) -> None:
    # default settings on a current server with one replica: the batch's ids must each stay known to the
    # server's dedup, or another process appending one of them alone (no local index entry) stores it twice
    store = unique_store()
    first = NatsProvider(current_server.url, **store)
    await first.connect()
    other = NatsProvider(current_server.url, **store)
    await other.connect()
    try:
        assert first._conn.replicas == 1
        batch = [new_event() for _ in range(3)]
        await first.append("dedup", batch, 0)
        r = await other.append("dedup", [batch[1]], ANY)
        assert r.duplicate
        ids = [e.event_id async for e in other.read_stream("dedup")]
        assert ids == [e.event_id for e in batch]
    finally:
        await other.close()
        await dispose(first)


async def test_partly_truncated_envelope_hides_only_the_deleted_events(machine_provider: NatsProvider) -> None:
    p = machine_provider
    r = await p.append("env", [new_event() for _ in range(5)], 0)
    assert await p.truncate_stream("env", 3) == 2
    assert [e.version async for e in p.read_stream("env")] == [3, 4, 5]
    assert [e.version async for e in p.read_all()] == [3, 4, 5]
    assert await p.get_event(r.event_ids[0]) is None
    info = await p.get_stream_info("env")
    assert info is not None
    assert (info.version, info.event_count, info.first_version) == (5, 3, 3)
    assert await p.truncate_stream("env", 6) == 3  # the whole envelope goes: the message is purged
    info = await p.get_stream_info("env")
    assert info is not None
    assert (info.version, info.event_count, info.first_version) == (5, 0, None)
    assert (await p.append("env", [new_event()], 5)).first_version == 6


def _old_server_binary() -> str:
    """The machine's nats-server before 2.9.21 (2.9.10), whose replicated OCC check is broken."""
    candidates = [
        os.environ.get("EVENTSOURCE_TEST_OLD_NATS_SERVER_BIN", ""),
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
        shutil.which("nats-server") or "",
    ]
    found = {}
    for binary in filter(None, candidates):
        if Path(binary).exists():
            found[binary] = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    old = [b for b, v in found.items() if re.search(r"v2\.9\.([0-9]|1[0-9]|20)\b", v)]
    assert old, f"no nats-server before 2.9.21 found (set EVENTSOURCE_TEST_OLD_NATS_SERVER_BIN): {found}"
    return old[0]


@pytest.fixture(scope="module")
def old_cluster() -> Servers:
    """A 3-node cluster of the machine's nats-server (2.9.10), whose replicated OCC check is broken."""
    servers = start_cluster(3, binary=_old_server_binary())
    yield servers  # type: ignore[misc]
    servers.stop()


async def _connect_retrying(url: str, **settings: object) -> NatsProvider:
    last: Exception | None = None
    for _ in range(60):
        try:
            return await open_provider(url, **settings)
        except ConfigurationError:
            raise
        except Exception as e:  # noqa: BLE001 - the meta leader is still being elected
            last = e
            await asyncio.sleep(0.5)
    msg = f"the cluster never accepted the stream: {last}"
    raise AssertionError(msg)


async def test_old_server_refuses_a_replicated_stream_or_falls_back(old_cluster: Servers) -> None:
    with pytest.raises(ConfigurationError, match=r"2\.9\.21"):
        await _connect_retrying(old_cluster.url, replicas=3)
    store = unique_store()
    a = await _connect_retrying(old_cluster.url, replicas=3, old_server_replicated="stream_wide", **store)
    b = NatsProvider(**a.spawn_args())
    await b.connect()
    try:
        assert a.occ_mode == "stream_wide"
        h = await a.health()
        assert any("2.9.21" in w for w in h.details["durability_warnings"])
        wins: dict[int, int] = {}
        for r in range(12):

            async def write(p: NatsProvider, r: int = r) -> None:
                try:
                    res = await p.append("race", [new_event()], r)
                except ConcurrencyError:
                    return
                wins[res.first_version] = wins.get(res.first_version, 0) + 1

            await asyncio.gather(write(a), write(b))
        assert wins == dict.fromkeys(range(1, 13), 1)
        assert [e.version async for e in a.read_stream("race")] == list(range(1, 13))
    finally:
        await b.close()
        await dispose(a)


def _cluster_with_a_replica_kept_behind() -> tuple[Servers, str]:
    """A 2.9.10 cluster whose third node stores at most 256 KiB of memory streams, and that node's name.

    A memory stream replicated there stops growing on that node once it is full, while the leader and the
    other replica go on acknowledging: a replica behind its leader for good (on a loaded machine, for a while).
    """
    servers = start_cluster(3, binary=_old_server_binary())
    behind = servers.nodes[2]
    conf = Path(behind.args[-1])
    behind.stop()
    conf.write_text(conf.read_text().replace('" }', '", max_memory_store: 262144 }', 1))
    behind.start()
    return servers, behind.name


async def _fill_past(p: NatsProvider, behind: str) -> None:
    """Make sure ``behind`` leads neither the events stream nor a bucket, then append 12 events it cannot all store."""
    for name in (p.names.stream, *(f"KV_{b}" for b in p.names.buckets)):
        for _ in range(30):  # the lagging replica must not lead (a leader acknowledges only what it stored)
            cluster = (await p._conn.api(f"STREAM.INFO.{name}"))["cluster"]
            if cluster.get("leader") not in (None, behind):
                break
            with contextlib.suppress(Exception):
                await p._conn.api(f"STREAM.LEADER.STEPDOWN.{name}")
            await asyncio.sleep(1)
    big = b'{"x": "' + b"y" * 60_000 + b'"}'
    for v in range(12):
        await p.append("lag", [new_event(data=big)], v)
    cluster = (await p._conn.api(f"STREAM.INFO.{p.names.stream}"))["cluster"]
    assert any(r["name"] == behind and not r["current"] for r in cluster["replicas"]), cluster


async def test_a_read_whose_consumer_sits_on_a_replica_behind_the_leader_is_never_short() -> None:
    """A replicated stream's ephemeral read consumer sits on ANY replica (nats-server places an R1 consumer at
    random among the stream's peers), which may not hold the last acknowledged messages yet (seen once on a
    loaded machine: a raced stream read back as []). The read ended where that replica's messages ended."""
    servers, behind = _cluster_with_a_replica_kept_behind()
    try:
        p = await _connect_retrying(servers.url, replicas=3, old_server_replicated="stream_wide", storage="memory")
        try:
            await _fill_past(p, behind)
            for _ in range(8):  # each read makes a new consumer, placed at random: most rounds meet the lagger
                assert [e.version async for e in p.read_stream("lag")] == list(range(1, 13))
                assert [e.version async for e in p.read_stream("lag", from_version=7)] == list(range(7, 13))
                assert [e.version async for e in p.read_stream("lag", backwards=True)] == list(range(12, 0, -1))
                assert [e.version async for e in p.read_all()] == list(range(1, 13))
        finally:
            await dispose(p)
    finally:
        servers.stop()


async def test_stream_info_and_get_event_never_read_a_replicated_bucket_from_a_replica_behind() -> None:
    """Every replica of a bucket with direct gets answers them, also one behind its leader: a stream created
    (empty) a moment ago read as missing from get_stream_info, and get_event by id as None."""
    servers, behind = _cluster_with_a_replica_kept_behind()
    try:
        p = await _connect_retrying(servers.url, replicas=3, old_server_replicated="stream_wide", storage="memory")
        other = NatsProvider(**p.spawn_args())
        try:
            await _fill_past(p, behind)
            await p.create_stream(NewStream("empty"))
            ids = [(await p.append("small", [new_event()], v)).event_ids[0] for v in range(3)]
            await other.connect()  # nothing cached in this process: the id index is read
            for _ in range(12):  # direct gets go to any replica of the bucket: most rounds meet the lagger
                info = await other.get_stream_info("empty")
                assert info is not None
                assert info.version == 0
                found = await other.get_event(ids[-1])
                assert found is not None
                assert found.version == 3
        finally:
            await other.close()
            await dispose(p)
    finally:
        servers.stop()


async def test_get_event_survives_a_lost_index_entry(machine_provider: NatsProvider) -> None:
    p = machine_provider
    r = await p.append("idx", [new_event(), new_event()], 0)
    await p._conn.purge(f"KV_{p.names.ids_bucket}", filter=f"$KV.{p.names.ids_bucket}.>")  # as if lost in a crash
    other = NatsProvider(**p.spawn_args())
    await other.connect()
    try:
        assert await other.get_event(r.event_ids[1]) is None  # no index entry, no stream id: not found
        found = await other.get_event(r.event_ids[1], "idx")  # with the stream id: read the stream
        assert found is not None
        assert found.version == 2
        assert await other.rebuild_id_index() == 2
        again = await other.get_event(r.event_ids[0])
        assert again is not None
        assert again.version == 1
    finally:
        await other.close()


# ---------------------------------------------------------------------- found by a review (session 3)


async def test_a_cached_empty_tail_does_not_survive_another_instance_deleting_the_stream(machine_nats_url: str) -> None:
    """An empty stream's tail expects subject sequence 0, which a deleted stream matches too."""
    p = await open_provider(machine_nats_url)
    q = NatsProvider(**p.spawn_args())
    await q.connect()
    try:
        await p.create_stream(NewStream("t"))
        with pytest.raises(ConcurrencyError):
            await p.append("t", [new_event()], 7)  # p now caches t's empty tail
        await q.delete_stream("t")
        with pytest.raises(ConcurrencyError):
            await p.append("t", [new_event()], STREAM_EXISTS)
        assert await q.get_stream_info("t") is None
        r = await p.append("t", [new_event()], ANY)  # the id is reusable: it starts again at version 1
        assert r.first_version == 1
    finally:
        await q.close()
        await dispose(p)


async def test_retention_keeps_a_subjects_last_message_while_earlier_ones_stay(machine_nats_url: str) -> None:
    """Client timestamps that run backwards: deleting the last message would lose the stream's tail."""
    from datetime import timedelta

    p = await open_provider(machine_nats_url)
    try:
        now = utcnow()
        await p.append("s", [new_event(timestamp=now)], NO_STREAM)
        await p.append("s", [new_event(timestamp=now - timedelta(days=10))], 1)
        assert await p.delete_events_before(now - timedelta(days=1)) == 0
        fresh = NatsProvider(**p.spawn_args())
        await fresh.connect()
        try:
            assert [e.version async for e in fresh.read_stream("s")] == [1, 2]
            info = await fresh.get_stream_info("s")
            assert info is not None
            assert (info.version, info.event_count) == (2, 2)
            assert (await fresh.append("s", [new_event()], 2)).first_version == 3
        finally:
            await fresh.close()
    finally:
        await dispose(p)


async def test_a_lost_ack_retry_after_the_duplicate_window_is_recognised_by_another_process(
    machine_nats_url: str,
) -> None:
    p = await open_provider(machine_nats_url, duplicate_window=1.0, publish_timeout=0.3, publish_retry_seconds=0.0)
    try:
        real, losing = p._publisher._on_ack, [False]

        async def on_ack(msg: object) -> None:  # while losing, the ack never arrives: stored, never indexed
            if not losing[0]:
                await real(msg)

        p._publisher._on_ack = on_ack  # type: ignore[method-assign]  # before the first publish subscribes it
        await p.append("s", [new_event()], NO_STREAM)
        lost = new_event()
        losing[0] = True
        with pytest.raises(Exception):  # noqa: B017 - a timeout of whichever kind the client reports
            await p.append("s", [lost], 1)
        losing[0] = False
        await asyncio.sleep(1.5)  # past the server's duplicate window
        other = NatsProvider(**p.spawn_args())
        await other.connect()
        try:
            again = await other.append("s", [lost], 1)
            assert (again.first_version, again.duplicate) == (2, True)
            assert [e.event_id async for e in other.read_stream("s")][1:] == [lost.event_id]
        finally:
            await other.close()
    finally:
        await dispose(p)


async def test_an_event_id_can_be_appended_again_after_its_stream_was_deleted(machine_nats_url: str) -> None:
    p = await open_provider(machine_nats_url)  # inside the server's duplicate window
    try:
        ev = new_event()
        await p.append("s", [ev], NO_STREAM)
        await p.delete_stream("s")
        r = await p.append("s", [ev], NO_STREAM)
        assert (r.first_version, r.duplicate) == (1, False)
        again = await p.append("s", [ev], NO_STREAM)  # and a retry of that append is still recognised
        assert again.duplicate
        assert [e.event_id async for e in p.read_stream("s")] == [ev.event_id]
    finally:
        await dispose(p)


async def test_an_oversize_no_stream_append_leaves_no_claim_behind(machine_nats_url: str) -> None:
    from eventsource.errors import ValidationError

    p = await open_provider(machine_nats_url)
    try:
        with pytest.raises(ValidationError):
            await p.append("s", [new_event(data=b"x" * (p._conn.max_payload + 1))], NO_STREAM)
        assert await p.get_stream_info("s") is None
        await p.append("s", [new_event()], ANY, NewStream("s", name="Orders", metadata={"k": 1}))
        info = await p.get_stream_info("s")
        assert info is not None
        assert (info.name, info.metadata) == ("Orders", {"k": 1})
    finally:
        await dispose(p)


async def test_an_instance_finds_many_ids_in_the_id_index(server_url: str) -> None:
    """Batch lookups of ids (one ``multi_last`` get per 256 on 2.11+, one get each before) see what is stored.

    Stored ids (more than one request's worth), an id whose entry was deleted, ids never stored and an
    id asked twice, looked up by an instance that has nothing in memory.
    """
    from eventsource_nats.naming import event_key

    p = await open_provider(server_url)
    try:
        stored: dict[str, int] = {}
        for b in range(3):
            evs = [new_event() for _ in range(100)]
            r = await p.append("s", evs, b * 100)
            stored.update(zip(r.event_ids, r.positions, strict=True))
        ids = list(stored)
        gone = ids.pop()
        await p._conn.kv[p._conn.names.ids_bucket].delete(event_key(gone))
        absent = [str(uuid.uuid4()) for _ in range(20)]
        asked = [*ids[:150], gone, *absent, *ids[150:], ids[0]]
        other = NatsProvider(**p.spawn_args())
        await other.connect()
        try:
            for _ in range(50):  # the index entries are published without waiting for their acks
                locs = await other._index.locate_many(asked)
                if locs.count(None) == len(absent) + 1:
                    break
                await asyncio.sleep(0.05)
        finally:
            await other.close()
        want = [split_position(stored[i]) if i in stored and i != gone else None for i in asked]
        assert locs == want
    finally:
        await dispose(p)


async def test_multi_last_and_one_get_per_id_agree_on_the_id_index(current_server: Servers) -> None:
    """Differential: on a 2.11+ server the ``multi_last`` lookup answers exactly what one get per id answers.

    Ids with subject-special and non-ASCII characters and a very long one, over three requests' worth
    (chunk boundaries), asked twice within one lookup, entries deleted and purged (the marker is last),
    an entry rewritten, and ids never stored; checked against per-id gets and single ``locate``.
    """
    from eventsource_nats.naming import event_key

    p = await open_provider(current_server.url)
    try:
        idx = p._index
        kv = p._conn.kv[p._conn.names.ids_bucket]
        special = ["a.b", "*", ">", "a b", "a.*.>", "ünï€😀", "x" * 5000, "", "\x00\t\n", "$KV.x.>"]
        stored = special + [f"id-{n}" for n in range(600)]
        for n, i in enumerate(stored):
            await kv.put(event_key(i), f"{n + 1} 0".encode())
        await kv.put(event_key("id-7"), b"999 3")
        deleted, purged = stored[3], "id-300"
        await kv.delete(event_key(deleted))
        await kv.purge(event_key(purged))
        absent = [f"never-{n}" for n in range(40)]
        asked = [*stored[:255], *absent[:5], stored[0], *stored[255:], *absent[5:], *stored[250:260], stored[-1]]
        bucket = p._conn.names.ids_bucket
        subjects = [f"$KV.{bucket}.{event_key(i)}" for i in asked]
        many = await idx._multi_last(f"KV_{bucket}", subjects)
        each = await idx._direct_each(f"KV_{bucket}", subjects)
        assert many is not None
        assert many == each
        assert [v is None for v in many] == [i in absent or i in (deleted, purged) for i in asked]
        idx.clear()
        assert await idx.locate_many(asked) == [await idx.locate(i) for i in asked]
    finally:
        await dispose(p)


async def test_a_retried_batch_whose_multi_last_answer_is_cut_short_is_stored_once(current_server: Servers) -> None:
    """A real 2.15 server cuts the ``multi_last`` answer short; the ids are then asked one by one.

    The server ends an answer at about 64 MiB with ``Nats-Num-Pending`` above 0: the index entries are
    padded with spaces (they parse the same) so that one batch's entries pass that. A lookup that took the
    answer as complete would find part of the batch, and a retry by an instance with nothing in memory
    would fail, or be stored twice; it must return the original result.
    """
    from eventsource_nats.naming import event_key

    padding = 800_000  # 100 entries: 80 MB
    p = await open_provider(current_server.url)
    try:
        events = [new_event() for _ in range(100)]
        first = await p.append("s", events, 0)
        kv = p._conn.kv[p._conn.names.ids_bucket]
        for e, pos in zip(events, first.positions, strict=True):  # each acknowledged: all there for the retry
            seq, n = split_position(pos)
            await kv.put(event_key(e.event_id), f"{seq} {n}".encode() + b" " * padding)
        other = NatsProvider(**p.spawn_args())  # another process: nothing of the batch in memory
        await other.connect()
        try:
            cut_short: list[bool] = []
            real = other._index._multi_last

            async def watched(stream: str, subjects: list[str]) -> list[bytes | None] | None:
                found = await real(stream, subjects)
                cut_short.append(found is None)
                return found

            other._index._multi_last = watched  # type: ignore[method-assign]
            again = await other.append("s", events, 0)
            assert cut_short == [True]  # the server did cut the answer short, and the ids were asked again
            assert again.duplicate
            assert again.positions == first.positions
            assert [e.event_id async for e in other.read_stream("s")] == [e.event_id for e in events]
        finally:
            await other.close()
    finally:
        await dispose(p)


async def test_a_batch_retried_by_another_instance_loads_each_stored_message_once(
    machine_provider: NatsProvider,
) -> None:
    """A retried batch of 1,000 events found in the id index: its one message is loaded once, not once per id.

    Each id's location was verified by loading its message on its own: 1,000 loads of the same ~120 KB
    envelope at once, more than the server lets a client fall behind by (it closed the connection as a slow
    consumer), so the retry timed out instead of returning the original result.
    """
    p = machine_provider
    events = [new_event() for _ in range(1000)]
    first = await p.append("s", events, 0)
    assert {split_position(x)[0] for x in first.positions} == {split_position(first.positions[0])[0]}  # one message
    other = NatsProvider(**p.spawn_args())  # another process: nothing of the batch in memory
    await other.connect()
    try:
        loads: list[int] = []
        real = other._conn.msg_at

        async def counted(seq: int) -> Any:
            loads.append(seq)
            return await real(seq)

        other._conn.msg_at = counted  # type: ignore[method-assign]
        again = await other.append("s", events, 0)
        assert again.duplicate
        assert again.positions == first.positions
        assert len(loads) == 1
    finally:
        await other.close()


@pytest.mark.parametrize("expected", [0, ANY])
async def test_a_batch_retried_after_part_of_its_index_entries_were_lost_returns_the_original_result(
    machine_provider: NatsProvider, expected: Any
) -> None:
    """Index entries are written after the ack without waiting for theirs: a crash (or a retry from another
    process before they arrive) leaves some of a batch's ids indexed and some not. The ids found tell where
    the batch stands; the others are read there: an identical retry, not a ``DuplicateEventError``."""
    from eventsource_nats.naming import event_key

    p = machine_provider
    await p.append("s", [new_event()], 0)
    events = [new_event() for _ in range(10)]
    first = await p.append("s", events, 1 if expected == 0 else ANY)
    kv = p._conn.kv[p._conn.names.ids_bucket]
    for e in events[:3] + events[7:]:
        await kv.purge(event_key(e.event_id))
    other = NatsProvider(**p.spawn_args())  # another process: nothing of the batch in memory
    await other.connect()
    try:
        again = await other.append("s", events, 1 if expected == 0 else ANY)
        assert again.duplicate
        assert again.positions == first.positions
        assert [e.event_id async for e in other.read_stream("s")][1:] == [e.event_id for e in events]
    finally:
        await other.close()


async def test_a_server_before_2_15_looks_ids_up_one_by_one(
    current_server: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2.11-2.14 answer multi_last by picking sequences first and loading them after; a message removed in
    # between ends the answer with a 404 that read as "absent" for every id not yet sent (a retried batch
    # stored twice): only a server that reads them in one pass (2.15+) is asked that way
    p = await open_provider(current_server.url)
    try:
        idx = p._index
        calls: list[str] = []
        real = idx._multi_last

        async def counting(stream: str, subjects: list[str]) -> list[bytes | None] | None:
            calls.append(stream)
            return await real(stream, subjects)

        monkeypatch.setattr(idx, "_multi_last", counting)
        ids = [f"gate-{n}" for n in range(5)]
        await idx.locate_many(ids)
        assert calls, "a 2.15 server is asked with multi_last"
        calls.clear()
        idx.clear()
        monkeypatch.setattr(p._conn, "server_version", (2, 14, 5))
        await idx.locate_many(ids)
        assert calls == [], "a 2.14 server was asked with multi_last"
    finally:
        await dispose(p)

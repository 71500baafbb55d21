"""Findings of a review of the attacker review's fixes: each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import test_nats
from conftest import appended_new, created, dispose, new_event, open_provider
from eventsource.model import NO_STREAM
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from servers import Servers


old_cluster = test_nats.old_cluster  # the fixture: a 3-node cluster of a server before 2.9.21


async def test_a_claim_given_back_leaves_the_id_safe_to_claim_under_the_stream_wide_check(
    old_cluster: Servers,
) -> None:
    """Under the stream-wide check (replicated stream, server before 2.9.21) a failed NO_STREAM append gives its
    claim back with a KV delete, which leaves a delete marker; the next claim of the id (nats-py's ``kv.create``)
    is then a compare-and-set on the marker's revision, which that server does not enforce under replication:
    two ``create_stream`` calls (or one and a ``NO_STREAM`` append) racing on such an id both succeeded."""
    from eventsource.errors import DuplicateEventError

    a = await test_nats._connect_retrying(old_cluster.url, replicas=3, old_server_replicated="stream_wide")
    b = NatsProvider(**a.spawn_args())
    await b.connect()
    try:
        assert a.occ_mode == "stream_wide"
        taken = new_event()
        await a.append("taken", [taken], NO_STREAM)
        both = []
        for r in range(15):
            sid = f"race-{r}"
            with contextlib.suppress(DuplicateEventError):
                await b.append(sid, [taken], NO_STREAM)  # claims the id, then gives the claim back
            for _ in range(100):  # the bucket's direct gets may be answered by a replica a moment behind
                if await a.get_stream_info(sid) is None:
                    break  # (a give-back that timed out on a loaded machine leaves the claim: both then lose)
                await asyncio.sleep(0.05)
            outcomes = await asyncio.gather(created(a, sid), created(b, sid), appended_new(b, sid))
            if outcomes.count("lost") != 2:
                both.append((r, outcomes))
        assert both == []
    finally:
        await b.close()
        await dispose(a)


@pytest.mark.parametrize(
    ("setting", "value", "deletes"),
    [("max_msgs", 1000, False), ("max_bytes", 1 << 30, False), ("max_age", 3600.0, True)],
)
async def test_a_limit_under_discard_new_that_refuses_writes_is_not_a_deletion_risk(
    machine_nats_url: str, setting: str, value: float, deletes: bool
) -> None:
    """A cap on the events stream with ``discard: new`` (the way to bound disk without losing anything) makes the
    server refuse new messages at the cap, never delete stored ones: health said "degraded" and that the server
    deletes messages past this limit. ``max_age`` deletes whatever the discard policy."""
    import dataclasses

    from nats.js.api import DiscardPolicy

    p = await open_provider(machine_nats_url)
    try:
        info = await p._conn.js.stream_info(p.names.stream)
        await p._conn.js.update_stream(dataclasses.replace(info.config, discard=DiscardPolicy.NEW, **{setting: value}))
        h = await p.health()
        assert [r["setting"] for r in h.details["durability_risks"]] == ([setting] if deletes else [])
        assert h.details["status"] == ("degraded" if deletes else "healthy"), h.message
    finally:
        await dispose(p)


async def test_a_retention_run_landing_inside_delete_stream_never_carries_the_versions_to_the_reused_id(
    machine_nats_url: str,
) -> None:
    """``delete_stream`` zeroes the record's remembered version only when the record had one as the delete began:
    a retention run counting its truncation into the record after that (before the subject's purge) put the
    version back, and an append between the purges continued the deleted stream (version 6 on an emptied id)."""
    from eventsource.model import ANY
    from test_review_attacks import _live_count_and_info

    p = await open_provider(machine_nats_url)  # deletes
    q = NatsProvider(**p.spawn_args())  # a retention job
    r = NatsProvider(**p.spawn_args())  # appends to the id
    await q.connect()
    await r.connect()
    try:
        for v in range(5):
            await p.append("s", [new_event()], v)
        go, done = asyncio.Event(), asyncio.Event()
        real_carry = q._retention._carry_out

        async def carry_out(token: str, plan: Any) -> Any:
            await asyncio.wait_for(go.wait(), 10)
            try:
                return await real_carry(token, plan)
            finally:
                done.set()

        q._retention._carry_out = carry_out  # type: ignore[method-assign]
        truncation = asyncio.ensure_future(q.truncate_stream("s", 3))
        real_purge, purges = p._conn.purge, [0]

        async def purge(stream: str, **req: Any) -> int:
            purges[0] += 1
            if purges[0] == 1:  # delete_stream's purge of the subject: the retention run lands just before it
                go.set()
                await asyncio.wait_for(done.wait(), 10)
            n = await real_purge(stream, **req)
            if purges[0] == 1:
                await r.append("s", [new_event()], ANY)  # between the subject's purge and the record's
            return n

        p._conn.purge = purge  # type: ignore[method-assign]
        await p.delete_stream("s")
        p._conn.purge = real_purge  # type: ignore[method-assign]
        await truncation
        await r.append("s", [new_event()], ANY)
        versions, info = await _live_count_and_info(p, "s")
        assert versions == list(range(1, len(versions) + 1))
        assert info is not None
        assert (info.version, info.event_count) == (len(versions), len(versions))
    finally:
        await q.close()
        await r.close()
        await dispose(p)


async def test_a_no_stream_conflict_on_an_existing_stream_reads_one_message_and_opens_no_consumer(
    machine_nats_url: str,
) -> None:
    """A ``NO_STREAM`` append to a stream that exists (the usual "aggregate already exists" rejection) read the
    stream's first message, then opened an ephemeral consumer on it to look for its ids: a consumer created and
    deleted on the server per rejection (3 requests before the fix of lost-ack retries, 7 after). A retry's events
    are the stream's first: only when the first message starts with this append's first id is it read further."""
    from eventsource.errors import ConcurrencyError

    p = await open_provider(machine_nats_url)
    q = NatsProvider(**p.spawn_args())  # another process: nothing cached
    await q.connect()
    try:
        await p.append("s", [new_event()], NO_STREAM)
        subjects: list[str] = []
        real = q._conn.nc.request

        async def request(subject: str, *args: Any, **kw: Any) -> Any:
            subjects.append(subject)
            return await real(subject, *args, **kw)

        q._conn.nc.request = request
        for n in (1, 3):
            with pytest.raises(ConcurrencyError):
                await q.append("s", [new_event() for _ in range(n)], NO_STREAM)
        assert [s for s in subjects if "CONSUMER" in s] == []
    finally:
        await q.close()
        await dispose(p)


async def test_a_replicated_stream_without_direct_gets_is_used_as_it_is_by_an_account_that_cannot_update_it() -> None:
    """Connect turned ``allow_direct`` on for every existing stream without it, but only a one-replica stream is
    read with direct gets (a replicated one is read from its leader): an account without the permission to update
    streams could no longer connect to a replicated stream it used before, and the operator's setting changed."""
    from nats.js.api import StreamConfig
    from servers import start_cluster

    users = """authorization { users = [
  {user: admin, password: admin}
  {user: app, password: app, permissions: {publish: {deny: ["$JS.API.STREAM.UPDATE.>"]}}}
] }"""
    cluster = start_cluster(3, extra_conf=users)
    try:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in cluster.nodes)
        store = {"stream": f"T{uuid.uuid4().hex[:12]}", "subject_prefix": f"t{uuid.uuid4().hex[:12]}"}
        admin = await test_nats._connect_retrying(f"nats://admin:admin@{hosts}", replicas=3, **store)
        await admin.append("s", [new_event()], NO_STREAM)
        info = await admin._conn.js.stream_info(store["stream"])
        await admin._conn.js.update_stream(StreamConfig.from_response({**info.config.as_dict(), "allow_direct": False}))
        app = NatsProvider(f"nats://app:app@{hosts}", request_timeout=2.0, **store)
        try:
            await app.connect()
            assert (await app.append("s", [new_event()], 1)).first_version == 2
            assert [e.version async for e in app.read_stream("s")] == [1, 2]
        finally:
            await app.close()
        assert (await admin._conn.js.stream_info(store["stream"])).config.allow_direct is False
        await dispose(admin)
    finally:
        cluster.stop()


async def test_retention_still_works_on_an_id_written_again_after_an_interrupted_delete(machine_nats_url: str) -> None:
    """``delete_stream`` marks the record as being deleted before its purges; a delete that failed after purging
    the subject left the mark, the id was written again (the record said it exists), and retention never touched
    the stream again: it took the mark for a delete still under way and deleted nothing."""
    from eventsource.errors import ProviderError
    from eventsource.model import ANY

    p = await open_provider(machine_nats_url)
    try:
        for v in range(3):
            await p.append("s", [new_event()], v)
        real, purges = p._conn.purge, [0]

        async def purge(stream: str, **req: Any) -> int:
            purges[0] += 1
            if purges[0] == 3:  # the snapshots, then the subject are purged; the connection fails before the record's
                raise ProviderError("connection lost")
            return await real(stream, **req)

        p._conn.purge = purge  # type: ignore[method-assign]
        with pytest.raises(ProviderError):
            await p.delete_stream("s")
        p._conn.purge = real  # type: ignore[method-assign]
        for _ in range(3):
            await p.append("s", [new_event()], ANY)
        assert await p.truncate_stream("s", 3) == 2
        assert [e.version async for e in p.read_stream("s")] == [3]
    finally:
        await dispose(p)


async def test_a_retried_append_answered_as_a_duplicate_never_brings_back_a_stream_deleted_meanwhile(
    machine_nats_url: str,
) -> None:
    """A NO_STREAM append whose ack was lost is retried, answered as a duplicate, and writes the stream's record if
    the first attempt left none; a ``delete_stream`` by another process landing just before that write left the
    deleted id existing again (an empty stream, so a NO_STREAM append to it was refused)."""
    from eventsource.model import NewStream

    p = await open_provider(machine_nats_url, publish_timeout=0.3, publish_retry_seconds=0.0)
    q = NatsProvider(**p.spawn_args())
    await q.connect()
    try:
        real, losing = p._publisher._on_ack, [True]

        async def on_ack(msg: object) -> None:
            if not losing[0]:
                await real(msg)

        p._publisher._on_ack = on_ack  # type: ignore[method-assign]
        ev, attrs = new_event(), NewStream("s", name="Order 1")
        with pytest.raises(Exception):  # noqa: B017 - a timeout of whichever kind the client reports
            await p.append("s", [ev], NO_STREAM, attrs)
        losing[0] = False
        restore = p._appender._restore_info

        async def deleted_first(*args: Any) -> None:
            await q.delete_stream("s")  # lands after the duplicate answer, before the record is written
            await restore(*args)

        p._appender._restore_info = deleted_first  # type: ignore[method-assign]
        assert (await p.append("s", [ev], NO_STREAM, attrs)).duplicate
        assert await q.get_stream_info("s") is None
        assert (await q.append("s", [new_event()], NO_STREAM)).first_version == 1
    finally:
        await q.close()
        await dispose(p)

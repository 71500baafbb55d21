"""Findings of an attacker review of the provider: each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import test_nats
from conftest import appended_new, created, dispose, new_event, open_provider
from eventsource.model import NO_STREAM, NewEvent, utcnow
from eventsource_nats.naming import event_key
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from servers import Servers


old_cluster = test_nats.old_cluster  # the fixture: a 3-node cluster of a server before 2.9.21


async def _lose_the_id_index(p: NatsProvider, ids: list[str]) -> None:
    """As if the writer crashed after the publish, before its (unacknowledged) index writes arrived.

    The entries are sent without waiting for an ack: wait until each is stored, so none lands after the purge.
    """
    for event_id in ids:
        for _ in range(200):
            if await p._conn.kv_get(p.names.ids_bucket, event_key(event_id)) is not None:
                break
            await asyncio.sleep(0.01)
    await p._conn.purge(f"KV_{p.names.ids_bucket}", filter=f"$KV.{p.names.ids_bucket}.>")
    assert all([await p._conn.kv_get(p.names.ids_bucket, event_key(i)) is None for i in ids])


@pytest.mark.parametrize("size", [1, 3])
async def test_a_no_stream_append_retried_by_another_process_after_a_lost_ack_is_not_a_conflict(
    server_url: str, size: int
) -> None:
    """The writer died after its NO_STREAM append was stored, before the index entries were written; another
    process retries the same events: the original result, not "stream exists" (an expected version of 0
    was recognised; NO_STREAM, the usual way to create an aggregate, was not, even inside the dedup window)."""
    p = await open_provider(server_url)
    try:
        events = [new_event() for _ in range(size)]
        first = await p.append("s", events, NO_STREAM)
        await _lose_the_id_index(p, [e.event_id for e in events])
        other = NatsProvider(**p.spawn_args())  # another process: nothing of the append in memory
        await other.connect()
        try:
            again = await other.append("s", events, NO_STREAM)
            assert again.duplicate
            assert (again.first_version, again.positions) == (1, first.positions)
            assert [e.event_id async for e in other.read_stream("s")] == [e.event_id for e in events]
        finally:
            await other.close()
    finally:
        await dispose(p)


async def test_a_no_stream_append_whose_ack_was_lost_is_retried_by_the_same_process(machine_nats_url: str) -> None:
    """The ack of a NO_STREAM append never arrives (the message is stored): the append fails with a timeout and
    gives its claim back; the caller's retry of the same event must return the stored result, not a conflict."""
    p = await open_provider(machine_nats_url, publish_timeout=0.3, publish_retry_seconds=0.0)
    try:
        real, losing = p._publisher._on_ack, [True]

        async def on_ack(msg: object) -> None:  # while losing, the ack never arrives: stored, never indexed
            if not losing[0]:
                await real(msg)

        p._publisher._on_ack = on_ack  # type: ignore[method-assign]  # before the first publish subscribes it
        ev = new_event()
        with pytest.raises(Exception):  # noqa: B017 - a timeout of whichever kind the client reports
            await p.append("s", [ev], NO_STREAM)
        losing[0] = False
        again = await p.append("s", [ev], NO_STREAM)
        assert (again.first_version, again.duplicate) == (1, True)
        assert [e.event_id async for e in p.read_stream("s")] == [ev.event_id]
    finally:
        await dispose(p)


async def _race_retention(p: NatsProvider, run: Any) -> tuple[int, int]:
    """Run ``run(provider)`` on two instances (two retention jobs, as two replicas of a service schedule them),
    both planning before either carries its plan out; returns what each reported deleted."""
    q = NatsProvider(**p.spawn_args())
    await q.connect()
    planned = [0]
    both = asyncio.Event()
    try:
        for inst in (p, q):
            real = inst._retention._carry_out

            async def carry_out(token: str, plan: Any, real: Any = real) -> Any:
                planned[0] += 1
                if planned[0] == 2:
                    both.set()
                await asyncio.wait_for(both.wait(), 10)
                return await real(token, plan)

            inst._retention._carry_out = carry_out  # type: ignore[method-assign]
        a, b = await asyncio.gather(run(p), run(q))
    finally:
        await q.close()
    return a, b


async def _live_count_and_info(p: NatsProvider, sid: str) -> tuple[list[int], Any]:
    fresh = NatsProvider(**p.spawn_args())
    await fresh.connect()
    try:
        return [e.version async for e in fresh.read_stream(sid)], await fresh.get_stream_info(sid)
    finally:
        await fresh.close()


async def test_two_truncations_of_one_stream_at_once_count_each_deleted_event_once(machine_nats_url: str) -> None:
    """Both runs added the events they planned to the stream's removed count: 10 of 20 deleted, and
    ``event_count`` said 0 (``first_version`` None) while 10 events were there to read."""
    p = await open_provider(machine_nats_url)
    try:
        for v in range(20):
            await p.append("s", [new_event()], v)
        a, b = await _race_retention(p, lambda inst: inst.truncate_stream("s", 11))
        versions, info = await _live_count_and_info(p, "s")
        assert versions == list(range(11, 21))
        assert (info.version, info.event_count, info.first_version) == (20, 10, 11)
        assert a + b == 10
    finally:
        await dispose(p)


async def test_two_retention_runs_at_once_count_interior_and_envelope_deletions_once(machine_nats_url: str) -> None:
    """Events deleted one message at a time (older events behind newer ones) and events hidden inside an
    envelope were counted by both runs as well."""
    from datetime import timedelta

    p = await open_provider(machine_nats_url)  # 2.9: a batch is one envelope message
    try:
        now = utcnow()
        old, new = now - timedelta(days=10), now

        def at(ts: Any) -> NewEvent:
            return new_event(timestamp=ts)

        await p.append("s", [at(new)], 0)
        await p.append("s", [at(old)], 1)  # an interior message: deleted on its own
        await p.append("s", [at(new), at(old), at(old)], 2)  # an envelope keeping one live event
        await p.append("s", [at(new)], 5)
        cutoff = now - timedelta(days=1)
        a, b = await _race_retention(p, lambda inst: inst.delete_events_before(cutoff))
        versions, info = await _live_count_and_info(p, "s")
        assert versions == [1, 3, 6]
        assert (info.version, info.event_count, info.first_version) == (6, 3, 1)
        assert a + b == 3
    finally:
        await dispose(p)


async def test_an_append_racing_delete_stream_never_continues_the_deleted_versions(machine_nats_url: str) -> None:
    """``delete_stream`` purged the subject, then the info record: an append landing in between read the
    truncated stream's remembered version from the record and wrote version 4 to the emptied subject, so the
    reused id began at 4 and ``event_count`` said 4 for one event."""
    from eventsource.model import ANY

    p = await open_provider(machine_nats_url)
    q = NatsProvider(**p.spawn_args())  # another process, appending while p deletes
    await q.connect()
    try:
        for v in range(3):
            await p.append("s", [new_event()], v)
        await p.truncate_stream("s", 4)  # every event gone: the info record remembers version 3
        real, purges = p._conn.purge, [0]

        async def purge(stream: str, **req: Any) -> int:
            done = await real(stream, **req)
            purges[0] += 1
            if purges[0] == 1:  # between delete_stream's first purge and the others
                await q.append("s", [new_event()], ANY)
            return done

        p._conn.purge = purge  # type: ignore[method-assign]
        await p.delete_stream("s")
        p._conn.purge = real  # type: ignore[method-assign]
        await q.append("s", [new_event()], ANY)
        versions, info = await _live_count_and_info(p, "s")
        assert versions == list(range(1, len(versions) + 1))
        assert info is not None
        assert (info.version, info.event_count) == (len(versions), len(versions))
    finally:
        await q.close()
        await dispose(p)


async def test_a_store_whose_stream_holds_other_subjects_is_refused_at_connect(machine_nats_url: str) -> None:
    """``subject_prefix`` changed on an existing store (or two stores naming one JetStream stream): the provider
    connected, then every append retried "no response from stream" until its horizon and reads failed with a
    JetStream error, or found no stream at all."""
    from eventsource.errors import ConfigurationError

    p = await open_provider(machine_nats_url)
    try:
        await p.append("s", [new_event()], 0)
        q = NatsProvider(machine_nats_url, stream=p.settings["stream"], subject_prefix="elsewhere")
        with pytest.raises(ConfigurationError, match="subject_prefix") as caught:
            await q.connect()
        assert caught.value.details.get("field") == "subject_prefix"
        await q.close()
        covering = NatsProvider(
            machine_nats_url, stream=p.settings["stream"], subject_prefix=p.settings["subject_prefix"]
        )
        await covering.connect()  # the stream's own subjects: accepted
        await covering.close()
    finally:
        await dispose(p)


async def test_create_stream_and_a_no_stream_append_never_both_win_under_the_stream_wide_check(
    old_cluster: Servers,
) -> None:
    """A replicated stream on a server before 2.9.21 (``old_server_replicated="stream_wide"``): the NO_STREAM
    append skipped its claim of the id, so it and a racing ``create_stream`` both succeeded. A KV create is
    safe there (an expected sequence of 0 is checked when the entry is applied, STORES.md section 1)."""
    a = await test_nats._connect_retrying(old_cluster.url, replicas=3, old_server_replicated="stream_wide")
    b = NatsProvider(**a.spawn_args())
    await b.connect()
    try:
        assert a.occ_mode == "stream_wide"
        both = []
        for r in range(15):
            sid = f"race-{r}"
            outcomes = sorted(await asyncio.gather(created(a, sid), appended_new(b, sid)))
            if outcomes not in (["append", "lost"], ["create", "lost"]):
                both.append((r, outcomes))
        assert both == []
    finally:
        await b.close()
        await dispose(a)


@pytest.mark.parametrize("how", ["truncate", "delete_events_before"])
async def test_a_stream_deleted_while_retention_runs_stays_deleted(machine_nats_url: str, how: str) -> None:
    """Retention planned a stream, then another process deleted it: retention re-created the stream's info
    record with the deleted stream's version, so the deleted stream existed again (empty, at version 5) and a
    NO_STREAM append to the id was refused."""
    from datetime import timedelta

    p = await open_provider(machine_nats_url)
    q = NatsProvider(**p.spawn_args())
    await q.connect()
    try:
        for v in range(5):
            await p.append("s", [new_event()], v)
        real = p._retention._carry_out

        async def carry_out(token: str, plan: Any) -> Any:
            await q.delete_stream("s")  # lands after the plan, before it is carried out
            return await real(token, plan)

        p._retention._carry_out = carry_out  # type: ignore[method-assign]
        if how == "truncate":
            await p.truncate_stream("s", 3)
        else:
            await p.delete_events_before(utcnow() + timedelta(days=1))
        assert await q.get_stream_info("s") is None
        r = await q.append("s", [new_event()], NO_STREAM)
        assert r.first_version == 1
    finally:
        await q.close()
        await dispose(p)


def test_a_kv_error_without_api_fields_maps_to_a_typed_error() -> None:
    """nats-py's ``kv.create`` raises ``KeyNotFoundError`` (an ``APIError`` whose ``__init__`` never sets ``code``)
    when the key is purged between its failed create and its re-read, as ``delete_stream`` racing a create does:
    the mapping read ``e.code`` and raised ``AttributeError`` instead of a typed error."""
    import nats.js.errors
    from eventsource.errors import EventSourceError
    from eventsource_nats.errors import map_error

    for raised in (
        nats.js.errors.KeyNotFoundError(),
        nats.js.errors.KeyDeletedError(),
        nats.js.errors.BucketNotFoundError(),
    ):
        mapped = map_error(raised, "create stream 's'")
        assert isinstance(mapped, EventSourceError)
        assert "create stream 's'" in str(mapped)


async def test_a_failed_no_stream_append_leaves_no_phantom_in_the_stream_list_or_stats(machine_nats_url: str) -> None:
    """The claim given back by a failed NO_STREAM append leaves a delete marker under the stream's key: the
    stream list and stats read the keys and counted a stream that does not exist (total 2 for 1 listed)."""
    from eventsource.errors import DuplicateEventError

    p = await open_provider(machine_nats_url)
    other = NatsProvider(**p.spawn_args())
    await other.connect()
    try:
        taken = new_event()
        await p.append("a", [taken], NO_STREAM)
        with pytest.raises(DuplicateEventError):
            await other.append("b", [taken], NO_STREAM)  # claims "b", then gives the claim back
        assert await p.get_stream_info("b") is None
        listed, total = await p.list_streams(limit=10, offset=0)
        assert ([i.stream_id for i in listed], total) == (["a"], 1)
        stats = await p.stats()
        assert (stats.total_streams, stats.events_by_stream) == (1, {"a": 1})
        bounded = await p.stats(top_streams=5)
        assert bounded.total_streams == 1
    finally:
        await other.close()
        await dispose(p)


async def test_an_append_reading_the_tail_while_retention_empties_the_stream_keeps_counting_versions(
    machine_nats_url: str,
) -> None:
    """The tail was read as the subject's last message and the info record at once: a record read before
    retention counted the purge, with a subject read after it, made an emptied stream of version 5 look like
    version 0, and the append was stored as version 1 again."""
    from eventsource.model import ANY

    p = await open_provider(machine_nats_url)
    q = NatsProvider(**p.spawn_args())  # another process: no tail cached
    await q.connect()
    try:
        for v in range(5):
            await p.append("s", [new_event()], v)
        real, once = q._conn.last_msg, [True]

        async def last_msg(subject: str) -> Any:
            if once[0]:
                once[0] = False
                await p.truncate_stream("s", 6)  # retention empties the stream while the tail is read
            return await real(subject)

        q._conn.last_msg = last_msg  # type: ignore[method-assign]
        r = await q.append("s", [new_event()], ANY)
        assert r.first_version == 6
        with pytest.raises(Exception, match="expected version"):
            await p.append("s", [new_event()], 0)
    finally:
        await q.close()
        await dispose(p)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_age", 3600.0), ("max_msgs", 1000), ("max_bytes", 1 << 30), ("max_msgs_per_subject", 100)],
)
async def test_server_limits_that_delete_events_make_the_store_degraded(
    machine_nats_url: str, setting: str, value: float
) -> None:
    """A limit set on the events stream (by an operator, or a stream created outside the library) makes the server
    delete events the library does not track; health said "ok". Once a stream's events expire, its next append
    even starts again at version 1 (the record never counted the removal)."""
    import dataclasses

    p = await open_provider(machine_nats_url)
    try:
        info = await p._conn.js.stream_info(p.names.stream)
        await p._conn.js.update_stream(dataclasses.replace(info.config, **{setting: value}))
        h = await p.health()
        assert h.details["status"] == "degraded", h.message
        assert [r["setting"] for r in h.details["durability_risks"]] == [setting]
    finally:
        await dispose(p)


async def test_an_existing_stream_without_direct_gets_is_read_and_written(machine_nats_url: str) -> None:
    """A stream created without ``allow_direct`` (by hand, or by another tool) made every read and append wait for
    the request timeout and fail as if the server were down: the provider's message gets are direct gets."""
    import dataclasses

    p = await open_provider(machine_nats_url)
    try:
        await p.append("s", [new_event()], 0)
        info = await p._conn.js.stream_info(p.names.stream)
        await p._conn.js.update_stream(dataclasses.replace(info.config, allow_direct=False))
        q = NatsProvider(**{**p.spawn_args(), "request_timeout": 2.0})
        await q.connect()
        try:
            assert (await q.append("s", [new_event()], 1)).first_version == 2
            assert [e.version async for e in q.read_stream("s")] == [1, 2]
        finally:
            await q.close()
    finally:
        await dispose(p)


async def test_a_no_stream_append_with_attributes_keeps_them_after_a_lost_ack_and_its_retry(
    machine_nats_url: str,
) -> None:
    """The append's ack was lost after the message was stored: the append gave its claim (the info record holding
    the stream's name and metadata) back, and the retry, answered as a duplicate, never wrote them again: the
    stream's attributes were gone for good."""
    from eventsource.model import NewStream

    p = await open_provider(machine_nats_url, publish_timeout=0.3, publish_retry_seconds=0.0)
    try:
        real, losing = p._publisher._on_ack, [True]

        async def on_ack(msg: object) -> None:
            if not losing[0]:
                await real(msg)

        p._publisher._on_ack = on_ack  # type: ignore[method-assign]
        ev, attrs = new_event(), NewStream("s", name="Order 1", aggregate_type="Order", metadata={"region": "eu"})
        with pytest.raises(Exception):  # noqa: B017 - a timeout of whichever kind the client reports
            await p.append("s", [ev], NO_STREAM, attrs)
        losing[0] = False
        again = await p.append("s", [ev], NO_STREAM, attrs)
        assert again.duplicate
        info = await p.get_stream_info("s")
        assert info is not None
        assert (info.name, info.aggregate_type, info.metadata) == ("Order 1", "Order", {"region": "eu"})
    finally:
        await dispose(p)

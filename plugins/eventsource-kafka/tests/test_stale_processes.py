"""Review of issue #11 (session 4): real processes whose view of a stream is stale, no lease.

Each test drives two provider processes (``op_worker.py``) against the real broker and checks what a
process started afterwards (fresh caches) reads: exactly what the writers were told they wrote.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from eventsource_kafka.provider import KafkaProvider

from .conftest import Proc, acked_events_are_readable, drop_namespace


@pytest.fixture
async def two(kafka_url: str) -> Any:
    """Two provider processes on a fresh prefix, and a fresh in-test reader for afterwards."""
    args = {"url": kafka_url, "topic_prefix": f"v{uuid.uuid4().hex[:12]}", "request_timeout": 10.0}
    a, b = await Proc.start(args), await Proc.start(args)
    reader = KafkaProvider(**args)
    try:
        yield a, b, reader
    finally:
        await a.stop()
        await b.stop()
        await reader.connect()
        await drop_namespace(reader)
        await reader.close()


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


async def test_an_identical_retry_through_a_process_with_a_stale_tail_is_a_duplicate(two: Any) -> None:
    """A client's retry (reply lost) reaching another process whose tail predates the original."""
    a, b, reader = two
    assert "ok" in await a(op="append", stream="s", ids=ids(1), expected="NO_STREAM")
    assert (await b(op="info", stream="s"))["ok"]["version"] == 1  # b now knows version 1, and no more
    batch = ids(2)
    assert (await a(op="append", stream="s", ids=batch, expected=1))["ok"] == {
        "first": 2,
        "last": 3,
        "duplicate": False,
    }
    retry = await b(op="append", stream="s", ids=batch, expected=1)
    assert retry.get("ok") == {"first": 2, "last": 3, "duplicate": True}, retry
    await reader.connect()
    assert [e.version async for e in reader.read_stream("s")] == [1, 2, 3]


async def test_a_batch_too_large_with_its_headers_is_refused_before_the_stream_is_created(kafka_url: str) -> None:
    """7,000 empty events: the value fits the limit, the record with one event-id header per event does not."""
    from eventsource.errors import ValidationError
    from eventsource.model import NO_STREAM, NewEvent, utcnow

    p = KafkaProvider(kafka_url, topic_prefix=f"v{uuid.uuid4().hex[:12]}", request_timeout=10.0)
    await p.connect()
    try:
        batch = [NewEvent(i, "E", b"", b"", "json", utcnow()) for i in ids(7000)]
        with pytest.raises(ValidationError):
            await p.append("many", batch, NO_STREAM)
        assert await p.get_stream_info("many") is None  # the store is unchanged
        assert (await p.list_streams(limit=10, offset=0))[1] == 0
        await p.append("kept", [NewEvent(str(uuid.uuid4()), "E", b"", b"", "json", utcnow())], NO_STREAM)
        with pytest.raises(ValidationError):
            await p.append("kept", batch, 1)
        info = await p.get_stream_info("kept")
        assert info is not None
        assert (info.version, info.event_count) == (1, 1)
        r = await p.append("kept", batch[:3000], 1)  # a batch that fits is still one record
        assert (r.first_version, r.last_version) == (2, 3001)
    finally:
        await drop_namespace(p)
        await p.close()


async def test_an_append_to_an_empty_stream_another_process_deleted_is_never_acknowledged_into_nothing(
    two: Any,
) -> None:
    """a created the stream (empty), b deleted it; a's view still names the deleted topic."""
    a, b, reader = two
    assert "ok" in await a(op="create", stream="gone")
    assert "ok" in await b(op="delete", stream="gone")
    late = ids(1)
    out = await a(op="append", stream="gone", ids=late, expected=0)
    await acked_events_are_readable(reader, "gone", late if "ok" in out else [])


async def test_an_append_after_a_conflict_on_a_stream_another_process_deleted_is_never_acknowledged_into_nothing(
    two: Any,
) -> None:
    """a wrote version 1, b deleted the stream; a appends twice more with its stale view."""
    a, b, reader = two
    assert "ok" in await a(op="append", stream="gone", ids=ids(1), expected="NO_STREAM")
    assert "ok" in await b(op="delete", stream="gone")
    acked = []
    for _ in range(3):
        late = ids(1)
        out = await a(op="append", stream="gone", ids=late, expected=1)
        if "ok" in out:
            acked += late
    await acked_events_are_readable(reader, "gone", acked)


async def test_a_process_that_saw_a_stream_missing_never_gives_it_a_second_topic(two: Any) -> None:
    """a looked at the stream before b created it; a's view then learnt of the creation elsewhere.

    a's append used to trust "does not exist" from its tail, create incarnation 2 beside the live
    incarnation 1, and so hide b's acknowledged events (found by a three-process random run).
    """
    a, b, reader = two
    assert (await a(op="info", stream="s")) == {"ok": None}
    first = ids(2)
    assert (await b(op="append", stream="s", ids=first, expected="NO_STREAM"))["ok"]["first"] == 1
    assert (await a(op="info", stream="other")) == {"ok": None}  # a's metadata view now holds b's creation
    second = ids(1)
    out = await a(op="append", stream="s", ids=second, expected="ANY")
    assert out.get("ok", {}).get("first") == 3, out
    await acked_events_are_readable(reader, "s", first + second)
    from eventsource_kafka import naming

    topics = await reader.io.run("listing topics", reader.io.admin.list_topics)
    assert len([t for t in topics if f".{naming.stream_hash('s')}." in t]) == 1


async def test_three_processes_at_random_agree_with_a_fresh_reader(kafka_url: str) -> None:
    """Random appends (batches of 1-4; exact, stale, ANY and NO_STREAM expectations), identical retries
    through any process, truncations and info, from three processes on six streams, no lease.

    Every version is acknowledged to one append only, and a process started afterwards reads exactly
    the acknowledged events (less the truncated ones), forwards, backwards, by id, in read_all, stats
    and info. (This run found the second-topic bug above.)
    """
    import random
    import time

    rnd = random.Random(int(os.environ.get("EVENTSOURCE_KAFKA_RANDOM_SEED", "4")))
    args = {"url": kafka_url, "topic_prefix": f"v{uuid.uuid4().hex[:12]}", "request_timeout": 10.0}
    procs = [await Proc.start(args) for _ in range(3)]
    streams = [f"s{k}" for k in range(6)]
    acked: dict[str, dict[int, str]] = {s: {} for s in streams}
    known: dict[tuple[int, str], int] = {}
    sent: list[tuple[str, list[str], Any]] = []
    problems: list[str] = []
    deadline = time.monotonic() + float(os.environ.get("EVENTSOURCE_KAFKA_RANDOM_SECONDS", "8"))

    async def worker(i: int) -> None:
        p = procs[i]
        while time.monotonic() < deadline:
            s, r = rnd.choice(streams), rnd.random()
            if r < 0.08 and sent:
                s, batch, exp = rnd.choice(sent[-10:])
            elif r < 0.09:
                await p(op="truncate", stream=s, before=max(1, known.get((i, s), 0) - 3))
                continue
            elif r < 0.2:
                out = await p(op="info", stream=s)
                if out.get("ok"):
                    known[(i, s)] = out["ok"]["version"]
                continue
            else:
                batch = ids(rnd.choice([1, 1, 2, 3, 4]))
                exp = "ANY" if rnd.random() < 0.3 else known.get((i, s), 0)
                if exp == 0 and rnd.random() < 0.5:
                    exp = "NO_STREAM"
                sent.append((s, batch, exp))
            out = await p(op="append", stream=s, ids=batch, expected=exp)
            if "ok" in out:
                for k, eid in enumerate(batch):
                    v = out["ok"]["first"] + k
                    if acked[s].setdefault(v, eid) != eid:
                        problems.append(f"{s} version {v} acknowledged to {acked[s][v]} and {eid}")
                known[(i, s)] = out["ok"]["last"]
            elif out["error"] not in ("ConcurrencyError", "DuplicateEventError"):
                problems.append(f"process {i}: {out}")

    try:
        await asyncio.gather(*(worker(i) for i in range(3)))
    finally:
        for p in procs:
            await p.stop()
    reader = KafkaProvider(**args)
    await reader.connect()
    try:
        assert not problems, problems[:5]
        total = 0
        for s in streams:
            versions = sorted(acked[s])
            assert versions == list(range(1, len(versions) + 1)), f"{s}: gaps in {versions}"
            got = [(e.version, e.event_id) async for e in reader.read_stream(s)]
            below = int((await reader._views.meta()).get(s, {}).get("hide_below", 0))
            assert got == [(v, acked[s][v]) for v in versions if v >= below], s
            assert [(e.version, e.event_id) async for e in reader.read_stream(s, backwards=True)] == got[::-1]
            info = await reader.get_stream_info(s)
            if versions:
                assert info is not None
                assert (info.version, info.event_count) == (versions[-1], len(got)), s
            for v, eid in got[:: max(1, len(got) // 4)]:
                e = await reader.get_event(eid, s)
                assert e is not None
                assert e.version == v
            total += len(got)
        assert (await reader.stats()).total_events == total
        assert len([e async for e in reader.read_all()]) == total
    finally:
        await drop_namespace(reader)
        await reader.close()


async def test_a_metadata_check_answered_before_an_append_began_never_answers_for_it(two: Any) -> None:
    """Appends share metadata checks; one sent before an append began must not vouch for its incarnation.

    The writer here is the test's own provider: its earlier appends leave a check answered (stream
    live) in its views; b then deletes the stream, and the writer's next append must see that.
    """
    from eventsource.errors import ConcurrencyError
    from eventsource.model import ANY, NO_STREAM, NewEvent, utcnow

    _, b, reader = two
    writer = KafkaProvider(reader.url, topic_prefix=reader.prefix, request_timeout=10.0)
    await writer.connect()
    try:

        def ev() -> NewEvent:
            return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())

        await writer.append("s", [ev()], NO_STREAM)
        await writer.append("s", [ev()], 1)  # not fresh: a metadata check was sent and answered
        assert writer._views.mark() > 0
        assert "ok" in await b(op="delete", stream="s")
        with pytest.raises(ConcurrencyError):
            await writer.append("s", [ev()], 2)  # the stream it knew at version 2 is gone
        late = ev()
        r = await writer.append("s", [late], ANY)
        assert r.first_version == 1
        await acked_events_are_readable(reader, "s", [late.event_id])
    finally:
        await writer.close()


async def test_concurrent_appends_to_an_empty_stream_another_process_deleted_lose_nothing(two: Any) -> None:
    """Eight appends at once to an empty stream b deleted, while appends to other streams keep checks in flight.

    The appends share metadata checks with each other and with the other streams' appends; each must
    still learn of the delete (the stream's next incarnation holds them all), never be acknowledged
    into the deleted topic (a produce to an empty stream's deleted topic lands at the offset it expects).
    """
    from eventsource.model import ANY, NewEvent, NewStream, utcnow

    def ev() -> NewEvent:
        return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())

    _, b, reader = two
    writer = KafkaProvider(reader.url, topic_prefix=reader.prefix, request_timeout=10.0)
    await writer.connect()
    stop = asyncio.Event()
    appends = [0]
    try:

        async def busy(stream: str) -> None:
            while not stop.is_set():
                await writer.append(stream, [ev()], ANY)
                appends[0] += 1

        others = [asyncio.ensure_future(busy(f"u{k}")) for k in range(3)]
        for k in range(3):
            sid = f"s{k}"
            await writer.create_stream(NewStream(stream_id=sid))
            assert "ok" in await b(op="delete", stream=sid)
            batch = [ev() for _ in range(8)]
            await asyncio.gather(*(writer.append(sid, [e], ANY) for e in batch))
            await acked_events_are_readable(reader, sid, [e.event_id for e in batch])
        stop.set()
        await asyncio.gather(*others)
        assert writer._views.mark() < appends[0]  # the appends shared metadata checks
    finally:
        stop.set()
        await writer.close()

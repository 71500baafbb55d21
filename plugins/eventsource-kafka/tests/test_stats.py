"""Issue #17: stats bounded by ``top_streams`` cost what changed since the last call, not the store.

The writing process counts exactly from the tails it holds (reading only topics whose end moved); a
process that holds no tail estimates each stream from its last record and names those figures.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from eventsource.errors import ProviderTimeoutError
from eventsource.model import ANY, NO_STREAM, NewEvent, utcnow
from eventsource_kafka.provider import KafkaProvider

from .conftest import Proc, drop_namespace


def ev(kind: str) -> NewEvent:
    return NewEvent(str(uuid.uuid4()), kind, b"{}", b"{}", "json", utcnow())


@pytest.fixture
async def store(kafka_url: str) -> Any:
    """A provider on a fresh prefix with six streams of 1..6 events (types A and B), and a second process."""
    args = {"url": kafka_url, "topic_prefix": f"v{uuid.uuid4().hex[:12]}", "request_timeout": 10.0}
    p = KafkaProvider(**args)
    await p.connect()
    streams = [f"s{k}" for k in range(6)]
    for k, s in enumerate(streams):
        await p.append(s, [ev("A" if i % 2 else "B") for i in range(k)], NO_STREAM) if k else None
        await p.append(s, [ev("A")], ANY)
    other = await Proc.start(args)
    try:
        yield p, streams, other
    finally:
        await other.stop()
        await drop_namespace(p)
        await p.close()


def spy_reads(p: KafkaProvider) -> list[str]:
    """The stream topics read through ``p`` from now on (a record of the calls, the broker still answers)."""
    io, read_page, seen = p.io, p.io.read_page, []

    async def counted(topic: str, *args: Any, **kw: Any) -> Any:
        if ".s." in topic:
            seen.append(topic)
        return await read_page(topic, *args, **kw)

    io.read_page = counted  # type: ignore[method-assign]
    return seen


async def test_bounded_stats_are_exact_in_the_writer_and_read_only_streams_that_moved(store: Any) -> None:
    p, _, other = store
    st = await p.stats(top_streams=2)
    assert st.estimated == ()
    assert (st.total_events, st.total_streams, st.top_streams) == (21, 6, 2)
    assert st.events_by_stream == {"s5": 6, "s4": 5}
    kinds = [("A" if i % 2 else "B") for k in range(6) for i in range(k)] + ["A"] * 6
    assert st.events_by_type == {"A": kinds.count("A"), "B": kinds.count("B")}
    reads = spy_reads(p)
    again = await p.stats(top_streams=2)
    assert reads == []  # nothing moved: no stream is read
    assert (again.total_events, again.events_by_stream) == (21, {"s5": 6, "s4": 5})
    for _ in range(3):  # another process writes one stream: only that one is read
        assert "ok" in await other(op="append", stream="s0", ids=[str(uuid.uuid4())], expected="ANY")
    moved = await p.stats(top_streams=2)
    assert set(reads) == {p._views.conn.ns.meta["s0"]["topic"]}
    assert moved.estimated == ()
    assert (moved.total_events, moved.events_by_stream) == (24, {"s5": 6, "s4": 5})
    assert moved.events_by_type["Op"] == 3
    assert await p.truncate_stream("s5", 4) == 3  # hidden events: counts stay exact, types become an estimate
    cut = await p.stats(top_streams=1)
    assert (cut.total_events, cut.events_by_stream) == (21, {"s4": 5})
    assert cut.estimated == ("events_by_type",)
    assert sum(cut.events_by_type.values()) == pytest.approx(21, abs=2)
    exact = await p.stats()  # the unbounded call stays the exact scan
    assert exact.total_events == 21


async def test_a_process_holding_no_tail_estimates_from_last_records_and_says_so(store: Any) -> None:
    _, _, other = store
    cold = await other(op="stats", top=3)
    assert cold["ok"]["total_streams"] == 6
    assert cold["ok"]["by_stream"] == {"s5": 6, "s4": 5, "s3": 4}
    assert cold["ok"]["total_events"] == 21
    assert set(cold["ok"]["estimated"]) == {"total_events", "events_by_stream", "last_event_at", "events_by_type"}
    assert sum(cold["ok"]["by_type"].values()) == pytest.approx(21, abs=2)


async def test_bounded_stats_forget_the_cached_estimates_of_deleted_streams(store: Any) -> None:
    """A monitor polling stats while streams come and go holds estimates only for the streams that exist."""
    p, _, other = store
    gone = [f"g{k}" for k in range(5)]
    for sid in gone:  # written by the other process: ``p`` holds no tail of them and estimates them
        assert "ok" in await other(op="append", stream=sid, ids=[str(uuid.uuid4())], expected="NO_STREAM")
    st = await p.stats(top_streams=1)
    assert st.total_streams == 11
    assert "total_events" in st.estimated
    assert set(gone) <= set(p._monitor._cold)
    for sid in gone:
        assert "ok" in await other(op="delete", stream=sid)
    after = await p.stats(top_streams=1)
    assert after.total_streams == 6
    assert set(p._monitor._cold) & set(gone) == set()


async def test_a_cold_first_call_reads_the_last_records_side_by_side(store: Any) -> None:
    """The streams a process holds no tail of are read up to ``io_threads`` at once, not one after another."""
    p, _, other = store
    cold = [f"c{k}" for k in range(12)]
    for sid in cold:  # written by the other process: ``p`` holds no tail of them
        assert "ok" in await other(op="append", stream=sid, ids=[str(uuid.uuid4())], expected="NO_STREAM")
    io, read, inflight, most = p.io, p.io.read, [0], [0]

    async def counted(topic: str, *args: Any, **kw: Any) -> Any:
        inflight[0] += 1
        most[0] = max(most[0], inflight[0])
        try:
            return await read(topic, *args, **kw)
        finally:
            inflight[0] -= 1

    io.read = counted  # type: ignore[method-assign]
    st = await p.stats(top_streams=3)
    assert (st.total_streams, st.total_events) == (18, 33)
    assert "total_events" in st.estimated
    assert 2 <= most[0] <= p._views.conn.settings["io_threads"]


async def test_a_failed_last_record_read_leaves_no_read_running(store: Any) -> None:
    """One read failing fails the call with its typed error, and the reads beside it end with the call.

    Left running, they would go on holding the I/O pool's consumers (and filling the estimates cache)
    after ``stats`` has answered its caller, and fail unseen once the provider is closed.
    """
    p, _, other = store
    for sid in [f"c{k}" for k in range(6)]:  # written by the other process: ``p`` holds no tail of them
        assert "ok" in await other(op="append", stream=sid, ids=[str(uuid.uuid4())], expected="NO_STREAM")
    io, read, inflight, calls, go = p.io, p.io.read_page, [0], [0], asyncio.Event()

    async def failing_once(topic: str, *args: Any, **kw: Any) -> Any:
        if ".s." not in topic:  # the views' own topics
            return await read(topic, *args, **kw)
        calls[0] += 1
        if calls[0] == 1:  # the first read fails (a broker that timed out); the others are still on the wire
            raise ProviderTimeoutError("reading a last record", operation="reading")
        inflight[0] += 1
        try:
            await go.wait()
            return await read(topic, *args, **kw)
        finally:
            inflight[0] -= 1

    io.read_page = failing_once  # type: ignore[method-assign]
    try:
        with pytest.raises(ProviderTimeoutError):
            await p.stats(top_streams=3)
        assert calls[0] >= 2  # the reads did run side by side
        assert inflight[0] == 0
    finally:
        go.set()
        io.read_page = read  # type: ignore[method-assign]
    st = await p.stats(top_streams=3)  # and the next call answers
    assert (st.total_streams, st.total_events) == (12, 27)


async def test_a_stream_deleted_while_the_last_records_are_read_does_not_fail_the_call(store: Any) -> None:
    """Another process deletes a stream while a cold first call reads the last records side by side.

    The read of its gone topic used to fail the whole call (``ProviderUnavailableError``: kafka-python's
    ``partitions_for_topic`` raises for an unknown topic where the read expected ``None``); it reads as
    empty, as a read of a topic deleted meanwhile does everywhere else.
    """
    p, _, other = store
    cold = [f"c{k}" for k in range(6)]
    for sid in cold:  # written by the other process: ``p`` holds no tail of them
        assert "ok" in await other(op="append", stream=sid, ids=[str(uuid.uuid4())], expected="NO_STREAM")
    io, read, deleted = p.io, p.io.read_page, []

    async def deleting_first(topic: str, *args: Any, **kw: Any) -> Any:
        if ".s." in topic and not deleted:  # the first last-record read: its stream goes before it is read
            deleted.append(next(s for s in cold if f".s.{s}." in topic))
            assert "ok" in await other(op="delete", stream=deleted[0])
        return await read(topic, *args, **kw)

    io.read_page = deleting_first  # type: ignore[method-assign]
    try:
        st = await p.stats(top_streams=20)
    finally:
        io.read_page = read  # type: ignore[method-assign]
    assert deleted and "total_events" in st.estimated
    assert st.events_by_stream.get(deleted[0], 0) == 0
    assert st.total_events == 27 - 1

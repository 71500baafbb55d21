"""The stale-incarnation check after issue #11's review: its answer bounds the view, on any connection.

A check (ListOffsets of ``<prefix>.meta``) answers with the topic's end at a moment after the append
began; the view it vouches for must reach that end even when a read of the topic ends early at a high
watermark from a fetch response sent before the check. The check runs on a connection the event
loop owns once it is up, and falls back to the producer's connection when that one is lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ConcurrencyError
from eventsource.model import ANY, NewEvent, NewStream, utcnow

from .conftest import acked_events_are_readable, loop_wire

if TYPE_CHECKING:
    from .conftest import OpenStaleView


def ev() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())


def _buffer_a_partial_fetch(consumer: Any, topic: str, start: int, end: int) -> int:
    """Leave ``consumer`` holding an unparsed fetch response from ``start`` that stops below ``end``.

    Real broker, real response: what a read finds when a fetch sent before it (a poll that timed out
    with its fetch in flight) answers at its position. The response must carry a high watermark of at
    least ``end`` and fewer record batches than that (asked for 1 byte, the broker sends one batch);
    one that does not (Tansu sometimes answers empty, with high watermark 0) is dropped and asked again.
    Returns the high watermark the kept response carries.
    """
    from kafka import TopicPartition
    from kafka.record import MemoryRecords

    tp = TopicPartition(topic, 0)
    fetcher = consumer._fetcher
    consumer.assign([tp])
    config = fetcher.config
    saved = config["max_partition_fetch_bytes"], config["fetch_max_bytes"]
    config["max_partition_fetch_bytes"] = config["fetch_max_bytes"] = 1
    try:
        for _ in range(50):
            fetcher._completed_fetches.clear()
            consumer.seek(tp, start)
            consumer.resume(tp)
            type(fetcher).send_fetches(fetcher)  # the class's method: the pool's wrapper may skip it
            deadline = time.monotonic() + 10
            while not fetcher._completed_fetches and time.monotonic() < deadline:
                time.sleep(0.005)
            if not fetcher._completed_fetches:
                continue
            data = fetcher._completed_fetches[0].partition_data
            batches, records = 0, MemoryRecords(bytes(data.records or b""))
            while records.next_batch() is not None:
                batches += 1
            if data.high_watermark >= end and 1 <= batches < data.high_watermark - start:
                consumer.pause(tp)
                return int(data.high_watermark)
    finally:
        config["max_partition_fetch_bytes"], config["fetch_max_bytes"] = saved
    msg = "the broker never answered a partial fetch"
    raise AssertionError(msg)


async def test_a_stale_high_watermark_above_the_read_start_never_hides_a_delete(
    stale_view: OpenStaleView, kafka_url: str
) -> None:
    """The view read for a check ends at a stale high watermark above its start; the delete past it still counts.

    The writer created an empty stream; b creates two other streams (two metadata records the writer
    has not read), and the writer's metadata consumer is left holding a fetch response from its view's
    offset that delivers the first of them only, with the high watermark of that moment. b then
    deletes the stream. The writer's append sends a check (answered above that high watermark); the
    read it triggers ends at the stale high watermark, below the delete record. Read once, the view
    still showed the stream live, and the append was acknowledged into the deleted topic (where an
    empty stream's record lands at the offset it expects), lost to every reader.
    """
    view = await stale_view(kafka_url)
    b, writer, reader = view.other, view.writer, view.reader
    await writer.create_stream(NewStream(stream_id="gone"))
    io, meta_topic = writer._conn.io, writer._conn.meta_topic
    start = writer._conn.ns.meta_offset
    assert "ok" in await b(op="create", stream="x1")
    assert "ok" in await b(op="create", stream="x2")
    consumer = await io._acquire(meta_topic)
    try:
        hw = await asyncio.to_thread(_buffer_a_partial_fetch, consumer, meta_topic, start, start + 2)
    finally:
        io._release(consumer, broken=False)  # back to the pool: the next read of the metadata takes it
    assert "ok" in await b(op="delete", stream="gone")
    late = ev()
    await writer.append("gone", [late], ANY)
    await acked_events_are_readable(reader, "gone", [late.event_id])
    assert writer._conn.ns.meta_offset > hw  # the view was read past the stale high watermark


async def test_the_check_on_the_loops_own_connection_sees_a_delete_and_falls_back_when_it_is_lost(
    stale_view: OpenStaleView, kafka_url: str
) -> None:
    """Checks go over the loop's own connection; a delete in another process is seen through it, and
    through the producer's connection once that connection is lost (the next one comes up again)."""
    view = await stale_view(kafka_url)
    b, writer, reader = view.other, view.writer, view.reader
    for k, lose in enumerate((False, True)):
        sid = f"s{k}"
        await writer.append(sid, [ev()], ANY)
        await writer.append(sid, [ev()], 1)
        wire = await loop_wire(writer)
        asked = wire._cid
        if lose:
            assert wire.transport is not None
            wire.transport.abort()  # the connection drops: checks fall back to the producer's connection
            await asyncio.sleep(0.05)
        assert "ok" in await b(op="delete", stream=sid)
        try:
            await writer.append(sid, [ev()], 2)
        except ConcurrencyError:
            pass  # the stream it knew at version 2 is gone
        else:
            raise AssertionError("an append was acknowledged into a deleted incarnation")
        if not lose:
            assert wire._cid > asked  # that check went over the loop's own connection
        late = ev()
        r = await writer.append(sid, [late], ANY)
        assert r.first_version == 1
        await acked_events_are_readable(reader, sid, [late.event_id])
    assert (await loop_wire(writer)) is not wire  # a new connection replaced the lost one


def _fail_calls(writer: Any, method: str, topic: str) -> list[str]:
    """Make the writer's client ``method`` (``produce``, ``read``) fail for ``topic`` after a while, with a timeout.

    For ``produce``, what kafka-python does when its metadata lost the topic after the send was handed over
    (a refresh after another process deleted it): the record waits for a leader, expires at the delivery
    timeout, and nothing reaches the broker. Returns the calls refused so far (one topic name each).
    """
    from eventsource.errors import ProviderTimeoutError

    io = writer._conn.io
    real = getattr(io, method)
    refused: list[str] = []

    async def fails(t: str, *args: Any, **kw: Any) -> Any:
        if t != topic:
            return await real(t, *args, **kw)
        refused.append(t)
        await asyncio.sleep(0.2)
        msg = f"{method} {t}: timed out (the delivery timeout passed)"
        raise ProviderTimeoutError(msg, operation=f"{method} {t}")

    setattr(io, method, fails)
    return refused


async def test_a_produce_that_fails_into_a_deleted_incarnation_is_a_conflict_not_a_timeout(
    stale_view: OpenStaleView, kafka_url: str
) -> None:
    """Another process deleted the stream; the writer's produce to the incarnation it knew fails (the producer
    lost the topic's metadata and the record expired). The check the append runs anyway finds the incarnation
    dead: the append reports ConcurrencyError (exact version) or goes on into the live stream (ANY), never a
    retryable timeout for a version that no longer exists."""
    view = await stale_view(kafka_url)
    b, writer, reader = view.other, view.writer, view.reader
    await writer.append("s", [ev()], ANY)
    await writer.append("s", [ev()], 1)
    old = writer._conn.ns.meta["s"]["topic"]
    assert writer._conn.io.knows(old)  # the produce goes straight to the producer, with no race against the check
    assert "ok" in await b(op="delete", stream="s")
    refused = _fail_calls(writer, "produce", old)
    try:
        await writer.append("s", [ev()], 2)
    except ConcurrencyError:
        pass
    else:
        raise AssertionError("an append was acknowledged into a deleted incarnation")
    assert refused == [old]
    late = ev()
    r = await writer.append("s", [late], ANY)
    assert r.first_version == 1
    await acked_events_are_readable(reader, "s", [late.event_id])


async def test_a_produce_that_fails_into_a_live_incarnation_keeps_its_error(
    stale_view: OpenStaleView, kafka_url: str
) -> None:
    """The same failed produce while the stream is live: the check finds nothing changed, and the caller gets
    the producer's timeout (retryable), not a conflict; the stream then takes the retry."""
    from eventsource.errors import ProviderTimeoutError

    view = await stale_view(kafka_url)
    writer, reader = view.writer, view.reader
    await writer.append("s", [ev()], ANY)
    await writer.append("s", [ev()], 1)  # the tail is loaded: the next append is checked (not fresh)
    topic = writer._conn.ns.meta["s"]["topic"]
    real = writer._conn.io.produce
    refused = _fail_calls(writer, "produce", topic)
    again = ev()
    with pytest.raises(ProviderTimeoutError):
        await writer.append("s", [again], 2)
    # one produce: a live incarnation taken for dead would be tried again (fresh, so unchecked) and fail alike
    assert refused == [topic]
    writer._conn.io.produce = real
    r = await writer.append("s", [again], 2)
    assert r.first_version == 3
    await acked_events_are_readable(reader, "s", [again.event_id])


async def test_an_any_append_whose_produce_fails_into_a_deleted_incarnation_goes_on(
    stale_view: OpenStaleView, kafka_url: str
) -> None:
    """The failing append itself, with ``ANY``, goes on into the stream as it is now (created again)."""
    view = await stale_view(kafka_url)
    b, writer, reader = view.other, view.writer, view.reader
    await writer.append("s", [ev()], ANY)
    await writer.append("s", [ev()], 1)
    old = writer._conn.ns.meta["s"]["topic"]
    assert "ok" in await b(op="delete", stream="s")
    refused = _fail_calls(writer, "produce", old)
    late = ev()
    r = await writer.append("s", [late], ANY)
    assert refused == [old]
    assert r.first_version == 1
    await acked_events_are_readable(reader, "s", [late.event_id])


async def test_a_check_that_fails_after_a_good_produce_is_looked_at_once(
    stale_view: OpenStaleView, kafka_url: str
) -> None:
    """Produce and settle succeed, then the check's read of the metadata fails: the append raises that error
    after one look, not after a second look at the same failing check (twice ``request_timeout``)."""
    from eventsource.errors import ProviderTimeoutError

    view = await stale_view(kafka_url)
    b, writer = view.other, view.writer
    await writer.append("s", [ev()], ANY)
    await writer.append("s", [ev()], 1)
    assert "ok" in await b(op="create", stream="x")  # the metadata topic moved: the check's view must be read
    io, meta_topic = writer._conn.io, writer._conn.meta_topic
    real = io.read
    looks = _fail_calls(writer, "read", meta_topic)
    with pytest.raises(ProviderTimeoutError):
        await writer.append("s", [ev()], 2)
    io.read = real
    assert len(looks) == 1

"""``truncate_stream(if_holds=...)``: a marker decided in one incarnation never hides events of the next.

The guard is checked against the incarnation the stream's metadata names at that moment, and the marker
record names that incarnation, so :meth:`Namespace.apply_meta` (every process, in log order) ignores it
when a delete and a re-creation landed between the check and the record.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.model import NO_STREAM, NewEvent, utcnow
from eventsource_kafka.provider import KafkaProvider
from eventsource_kafka.state import Namespace

from .conftest import drop_namespace

if TYPE_CHECKING:
    from .conftest import OpenStaleView


def ev() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", json.dumps({}).encode(), b"", "json", utcnow())


@pytest.mark.parametrize("guarded", [True, False], ids=["if_holds", "unguarded"])
async def test_a_delete_and_re_creation_between_the_guard_and_the_marker_record_hides_nothing(
    stale_view: OpenStaleView, kafka_url: str, guarded: bool
) -> None:
    """Another process deletes the stream and creates it again after the guard passed, before the marker lands.

    The marker was computed for the first incarnation (versions 1..10, below 8 hidden); it lands after the
    second one's create record. Applied to the stream as it then is, it would hide the new stream's events
    (or point the stream back at the deleted topic): every process must read the new stream whole, and the
    call reports that it hid nothing.
    """
    view = await stale_view(kafka_url)
    b, writer = view.other, view.writer
    await writer.append("s", [ev() for _ in range(10)], NO_STREAM)
    last = [e async for e in writer.read_stream("s")][-1]
    assert last.version == 10
    new_ids = [str(uuid.uuid4()) for _ in range(4)]
    views = writer._retention.views
    real = views.put_meta
    raced: list[dict[str, Any]] = []

    async def racing(stream_id: str, meta: dict[str, Any]) -> dict[str, Any] | None:
        if meta.get("op") == "update" and not raced:  # the marker, decided: the stream goes and comes back now
            raced.append(meta)
            assert "ok" in await b(op="delete", stream="s")
            assert (await b(op="append", stream="s", ids=new_ids, expected="NO_STREAM"))["ok"]["last"] == 4
        return await real(stream_id, meta)

    views.put_meta = racing  # type: ignore[method-assign]
    try:
        hidden = await writer.truncate_stream("s", 8, if_holds=(10, last.event_id) if guarded else None)
    finally:
        del views.put_meta
    assert raced, "the marker was never written: the window was not reached"
    assert raced[0]["hide_below"] == 8
    expected = [[v, eid] for v, eid in enumerate(new_ids, start=1)]
    assert [[e.version, e.event_id] async for e in writer.read_stream("s")] == expected
    assert (await b(op="read", stream="s"))["ok"] == expected  # another process, its own view of the log
    info = await writer.get_stream_info("s")
    assert info is not None
    assert (info.version, info.event_count, info.first_version) == (4, 4, 1)
    assert hidden == 0
    # the late marker is not the stream's last record: compaction (the last record per stream id) keeps the
    # new stream, not the marker of the deleted one (a process started after it saw a dead topic, or none)
    recs, _, _ = await writer.io.read(writer._conn.meta_topic, 0)
    compacted = Namespace()
    for r in {r.key: r for r in recs}.values():
        compacted.apply_meta(r.key.decode(), None if r.value is None else json.loads(r.value))
    assert compacted.meta["s"]["topic"] == writer._conn.ns.meta["s"]["topic"]


async def test_the_guard_is_decided_in_the_stream_past_the_window_of_recent_ids(kafka_url: str) -> None:
    """With a window of 2 ids, events 1..8 are checked by reading the stream; hidden ones no longer hold."""
    p = KafkaProvider(kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:12]}", request_timeout=60.0, dedup_window=2)
    await p.connect()
    try:
        for i in range(10):
            await p.append("s", [ev()], i or NO_STREAM)
        ids = {e.version: e.event_id async for e in p.read_stream("s")}
        assert ids[5] not in p._conn.ns.slot("s").window
        assert await p.truncate_stream("s", 7, if_holds=(5, ids[6])) == 0
        assert await p.truncate_stream("s", 7, if_holds=(5, ids[5])) == 6  # read from the stream: it holds
        assert await p.truncate_stream("s", 9, if_holds=(6, ids[6])) == 0  # hidden by the marker just written
        assert await p.truncate_stream("s", 9, if_holds=(7, ids[7])) == 2
        # hidden by a time cutoff: the last event, in the window, no longer holds either
        assert await p.delete_events_before(utcnow() + timedelta(days=1), "s") == 2
        assert await p.truncate_stream("s", 11, if_holds=(10, ids[10])) == 0
        info = await p.get_stream_info("s")
        assert info is not None
        assert (info.version, info.event_count) == (10, 0)
    finally:
        await drop_namespace(p)
        await p.close()


def test_a_marker_for_an_older_versions_incarnation_is_ignored_in_the_next() -> None:
    """Streams written by older versions carry no ``inc`` (all 0): the topic tells their incarnations apart.

    A marker computed for the stream in topic A lands after an older version deleted it (a tombstone) and
    created it again in topic B; applied, it pointed the stream back at the deleted topic A.
    """
    ns = Namespace()
    ns.apply_meta("s", {"topic": "p.s.s.0a0a0a0a", "created_us": 1})
    marker = {**ns.meta["s"], "op": "update", "hide_below": 5, "hidden": 4, "first_visible": 5}
    ns.apply_meta("s", None)
    ns.apply_meta("s", {"topic": "p.s.s.0b0b0b0b", "created_us": 2})
    ns.apply_meta("s", marker)
    assert ns.meta["s"] == {"topic": "p.s.s.0b0b0b0b", "created_us": 2}
    # in the incarnation it names, it applies
    marker_b = {**ns.meta["s"], "op": "update", "hide_below": 3}
    ns.apply_meta("s", marker_b)
    assert ns.meta["s"] == marker_b

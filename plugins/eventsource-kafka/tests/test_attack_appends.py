"""Attacks on the append path's data safety: real processes racing a writer on the real broker, no lease.

Each test failed before the fix it names; a process started afterwards (fresh caches) checks what is stored.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConcurrencyError
from eventsource.model import ANY, NO_STREAM, NewEvent, utcnow

from .conftest import WORKER

if TYPE_CHECKING:
    from .conftest import OpenStaleView


def ev(event_id: str | None = None) -> NewEvent:
    return NewEvent(event_id or str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())


async def test_a_retry_after_another_process_deleted_the_stream_is_stored_again(
    kafka_url: str, stale_view: OpenStaleView
) -> None:
    """The writer's tail window still holds the deleted incarnation's ids: it answered the retry from it.

    An identical retry found in the window was answered ``duplicate`` before the stale-incarnation
    check ran, so after another process deleted the stream the retry was acknowledged as stored at
    version 1 while no read returned it (a fresh process, or any other store, stores it again).
    """
    view = await stale_view(kafka_url)
    e1 = ev()
    first = await view.writer.append("s", [e1], NO_STREAM)
    assert first.first_version == 1
    assert "ok" in await view.other(op="delete", stream="s")
    retry = await view.writer.append("s", [e1], NO_STREAM)
    stored = [(e.version, e.event_id) async for e in view.reader.read_stream("s")]
    assert stored == [(1, e1.event_id)], f"the retry was answered {retry}, the stream holds {stored}"
    assert not retry.duplicate


async def test_a_retry_after_another_process_re_created_the_stream_is_not_a_duplicate_of_another_event(
    kafka_url: str, stale_view: OpenStaleView
) -> None:
    """Deleted and created again elsewhere with another event at version 1: the retry is no duplicate of it."""
    view = await stale_view(kafka_url)
    e1 = ev()
    await view.writer.append("s", [e1], NO_STREAM)
    assert "ok" in await view.other(op="delete", stream="s")
    other = str(uuid.uuid4())
    assert (await view.other(op="append", stream="s", ids=[other], expected="NO_STREAM"))["ok"]["first"] == 1
    with pytest.raises(ConcurrencyError):
        await view.writer.append("s", [e1], NO_STREAM)  # the stream exists (again), without e1
    r = await view.writer.append("s", [e1], ANY)
    stored = [(e.version, e.event_id) async for e in view.reader.read_stream("s")]
    assert stored == [(1, other), (2, e1.event_id)], f"the retry was answered {r}, the stream holds {stored}"
    assert (r.first_version, r.duplicate) == (2, False)


ODD_IDS = ["a.b", "a_b", "a*b", "a>b", "a.*.>", " ", "ä/ü:ö", "x" * 10_000, ("a." * 5_000)[:10_000]]


async def test_odd_and_huge_stream_ids_stay_apart_and_exact_across_processes(
    kafka_url: str, stale_view: OpenStaleView
) -> None:
    """Ids with ``.``, ``*``, ``>``, spaces, non-ASCII and 10,000 characters: one stream each, read back exactly."""
    view = await stale_view(kafka_url)
    for n, sid in enumerate(ODD_IDS, start=1):
        assert (await view.other(op="append", stream=sid, ids=[str(uuid.uuid4()) for _ in range(n)], expected="ANY"))[
            "ok"
        ]["last"] == n
        r = await view.writer.append(sid, [ev()], n)
        assert r.first_version == n + 1
    page, total = await view.reader.list_streams(limit=100, offset=0)
    assert total == len(ODD_IDS)
    assert sorted(i.stream_id for i in page) == sorted(ODD_IDS)
    for n, sid in enumerate(ODD_IDS, start=1):
        got = (await view.other(op="read", stream=sid))["ok"]
        assert [v for v, _ in got] == list(range(1, n + 2)), sid[:20]
    assert "ok" in await view.other(op="delete", stream="a.b")
    assert (await view.writer.append("a_b", [ev()], 3)).first_version == 4
    assert await view.reader.get_stream_info("a.b") is None


async def test_a_batch_at_the_record_size_limit_is_stored_whole_and_one_byte_more_is_refused(
    kafka_url: str, stale_view: OpenStaleView
) -> None:
    """A batch whose record is exactly the largest accepted size is one record, read back whole by another process."""
    from eventsource.errors import ValidationError
    from eventsource.timestamps import now_us
    from eventsource_kafka import records
    from eventsource_kafka.client import record_size
    from eventsource_kafka.connection import ENVELOPE_SLACK

    view = await stale_view(kafka_url)
    limit = view.writer.max_record_bytes + ENVELOPE_SLACK // 2

    def batch(pad: int) -> list[NewEvent]:
        evs = [ev(f"{i:036d}") for i in range(50)]
        return [*evs[:-1], NewEvent(evs[-1].event_id, "E", b"x" * pad, b"", "json", evs[-1].timestamp)]

    def size(pad: int) -> int:
        value, headers = records.encode_events("big", batch(pad), 1, now_us())  # positions: 16 digits, as appended
        return record_size(value, headers)

    pad = limit - size(0)
    while size(pad) < limit:
        pad += 1
    while size(pad) > limit:
        pad -= 1
    assert size(pad) == limit
    assert size(pad + 1) > limit
    with pytest.raises(ValidationError):
        await view.writer.append("big", batch(pad + 1), NO_STREAM)
    r = await view.writer.append("big", batch(pad), NO_STREAM)
    assert (r.first_version, r.last_version) == (1, 50)
    got = (await view.other(op="read", stream="big"))["ok"]
    assert [v for v, _ in got] == list(range(1, 51))
    data = [e.data async for e in view.reader.read_stream("big", from_version=50)]
    assert data == [b"x" * pad]


async def test_a_process_killed_mid_append_leaves_its_batch_whole_or_absent_and_a_retry_stores_it_once(
    kafka_url: str, stale_view: OpenStaleView
) -> None:
    """SIGKILL a process at assorted moments of a batch append (creating the stream, producing, settling).

    Whatever it got to, readers see the whole batch or none of it, and the client's retry through
    another process (same ids) leaves the batch stored exactly once, at consecutive versions.
    """
    view = await stale_view(kafka_url)
    args = {"url": kafka_url, "topic_prefix": view.writer._conn.prefix, "request_timeout": 10.0}
    rng = random.Random(7)
    for round_ in range(6):
        sid = f"k{round_}"
        if round_ % 2:
            await view.writer.append(sid, [ev()], NO_STREAM)  # an existing stream, known to the writer
        batch = [str(uuid.uuid4()) for _ in range(20)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, WORKER, json.dumps(args), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdin is not None
        proc.stdin.write((json.dumps({"op": "append", "stream": sid, "ids": batch, "expected": "ANY"}) + "\n").encode())
        await proc.stdin.drain()
        await asyncio.sleep(rng.uniform(0.3, 2.0))  # the worker's import and connect take part of it
        proc.kill()
        await proc.wait()
        stored = [e.event_id async for e in view.reader.read_stream(sid)]
        inside = [i for i in stored if i in batch]
        assert inside in ([], batch), f"round {round_}: a partial batch is visible: {len(inside)} of 20"
        r = await view.writer.append(sid, [ev(i) for i in batch], ANY)
        assert list(r.event_ids) == batch
        after = [(e.version, e.event_id) async for e in view.reader.read_stream(sid)]
        assert [(v, i) for v, i in after if i in batch] == list(
            zip(range(r.first_version, r.last_version + 1), batch, strict=True)
        ), f"round {round_}: the retry answered {r}"
        assert [v for v, _ in after] == list(range(1, len(after) + 1))


async def test_two_processes_truncating_at_once_never_un_hide_what_either_hid(
    kafka_url: str, stale_view: OpenStaleView
) -> None:
    """``truncate_stream(s, 7)`` and ``truncate_stream(s, 3)`` in two processes at the same moment.

    A marker record is a copy of the metadata its process read: the one landing second replaced the
    other, so ``truncate(7)`` returned 6 hidden events and a read then began at version 3 (8 of 20 rounds).
    """
    view = await stale_view(kafka_url)
    for round_ in range(12):
        sid = f"t{round_}"
        await view.writer.append(sid, [ev() for _ in range(10)], NO_STREAM)
        assert (await view.other(op="info", stream=sid))["ok"]["version"] == 10  # its tail is loaded too
        hid, other = await asyncio.gather(
            view.writer.truncate_stream(sid, 7), view.other(op="truncate", stream=sid, before=3)
        )
        assert "ok" in other
        assert hid in (4, 6)  # 4: the other process's marker (versions 1-2) landed first
        versions = [e.version async for e in view.reader.read_stream(sid)]
        assert versions == [7, 8, 9, 10], f"round {round_}: truncate(7) hid {hid}, then a read returned {versions}"
        fresh = (await view.other(op="read", stream=sid))["ok"]
        assert [v for v, _ in fresh] == [7, 8, 9, 10]
        info = await view.reader.get_stream_info(sid)
        assert info is not None
        assert (info.event_count, info.first_version) == (4, 7)


async def test_a_version_bound_and_a_time_cutoff_set_at_once_in_two_processes_keep_counts_exact(
    kafka_url: str, stale_view: OpenStaleView
) -> None:
    """``truncate_stream(s, 5)`` here and ``delete_events_before(T)`` in another process at the same moment.

    Versions 6 and 7 are older than T, the others newer: together they hide versions 1-4, 6 and 7. Both
    markers are kept (``merge_markers``), but each record counted only its own events and the merge kept
    the larger count: the stream's info said 6 events (first version 5) while every read returned 4.
    """
    from datetime import timedelta

    from eventsource.timestamps import to_us

    view = await stale_view(kafka_url)
    now = utcnow()
    old = now - timedelta(days=2)
    cutoff = to_us(now - timedelta(days=1))
    for round_ in range(8):
        sid = f"m{round_}"
        events = [
            NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", old if v in (6, 7) else now) for v in range(1, 11)
        ]
        await view.writer.append(sid, events, NO_STREAM)
        assert (await view.other(op="info", stream=sid))["ok"]["version"] == 10  # its tail is loaded too
        hid, other = await asyncio.gather(
            view.writer.truncate_stream(sid, 5), view.other(op="delete_before", stream=sid, cutoff_us=cutoff)
        )
        assert "ok" in other
        versions = [e.version async for e in view.reader.read_stream(sid)]
        assert versions == [5, 8, 9, 10], f"round {round_}: hid {hid} and {other['ok']}"
        for info in (await view.reader.get_stream_info(sid), await view.writer.get_stream_info(sid)):
            assert info is not None
            assert (info.event_count, info.first_version) == (4, 5), f"round {round_}: {info}"
        assert (await view.other(op="info", stream=sid))["ok"]["count"] == 4, f"round {round_}"

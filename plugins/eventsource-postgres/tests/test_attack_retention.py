"""Attacks on retention on PostgreSQL: the per-stream policies after ``max_age`` deleted a stream's newest event.

Timestamps are the caller's (an import, a backfill, a skewed clock), so ``max_age`` can take a stream's newest
event; the streams row still names it as the last event, and ``max_count`` / ``before_snapshot`` must still apply.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conftest import manager_on
from eventsource.model import EventData
from eventsource.retention import BeforeSnapshotPolicy, MaxAgePolicy, MaxCountPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.manager import EventSourcingManager

T0 = datetime(2020, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=100)


async def _stream_whose_newest_event_is_old(m: EventSourcingManager) -> str:
    sid = f"s-{uuid.uuid4().hex[:8]}"
    days = [90 + i for i in range(19)] + [0]
    events = [EventData("Tick", {"i": i}, timestamp=T0 + timedelta(days=d)) for i, d in enumerate(days)]
    await m.append_events_batch(stream_id=sid, events=events)
    assert (await m.apply_retention([MaxAgePolicy(timedelta(days=30))], now=NOW)).deleted() == 1
    assert [e.version async for e in m.read_stream(sid)] == list(range(1, 20))
    return sid


async def test_max_count_still_applies_after_max_age_deleted_a_streams_newest_event(
    make_provider: Callable[..., Any],
) -> None:
    m = await manager_on(await make_provider())
    sid = await _stream_whose_newest_event_is_old(m)
    report = await m.apply_retention([MaxCountPolicy(5)], now=NOW)
    assert [e.version async for e in m.read_stream(sid)] == [15, 16, 17, 18, 19]
    assert report.deleted() == 14
    assert (await m.apply_retention([MaxCountPolicy(5)], now=NOW)).deleted() == 0
    info = await m.get_stream_info(sid)
    assert (info.version, info.event_count, info.first_version) == (20, 5, 15)


async def test_before_snapshot_still_applies_after_max_age_deleted_a_streams_newest_event(
    make_provider: Callable[..., Any],
) -> None:
    m = await manager_on(await make_provider())
    sid = await _stream_whose_newest_event_is_old(m)
    await m.create_snapshot(stream_id=sid, version=17, data={"n": 17})
    assert (await m.apply_retention([BeforeSnapshotPolicy()], now=NOW)).deleted() == 17
    assert [e.version async for e in m.read_stream(sid)] == [18, 19]

"""Two retention runs racing on one stream, through two instances, interleaved at a fixed point.

The second run goes from start to end while the first has read the stream and is about to carry out what it
planned (the point where two replicas of a service out of step meet). Between them the runs delete what either
policy deletes; each deleted event is counted once in the info record (so ``event_count`` is what a read
returns) and once in what the runs return, and a message left with no live event is no obstacle.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from conftest import dispose, new_event, open_provider
from eventsource.model import NO_STREAM
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

T0 = datetime(2020, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=30)


@asynccontextmanager
async def _two(url: str) -> AsyncIterator[tuple[NatsProvider, NatsProvider]]:
    """Two instances on one fresh store (two processes of a service)."""
    p = await open_provider(url)
    q = NatsProvider(**p.spawn_args())
    await q.connect()
    try:
        yield p, q
    finally:
        await q.close()
        await dispose(p)


@pytest.fixture
async def pair(server_url: str) -> AsyncGenerator[tuple[NatsProvider, NatsProvider], None]:
    """Two instances on one fresh store, on each server."""
    async with _two(server_url) as both:
        yield both


@pytest.fixture
async def envelope_pair(machine_nats_url: str) -> AsyncGenerator[tuple[NatsProvider, NatsProvider], None]:
    """Two instances on the machine's server, whose batches are envelopes (a current server publishes a batch as
    one message per event, so no envelope exists there to test)."""
    async with _two(machine_nats_url) as both:
        assert not both[0].uses_atomic_batches
        yield both


def _inside(p: NatsProvider, other: Callable[[], Awaitable[int]], got: list[int]) -> None:
    """Run ``other`` (once) when ``p``'s run has planned and is about to carry out its plan for a stream."""
    retention = p._retention
    real = retention._carry_out

    async def carry_out(*args: Any) -> int:
        if not got:
            got.append(await other())
        return await real(*args)

    retention._carry_out = carry_out  # type: ignore[method-assign]


async def _append_days(p: NatsProvider, days: list[int], *, envelope: bool, version: int = 0) -> None:
    events = [new_event(timestamp=T0 + timedelta(days=d)) for d in days]
    if envelope:  # one message on a server without atomic batches
        await p.append("s", events, version or NO_STREAM)
    else:
        for v, e in enumerate(events, start=version):
            await p.append("s", [e], v or NO_STREAM)


async def _state(p: NatsProvider) -> tuple[list[int], tuple[int, int, int | None]]:
    """The versions a fresh instance reads and its (version, event_count, first_version) of stream ``s``."""
    fresh = NatsProvider(**p.spawn_args())
    await fresh.connect()
    try:
        info = await fresh.get_stream_info("s")
        assert info is not None
        return [e.version async for e in fresh.read_stream("s")], (info.version, info.event_count, info.first_version)
    finally:
        await fresh.close()


@pytest.mark.parametrize("layout", ["envelope", "singles"])
@pytest.mark.parametrize(("outer", "inner"), [(10, 12), (12, 10)], ids=["12d-inside-10d", "10d-inside-12d"])
async def test_max_age_runs_with_different_cutoffs_count_each_event_once(
    pair: tuple[NatsProvider, NatsProvider], layout: str, outer: int, inner: int
) -> None:
    """30 events of days 0..19, 0..9: the 10d run deletes all, the 12d run all but days 18 and 19 (this left
    ``event_count`` at -28 after one envelope, the runs returning 58; single messages were counted twice too, and
    on a current server the message delete of one already purged failed the run with err_code 10057)."""
    p, q = pair
    await _append_days(p, [i % 20 for i in range(30)], envelope=layout == "envelope")
    got: list[int] = []
    _inside(p, lambda: q.delete_events_before(NOW - timedelta(days=inner)), got)
    deleted = await p.delete_events_before(NOW - timedelta(days=outer))
    assert got, "the inner run ran"
    assert deleted + got[0] == 30
    assert await _state(p) == ([], (30, 0, None))
    # max_count's arithmetic: 20 more events, keep 5
    await _append_days(p, [40] * 20, envelope=layout == "envelope", version=30)
    assert await _state(p) == (list(range(31, 51)), (50, 20, 31))
    assert await p.truncate_stream("s", 46) == 15
    assert await _state(p) == (list(range(46, 51)), (50, 5, 46))


async def test_a_truncation_inside_max_age_leaves_an_envelope_with_no_live_event(
    envelope_pair: tuple[NatsProvider, NatsProvider],
) -> None:
    """Two partial deletions of one envelope (versions 6..10 by age, 1..5 by a truncation) leave it with no live
    event: the stream's info is read past it (it raised IndexError), and a later truncation purges it with the
    envelope after it (it kept both: the first blocked the leading run, and the last message stays behind one)."""
    p, q = envelope_pair
    await _append_days(p, [*range(10, 15), *range(5)], envelope=True)  # versions 1..5 newer than 6..10
    await _append_days(p, list(range(20, 30)), envelope=True, version=10)
    got: list[int] = []
    _inside(p, lambda: q.truncate_stream("s", 6), got)
    deleted = await p.delete_events_before(T0 + timedelta(days=5))
    assert deleted + got[0] == 10
    assert await _state(p) == (list(range(11, 21)), (20, 10, 11))
    assert await p.truncate_stream("s", 21) == 10
    assert await _state(p) == ([], (20, 0, None))
    from eventsource_nats.naming import stream_token

    subject = p._conn.names.subject(stream_token("s"))
    assert await p._conn.last_msg(subject) is None, "both envelopes were purged"

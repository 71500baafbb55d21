"""Subscription rows of the harness: live delivery latency and catch-up throughput against ``read_all``.

``live_p50`` / ``live_p99``: a subscription runs in a task of the same process and event loop as the
writer; each operation appends one event (``append_events_batch``) and takes the time from the append's
return to the moment the subscription's handler is called with that event. One append at a time, so the
figure is the wake-up path, not a queue. On PostgreSQL a second contestant, ``notify``, is the same store
with ``live_notify=True`` (LISTEN/NOTIFY instead of the default 10 ms probe). ``catch_up``: a subscription
from position 0 consuming a filled store, against ``read_all`` over the same store (same page size), both
decoding every event; events/s, ratio subscription / ``read_all``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from harness import Inputs, events, new_stream, percentile

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from harness import Runner

CATCH_UP_PAGE = 500
"""Page size of both catch-up contestants (``read_all``'s default)."""
LIVE_WAIT = 30.0
"""Seconds an append may wait for its delivery before the run fails (a lost event, not a slow one)."""


async def subscription_rows(runner: Runner) -> None:
    """The ``live_*`` and ``catch_up`` rows of ``runner``'s backend."""
    if runner._want("live"):  # noqa: SLF001 - the harness's own filter
        await live_rows(runner)
    if runner._want("catch_up"):  # noqa: SLF001
        await catch_up_row(runner)


async def _notify_side(runner: Runner, m: EventSourcingManager, p: Any) -> str | None:
    """On PostgreSQL: register the same schema with ``live_notify=True`` as ``notify``; its name, else ``None``."""
    if runner.b.name != "postgres":
        return None
    notify = type(p)(p.url, schema=p.names.schema, live_notify=True, application_name="eventsource-bench")
    await m.register_provider(notify, name="notify")
    return "notify"


class _Live:
    """One append at a time per side, each waited for at its subscription's handler."""

    def __init__(self, m: EventSourcingManager, sides: dict[str, str]) -> None:
        self.m = m
        self.sides = sides  # contestant -> provider name
        self.waiting: dict[str, tuple[str, asyncio.Future[float]]] = {}
        self.subs = {side: m.subscribe(from_position=0, provider=prov) for side, prov in sides.items()}
        self.streams = {side: new_stream(f"live-{side}") for side in sides}
        self.inputs = Inputs()
        self.early = 0
        self.tasks = [asyncio.create_task(self.consume(side)) for side in sides]

    async def consume(self, side: str) -> None:
        async for ev in self.subs[side]:
            now = time.perf_counter()  # the handler is called: the first thing it does is take the time
            want = self.waiting.get(side)
            if want is not None and want[0] == ev.event_id and not want[1].done():
                want[1].set_result(now)

    async def one(self, side: str, i: int) -> float:
        from eventsource.model import EventData

        e = events(i, 1)[0]
        self.inputs.add(side, [e])
        data = EventData(event_type=e.event_type, data=e.data, event_id=e.event_id, timestamp=e.timestamp)
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[side] = (e.event_id, fut)
        await self.m.append_events_batch(stream_id=self.streams[side], events=[data], provider=self.sides[side])
        returned = time.perf_counter()
        delivered = await asyncio.wait_for(fut, LIVE_WAIT)
        if delivered < returned:
            self.early += 1  # the handler ran before the append returned (in-process wake-up): no delay at all
        return max(delivered - returned, 0.0)

    async def rounds(self, repetitions: int, appends: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """p50 and p99 (ms) per side per round, the order of the sides rotating append by append."""
        per50: dict[str, list[float]] = {s: [] for s in self.sides}
        per99: dict[str, list[float]] = {s: [] for s in self.sides}
        names = list(self.sides)
        for rep in range(repetitions):
            lat: dict[str, list[float]] = {s: [] for s in names}
            for i in range(appends):
                k = (i + rep) % len(names)
                for side in names[k:] + names[:k]:
                    lat[side].append(await self.one(side, i))
            for s in names:
                per50[s].append(percentile(lat[s], 0.5) * 1e3)
                per99[s].append(percentile(lat[s], 0.99) * 1e3)
        return per50, per99

    async def close(self) -> None:
        for sub in self.subs.values():
            await sub.close()
        for t in self.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def live_rows(runner: Runner) -> None:
    """Append one event at a time per side; latency from the append's return to the handler."""
    m, p = await runner.manager()
    sides = {"lib": "bench"}
    extra = await _notify_side(runner, m, p)
    if extra:
        sides["notify"] = extra
    live = _Live(m, sides)
    try:
        for side in sides:  # warm-up: connections, statements, LISTEN
            for i in range(5):
                await live.one(side, i)
        live.inputs = Inputs()
        per50, per99 = await live.rounds(runner.o.repetitions, runner.o.appends)
        note = "in-process subscription, default settings" + (", notify = live_notify=True" if extra else "")
        if live.early:
            note += f"; {live.early} deliveries came before the append returned (counted as 0)"
        runner._record("live_p50", per50, live.inputs, note)  # noqa: SLF001 - the harness's own recorder
        runner._record("live_p99", per99, live.inputs, note)  # noqa: SLF001
    finally:
        await live.close()
        await m.close()


async def catch_up_row(runner: Runner) -> None:
    """A subscription from 0 over a filled store against ``read_all`` over the same store; events/s."""
    n = max(runner.o.big_n // 50, 2_000)
    m, p = await runner.manager()
    try:
        count = await runner.b.fill(p, n)
        n = n if count is None else count

        async def by_subscription() -> int:
            got = 0
            async with m.subscribe(from_position=0, page_size=CATCH_UP_PAGE) as sub:
                while got < n:
                    batch = await sub.next_batch(CATCH_UP_PAGE)
                    got += sum(e.data is not None for e in batch)
            return got

        async def by_read_all() -> int:
            return sum([e.data is not None async for e in m.read_all(page_size=CATCH_UP_PAGE)])

        sides = {"lib": by_subscription, "read_all": by_read_all}
        per: dict[str, list[float]] = {s: [] for s in sides}
        await by_read_all()  # warm-up: pages in the cache for both
        for rep in range(runner.o.repetitions):
            names = list(sides)[rep % 2 :] + list(sides)[: rep % 2]
            for side in names:
                t = time.perf_counter()
                got = await sides[side]()
                elapsed = time.perf_counter() - t
                if got != n:
                    msg = f"catch-up {side} read {got} events, expected {n}"
                    raise AssertionError(msg)
                per[side].append(n / elapsed)
        runner._record("catch_up", per, None, f"{n:,} events, pages of {CATCH_UP_PAGE}, each decoded")  # noqa: SLF001
    finally:
        await m.close()

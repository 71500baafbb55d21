"""Subscription rows of the harness: live delivery latency and catch-up throughput against ``read_all``.

``live_p50`` / ``live_p99``: a subscription runs in a task of the same process and event loop as the
writer; each operation appends one event (``append_events_batch``) and takes the time from the append's
return to the moment the subscription's handler is called with that event. One append at a time, so the
figure is the wake-up path, not a queue. ``lib`` appends through the subscribed provider (the in-process
wake-up); on PostgreSQL ``xproc`` appends through another provider instance (what another process's
appends take: the probe), ``notify`` likewise with ``live_notify=True``, and ``eventsourcing`` is the
``eventsourcing`` library's LISTEN/NOTIFY subscription on its own recorder (when installed). ``catch_up``: a
subscription from position 0 consuming a filled store, against ``read_all`` over the same store (same page size), both
decoding every event and consumed by the same ``async for`` loop; events/s, ratio subscription / ``read_all``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from harness import Inputs, events, installed, new_stream, percentile

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from harness import Runner

CATCH_UP_PAGE = 500
"""Page size of both catch-up contestants (``read_all``'s default)."""
EARLY = 1e-6
"""Seconds a delivery that beat the append's return counts as (not 0: the rows' ratios divide by it)."""
LIVE_WAIT = 30.0
"""Seconds an append may wait for its delivery before the run fails (a lost event, not a slow one)."""


async def subscription_rows(runner: Runner) -> None:
    """The ``live_*`` and ``catch_up`` rows of ``runner``'s backend."""
    if runner._want("live"):  # noqa: SLF001 - the harness's own filter
        await live_rows(runner)
    if runner._want("catch_up"):  # noqa: SLF001
        await catch_up_row(runner)


async def _postgres_sides(runner: Runner, m: EventSourcingManager, p: Any) -> dict[str, tuple[str, str]]:
    """On PostgreSQL, two more contestants, each on a schema of its own: (subscribed provider, writer).

    ``xproc``: default settings, the events appended through *another* provider instance, which shares no
    in-process wake-up with the subscribed one: the path another process's appends take (the probe).
    ``notify``: the same with ``live_notify=True`` on the subscribed instance (LISTEN/NOTIFY).
    """
    if runner.b.name != "postgres":
        return {}
    sides: dict[str, tuple[str, str]] = {}
    for side, notify in (("xproc", False), ("notify", True)):
        schema = runner.b.new_provider().names.schema  # a fresh schema, dropped with the backend's
        sub = type(p)(p.url, schema=schema, live_notify=notify, application_name="eventsource-bench")
        writer = type(p)(p.url, schema=schema, application_name="eventsource-bench")
        await m.register_provider(sub, name=f"{side}-sub")
        await m.register_provider(writer, name=f"{side}-writer")
        sides[side] = (f"{side}-sub", f"{side}-writer")
    return sides


class _EventsourcingLive:
    """eventsourcing 9.5.6's ``PostgresApplicationRecorder.subscribe`` (LISTEN/NOTIFY, a thread), same schema."""

    def __init__(self, schema: str, url: str) -> None:
        import threading

        import psycopg
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        info = psycopg.conninfo.conninfo_to_dict(url)
        self.datastore = PostgresDatastore(
            dbname=str(info.get("dbname", "test")), host=str(info.get("host", "127.0.0.1")),
            port=str(info.get("port", 5432)), user=str(info.get("user", "postgres")),
            password=str(info.get("password", "")), schema=schema, originator_id_type="text",
            pool_size=4, max_overflow=2,  # the subscription holds connections: room for the inserts
        )  # fmt: skip
        self.recorder = PostgresApplicationRecorder(self.datastore, events_table_name="es_live_events")
        self.recorder.create_table()
        self.loop = asyncio.get_running_loop()
        self.want: tuple[str, int, asyncio.Future[float]] | None = None
        self.sub = self.recorder.subscribe(gt=self.recorder.max_notification_id())
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()
        self.version = 0
        self.stream = new_stream("live-es")

    def _consume(self) -> None:
        for n in self.sub:
            now = time.perf_counter()  # the handler is called
            want = self.want
            if want is not None and (n.originator_id, n.originator_version) == want[:2]:
                self.loop.call_soon_threadsafe(_settle, want[2], now)

    def append_and_wait(self, e: Any) -> tuple[float, asyncio.Future[float]]:
        """Insert one event (blocking, on the loop: its return time is exact); the time and the delivery future."""
        import json

        from eventsourcing.persistence import StoredEvent

        self.version += 1
        fut: asyncio.Future[float] = self.loop.create_future()
        self.want = (self.stream, self.version, fut)
        self.recorder.insert_events([StoredEvent(self.stream, self.version, e.event_type, json.dumps(e.data).encode())])
        return time.perf_counter(), fut

    def close(self) -> None:
        self.sub.stop()
        self.thread.join(10)
        self.datastore.close()


def _settle(fut: asyncio.Future[float], value: float) -> None:
    if not fut.done():
        fut.set_result(value)


class _Live:
    """One append at a time per side, each waited for at its subscription's handler."""

    def __init__(
        self, m: EventSourcingManager, sides: dict[str, tuple[str, str]], peer: _EventsourcingLive | None
    ) -> None:
        self.m = m
        self.peer = peer
        self.names = [*sides, *(["eventsourcing"] if peer is not None else [])]
        self.sides = sides  # contestant -> (subscribed provider, provider the events are appended through)
        self.waiting: dict[str, tuple[str, asyncio.Future[float]]] = {}
        self.subs = {side: m.subscribe(from_position=0, provider=prov[0]) for side, prov in sides.items()}
        self.streams = {side: new_stream(f"live-{side}") for side in sides}
        self.inputs = Inputs()
        self.early: dict[str, int] = {}
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
        if side == "eventsourcing" and self.peer is not None:
            returned, fut = self.peer.append_and_wait(e)
        else:
            data = EventData(event_type=e.event_type, data=e.data, event_id=e.event_id, timestamp=e.timestamp)
            fut = asyncio.get_running_loop().create_future()
            self.waiting[side] = (e.event_id, fut)
            await self.m.append_events_batch(stream_id=self.streams[side], events=[data], provider=self.sides[side][1])
            returned = time.perf_counter()
        delivered = await asyncio.wait_for(fut, LIVE_WAIT)
        if delivered < returned:  # the handler ran before the append returned: no delay at all
            self.early[side] = self.early.get(side, 0) + 1
        return max(delivered - returned, EARLY)

    async def rounds(self, repetitions: int, appends: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """p50 and p99 (ms) per side per round, the order of the sides rotating append by append."""
        names = self.names
        per50: dict[str, list[float]] = {s: [] for s in names}
        per99: dict[str, list[float]] = {s: [] for s in names}
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
        if self.peer is not None:
            await asyncio.to_thread(self.peer.close)
        for sub in self.subs.values():
            await sub.close()
        for t in self.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def live_rows(runner: Runner) -> None:
    """Append one event at a time per side; latency from the append's return to the handler."""
    m, p = await runner.manager()
    sides = {"lib": ("bench", "bench"), **await _postgres_sides(runner, m, p)}
    peer = None
    if "notify" in sides and runner.o.peers and installed("eventsourcing"):
        peer = _EventsourcingLive(p.names.schema, p.url)
    live = _Live(m, sides, peer)
    try:
        for side in live.names:  # warm-up: connections, statements, LISTEN
            for i in range(5):
                await live.one(side, i)
        live.inputs = Inputs()
        per50, per99 = await live.rounds(runner.o.repetitions, runner.o.appends)
        note = "lib = subscription and appends in the same process (default settings: the in-process wake-up)"
        if "xproc" in sides:
            note += (
                ", xproc = appends through another provider instance, as from another process "
                "(default settings: the probe), notify = the same with live_notify=True"
            )
        note += ", eventsourcing = its PostgreSQL subscription (LISTEN/NOTIFY)" if peer is not None else ""
        if live.early:
            early = ", ".join(f"{side} {n}" for side, n in live.early.items())
            note += f"; deliveries before the append returned (counted as 1 µs): {early}"
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
            # consumed as read_all is below, one event at a time: a consumer that holds a batch of 500 events
            # pays the garbage collector for them, read_all or subscription alike (not the subscription's cost)
            got = 0
            async with m.subscribe(from_position=0, page_size=CATCH_UP_PAGE) as sub:
                async for e in sub:
                    got += e.data is not None
                    if got >= n:
                        break
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
        note = f"{n:,} events, pages of {CATCH_UP_PAGE}, each decoded and handed to an async for loop"
        runner._record("catch_up", per, None, note)  # noqa: SLF001
    finally:
        await m.close()

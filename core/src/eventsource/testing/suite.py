"""``ProviderSuite``: the conformance kit every provider runs (built-in and third-party alike).

Subclass it in a test module and override one fixture::

    class TestMyProvider(ProviderSuite):
        @pytest.fixture
        async def provider(self):
            p = MyProvider("my://127.0.0.1", namespace=f"t{uuid.uuid4().hex}")
            await p.connect()
            yield p
            await p.close()  # and drop the namespace

The fixture yields a *connected* provider on a *fresh, empty* namespace. The kit builds a second
instance with ``type(provider)(**provider.spawn_args())`` to race writers, and, when the provider
declares ``concurrency="cross_process"``, races two OS processes through
:mod:`eventsource.testing.worker`. Operations listed in ``capabilities.unsupported`` are asserted to
raise :class:`UnsupportedOperationError`. A test that cannot apply to a declared capability (the
cross-process race on an ``in_process`` store, the follower on a ``per_stream`` one...) is *skipped*
with the capability named in the reason (``pytest -rs`` lists them), never reported as passed.

Requires ``asyncio_mode = auto`` (pytest-asyncio).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventNotFoundError,
    EventSourceError,
    ProviderUnavailableError,
    SnapshotNotFoundError,
    StreamDeletedError,
    StreamExistsError,
    StreamNotFoundError,
    UnsupportedOperationError,
    ValidationError,
)
from eventsource.manager import EventSourcingManager
from eventsource.model import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    Event,
    EventData,
    EventFilter,
    NewEvent,
    NewSnapshot,
    NewStream,
    RecordedEvent,
    RowPage,
    utcnow,
)
from eventsource.plugins import PluginHost
from eventsource.provider import OPERATIONS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventsource.provider import Provider

_HOST: PluginHost | None = None


def _host() -> PluginHost:
    global _HOST  # noqa: PLW0603 - one host for the whole test session is enough
    if _HOST is None:
        _HOST = PluginHost(load_entrypoints=False)
    return _HOST


HOSTILE_VALID_STREAM_IDS: tuple[str, ...] = (
    "a.b",
    "a.*",
    "a.>",
    "*",
    ">",
    ".",
    "..",
    "a b",
    " leading-and-trailing ",
    "it's",
    'say "hi"',
    "'; DROP TABLE events; --",
    "Robert'); DELETE FROM streams;--",
    "emoji-\U0001f389-\u2603",
    "$dollar$",
    "a/b\\c",
    "ünïcödé-名前",
    "%s %d {0}",
    "a:b#c?d&e=f",
    "_",
    "-",
    "UPPER-lower",
    "x" * 1000,
)
"""Stream ids every store must hold exactly and keep apart (no SQL, subject or topic injection)."""

HOSTILE_INVALID_STREAM_IDS: tuple[object, ...] = (
    "",
    "\x00",
    "a\x00b",
    "line\nbreak",
    "tab\tid",
    "x" * 10_000,
    None,
    123,
    b"bytes",
)
"""Stream ids the manager must refuse with :class:`ValidationError` before the store sees them."""


def ev(event_type: str = "Happened", data: Any = None, **kw: Any) -> EventData:
    """Shorthand for an :class:`EventData`."""
    return EventData(event_type=event_type, data={"n": 0} if data is None else data, **kw)


def sid(prefix: str = "s") -> str:
    """A unique stream id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class PageFaults:
    """Makes a provider's own page views (``read_stream_pages`` / ``read_all_pages``) lose the connection mid-read.

    Each page iterator the manager opens delivers ``after`` pages of the store's real iterator, then,
    while ``left`` faults remain, raises :class:`ProviderUnavailableError` in place of the next page
    (which the real iterator has already fetched: the fault drops a page in flight). ``opened`` counts
    the iterators opened, so a test can tell that the reads really were resumed.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, provider: Provider, *, after: int = 2) -> None:
        self.after = after
        self.left = 0
        self.opened = 0
        for name in ("read_stream_pages", "read_all_pages"):
            monkeypatch.setattr(provider, name, self._wrap(getattr(provider, name)))

    def _wrap(self, real: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        def pages(*args: Any, **kw: Any) -> AsyncIterator[Any]:
            self.opened += 1
            return self._faulty(real(*args, **kw))

        return pages

    async def _faulty(self, it: AsyncIterator[Any]) -> AsyncIterator[Any]:
        delivered = 0
        try:
            async for page in it:
                if delivered == self.after and self.left:
                    self.left -= 1
                    msg = "connection lost mid-read (injected by the conformance kit)"
                    raise ProviderUnavailableError(msg)
                yield page
                delivered += 1
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()


class ProviderSuite:
    """Every rule of DESIGN.md "Semantics", as tests. Subclass and override :meth:`provider`."""

    max_batch_size = 1000
    """The manager's batch limit for the kit (lower it for stores with small atomic batches)."""

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        """Override: yield a connected provider on a fresh, empty namespace."""
        msg = "override the `provider` fixture in your ProviderSuite subclass"
        pytest.fail(msg)  # a subclass that forgot the fixture fails loudly, never skips
        yield  # pragma: no cover

    @pytest.fixture
    async def manager(self, provider: Provider) -> AsyncIterator[EventSourcingManager]:
        """A manager whose only (default) provider is the one under test."""
        m = EventSourcingManager(
            {"providers": {}, "default_provider": None, "max_batch_size": self.max_batch_size, "retry_attempts": 3},
            host=_host(),
        )
        await m.register_provider(provider, name="under-test", default=True)
        yield m
        # the provider fixture owns closing the provider

    @pytest.fixture
    async def second(self, provider: Provider) -> AsyncIterator[Provider]:
        """A second instance on the same store, as another writer in this process would have."""
        other = type(provider)(**provider.spawn_args())
        await other.connect()
        yield other
        await other.close()

    def supports(self, provider: Provider, op: str) -> bool:
        """Whether the provider declares ``op`` as supported."""
        return provider.capabilities.supports(op)

    @staticmethod
    async def versions(m: EventSourcingManager, stream_id: str) -> list[int]:
        """Versions of a stream as read_stream yields them."""
        return [e.version async for e in m.read_stream(stream_id)]

    @staticmethod
    async def total_events(m: EventSourcingManager) -> int:
        """Events visible through read_all."""
        return len([e async for e in m.read_all()])

    # ------------------------------------------------------------------ versions

    async def test_new_stream_is_at_version_0_and_first_event_is_1(self, manager: EventSourcingManager) -> None:
        s = sid()
        info = await manager.create_stream(stream_id=s)
        assert info.version == 0
        assert info.event_count == 0
        res = await manager.append_event(stream_id=s, event_type="Created", data={"a": 1})
        assert res.version == 1
        info = await manager.get_stream_info(s)
        assert (info.version, info.event_count, info.last_event_id) == (1, 1, res.event_id)

    async def test_versions_are_gap_free(self, manager: EventSourcingManager) -> None:
        s = sid()
        for i in range(4):
            r = await manager.append_event(stream_id=s, event_type="E", data={"i": i})
            assert r.version == i + 1
        b = await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(5)])
        assert (b.first_version, b.last_version) == (5, 9)
        assert await self.versions(manager, s) == list(range(1, 10))
        data = [e.data["i"] async for e in manager.read_stream(s)]
        assert data == [0, 1, 2, 3, 0, 1, 2, 3, 4]

    async def test_implicit_creation_on_first_append(self, manager: EventSourcingManager) -> None:
        s = sid()
        assert not await manager.stream_exists(s)
        await manager.append_event(stream_id=s, event_type="E", data={}, aggregate_id="agg-1", aggregate_type="Order")
        info = await manager.get_stream_info(s)
        assert info.stream_id == s
        assert info.version == 1
        assert info.aggregate_id == "agg-1"
        assert info.aggregate_type == "Order"

    async def test_event_envelope_round_trips(self, manager: EventSourcingManager) -> None:
        s = sid()
        ts = datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC)
        data = {"when": ts, "amount": Decimal("10.25"), "id": uuid.UUID(int=7), "nested": [1, "two", None, True]}
        r = await manager.append_event(
            stream_id=s,
            event_type="Paid",
            data=data,
            metadata={"source": "kit", "n": 1},
            correlation_id="corr-1",
            causation_id="cause-1",
            user_id="user-1",
            tenant_id="tenant-1",
            aggregate_id="agg-1",
            aggregate_type="Order",
            timestamp=ts,
        )
        [e] = [e async for e in manager.read_stream(s)]
        assert e.event_id == r.event_id
        assert e.stream_id == s
        assert e.event_type == "Paid"
        assert e.data == data
        assert e.metadata == {"source": "kit", "n": 1}
        assert e.timestamp == ts
        assert e.position == r.position
        assert (e.correlation_id, e.causation_id, e.user_id, e.tenant_id) == ("corr-1", "cause-1", "user-1", "tenant-1")
        assert (e.aggregate_id, e.aggregate_type) == ("agg-1", "Order")

    # ------------------------------------------------------------------ expected versions

    async def test_expected_exact_version(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=0)
        await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=1)
        with pytest.raises(ConcurrencyError) as info:
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=1)
        assert info.value.expected == 1
        assert info.value.actual == 2
        assert info.value.type == "conflict"
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=5)
        assert await self.versions(manager, s) == [1, 2]

    async def test_expected_zero_on_missing_and_on_empty_stream(self, manager: EventSourcingManager) -> None:
        missing, empty = sid(), sid()
        await manager.create_stream(stream_id=empty)
        assert (await manager.append_event(stream_id=missing, event_type="E", data={}, expected_version=0)).version == 1
        assert (await manager.append_event(stream_id=empty, event_type="E", data={}, expected_version=0)).version == 1

    async def test_expected_no_stream(self, manager: EventSourcingManager) -> None:
        s, created = sid(), sid()
        await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=NO_STREAM)
        await manager.create_stream(stream_id=created)
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=created, event_type="E", data={}, expected_version=NO_STREAM)
        assert await self.versions(manager, s) == [1]
        assert await self.versions(manager, created) == []

    async def test_expected_stream_exists(self, manager: EventSourcingManager) -> None:
        s, created = sid(), sid()
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=STREAM_EXISTS)
        assert not await manager.stream_exists(s)
        await manager.create_stream(stream_id=created)
        r = await manager.append_event(stream_id=created, event_type="E", data={}, expected_version=STREAM_EXISTS)
        assert r.version == 1
        r = await manager.append_event(stream_id=created, event_type="E", data={}, expected_version=STREAM_EXISTS)
        assert r.version == 2

    async def test_expected_any(self, manager: EventSourcingManager) -> None:
        s = sid()
        for i in range(3):
            assert (await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=ANY)).version == i + 1

    @pytest.mark.parametrize("bad", [-7, "1", 1.5, True, None])
    async def test_invalid_expected_version_is_a_validation_error(self, manager: EventSourcingManager, bad: object) -> None:
        s = sid()
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=bad)
        assert not await manager.stream_exists(s)

    # ------------------------------------------------------------------ races

    async def test_two_instances_race_exactly_one_wins(self, provider: Provider, second: Provider) -> None:
        s = sid("race")
        rounds = 15
        wins: dict[int, list[str]] = {}

        async def writer(p: Provider, name: str, r: int) -> None:
            new = NewEvent(
                event_id=str(uuid.uuid4()),
                event_type="Raced",
                data=json.dumps({"w": name}).encode(),
                metadata=b"",
                encoding="json",
                timestamp=utcnow(),
            )
            try:
                res = await p.append(s, [new], r)
            except ConcurrencyError:
                return
            wins.setdefault(res.first_version, []).append(name)

        for r in range(rounds):
            await asyncio.gather(writer(provider, "a", r), writer(second, "b", r))
        assert sorted(wins) == list(range(1, rounds + 1))
        assert all(len(w) == 1 for w in wins.values()), wins
        got = [e.version async for e in provider.read_stream(s)]
        assert got == list(range(1, rounds + 1))

    async def test_two_processes_race_exactly_one_wins(self, provider: Provider) -> None:
        concurrency = provider.capabilities.concurrency
        if concurrency != "cross_process":
            pytest.skip(f"concurrency={concurrency}: the version check does not reach across processes")
        s = sid("xrace")
        rounds = 25
        cls = type(provider)
        spec = {
            "provider_class": f"{cls.__module__}:{cls.__qualname__}",
            "spawn_args": provider.spawn_args(),
            "stream_id": s,
            "rounds": rounds,
            "start_at": time.time() + 2.0,
        }
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "eventsource.testing.worker",
                json.dumps({**spec, "worker": w}),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=os.environ.copy(),
            )
            for w in ("p1", "p2")
        ]
        results = []
        for p in procs:
            out, err = await asyncio.wait_for(p.communicate(), timeout=120)
            assert p.returncode == 0, err.decode(errors="replace")[-2000:]
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        won = [set(r["won"]) for r in results]
        assert won[0].isdisjoint(won[1]), "two processes won the same version"
        assert won[0] | won[1] == set(range(1, rounds + 1))
        stored = [e async for e in provider.read_stream(s)]
        assert [e.version for e in stored] == list(range(1, rounds + 1))
        winner_ids = {eid for r in results for eid in r["ids"]}
        assert {e.event_id for e in stored} == winner_ids

    # ------------------------------------------------------------------ atomic batches

    async def test_batch_with_wrong_expected_version_writes_nothing(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_event(stream_id=s, event_type="E", data={})
        with pytest.raises(ConcurrencyError):
            await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()], expected_version=0)
        assert await self.versions(manager, s) == [1]

    async def test_batch_failing_in_the_store_writes_nothing(self, manager: EventSourcingManager) -> None:
        s = sid()
        first = await manager.append_event(stream_id=s, event_type="E", data={"i": 0})
        # the second event reuses a stored id: not an identical retry, so the store must refuse the
        # whole batch, including the new event before it
        fresh = str(uuid.uuid4())
        with pytest.raises(DuplicateEventError):
            await manager.append_events_batch(
                stream_id=s, events=[ev(event_id=fresh), ev(event_id=first.event_id)], expected_version=ANY
            )
        assert await self.versions(manager, s) == [1]
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(fresh)

    async def test_batch_with_an_invalid_event_writes_nothing(self, manager: EventSourcingManager) -> None:
        s = sid()
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev(data={"bad": object()})])
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(), ev(event_type="")])
        assert not await manager.stream_exists(s)

    async def test_batch_is_readable_whole(self, manager: EventSourcingManager) -> None:
        s = sid()
        res = await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(50)])
        assert (res.first_version, res.last_version) == (1, 50)
        assert len(res.event_ids) == len(res.positions) == 50
        assert res.positions == sorted(res.positions)
        got = [e async for e in manager.read_stream(s)]
        assert [e.event_id for e in got] == res.event_ids
        assert [e.position for e in got] == res.positions

    # ------------------------------------------------------------------ idempotency

    async def test_same_event_id_twice_is_an_idempotent_retry(self, manager: EventSourcingManager) -> None:
        s = sid()
        eid = str(uuid.uuid4())
        a = await manager.append_event(stream_id=s, event_type="E", data={"x": 1}, event_id=eid, expected_version=0)
        b = await manager.append_event(stream_id=s, event_type="E", data={"x": 1}, event_id=eid, expected_version=0)
        assert not a.duplicate
        assert b.duplicate
        assert (b.version, b.position, b.event_id) == (a.version, a.position, a.event_id)
        assert await self.versions(manager, s) == [1]

    async def test_batch_retry_returns_the_original_result(self, manager: EventSourcingManager) -> None:
        s = sid()
        ids = [str(uuid.uuid4()) for _ in range(3)]
        await manager.append_event(stream_id=s, event_type="E", data={})
        batch = [ev(event_id=i) for i in ids]
        a = await manager.append_events_batch(stream_id=s, events=batch, expected_version=1)
        await manager.append_event(stream_id=s, event_type="E", data={})
        # the retry carries a now-stale expected version: idempotency is checked first
        b = await manager.append_events_batch(stream_id=s, events=[ev(event_id=i) for i in ids], expected_version=1)
        assert b.duplicate
        assert (b.first_version, b.last_version, b.positions, b.event_ids) == (
            a.first_version,
            a.last_version,
            a.positions,
            a.event_ids,
        )
        assert await self.versions(manager, s) == [1, 2, 3, 4, 5]

    async def test_partial_overlap_with_stored_ids_is_refused(self, manager: EventSourcingManager) -> None:
        s = sid()
        ids = [str(uuid.uuid4()) for _ in range(2)]
        await manager.append_events_batch(stream_id=s, events=[ev(event_id=i) for i in ids])
        with pytest.raises(DuplicateEventError):
            await manager.append_events_batch(stream_id=s, events=[ev(event_id=ids[1]), ev(event_id=ids[0])])
        with pytest.raises(DuplicateEventError):
            await manager.append_events_batch(stream_id=s, events=[ev(event_id=ids[0]), ev()])
        assert await self.versions(manager, s) == [1, 2]

    async def test_duplicate_ids_inside_one_batch_are_refused(self, manager: EventSourcingManager) -> None:
        s = sid()
        eid = str(uuid.uuid4())
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(event_id=eid), ev(event_id=eid)])
        assert not await manager.stream_exists(s)

    # ------------------------------------------------------------------ global order

    async def test_read_all_covers_every_stream_each_in_version_order(self, manager: EventSourcingManager, provider: Provider) -> None:
        streams = [sid("g") for _ in range(3)]
        appended = []
        for i in range(4):
            for s in streams:
                r = await manager.append_event(stream_id=s, event_type="E", data={"i": i})
                appended.append((s, r.version, r.event_id))
        seen = [e async for e in manager.read_all()]
        assert sorted(e.event_id for e in seen) == sorted(a[2] for a in appended)
        for s in streams:
            assert [e.version for e in seen if e.stream_id == s] == [1, 2, 3, 4]
            assert [e.event_id for e in seen if e.stream_id == s] == [a[2] for a in appended if a[0] == s]

    async def test_read_all_is_one_total_order_resumable_by_position(self, manager: EventSourcingManager, provider: Provider) -> None:
        order = provider.capabilities.global_order
        if order != "total":
            pytest.skip(f"global_order={order}: read_all promises no order across streams and no resumable position")
        streams = [sid("g") for _ in range(3)]
        appended = []
        for i in range(4):
            for s in streams:
                r = await manager.append_event(stream_id=s, event_type="E", data={"i": i})
                appended.append(r.event_id)
        seen = [e async for e in manager.read_all()]
        positions = [e.position for e in seen]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        # sequential appends: the global order is the append order
        assert [e.event_id for e in seen] == appended
        middle = seen[len(seen) // 2]
        tail = [e.event_id async for e in manager.read_all(from_position=middle.position)]
        assert tail == [e.event_id for e in seen[len(seen) // 2 :]]
        after_last = [e.event_id async for e in manager.read_all(from_position=seen[-1].position + 1)]
        assert after_last == []

    async def test_a_follower_of_read_all_sees_every_concurrent_write_once(self, manager: EventSourcingManager, provider: Provider) -> None:
        order = provider.capabilities.global_order
        if order != "total":
            pytest.skip(f"global_order={order}: read_all has no position a follower could resume from")
        writers, per_writer = 4, 15
        done = asyncio.Event()
        seen: list[str] = []

        async def follow() -> None:
            nxt = 0
            while True:
                finished = done.is_set()
                async for e in manager.read_all(from_position=nxt):
                    seen.append(e.event_id)
                    nxt = e.position + 1
                if finished:
                    return
                await asyncio.sleep(0.005)

        async def write(w: int) -> list[str]:
            ids = []
            for i in range(per_writer):
                if i % 3 == 0:
                    r = await manager.append_events_batch(stream_id=f"fw-{w}", events=[ev(), ev()])
                    ids.extend(r.event_ids)
                else:
                    ids.append((await manager.append_event(stream_id=f"fw-{w}", event_type="E", data={"i": i})).event_id)
            return ids

        follower = asyncio.create_task(follow())
        written = await asyncio.gather(*(write(w) for w in range(writers)))
        done.set()
        await asyncio.wait_for(follower, timeout=60)
        expected = sorted(i for ids in written for i in ids)
        assert sorted(seen) == expected, "the follower skipped or repeated events"

    # ------------------------------------------------------------------ streaming reads

    async def test_reads_stream_in_bounded_memory(self, manager: EventSourcingManager) -> None:
        s = sid("big")
        payload = "x" * 4000
        for _ in range(20):
            await manager.append_events_batch(stream_id=s, events=[ev(data={"p": payload}) for _ in range(100)])
        # 2,000 events of ~4 KB = ~8 MB stored; a paged reader must never hold them all
        readers: tuple[Callable[[], AsyncIterator[Event]], ...] = (
            lambda: manager.read_stream(s, page_size=100),
            lambda: manager.read_all(page_size=100),
        )
        for reader in readers:
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                n = 0
                async for e in reader():
                    assert len(e.data["p"]) == len(payload)
                    n += 1
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            assert n == 2000
            assert peak < 4_000_000, f"reading held {peak} bytes at once"

    async def test_stopping_a_read_early_is_clean(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(30)])
        got = []
        async for e in manager.read_stream(s, page_size=5):
            got.append(e.version)
            if len(got) == 7:
                break
        assert got == list(range(1, 8))
        # the store is still usable afterwards
        assert (await manager.append_event(stream_id=s, event_type="E", data={})).version == 31

    async def test_read_stream_ranges_and_backwards(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(12)])
        assert [e.version async for e in manager.read_stream(s, from_version=5)] == list(range(5, 13))
        assert [e.version async for e in manager.read_stream(s, from_version=3, to_version=6)] == [3, 4, 5, 6]
        assert [e.version async for e in manager.read_stream(s, backwards=True, page_size=5)] == list(range(12, 0, -1))
        assert [e.version async for e in manager.read_stream(s, from_version=3, to_version=6, backwards=True)] == [6, 5, 4, 3]
        assert [e.version async for e in manager.read_stream(s, page_size=5)] == list(range(1, 13))
        assert [e async for e in manager.read_stream(sid("missing"))] == []

    async def test_page_views_hold_the_same_events_as_the_record_views(self, manager: EventSourcingManager, provider: Provider) -> None:
        # the manager reads through read_stream_pages / read_all_pages; they must agree with read_stream /
        # read_all event for event, in pages that are never empty and never larger than page_size
        s = sid("pages")
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(12)])

        async def flat(pages: AsyncIterator[Any], page_size: int) -> list[RecordedEvent]:
            out: list[RecordedEvent] = []
            async for page in pages:
                assert 0 < len(page) <= page_size, f"a page of {len(page)} events (page_size {page_size})"
                out.extend(page.records() if isinstance(page, RowPage) else page)
            return out

        for size in (1, 5, 12, 500):
            for kw in ({}, {"from_version": 3, "to_version": 9}, {"backwards": True}, {"from_version": 13}):
                records = [e async for e in provider.read_stream(s, page_size=size, **kw)]
                paged = await flat(provider.read_stream_pages(s, page_size=size, **kw), size)
                assert paged == records, (size, kw)
        assert await flat(provider.read_stream_pages(sid("missing"), page_size=5), 5) == []
        if not provider.capabilities.supports("read_all"):  # declared unsupported: the page view says so too
            with pytest.raises(UnsupportedOperationError):
                await anext(aiter(provider.read_all_pages(page_size=5)))
            return
        stored = [e async for e in provider.read_stream(s)]
        first = stored[0]
        records = [e async for e in provider.read_all(from_position=first.position, page_size=5)]
        paged = await flat(provider.read_all_pages(from_position=first.position, page_size=5), 5)
        assert [e.event_id for e in paged if e.stream_id == s] == [e.event_id for e in records if e.stream_id == s]
        assert len([e for e in paged if e.stream_id == s]) == 12

    def _fault_manager(self) -> EventSourcingManager:
        return EventSourcingManager(
            {
                "providers": {},
                "default_provider": None,
                "max_batch_size": self.max_batch_size,
                "retry_attempts": 2,  # each fault is followed by delivered pages, so 2 attempts suffice
                "retry_delay": 0.001,
                "retry_max_delay": 0.002,
            },
            host=_host(),
        )

    async def test_read_stream_resumes_after_a_fault_mid_read_on_the_page_path(
        self, provider: Provider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # the manager reads through read_stream_pages; a connection lost between two of the store's own
        # pages must resume right after the last event delivered: every event once, in order
        m = self._fault_manager()
        await m.register_provider(provider, name="under-test", default=True)
        s = sid("fault")
        await m.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(23)])
        faults = PageFaults(monkeypatch, provider)
        cases: list[tuple[dict[str, Any], list[int]]] = [
            ({"page_size": 5}, list(range(1, 24))),
            ({"page_size": 5, "backwards": True}, list(range(23, 0, -1))),
            ({"page_size": 3, "from_version": 4, "to_version": 20}, list(range(4, 21))),
            ({"page_size": 3, "from_version": 4, "to_version": 20, "backwards": True}, list(range(20, 3, -1))),
            ({"page_size": 1}, list(range(1, 24))),
        ]
        for kw, expected in cases:
            faults.left, faults.opened = 2, 0
            got = [(e.version, e.data["i"]) async for e in m.read_stream(s, **kw)]
            assert got == [(v, v - 1) for v in expected], kw
            assert faults.left == 0, f"the faults never fired: {kw}"
            assert faults.opened == 3, f"expected the read to be re-opened twice: {kw}"
        assert m.metrics("under-test")["under-test"]["read_stream"]["errors"] == 0
        # more faults in a row than retry attempts: the caller gets the error, not a short read
        faults.left, faults.after = 2, 0
        with pytest.raises(ProviderUnavailableError):
            [e async for e in m.read_stream(s, page_size=5)]

    async def test_read_all_resumes_after_a_fault_mid_read_on_the_page_path(
        self, provider: Provider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        m = self._fault_manager()
        await m.register_provider(provider, name="under-test", default=True)
        if not provider.capabilities.supports("read_all"):  # declared unsupported: asserted, not skipped
            with pytest.raises(UnsupportedOperationError):
                [e async for e in m.read_all()]
            return
        order = provider.capabilities.global_order
        if order != "total":
            pytest.skip(f"global_order={order}: read_all has no position to resume from after a fault")
        a, b = sid("fa"), sid("fb")
        for i in range(8):  # interleaved, so a resume by position crosses streams
            await m.append_events_batch(stream_id=a if i % 2 == 0 else b, events=[ev(data={"i": 3 * i + j}) for j in range(3)])
        events = [e async for e in m.read_all(page_size=4)]
        clean = [(e.event_id, e.data["i"]) for e in events]
        assert [i for _, i in clean] == list(range(24))
        faults = PageFaults(monkeypatch, provider)
        for size in (4, 5, 1):
            faults.left, faults.opened = 2, 0
            got = [(e.event_id, e.data["i"]) async for e in m.read_all(page_size=size)]
            assert got == clean, size
            assert faults.left == 0, f"the faults never fired (page_size {size})"
            assert faults.opened == 3, f"expected the read to be re-opened twice (page_size {size})"
        faults.left, faults.opened = 2, 0
        got = [(e.event_id, e.data["i"]) async for e in m.read_all(from_position=events[10].position, page_size=3)]
        assert got == clean[10:]
        assert faults.left == 0

    # ------------------------------------------------------------------ stream lifecycle

    async def test_create_stream_round_trips_and_refuses_duplicates(self, manager: EventSourcingManager) -> None:
        s = sid()
        info = await manager.create_stream(
            stream_id=s, name="User Events", aggregate_id="user-1", aggregate_type="User", metadata={"v": "1.0", "n": 2}
        )
        got = await manager.get_stream_info(s)
        assert got.stream_id == s
        assert (got.name, got.aggregate_id, got.aggregate_type) == ("User Events", "user-1", "User")
        assert got.metadata == {"v": "1.0", "n": 2}
        assert got.version == 0
        assert info.created_at <= got.updated_at
        assert await manager.stream_exists(s)
        with pytest.raises(StreamExistsError):
            await manager.create_stream(stream_id=s)
        await manager.append_event(stream_id=s, event_type="E", data={})
        with pytest.raises(StreamExistsError):
            await manager.create_stream(stream_id=s)

    async def test_list_streams_pages_in_id_order(self, manager: EventSourcingManager) -> None:
        ids = [f"ls-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(5)]
        for i, s in enumerate(ids):
            if i % 2:
                await manager.create_stream(stream_id=s)
            else:
                await manager.append_event(stream_id=s, event_type="E", data={})
        page1 = await manager.list_streams(limit=2, offset=0)
        page2 = await manager.list_streams(limit=2, offset=2)
        page3 = await manager.list_streams(limit=2, offset=4)
        assert page1.total_count == 5
        assert page1.has_more
        assert page2.has_more
        assert not page3.has_more
        assert [i.stream_id for p in (page1, page2, page3) for i in p.streams] == sorted(ids)

    async def test_get_stream_info_is_exact(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()])
        last = await manager.append_event(stream_id=s, event_type="E", data={})
        info = await manager.get_stream_info(s)
        assert (info.version, info.event_count, info.last_event_id, info.first_version) == (4, 4, last.event_id, 1)
        assert info.created_at <= info.updated_at
        with pytest.raises(StreamNotFoundError):
            await manager.get_stream_info(sid("missing"))

    async def test_delete_stream_removes_events_info_and_snapshots(self, manager: EventSourcingManager, provider: Provider) -> None:
        s, other = sid(), sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(), ev()])
        await manager.append_event(stream_id=other, event_type="E", data={})
        await manager.create_snapshot(stream_id=s, data={"state": 1})
        await manager.delete_stream(s)
        assert not await manager.stream_exists(s)
        assert [e async for e in manager.read_stream(s)] == []
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(r.event_ids[0])
        with pytest.raises(SnapshotNotFoundError):
            await manager.get_snapshot(s)
        with pytest.raises(StreamNotFoundError):
            await manager.get_events_by_stream(s)
        assert s not in [i.stream_id for i in (await manager.list_streams(limit=100)).streams]
        assert [e.stream_id async for e in manager.read_all()] == [other]
        with pytest.raises(StreamNotFoundError):
            await manager.delete_stream(s)
        assert await self.versions(manager, other) == [1]
        if provider.capabilities.deleted_stream_ids == "reusable":
            again = await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=NO_STREAM)
            assert again.version == 1
        else:
            with pytest.raises(StreamDeletedError):
                await manager.append_event(stream_id=s, event_type="E", data={})

    # ------------------------------------------------------------------ snapshots

    async def test_snapshots_latest_at_or_below_and_delete(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev() for _ in range(10)])
        state = {"total": Decimal("12.50"), "at": datetime(2025, 1, 1, tzinfo=UTC)}
        s3 = await manager.create_snapshot(stream_id=s, data={"v": 3, **state}, version=3, metadata={"m": 1})
        s7 = await manager.create_snapshot(stream_id=s, data={"v": 7}, version=7)
        latest = await manager.get_snapshot(s)
        assert (latest.snapshot_id, latest.version, latest.data) == (s7.snapshot_id, 7, {"v": 7})
        below = await manager.get_snapshot(s, max_version=6)
        assert (below.snapshot_id, below.version, below.data, below.metadata) == (s3.snapshot_id, 3, {"v": 3, **state}, {"m": 1})
        with pytest.raises(SnapshotNotFoundError):
            await manager.get_snapshot(s, max_version=2)
        assert await manager.delete_snapshot(s, version=7) == 1
        assert (await manager.get_snapshot(s)).version == 3
        assert await manager.delete_snapshot(s) == 1
        with pytest.raises(SnapshotNotFoundError):
            await manager.get_snapshot(s)
        current = await manager.create_snapshot(stream_id=s, data={"v": 10})
        assert current.version == 10
        with pytest.raises(ValidationError):
            await manager.create_snapshot(stream_id=s, data={}, version=11)
        with pytest.raises(StreamNotFoundError):
            await manager.create_snapshot(stream_id=sid("missing"), data={})

    async def test_a_snapshot_must_be_backed_by_the_stream_as_it_is_now(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """``save_snapshot`` refuses a snapshot its stream as it is now does not back.

        That is: of a missing stream, above the stream's version, or taken at an event the stream no
        longer holds at that version (deleted and re-created meanwhile). Otherwise ``before_snapshot``
        retention would delete events no snapshot covers.
        """

        def snap(stream_id: str, version: int, position: int | None) -> NewSnapshot:
            return NewSnapshot(str(uuid.uuid4()), stream_id, version, b'{"v": 1}', b"", "json", utcnow(), position=position)

        s = sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()])
        with pytest.raises(StreamNotFoundError):
            await provider.save_snapshot(snap(sid("missing"), 1, None))
        with pytest.raises(ConcurrencyError):
            await provider.save_snapshot(snap(s, 4, None))
        with pytest.raises(ConcurrencyError):
            await provider.save_snapshot(snap(s, 2, r.positions[0]))  # the position of version 1, not 2
        assert await provider.get_snapshot(s) is None
        await provider.save_snapshot(snap(s, 2, r.positions[1]))
        await provider.save_snapshot(snap(s, 3, None))  # no position given: the version check only
        stored = await provider.get_snapshot(s)
        assert stored is not None
        assert stored.version == 3

    async def test_a_snapshot_of_a_deleted_and_recreated_stream_is_refused(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        reuse = provider.capabilities.deleted_stream_ids
        if reuse != "reusable":
            pytest.skip(f"deleted_stream_ids={reuse}: a deleted stream id is never re-created")
        s = sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()])
        def snap(version: int, position: int) -> NewSnapshot:
            return NewSnapshot(str(uuid.uuid4()), s, version, b'{"v": 1}', b"", "json", utcnow(), position=position)

        old = snap(2, r.positions[1])
        await provider.save_snapshot(snap(2, r.positions[1]))  # the same snapshot is good while the stream lives
        await manager.delete_stream(s)
        again = await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError):
            await provider.save_snapshot(old)  # taken before the stream was deleted and re-created
        assert await provider.get_snapshot(s) is None
        await provider.save_snapshot(snap(2, again.positions[1]))  # one of the stream as it is now is fine
        stored = await provider.get_snapshot(s)
        assert stored is not None
        assert stored.version == 2

    # ------------------------------------------------------------------ read by id

    async def test_get_event_by_id(self, manager: EventSourcingManager) -> None:
        s, other = sid(), sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(3)])
        await manager.append_event(stream_id=other, event_type="E", data={})
        e = await manager.get_event_by_id(r.event_ids[1])
        assert (e.stream_id, e.version, e.data) == (s, 2, {"i": 1})
        e = await manager.get_event_by_id(r.event_ids[2], stream_id=s)
        assert e.version == 3
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(r.event_ids[0], stream_id=other)
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(str(uuid.uuid4()))

    # ------------------------------------------------------------------ filters, paging, sorting

    async def _seed_query_data(self, manager: EventSourcingManager) -> tuple[str, str, datetime]:
        a, b = sid("qa"), sid("qb")
        t0 = datetime(2030, 1, 1, tzinfo=UTC)
        for i in range(12):
            await manager.append_event(
                stream_id=a if i % 2 == 0 else b,
                event_type="Created" if i % 3 == 0 else "Updated",
                data={"i": i},
                tenant_id="t1" if i < 6 else "t2",
                correlation_id=f"c{i % 4}",
                aggregate_id=f"agg-{i % 2}",
                aggregate_type="Thing",
                timestamp=t0 + timedelta(minutes=i),
            )
        return a, b, t0

    async def test_get_events_filters(self, manager: EventSourcingManager) -> None:
        a, b, t0 = await self._seed_query_data(manager)

        async def idx(**kw: Any) -> list[int]:
            res = await manager.get_events(limit=100, **kw)
            assert res.total_count == len(res.events)
            return [e.data["i"] for e in res.events]

        assert await idx(stream_id=a) == [0, 2, 4, 6, 8, 10]
        assert await idx(stream_id=b, event_types=["Created"]) == [3, 9]
        assert await idx(event_types=["Created"]) == [0, 3, 6, 9]
        assert await idx(stream_id=a, from_version=2, to_version=4) == [2, 4, 6]
        assert await idx(from_timestamp=t0 + timedelta(minutes=3), to_timestamp=t0 + timedelta(minutes=5)) == [3, 4, 5]
        assert await idx(tenant_id="t2") == [6, 7, 8, 9, 10, 11]
        assert await idx(correlation_id="c1") == [1, 5, 9]
        assert await idx(aggregate_id="agg-1", tenant_id="t1") == [1, 3, 5]
        assert await idx(aggregate_type="Thing", event_types=["Updated"], stream_id=a) == [2, 4, 8, 10]
        assert await idx(stream_id=sid("none")) == []

    async def test_get_events_paging_and_sort_order(self, manager: EventSourcingManager) -> None:
        a, _, _ = await self._seed_query_data(manager)
        pages: list[int] = []
        offset = 0
        while True:
            res = await manager.get_events(limit=5, offset=offset)
            assert res.total_count == 12
            pages.extend(e.data["i"] for e in res.events)
            offset += 5
            if not res.has_more:
                break
        assert pages == list(range(12))
        desc = await manager.get_events(stream_id=a, limit=4, offset=1, sort_order="desc")
        assert [e.version for e in desc.events] == [5, 4, 3, 2]
        assert desc.total_count == 6
        assert desc.has_more
        by_stream = await manager.get_events_by_stream(a, limit=2, offset=4)
        assert [e.version for e in by_stream.events] == [5, 6]
        assert not by_stream.has_more
        with pytest.raises(ValidationError):
            await manager.get_events(limit=0)
        with pytest.raises(ValidationError):
            await manager.get_events(sort_order="sideways")

    # ------------------------------------------------------------------ retention primitives

    async def test_truncate_stream_keeps_versions(self, manager: EventSourcingManager, provider: Provider) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(10)])
        if not self.supports(provider, "truncate_stream"):
            with pytest.raises(UnsupportedOperationError):
                await provider.truncate_stream(s, 4)
            return
        assert await provider.truncate_stream(s, 4) == 3
        assert await self.versions(manager, s) == list(range(4, 11))
        info = await manager.get_stream_info(s)
        assert (info.version, info.event_count, info.first_version) == (10, 7, 4)
        assert (await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=10)).version == 11
        assert (await manager.get_events(stream_id=s)).total_count == 8
        assert await provider.truncate_stream(s, 4) == 0

    async def test_delete_events_before_a_time(self, manager: EventSourcingManager, provider: Provider) -> None:
        s, other = sid(), sid()
        t0 = datetime(2020, 1, 1, tzinfo=UTC)
        await manager.append_events_batch(
            stream_id=s, events=[ev(data={"i": i}, timestamp=t0 + timedelta(days=i)) for i in range(6)]
        )
        await manager.append_event(stream_id=other, event_type="E", data={}, timestamp=t0)
        if not self.supports(provider, "delete_events_before"):
            with pytest.raises(UnsupportedOperationError):
                await provider.delete_events_before(t0 + timedelta(days=3), s)
            return
        assert await provider.delete_events_before(t0 + timedelta(days=3), s) == 3
        assert await self.versions(manager, s) == [4, 5, 6]
        assert await self.versions(manager, other) == [1]
        assert await provider.delete_events_before(t0 + timedelta(days=1)) == 1
        assert await self.versions(manager, other) == []
        assert (await manager.get_stream_info(other)).version == 1

    # ------------------------------------------------------------------ capabilities

    async def test_declared_unsupported_operations_raise_and_no_other_does(self, provider: Provider) -> None:
        """Every operation is probed: a declared-unsupported one raises :class:`UnsupportedOperationError`.

        Any other may succeed or fail for its own reasons (the probes touch a missing stream), never that.
        """
        s = sid()
        new = NewEvent(str(uuid.uuid4()), "Probe", b"{}", b"", "json", utcnow())

        async def first(it: AsyncIterator[Any]) -> Any:
            return await anext(aiter(it), None)

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "create_stream": lambda: provider.create_stream(NewStream(sid("probe"))),
            "get_stream_info": lambda: provider.get_stream_info(s),
            "append": lambda: provider.append(sid("probe"), [new], ANY),
            "read_stream": lambda: first(provider.read_stream(s)),
            "query": lambda: provider.query(EventFilter(stream_id=s), limit=1, offset=0),
            "health": provider.health,
            "read_all": lambda: first(provider.read_all()),
            "get_event": lambda: provider.get_event(str(uuid.uuid4())),
            "delete_stream": lambda: provider.delete_stream(s),
            "truncate_stream": lambda: provider.truncate_stream(s, 1),
            "delete_events_before": lambda: provider.delete_events_before(utcnow()),
            "save_snapshot": lambda: provider.save_snapshot(
                NewSnapshot(str(uuid.uuid4()), s, 1, b"{}", b"", "json", utcnow())
            ),
            "get_snapshot": lambda: provider.get_snapshot(s),
            "delete_snapshots": lambda: provider.delete_snapshots(s),
            "stats": provider.stats,
            "list_streams": lambda: provider.list_streams(limit=1, offset=0),
        }
        assert sorted(calls) == sorted(OPERATIONS), "the kit must probe every operation a store may declare"
        unsupported = provider.capabilities.unsupported
        for op in OPERATIONS:
            if op in unsupported:
                with pytest.raises(UnsupportedOperationError):
                    await calls[op]()
                continue
            try:
                await calls[op]()
            except UnsupportedOperationError as e:
                pytest.fail(f"{op} raised {e!r} but the store does not declare it unsupported")
            except EventSourceError:
                pass  # e.g. StreamNotFoundError: the probe asked about a missing stream

    # ------------------------------------------------------------------ hostile input

    async def test_hostile_but_valid_stream_ids_round_trip_and_stay_apart(self, manager: EventSourcingManager) -> None:
        tag = uuid.uuid4().hex[:6]
        ids = [f"{h}{tag}" if len(h) < 900 else h[:-6] + tag for h in HOSTILE_VALID_STREAM_IDS]
        ids += list(HOSTILE_VALID_STREAM_IDS[:8])  # the bare forms too: ".", "*", ">"...
        for i, s in enumerate(ids):
            await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}), ev(data={"i": i})], expected_version=NO_STREAM)
        for i, s in enumerate(ids):
            got = [e async for e in manager.read_stream(s)]
            assert [(e.stream_id, e.data["i"], e.version) for e in got] == [(s, i, 1), (s, i, 2)], s
            info = await manager.get_stream_info(s)
            assert info.stream_id == s
            assert info.version == 2
            res = await manager.get_events(stream_id=s)
            assert res.total_count == 2
            await manager.create_snapshot(stream_id=s, data={"i": i})
            assert (await manager.get_snapshot(s)).data == {"i": i}
        listed: list[str] = []
        offset = 0
        while True:
            page = await manager.list_streams(limit=100, offset=offset)
            listed.extend(x.stream_id for x in page.streams)
            offset += 100
            if not page.has_more:
                break
        assert sorted(listed) == sorted(ids)
        everything = [e async for e in manager.read_all()]
        assert len(everything) == 2 * len(ids)
        assert {e.stream_id for e in everything} == set(ids)
        await manager.delete_stream(ids[1])  # "a.*<tag>": must not delete "a.b<tag>" or "a.><tag>"
        assert not await manager.stream_exists(ids[1])
        assert await manager.stream_exists(ids[0])
        assert await manager.stream_exists(ids[2])
        assert await self.versions(manager, ids[0]) == [1, 2]

    @pytest.mark.parametrize("bad", HOSTILE_INVALID_STREAM_IDS, ids=lambda v: repr(v)[:20])
    async def test_invalid_stream_ids_are_refused_and_change_nothing(self, manager: EventSourcingManager, bad: object) -> None:
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=bad, event_type="E", data={})
        with pytest.raises(ValidationError):
            await manager.create_stream(stream_id=bad)
        with pytest.raises(ValidationError):
            await manager.get_stream_info(bad)  # type: ignore[arg-type]
        assert (await manager.list_streams()).total_count == 0
        assert await self.total_events(manager) == 0

    @pytest.mark.parametrize(
        "field_values",
        [
            {"event_type": ""},
            {"event_type": "a\x00b"},
            {"event_type": "t" * 10_000},
            {"event_id": ""},
            {"event_id": "id\x00"},
            {"tenant_id": "x\x00"},
            {"data": object()},
            {"data": float("nan")},
            {"data": {"k": {1, object()}}},
            {"metadata": "not-a-dict"},
            {"metadata": {"k": object()}},
        ],
        # the ids repr(v)[:30] has given so far, frozen: an object()'s repr holds its address, and a set holding
        # one iterates in an order its hash (its address) decides, so computed ids moved with the memory layout
        ids=[
            "{'event_type': ''}",
            "{'event_type': 'a\\x00b'}",
            "{'event_type': 'tttttttttttttt",
            "{'event_id': ''}",
            "{'event_id': 'id\\x00'}",
            "{'tenant_id': 'x\\x00'}",
            "{'data': <object object at 0x7",
            "{'data': nan}",
            "{'data': {'k': {1, <object obj",
            "{'metadata': 'not-a-dict'}",
            "{'metadata': {'k': <object obj",
        ],
    )
    async def test_invalid_event_fields_are_refused_and_change_nothing(
        self, manager: EventSourcingManager, field_values: dict[str, Any]
    ) -> None:
        s = sid()
        fields = {"event_type": "E", "data": {"ok": True}, **field_values}
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, **fields)
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(), EventData(**fields)])
        assert not await manager.stream_exists(s)
        assert await self.total_events(manager) == 0

    async def test_oversized_events_and_batches_are_refused(self, manager: EventSourcingManager) -> None:
        s = sid()
        big = "x" * (manager.config.max_event_size + 1)
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, event_type="E", data={"big": big})
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, event_type="E", data={"big": "y" * 50 * 1024 * 1024})
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev() for _ in range(self.max_batch_size + 1)])
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev() for _ in range(100_000)])
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[])
        assert not await manager.stream_exists(s)
        assert await self.total_events(manager) == 0

    async def test_largest_allowed_event_round_trips(self, manager: EventSourcingManager, provider: Provider) -> None:
        s = sid()
        limit = min(manager.config.max_event_size, provider.capabilities.max_event_size or manager.config.max_event_size)
        body = "z" * (limit - 64)
        r = await manager.append_event(stream_id=s, event_type="Big", data=body)
        got = await manager.get_event_by_id(r.event_id)
        assert got.data == body

    # ------------------------------------------------------------------ stats and health

    async def test_stats_are_exact(self, manager: EventSourcingManager) -> None:
        a, b = sid(), sid()
        await manager.append_events_batch(stream_id=a, events=[ev("A"), ev("A"), ev("B")])
        await manager.append_event(stream_id=b, event_type="B", data={})
        await manager.create_stream(stream_id=sid("empty"))
        await manager.create_snapshot(stream_id=a, data={})
        st = (await manager.get_stats())["under-test"]
        assert (st.total_events, st.total_streams, st.total_snapshots) == (4, 3, 1)
        assert st.events_by_type == {"A": 2, "B": 2}
        assert st.events_by_stream[a] == 3
        assert st.events_by_stream[b] == 1
        assert st.last_event_at is not None
        assert st.uptime_seconds >= 0

    async def test_health_reports_healthy(self, manager: EventSourcingManager) -> None:
        h = (await manager.health_check())["under-test"]
        assert h.healthy, h.message

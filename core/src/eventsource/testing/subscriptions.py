"""``SubscriptionSuite``: catch-up then live delivery, checkpoints and back-pressure, on any store.

A plugin subclasses it (next to its ``ProviderSuite``) and overrides the ``provider`` fixture; it may also
override ``checkpoint_store`` (a fresh :class:`~eventsource.checkpoints.CheckpointStore`) and
:meth:`SubscriptionSuite.late_commit` (a transaction that draws a position, then commits after later ones:
PostgreSQL). Tests that cannot apply to a declared capability are skipped naming it. Waits use events and
generous timeouts, never assertions about time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.checkpoints import Checkpoint, MemoryCheckpointStore
from eventsource.checkpoints.base import CheckpointNotFoundError
from eventsource.errors import ConfigurationError, EventSourceError, StreamDeletedError
from eventsource.manager.ids import event_id
from eventsource.manager.policy import CallPolicy
from eventsource.model import ANY, EventData, NewEvent, utcnow
from eventsource.provider import Provider
from eventsource.subscriptions import CheckpointAheadError, CheckpointFilterError, EventDecodeError
from eventsource.subscriptions.lag import checkpoint_lag
from eventsource.testing.base import ProviderSuiteBase, sid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.checkpoints import CheckpointStore
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event
    from eventsource.subscriptions import Subscription

WAIT = 60.0
"""Seconds a test waits for an event that must come (generous: a shared machine)."""


def _ev(n: int, event_type: str = "Counted") -> EventData:
    return EventData(event_type=event_type, data={"n": n})


async def take(sub: Subscription, n: int, within: float = WAIT) -> list[Event]:
    """The next ``n`` events of ``sub``; fails the test if they do not all come within ``within`` seconds."""
    out: list[Event] = []

    async def run() -> None:
        while len(out) < n:
            out.append(await anext(sub))

    try:
        await asyncio.wait_for(run(), within)
    except TimeoutError:
        pytest.fail(f"subscription delivered {len(out)} of {n} events within {within}s")
    return out


class SubscriptionSuite(ProviderSuiteBase):
    """Subscriptions on the store under test. Subclass and override :meth:`provider`."""

    writers = 8
    per_writer = 25
    backlog = 10_000
    """Events behind a slow consumer in the back-pressure test."""
    backlog_batch = 500

    @pytest.fixture
    async def checkpoint_store(self) -> AsyncIterator[CheckpointStore]:
        """Override to run the checkpoint tests on the store's own checkpoint plugin."""
        store = MemoryCheckpointStore()
        await store.connect()
        yield store
        await store.close()

    @contextlib.asynccontextmanager
    async def late_commit(self, provider: Provider, stream_id: str) -> AsyncIterator[Any]:
        """Override on a store that declares ``late_commits``: one append to ``stream_id`` that commits late.

        The transaction draws its position on entry, stays open for the block, and commits when it ends.
        """
        if provider.capabilities.late_commits:
            pytest.fail(f"{provider.kind} declares late_commits=True but its suite does not override late_commit")
        pytest.skip("late_commits=False: positions are assigned at commit, so no append commits behind a later one")
        yield  # pragma: no cover

    def need_total_order(self, provider: Provider) -> None:
        """Skip, naming the capability, on a store without one global order."""
        if provider.capabilities.global_order != "total":
            pytest.skip(f"global_order={provider.capabilities.global_order}: no all-streams subscription")

    async def test_live_capabilities_are_declared_as_implemented(self, provider: Provider) -> None:
        """``head_position`` and ``live_wakeup`` match what the store does, so the tests they skip skip honestly."""
        caps = provider.capabilities
        head = await provider.head_position()
        assert (head is not None) == caps.head_position, (
            f"head_position() returned {head!r} but the store declares head_position={caps.head_position}"
        )
        overridden = type(provider).wait_for_change is not Provider.wait_for_change
        assert overridden == caps.live_wakeup, (
            f"wait_for_change is {'' if overridden else 'not '}overridden but the store declares "
            f"live_wakeup={caps.live_wakeup}"
        )

    # ------------------------------------------------------------------ catch-up then live

    async def _concurrent_writers(self, manager: EventSourcingManager, prefix: str) -> list[str]:
        ids: list[str] = []

        async def writer(w: int) -> None:
            stream = f"{prefix}-w{w}"
            for i in range(self.per_writer):
                res = await manager.append_event(stream_id=stream, event_type="Counted", data={"w": w, "i": i})
                ids.append(res.event_id)

        await asyncio.gather(*(writer(w) for w in range(self.writers)))
        return ids

    async def test_catch_up_then_live_sees_every_event_once_in_order(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        self.need_total_order(provider)
        prefix = sid("cl")
        before = await manager.append_events_batch(stream_id=f"{prefix}-old", events=[_ev(i) for i in range(30)])
        async with manager.subscribe(stream_prefix=prefix, page_size=7, poll_interval=0.5) as sub:
            first = await take(sub, 3)  # caught up part-way: the writers start at the seam
            live = asyncio.create_task(self._concurrent_writers(manager, prefix))
            rest = await take(sub, 30 - 3 + self.writers * self.per_writer)
            ids = await live
        got = first + rest
        assert [e.event_id for e in got[:30]] == before.event_ids
        assert sorted(e.event_id for e in got[30:]) == sorted(ids)
        assert len({e.event_id for e in got}) == len(got), "an event was delivered twice"
        positions = [e.position for e in got]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        by_stream: dict[str, list[int]] = {}
        for e in got:
            by_stream.setdefault(e.stream_id, []).append(e.version)
        assert all(v == list(range(1, len(v) + 1)) for v in by_stream.values())

    async def test_one_stream_catch_up_then_live(self, manager: EventSourcingManager) -> None:
        s, noise = sid("one"), sid("noise")
        await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(5)])
        async with manager.subscribe(stream_id=s, page_size=2, poll_interval=0.5) as sub:
            assert [e.version for e in await take(sub, 5)] == [1, 2, 3, 4, 5]

            async def write() -> None:
                for i in range(10):
                    await manager.append_event(stream_id=s, event_type="Counted", data={"n": 5 + i})
                    await manager.append_event(stream_id=noise, event_type="Counted", data={"n": i})

            task = asyncio.create_task(write())
            got = await take(sub, 10)
            await task
        assert [e.version for e in got] == list(range(6, 16))
        assert {e.stream_id for e in got} == {s}
        assert [e.data["n"] for e in got] == list(range(5, 15))

    async def test_event_type_filter(self, manager: EventSourcingManager, provider: Provider) -> None:
        self.need_total_order(provider)
        prefix = sid("ft")
        await manager.append_events_batch(
            stream_id=f"{prefix}-a", events=[_ev(i, "Kept" if i % 3 == 0 else "Dropped") for i in range(12)]
        )
        await manager.append_event(stream_id=f"{prefix}-b", event_type="Kept", data={"n": 99})
        async with manager.subscribe(stream_prefix=prefix, event_types=["Kept"], page_size=4) as sub:
            got = await take(sub, 5)
        assert [e.data["n"] for e in got] == [0, 3, 6, 9, 99]

    async def test_late_commit_is_not_skipped(self, manager: EventSourcingManager, provider: Provider) -> None:
        self.need_total_order(provider)
        prefix = sid("late")
        async with manager.subscribe(stream_prefix=prefix, page_size=10, poll_interval=0.5) as sub:
            # the subscription reads all along, so it is live and polling while the late transaction is open
            reading = asyncio.create_task(take(sub, self.writers * self.per_writer + 1))
            async with self.late_commit(provider, f"{prefix}-late"):
                ids = await self._concurrent_writers(manager, prefix)
                await asyncio.sleep(0.3)  # reads meanwhile must hold back, not pass the open transaction
            got = await reading
        assert sorted(e.event_id for e in got if e.stream_id != f"{prefix}-late") == sorted(ids)
        assert [e.stream_id for e in got].count(f"{prefix}-late") == 1
        positions = [e.position for e in got]
        assert positions == sorted(positions)

    # ------------------------------------------------------------------ from the end

    async def test_from_end_delivers_what_is_committed_after_the_start(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        self.need_total_order(provider)
        if not provider.capabilities.head_position:
            pytest.skip("head_position=False: the store cannot say its end, so no subscription starts from it")
        prefix = sid("end")
        old = await manager.append_events_batch(stream_id=f"{prefix}-old", events=[_ev(i) for i in range(3)])
        async with manager.subscribe(stream_prefix=prefix, from_position="end", poll_interval=0.5) as sub:
            assert sub.position >= 0
            new = [await manager.append_event(stream_id=f"{prefix}-new", event_type="Counted", data={}) for _ in "ab"]
            got: list[Event] = []
            while len(got) < 10 and new[-1].event_id not in [e.event_id for e in got]:
                got += await take(sub, 1)
        ids = [e.event_id for e in got]
        assert ids[-2:] == [r.event_id for r in new]
        if provider.capabilities.late_commits:
            # the safe horizon: events committed while an older transaction (anywhere) still ran may come too
            assert set(ids[:-2]) <= set(old.event_ids), f"unexpected events before the new ones: {got[:-2]}"
        else:
            assert ids == [r.event_id for r in new], f"events committed before the start were delivered: {got}"

    async def test_from_end_of_one_stream(self, manager: EventSourcingManager) -> None:
        s, fresh = sid("end1"), sid("end1-new")
        await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(3)])
        async with (
            manager.subscribe(stream_id=s, from_version="end", poll_interval=0.5) as sub,
            manager.subscribe(stream_id=fresh, from_version="end", poll_interval=0.5) as sub_fresh,
        ):
            assert (sub.position, sub_fresh.position) == (3, 0)
            await manager.append_event(stream_id=s, event_type="Counted", data={"n": 3})
            await manager.append_event(stream_id=fresh, event_type="Counted", data={"n": 0})
            assert [(e.version, e.data["n"]) for e in await take(sub, 1)] == [(4, 3)]
            assert [(e.version, e.data["n"]) for e in await take(sub_fresh, 1)] == [(1, 0)]

    async def test_from_end_resumes_a_stored_checkpoint_instead(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        self.need_total_order(provider)
        prefix, name = sid("endcp"), sid("endcp-sub")
        first = await manager.append_event(stream_id=f"{prefix}-a", event_type="Counted", data={"n": 0})
        async with manager.subscribe(stream_prefix=prefix, checkpoint=checkpoint_store, name=name) as sub:
            await take(sub, 1)
            await sub.commit()
        missed = await manager.append_event(stream_id=f"{prefix}-a", event_type="Counted", data={"n": 1})
        sub = manager.subscribe(stream_prefix=prefix, from_position="end", checkpoint=checkpoint_store, name=name)
        async with sub:
            assert sub.position == first.position
            assert [e.event_id for e in await take(sub, 1)] == [missed.event_id]

    async def test_from_end_without_a_stored_checkpoint_stores_where_it_started(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        # a named subscription from the end that stops before its first commit resumes at that first end when
        # it starts again: what was appended meanwhile is delivered, not skipped by starting at a later end
        self.need_total_order(provider)
        if not provider.capabilities.head_position:
            pytest.skip("head_position=False: the store cannot say its end, so no subscription starts from it")
        prefix, name = sid("endfirst"), sid("endfirst-sub")
        await manager.append_event(stream_id=f"{prefix}-old", event_type="Counted", data={"n": 0})
        sub = manager.subscribe(stream_prefix=prefix, from_position="end", checkpoint=checkpoint_store, name=name)
        async with sub:
            start = sub.position
            stored = await checkpoint_store.get(name, sub.source)
            assert stored is not None, "no checkpoint stored at the start: a restart would begin at a later end"
            assert stored.position == start
        missed = await manager.append_event(stream_id=f"{prefix}-new", event_type="Counted", data={"n": 1})
        sub = manager.subscribe(stream_prefix=prefix, from_position="end", checkpoint=checkpoint_store, name=name)
        async with sub:
            assert sub.position == start
            got: list[Event] = []
            while len(got) < 5 and missed.event_id not in [e.event_id for e in got]:
                got += await take(sub, 1)
        assert missed.event_id in [e.event_id for e in got]

    async def test_from_end_delivers_an_append_running_when_it_started(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        self.need_total_order(provider)
        prefix = sid("endlate")
        sub = manager.subscribe(stream_prefix=prefix, from_position="end", poll_interval=0.5)
        try:
            async with self.late_commit(provider, f"{prefix}-late"):  # skipped where no append commits late
                # committed above the late append's position while it is open: the head is now above it
                between = await manager.append_event(stream_id=f"{prefix}-between", event_type="Counted", data={})
                await sub.start()  # the end is taken while the late append is still uncommitted
                after = await manager.append_event(stream_id=f"{prefix}-after", event_type="Counted", data={})
            got = await take(sub, 3)
        finally:
            await sub.close()
        # "between" committed before the start, but while an older transaction ran: the safe horizon keeps it
        assert [e.stream_id for e in got] == [f"{prefix}-late", f"{prefix}-between", f"{prefix}-after"], got
        assert [got[1].event_id, got[2].event_id] == [between.event_id, after.event_id]

    # ------------------------------------------------------------------ wake-ups and back-pressure

    async def test_lost_wake_up_still_delivers_by_polling(
        self, manager: EventSourcingManager, provider: Provider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def no_wake_up(after_position: int, max_wait: float) -> None:
            await Provider.wait_for_change(provider, after_position, max_wait)  # the default: sleep, no wake-up

        monkeypatch.setattr(provider, "wait_for_change", no_wake_up)
        s = sid("poll")
        async with manager.subscribe(stream_id=s, poll_interval=0.2) as sub:
            waiting = asyncio.create_task(take(sub, 1))
            await asyncio.sleep(0)  # let it reach the (now deaf) wait
            res = await manager.append_event(stream_id=s, event_type="Counted", data={"n": 1})
            got = await waiting
        assert [e.event_id for e in got] == [res.event_id]

    async def test_slow_consumer_holds_at_most_one_page(self, manager: EventSourcingManager) -> None:
        s = sid("slow")
        for start in range(0, self.backlog, self.backlog_batch):
            await manager.append_events_batch(
                stream_id=s, events=[_ev(i) for i in range(start, start + self.backlog_batch)]
            )
        page = 100
        peak = 0
        n = 0
        async with manager.subscribe(stream_id=s, page_size=page) as sub:
            while n < self.backlog:
                e = await asyncio.wait_for(anext(sub), WAIT)
                assert e.data["n"] == n
                n += 1
                peak = max(peak, sub.buffered)
                if n % 1000 == 0:
                    await asyncio.sleep(0.01)  # a slow consumer: the store is not read ahead meanwhile
                    assert sub.buffered <= page
        assert peak <= page

    async def test_cancelled_while_waiting_then_resumes_without_loss(self, manager: EventSourcingManager) -> None:
        s = sid("cancel")
        await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(3)])
        sub = manager.subscribe(stream_id=s, page_size=2, poll_interval=0.5)
        try:
            assert [e.version for e in await take(sub, 2)] == [1, 2]  # one event left in the buffer
            assert [e.version for e in await take(sub, 1)] == [3]
            waiting = asyncio.create_task(anext(sub))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(3, 6)])
            assert [e.version for e in await take(sub, 3)] == [4, 5, 6]
        finally:
            await sub.close()
        with pytest.raises(StopAsyncIteration):
            await anext(sub)

    async def test_cancelled_mid_read_loses_and_repeats_nothing(self, manager: EventSourcingManager) -> None:
        s = sid("midpage")
        total = 60
        await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(total)])
        got: list[int] = []
        async with manager.subscribe(stream_id=s, page_size=4, poll_interval=0.5) as sub:
            for round_ in range(200):
                if len(got) == total:
                    break
                task = asyncio.create_task(anext(sub))
                for _ in range(round_ % 4):  # cancel at a different step of the read each round
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):  # cancelled before it got one: nothing lost
                    got.append((await task).data["n"])
            got += [e.data["n"] for e in await take(sub, total - len(got))]
        assert got == list(range(total))

    async def test_close_from_another_task_ends_a_waiting_iterator(self, manager: EventSourcingManager) -> None:
        sub = manager.subscribe(stream_id=sid("closing"), poll_interval=600)
        waiting = asyncio.create_task(anext(sub))
        await asyncio.sleep(0.05)
        await sub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, WAIT)

    # ------------------------------------------------------------------ checkpoints

    async def test_resume_from_checkpoint_delivers_each_later_event_once(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        self.need_total_order(provider)
        prefix, name = sid("cp"), sid("sub")
        first = await manager.append_events_batch(stream_id=f"{prefix}-a", events=[_ev(i) for i in range(20)])
        async with manager.subscribe(stream_prefix=prefix, checkpoint=checkpoint_store, name=name, page_size=6) as sub:
            got = await take(sub, 8)
            cp = await sub.commit()
            await take(sub, 3)  # handed out, never committed: delivered again after the restart
        assert cp.position == got[-1].position and cp.scope == sub.target.scope and cp.scope.startswith("all filter=")
        later = await manager.append_events_batch(stream_id=f"{prefix}-b", events=[_ev(i) for i in range(5)])
        async with manager.subscribe(stream_prefix=prefix, checkpoint=checkpoint_store, name=name) as sub:
            again = await take(sub, 12 + 5)
        assert [e.event_id for e in again] == first.event_ids[8:] + later.event_ids

    async def test_commit_every_n_and_stream_checkpoint(
        self, manager: EventSourcingManager, checkpoint_store: CheckpointStore
    ) -> None:
        s, name = sid("cpn"), sid("sub")
        await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(10)])
        async with manager.subscribe(stream_id=s, checkpoint=checkpoint_store, name=name, commit_every=4) as sub:
            await take(sub, 9)  # commits after 4 and 8, each when the consumer asked for the next event
        stored = await checkpoint_store.get(name, sub.source)
        assert stored is not None and (stored.scope, stored.position) == (f"stream:{s}", 8)
        async with manager.subscribe(stream_id=s, checkpoint=checkpoint_store, name=name) as sub:
            assert [e.version for e in await take(sub, 2)] == [9, 10]

    async def test_a_stream_checkpoint_of_a_deleted_and_recreated_stream_is_refused(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        """A checkpoint keeps the id of the event it counted: resumed on a new stream under the same id, it refuses."""
        if (
            not provider.capabilities.supports("delete_stream")
            or provider.capabilities.deleted_stream_ids != "reusable"
        ):
            pytest.skip("capability: the store cannot delete a stream and reuse its id (delete_stream, reusable ids)")
        s, name = sid("inc"), sid("sub")
        old = await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(5)])
        async with manager.subscribe(stream_id=s, checkpoint=checkpoint_store, name=name, page_size=2) as sub:
            await take(sub, 3)
            assert (await sub.commit()).event_id == old.event_ids[2]
        stored = await checkpoint_store.get(name, sub.source)
        assert stored is not None and (stored.position, stored.event_id) == (3, old.event_ids[2])
        async with manager.subscribe(stream_id=s, checkpoint=checkpoint_store, name=name) as sub:
            assert [e.version for e in await take(sub, 1)] == [4]  # the same stream: resumed as before
        await manager.delete_stream(s)
        await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(6)])
        async with manager.subscribe(stream_id=s, checkpoint=checkpoint_store, name=name, poll_interval=0.2) as sub:
            with pytest.raises(StreamDeletedError, match="reset=True"):
                await asyncio.wait_for(anext(sub), WAIT)
        async with manager.subscribe(stream_id=s, checkpoint=checkpoint_store, name=name, reset=True) as sub:
            assert [e.version for e in await take(sub, 6)] == [1, 2, 3, 4, 5, 6]

    async def test_checkpoint_of_another_source_or_scope_is_not_used(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        self.need_total_order(provider)
        prefix, name = sid("cpo"), sid("sub")
        res = await manager.append_events_batch(stream_id=f"{prefix}-a", events=[_ev(i) for i in range(3)])
        await checkpoint_store.put(Checkpoint(name, "some-other-store", "all", res.positions[-1]))
        async with manager.subscribe(stream_prefix=prefix, checkpoint=checkpoint_store, name=name) as sub:
            assert [e.event_id for e in await take(sub, 3)] == res.event_ids
        source = sub.source
        await checkpoint_store.put(Checkpoint(name, source, f"stream:{prefix}-a", 1), force=True)
        with pytest.raises(ConfigurationError, match="counts"):
            await manager.subscribe(stream_prefix=prefix, checkpoint=checkpoint_store, name=name).start()

    async def test_checkpoint_of_another_filter_is_refused_unless_reset(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        self.need_total_order(provider)
        prefix, name = sid("cpf"), sid("sub")
        res = await manager.append_events_batch(
            stream_id=f"{prefix}-a", events=[_ev(i, "A" if i % 2 else "B") for i in range(6)]
        )
        kw: dict[str, Any] = {"stream_prefix": prefix, "checkpoint": checkpoint_store, "name": name}
        async with manager.subscribe(**kw, event_types=["A", "B"]) as sub:
            await take(sub, 2)
            await sub.commit()
        async with manager.subscribe(**kw, event_types=["B", "A"]) as sub:  # the same filter, another order
            assert [e.event_id for e in await take(sub, 4)] == res.event_ids[2:]
        others: list[dict[str, Any]] = [{"event_types": ["A"]}, {}]
        for other in others:
            with pytest.raises(CheckpointFilterError, match="another filter") as err:
                await manager.subscribe(**kw, **other).start()
            assert "reset=True" in str(err.value)
        stored = await checkpoint_store.get(name, sub.source)
        assert stored is not None and stored.position == res.positions[1], "a refused resume changed the checkpoint"
        async with manager.subscribe(**kw, event_types=["A"], reset=True) as sub:
            got = await take(sub, 3)
            assert [e.event_id for e in got] == res.event_ids[1::2]
            cp = await sub.commit()
        assert cp.scope == sub.target.scope != stored.scope

    async def test_an_undecodable_event_raises_naming_it_or_is_skipped_and_reported(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        s, name = sid("dec"), sid("sub")
        await manager.append_events_batch(stream_id=s, events=[_ev(0)])
        bad = NewEvent(event_id(), "Counted", b"?", b"", encoding="x-gone", timestamp=utcnow())
        await provider.append(s, [bad], ANY)
        await manager.append_events_batch(stream_id=s, events=[_ev(2)])
        kw: dict[str, Any] = {"stream_id": s, "checkpoint": checkpoint_store, "name": name}
        async with manager.subscribe(**kw) as sub:
            assert [e.version for e in await take(sub, 1)] == [1]
            for _ in range(2):  # the event stays next in line: it raises again, it is never passed over
                with pytest.raises(EventDecodeError, match=bad.event_id) as err:
                    await asyncio.wait_for(anext(sub), WAIT)
                assert err.value.details["version"] == 2 and err.value.details["event_id"] == bad.event_id
            assert "position" in err.value.details and (await sub.commit()).position == 1
        async with manager.subscribe(**kw, on_decode_error="skip") as sub:
            assert [e.data["n"] for e in await take(sub, 1)] == [2]
            assert sub.skipped == 1 and sub.skipped_events[0].event_id == bad.event_id
            assert "x-gone" in sub.skipped_events[0].error
            assert (await sub.commit()).position == 3

    async def test_lag_in_positions_and_seconds(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        self.need_total_order(provider)
        prefix, name = sid("lag"), sid("sub")
        res = await manager.append_events_batch(stream_id=f"{prefix}-a", events=[_ev(i) for i in range(10)])
        async with manager.subscribe(stream_prefix=prefix, checkpoint=checkpoint_store, name=name) as sub:
            got = await take(sub, 4)
            await sub.commit()
            lag = await manager.subscription_lag(name, checkpoint_store)
            assert (lag.name, lag.source, lag.position) == (name, sub.source, got[-1].position)
            if provider.capabilities.head_position:
                assert lag.head is not None and lag.head >= res.positions[-1]
                assert lag.positions == lag.head - got[-1].position
            else:  # the store cannot say its head: no distance in positions, the events are still counted
                assert (lag.head, lag.positions) == (None, None)
            assert (lag.events, lag.events_capped) == (6, False), "events past the checkpoint, counted"
            cp = await checkpoint_store.get(name, sub.source)
            assert cp is not None
            fifth = (await take(sub, 1))[0]
            policy = CallPolicy(manager.config)
            behind = await checkpoint_lag(provider, policy, cp, now=fifth.timestamp + timedelta(seconds=90))
            assert behind.seconds == 90.0, "seconds count from the oldest event past the checkpoint"
            await take(sub, 5)
            await sub.commit()
        caught_up = await manager.subscription_lag(name, checkpoint_store)
        assert caught_up.seconds == 0.0 and caught_up.position == res.positions[-1] and caught_up.events == 0
        assert caught_up.positions == caught_up.head - res.positions[-1] if caught_up.head is not None else True
        with pytest.raises(CheckpointNotFoundError):
            await manager.subscription_lag(sid("never"), checkpoint_store)
        listed = await checkpoint_store.list(sub.source)
        assert name in [c.name for c in listed] and all(c.source == sub.source for c in listed)

    async def test_position_beyond_the_store_is_refused(
        self, manager: EventSourcingManager, provider: Provider, checkpoint_store: CheckpointStore
    ) -> None:
        self.need_total_order(provider)
        if not provider.capabilities.head_position:
            pytest.skip("head_position=False: the store cannot say its head, so a start beyond it cannot be detected")
        res = await manager.append_event(stream_id=sid("fut"), event_type="Counted", data={"n": 0})
        with pytest.raises(CheckpointAheadError):
            await manager.subscribe(from_position=res.position + 10**9).start()
        name = sid("sub")
        probe = manager.subscribe(checkpoint=checkpoint_store, name=name)
        await checkpoint_store.put(Checkpoint(name, probe.source, "all", res.position + 10**9))
        with pytest.raises(CheckpointAheadError):
            await probe.start()

    # ------------------------------------------------------------------ the store changing under it

    async def test_stream_deleted_while_subscribed(self, manager: EventSourcingManager, provider: Provider) -> None:
        if not provider.capabilities.supports("delete_stream"):
            pytest.skip("unsupported: delete_stream")
        s = sid("del")
        await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(3)])
        async with manager.subscribe(stream_id=s, poll_interval=0.2) as sub:
            await take(sub, 3)
            await manager.delete_stream(s)
            if provider.capabilities.deleted_stream_ids == "reusable":
                await manager.append_events_batch(stream_id=s, events=[_ev(i) for i in range(5)])
            with pytest.raises(StreamDeletedError):
                await asyncio.wait_for(anext(sub), WAIT)

    async def test_deleted_tail_does_not_make_a_waiting_subscription_spin(
        self, manager: EventSourcingManager, provider: Provider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.need_total_order(provider)
        if not provider.capabilities.supports("delete_stream"):
            pytest.skip("unsupported: delete_stream")
        if not provider.capabilities.live_wakeup:
            pytest.skip("live_wakeup=False: subscriptions poll (no change signal); a deleted tail cannot make one spin")
        prefix = sid("tail")
        kept = await manager.append_event(stream_id=f"{prefix}-kept", event_type="Counted", data={"n": 0})
        await manager.append_event(stream_id=f"{prefix}-gone", event_type="Counted", data={"n": 1})
        await manager.delete_stream(f"{prefix}-gone")  # the highest position handed out is now no event's
        reads = 0
        real = provider.read_all_pages

        def counting(**kw: Any) -> Any:
            nonlocal reads
            reads += 1
            return real(**kw)

        monkeypatch.setattr(provider, "read_all_pages", counting)
        async with manager.subscribe(stream_prefix=prefix, poll_interval=600) as sub:
            assert [e.event_id for e in await take(sub, 1)] == [kept.event_id]
            waiting = asyncio.create_task(anext(sub))
            await asyncio.sleep(0.5)
            spun = reads
            res = await manager.append_event(stream_id=f"{prefix}-kept", event_type="Counted", data={"n": 2})
            got = await asyncio.wait_for(waiting, WAIT)
        assert got.event_id == res.event_id
        assert spun < 20, f"{spun} reads while nothing new was committed: the wait returned at once, over and over"

    async def test_provider_closed_under_a_live_subscription_raises(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        s = sid("closed")
        sub = manager.subscribe(stream_id=s, poll_interval=0.2)
        waiting = asyncio.create_task(anext(sub))
        await asyncio.sleep(0.05)
        await provider.close()
        with pytest.raises(EventSourceError):
            await asyncio.wait_for(waiting, WAIT)
        await sub.close()

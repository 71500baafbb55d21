"""Attacker's and newcomer's review of repositories: a save whose outcome is unknown, snapshots of an older shape."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from eventsource.domain import Aggregate, DomainEvent, Repository, applies
from eventsource.errors import DuplicateEventError, ProviderTimeoutError, ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@dataclass(frozen=True)
class Deposited(DomainEvent, type_name="review.Deposited"):
    amount: int


class Account(Aggregate):
    aggregate_type = "review.Account"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.balance = 0

    def deposit(self, amount: int) -> None:
        self.record(Deposited(amount))

    @applies(Deposited)
    def _deposited(self, e: Deposited) -> None:
        self.balance += e.amount


async def _versions(m: EventSourcingManager, stream_id: str) -> list[tuple[int, str]]:
    return [(e.version, e.event_id) async for e in m.read_stream(stream_id)]


async def _until_stored(m: EventSourcingManager, stream_id: str, count: int) -> list[tuple[int, str]]:
    """The stream's events once it holds ``count`` (the timed-out append lands after the lock is released)."""
    for _ in range(500):
        stored = await _versions(m, stream_id)
        if len(stored) >= count:
            return stored
        await asyncio.sleep(0.01)
    pytest.fail(f"the append never landed: {await _versions(m, stream_id)}")


async def _timed_out_save(m: EventSourcingManager, repo: Repository[Account], acc: Account, db: Path) -> None:
    """``repo.save(acc)`` times out while another connection holds the write lock, and lands once it lets go."""
    blocker = sqlite3.connect(db, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ProviderTimeoutError):
            await repo.save(acc)
    finally:
        blocker.rollback()
        blocker.close()


@asynccontextmanager
async def _impatient(db: Path) -> AsyncIterator[tuple[EventSourcingManager, Repository[Account]]]:
    """A manager on the SQLite file ``db`` whose calls time out after 0.3 s, never retried; its Account repository."""
    config = {"providers": {"db": f"sqlite:///{db}"}, "timeout": 0.3, "retry_attempts": 1}
    async with EventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        yield m, Repository(m, Account)


async def test_a_save_repeated_after_a_timeout_that_landed_is_an_idempotent_retry(tmp_path: Path) -> None:
    """A save whose append timed out but was stored, saved again, returns the stored result and duplicates nothing.

    The timeout's own message says that an append repeated with the same event ids is a no-op if it was
    applied; the repository minted new ids on every save, so the repeat raised ConcurrencyError ("expected
    version 1, actual version 2") for a writer that was the aggregate itself, with its events still pending.
    """
    db = tmp_path / "x.db"
    async with _impatient(db) as (m, repo):
        acc = repo.new("a")
        acc.deposit(5)
        await repo.save(acc)
        acc = await repo.get("a")
        acc.deposit(10)
        acc.deposit(20)
        await _timed_out_save(m, repo, acc, db)
        stored = await _until_stored(m, acc.stream_id, 3)
        assert len(acc.pending) == 2  # the repository cannot know they landed
        res = await repo.save(acc)  # the retry a timeout asks for
        assert res is not None
        assert res.duplicate
        assert (res.first_version, res.last_version) == (2, 3)
        assert stored[1:] == list(zip(range(2, 4), res.event_ids, strict=True))
        assert await _versions(m, acc.stream_id) == stored  # nothing written twice
        assert (acc.pending, acc.version) == ([], 3)
        assert (await repo.get("a")).balance == 35
        acc.deposit(1)  # carries on from the stored head
        await repo.save(acc)
        assert (await repo.get("a")).balance == 36


async def test_a_repeated_save_with_events_recorded_since_the_timeout_stores_nothing_twice(tmp_path: Path) -> None:
    """Events recorded after a timed-out save that landed: the repeat is refused as a partial duplicate, not stored."""
    db = tmp_path / "x.db"
    async with _impatient(db) as (m, repo):
        acc = repo.new("a")
        acc.deposit(5)
        await _timed_out_save(m, repo, acc, db)
        stored = await _until_stored(m, acc.stream_id, 1)
        acc.deposit(7)
        with pytest.raises(DuplicateEventError):
            await repo.save(acc)
        assert await _versions(m, acc.stream_id) == stored
        assert (await repo.get("a")).balance == 5


class AccountWithCount(Aggregate):
    """The next release of :class:`Account`: it also counts deposits, and nobody bumped ``snapshot_version``."""

    aggregate_type = "review.Account"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.balance = 0
        self.deposits = 0

    @applies(Deposited)
    def _deposited(self, e: Deposited) -> None:
        self.balance += e.amount
        self.deposits += 1


async def test_a_snapshot_without_an_attribute_the_class_now_has_is_not_loaded_into_a_wrong_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A default snapshot taken before the class gained ``deposits`` gave it its ``__init__`` value (0, then 1).

    A replay of the same events gives 5: loaded from the old snapshot the aggregate was silently another state,
    and its next snapshot stored that state for good. The snapshot is only a cache: it is ignored (logged).
    """
    db = f"sqlite:///{tmp_path / 'x.db'}"
    async with EventSourcingManager({"providers": {"db": db}}, host=PluginHost(load_entrypoints=False)) as m:
        old = Repository(m, Account, snapshot_threshold=3)
        acc = old.new("a")
        for n in range(4):
            acc.deposit(n)
        await old.save(acc)
        assert (await m.get_snapshot(acc.stream_id)).data == {"balance": 6}
        acc = await old.get("a")
        acc.deposit(10)
        await old.save(acc)
    async with EventSourcingManager({"providers": {"db": db}}, host=PluginHost(load_entrypoints=False)) as m:
        new = Repository(m, AccountWithCount, snapshot_threshold=3)
        with caplog.at_level("WARNING", logger="eventsource"):
            loaded = await new.get("a")
        assert (loaded.balance, loaded.deposits, loaded.version) == (16, 5, 5)
        assert "deposits" in caplog.text
        loaded.record(Deposited(1))
        await new.save(loaded)  # replayed: the cadence starts again, and the new snapshot has the new shape
        assert (await m.get_snapshot(loaded.stream_id)).data == {"balance": 17, "deposits": 6}
        again = await new.get("a")
        assert (again.balance, again.deposits, again.snapshot_at) == (17, 6, 6)


async def test_an_event_of_a_type_with_no_class_names_the_stored_type_when_the_aggregate_is_loaded(
    tmp_path: Path,
) -> None:
    """An event class renamed (``type_name`` defaults to the class name) leaves stored events with no class.

    Loading the aggregate said ``Account has no @applies handler for dict (event type '?')``: neither the type
    that has no class nor the event. It is a ValidationError naming both, and where the type name comes from.
    """
    db = f"sqlite:///{tmp_path / 'x.db'}"
    async with EventSourcingManager({"providers": {"db": db}}, host=PluginHost(load_entrypoints=False)) as m:
        repo = Repository(m, Account)
        acc = repo.new("a")
        acc.deposit(1)
        await repo.save(acc)
        res = await m.append_event(stream_id=acc.stream_id, event_type="review.Withdrawn", data={"amount": 1})
        for snapshot_threshold in (None, 1):
            with pytest.raises(ValidationError) as info:
                await Repository(m, Account, snapshot_threshold=snapshot_threshold).get("a")
            assert "'review.Withdrawn'" in info.value.message
            assert res.event_id in info.value.message
            assert "no event class" in info.value.message
            assert info.value.details["event_type"] == "review.Withdrawn"


# ---------------------------------------------------------------------- a reader behind the writers skips nothing


def _v3_reader(db: str) -> EventSourcingManager:
    """A projection worker of the release before: it knows ``review.Deposited`` up to version 2."""
    m = EventSourcingManager({"providers": {"db": db}}, host=PluginHost(load_entrypoints=False))
    m.add_upcaster("review.Deposited", 1, lambda d: {**d, "currency": "EUR"})
    return m


@pytest.mark.parametrize("case", ["newer-release", "missing-step"])
async def test_a_skipping_subscription_stops_at_a_schema_version_its_code_cannot_read(
    tmp_path: Path, case: str
) -> None:
    """A worker whose code is behind the writers (their v3, or a v0->v1 step never registered here) is the
    reader's deployment, not the events' fault: ``on_decode_error="skip"`` passed over every such event and its
    checkpoint moved past them, so the projection lost them for good although they read once the code is
    upgraded. It stops (EventDecodeError naming no skipping), as for a missing key; a read raises UpcastError."""
    from eventsource.errors import UpcastError
    from eventsource.subscriptions import EventDecodeError

    db = f"sqlite:///{tmp_path / 'x.db'}"
    async with EventSourcingManager({"providers": {"db": db}}, host=PluginHost(load_entrypoints=False)) as w:
        await w.append_event(stream_id="s", event_type="review.Deposited", data={"amount": 1})
        meta = {"eventsource.schema": 3} if case == "newer-release" else {}
        etype = "review.Deposited" if case == "newer-release" else "review.Paid"
        await w.append_event(stream_id="s", event_type=etype, data={"amount": 2}, metadata=meta)
    async with _v3_reader(db) as m:
        if case == "missing-step":  # this release reads review.Paid at v2 only: its step from v1 is missing
            m.add_upcaster("review.Paid", 2, lambda d: d)
        with pytest.raises(UpcastError):
            [e async for e in m.read_stream("s")]
        for target in ({"stream_id": "s"}, {}):
            async with m.subscribe(on_decode_error="skip", **target) as sub:
                first = await asyncio.wait_for(sub.next_batch(10), 5)
                assert [e.data for e in first] == [{"amount": 1, "currency": "EUR"}]
                with pytest.raises(EventDecodeError) as info:
                    await asyncio.wait_for(sub.next_batch(10), 5)
                assert sub.skipped == 0
                assert "never skipped" in str(info.value)


# ---------------------------------------------------------------------- registrations that contradict each other


async def test_a_step_past_a_registered_event_class_is_refused_whatever_the_order(tmp_path: Path) -> None:
    """A class registered before an upcaster step that goes past its version: the docs promise ConfigurationError
    for a class older than the version the upcasters produce, but only the class-after-step order raised; the
    step-after-class order was accepted, and then every read of the type, its current events included, failed."""
    from eventsource.errors import ConfigurationError

    db = f"sqlite:///{tmp_path / 'x.db'}"
    async with EventSourcingManager({"providers": {"db": db}}, host=PluginHost(load_entrypoints=False)) as m:
        repo = Repository(m, Account)  # registers review.Deposited at version 1
        acc = repo.new("a")
        acc.deposit(1)
        await repo.save(acc)
        with pytest.raises(ConfigurationError) as info:
            m.add_upcaster("review.Deposited", 1, lambda d: d)
        assert "Deposited" in info.value.message
        with pytest.raises(ConfigurationError):
            m.add_upcaster("review.Legacy", 1, lambda d: d, to_type="review.Deposited")
        assert (await repo.get("a")).balance == 1  # the refused steps left nothing behind
        assert [e.event_type async for e in m.read_stream(acc.stream_id)] == ["review.Deposited"]


async def test_a_repository_whose_snapshot_version_the_snapshot_steps_went_past_is_refused(tmp_path: Path) -> None:
    """A snapshot upcaster to a version the aggregate class does not read made the repository ignore every
    snapshot of the type (each one came out of the chain at that version): each load replayed the whole stream,
    with a warning. The repository is refused at construction, as an event class is. (A step added after the
    repository stays allowed: the kit replaces an aggregate class with its next release in one manager.)"""
    from eventsource.errors import ConfigurationError

    db = f"sqlite:///{tmp_path / 'x.db'}"
    async with EventSourcingManager({"providers": {"db": db}}, host=PluginHost(load_entrypoints=False)) as m:
        m.add_snapshot_upcaster("review.Account", 1, lambda d: d)
        with pytest.raises(ConfigurationError):
            Repository(m, Account, snapshot_threshold=2)

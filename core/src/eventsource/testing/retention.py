"""``RetentionSuite``: retention policies applied through a provider's primitives, as tests.

Subclass it and override the ``provider`` fixture, like :class:`~eventsource.testing.ProviderSuite`. Every
built-in policy runs through ``EventSourcingManager.apply_retention``; the suite checks what was deleted,
that versions never change and that a second run deletes nothing. A policy the store cannot apply (it
declares a primitive unsupported) is checked by that policy's refusal test (reported, raised, nothing
deleted); its other tests are skipped naming the operation. Times are fixed (``now=...``);
``asyncio_mode = auto`` is required. The full list is in ``docs/internals/retention.md``.
"""

from __future__ import annotations

import asyncio
import base64
import types
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import ConcurrencyError, EventNotFoundError, UnsupportedOperationError
from eventsource.manager import EventSourcingManager
from eventsource.model import NO_STREAM, EventData
from eventsource.plugins import PluginHost
from eventsource.retention import (
    BeforeSnapshotPolicy,
    MaxAgePolicy,
    MaxCountPolicy,
    RetentionContext,
    RetentionPolicy,
)
from eventsource.testing.base import skip_what_is_declared

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import ModuleType

    from eventsource.provider import Provider

_HOST: PluginHost | None = None

T0 = datetime(2020, 1, 1, tzinfo=UTC)
"""Events in the suite are stamped T0 + n days; ``now`` is passed explicitly."""

_KEY = base64.b64encode(bytes(range(32))).decode()

REFUSED = "checked by the refusal test of the policy"


def _host() -> PluginHost:
    global _HOST  # noqa: PLW0603 - one host per test session is enough
    if _HOST is None:
        _HOST = PluginHost(load_entrypoints=False)
    return _HOST


def _sid(prefix: str = "r") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _events(n: int, *, start_day: int = 0, **kw: Any) -> list[EventData]:
    return [
        EventData(event_type="Tick", data={"i": i, "pad": "x" * 40}, timestamp=T0 + timedelta(days=start_day + i), **kw)
        for i in range(n)
    ]


def _tick(day: int) -> EventData:
    return EventData(event_type="Tick", data={"day": day}, timestamp=T0 + timedelta(days=day))


class RetentionSuite:
    """Retention policies against one provider. Subclass and override :meth:`provider`."""

    manager_config: dict[str, Any] = {}  # noqa: RUF012 - read-only class default, merged per test
    """Extra :class:`ManagerConfig` fields for the suite's managers (override in a subclass)."""

    @pytest.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        """Override: yield a connected provider on a fresh, empty namespace."""
        msg = "override the `provider` fixture in your RetentionSuite subclass"
        pytest.fail(msg)  # a subclass that forgot the fixture fails loudly, never skips
        yield  # pragma: no cover

    def make_manager(self, **config: Any) -> EventSourcingManager:
        """A manager with no configured providers (the test registers the one under test)."""
        return EventSourcingManager(
            {"providers": {}, "default_provider": None, **self.manager_config, **config}, host=_host()
        )

    @pytest.fixture
    async def manager(self, provider: Provider) -> AsyncIterator[EventSourcingManager]:
        """A manager whose only (default) provider is the one under test."""
        m = self.make_manager()
        await m.register_provider(provider, name="under-test", default=True)
        yield m
        await m.stop_retention()  # the provider fixture owns closing the provider

    @staticmethod
    def supports(provider: Provider, policy: RetentionPolicy) -> bool:
        """Whether the provider declares every primitive ``policy`` needs."""
        return not policy.missing(provider)

    @staticmethod
    async def versions(m: EventSourcingManager, stream_id: str) -> list[int]:
        """Versions still stored in a stream."""
        return [e.version async for e in m.read_stream(stream_id)]

    async def _unsupported(self, m: EventSourcingManager, policy: RetentionPolicy) -> None:
        report = await m.apply_retention([policy])
        outcome = report.by_provider()["under-test"][policy.name]
        assert outcome.status == "unsupported"
        assert outcome.deleted_events == 0
        assert outcome.message
        with pytest.raises(UnsupportedOperationError):
            await m.apply_retention([policy], provider="under-test")

    @staticmethod
    def _require(provider: Provider, policy: RetentionPolicy) -> None:
        """Skip, naming the operation, when the store declares one ``policy`` needs unsupported."""
        missing = policy.missing(provider)
        if "delete_events_before" in missing:
            pytest.skip(f"capability: the store declares 'delete_events_before' unsupported ({REFUSED})")
        if "truncate_stream" in missing:
            pytest.skip(f"capability: the store declares 'truncate_stream' unsupported ({REFUSED})")
        if "list_streams" in missing:
            pytest.skip(f"capability: the store declares 'list_streams' unsupported ({REFUSED})")
        if "get_snapshot" in missing:
            pytest.skip(f"capability: the store declares 'get_snapshot' unsupported ({REFUSED})")

    async def _refuses_unchanged(self, m: EventSourcingManager, policy: RetentionPolicy) -> None:
        """The store reports and raises the policy it cannot apply, and keeps every event."""
        s = _sid()
        await m.append_events_batch(stream_id=s, events=_events(6))
        await self._unsupported(m, policy)
        assert await self.versions(m, s) == list(range(1, 7))

    # ------------------------------------------------------------------ refusals

    async def test_store_that_cannot_apply_max_age_reports_and_refuses_it(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        policy = MaxAgePolicy(timedelta(days=5))
        if self.supports(provider, policy):
            pytest.skip("capability: the store supports 'delete_events_before' (the max_age tests run it)")
        await self._refuses_unchanged(manager, policy)

    async def test_store_that_cannot_apply_max_count_reports_and_refuses_it(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        policy = MaxCountPolicy(max_events=3)
        if self.supports(provider, policy):
            pytest.skip("capability: the store supports 'list_streams' and 'truncate_stream' (the max_count tests run)")
        await self._refuses_unchanged(manager, policy)

    async def test_store_that_cannot_apply_before_snapshot_reports_and_refuses_it(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """Unsupported, it is reported and raised; with no snapshots to cover anything, it deletes nothing."""
        policy = BeforeSnapshotPolicy()
        if self.supports(provider, policy) and provider.capabilities.supports("save_snapshot"):
            pytest.skip("capability: the store supports 'truncate_stream' and 'save_snapshot' (before_snapshot runs)")
        if not self.supports(provider, policy):
            await self._refuses_unchanged(manager, policy)
        else:  # it truncates but stores no snapshot: nothing is covered, so nothing goes
            s = _sid()
            await manager.append_events_batch(stream_id=s, events=_events(8))
            with pytest.raises(UnsupportedOperationError):
                await manager.create_snapshot(stream_id=s, data={})
            assert (await manager.apply_retention([policy])).deleted() == 0
            assert await self.versions(manager, s) == list(range(1, 9))

    # ------------------------------------------------------------------ max_age

    async def test_max_age_deletes_only_older_events(self, manager: EventSourcingManager, provider: Provider) -> None:
        a, b = _sid(), _sid()
        await manager.append_events_batch(stream_id=a, events=_events(6))
        await manager.append_events_batch(stream_id=b, events=_events(2, start_day=10))
        policy = MaxAgePolicy(timedelta(days=5))
        self._require(provider, policy)
        now = T0 + timedelta(days=8)  # cutoff T0+3d: events of days 0, 1, 2 of stream a go
        report = await manager.apply_retention([policy], now=now)
        outcome = report.by_provider()["under-test"]["max_age"]
        assert (outcome.status, outcome.deleted_events) == ("ok", 3)
        assert report.deleted() == 3
        assert await self.versions(manager, a) == [4, 5, 6]
        assert await self.versions(manager, b) == [1, 2]
        info = await manager.get_stream_info(a)
        assert (info.version, info.event_count) == (6, 3)
        again = await manager.apply_retention([policy], now=now)
        assert again.deleted() == 0

    async def test_max_age_deletes_an_older_event_behind_a_newer_one(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """Timestamps are the caller's (``EventData.timestamp``: imports, backfills, clock skew): order is no excuse."""
        scan = provider.capabilities.extra.get("delete_events_before")
        if scan == "leading_run":
            pytest.skip("capability: delete_events_before='leading_run' (only each stream's leading run is deleted)")
        policy = MaxAgePolicy(timedelta(days=5))
        self._require(provider, policy)
        a = _sid()
        days = (10, 0, 1, 12)  # an import appended events of days 0 and 1 after one of day 10
        await manager.append_events_batch(
            stream_id=a, events=[EventData("Tick", {"day": d}, timestamp=T0 + timedelta(days=d)) for d in days]
        )
        now = T0 + timedelta(days=8)  # cutoff T0+3d: the events of days 0 and 1 (versions 2 and 3) go
        report = await manager.apply_retention([policy], now=now)
        assert report.deleted() == 2
        assert await self.versions(manager, a) == [1, 4]
        assert (await manager.apply_retention([policy], now=now)).deleted() == 0

    async def test_two_runs_with_different_cutoffs_racing_count_each_event_once(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """Two replicas of a service run ``max_age`` 10d and 12d at once, each through its own instance.

        Between them they delete what either policy deletes, each event counted once (in ``event_count`` and in
        what the runs report), and ``max_count`` later finds the counts it needs.
        """
        self._require(provider, MaxAgePolicy(1))
        self._require(provider, MaxCountPolicy(1))
        whole = [_sid("whole"), _sid("whole")]  # days 0..19, 0..9: the 10d run deletes all, the 12d run keeps two
        kept = [_sid("kept"), _sid("kept")]  # days 0..29: both runs keep the last ten, the 10d run deletes two more
        for s in whole:
            await manager.append_events_batch(stream_id=s, events=[_tick(i % 20) for i in range(30)])
        for s in kept:
            await manager.append_events_batch(stream_id=s, events=[_tick(i) for i in range(30)])
        other = type(provider)(**provider.spawn_args())
        await other.connect()
        try:
            m2 = self.make_manager()
            await m2.register_provider(other, name="under-test", default=True)
            now = T0 + timedelta(days=30)
            reports = await asyncio.gather(
                manager.apply_retention([MaxAgePolicy(timedelta(days=10))], now=now),
                m2.apply_retention([MaxAgePolicy(timedelta(days=12))], now=now),
            )
        finally:
            await other.close()
        assert sum(r.deleted() for r in reports) == 2 * 30 + 2 * 20
        for s in whole:
            assert await self.versions(manager, s) == []
            info = await manager.get_stream_info(s)
            assert (info.version, info.event_count, info.first_version) == (30, 0, None)
        for s in kept:
            assert await self.versions(manager, s) == list(range(21, 31))
            info = await manager.get_stream_info(s)
            assert (info.version, info.event_count, info.first_version) == (30, 10, 21)
        await manager.append_events_batch(stream_id=whole[0], events=[_tick(40) for _ in range(20)])
        assert (await manager.apply_retention([MaxCountPolicy(5)])).deleted() == 15 + 2 * 5
        assert await self.versions(manager, whole[0]) == list(range(46, 51))
        assert await self.versions(manager, kept[0]) == list(range(26, 31))
        info = await manager.get_stream_info(whole[0])
        assert (info.version, info.event_count, info.first_version) == (50, 5, 46)

    async def test_retention_period_is_the_default_policy(self, provider: Provider) -> None:
        m = self.make_manager(retention_period="3d")
        await m.register_provider(provider, name="under-test", default=True)
        [policy] = m.retention_policies()
        assert isinstance(policy, MaxAgePolicy)
        assert policy.max_age == 3 * 86400
        s = _sid()
        await m.append_events_batch(stream_id=s, events=_events(4))
        self._require(provider, policy)
        report = await m.apply_retention(now=T0 + timedelta(days=4))  # cutoff T0+1d
        assert report.deleted() == 1
        assert await self.versions(m, s) == [2, 3, 4]

    # ------------------------------------------------------------------ max_count

    async def test_max_count_keeps_the_latest_events_of_each_stream(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        big, small = _sid(), _sid()
        await manager.append_events_batch(stream_id=big, events=_events(10))
        await manager.append_events_batch(stream_id=small, events=_events(2))
        await manager.create_stream(stream_id=_sid("empty"))
        policy = MaxCountPolicy(max_events=3)
        self._require(provider, policy)
        report = await manager.apply_retention([policy], provider="under-test")
        outcome = report.by_provider()["under-test"]["max_count"]
        assert (outcome.status, outcome.deleted_events, outcome.streams_touched) == ("ok", 7, 1)
        assert await self.versions(manager, big) == [8, 9, 10]
        assert await self.versions(manager, small) == [1, 2]
        info = await manager.get_stream_info(big)
        assert (info.version, info.event_count, info.first_version) == (10, 3, 8)
        assert (await manager.append_event(stream_id=big, event_type="E", data={}, expected_version=10)).version == 11
        assert (await manager.apply_retention([policy])).deleted() == 1
        assert await self.versions(manager, big) == [9, 10, 11]

    @pytest.mark.parametrize("policy", [MaxCountPolicy(max_events=3), BeforeSnapshotPolicy()], ids=lambda p: p.name)
    async def test_a_stream_created_again_during_a_run_is_left_whole(
        self, manager: EventSourcingManager, provider: Provider, policy: RetentionPolicy
    ) -> None:
        """Deleted and created again between the run's listing and its truncation: the new stream keeps all."""
        self._require(provider, policy)
        if not provider.capabilities.supports("delete_stream"):
            pytest.skip("capability: the store declares 'delete_stream' unsupported (the race needs it)")
        if "get_snapshot" in policy.requires and not provider.capabilities.supports("save_snapshot"):
            pytest.skip(f"capability: the store declares 'save_snapshot' unsupported ({REFUSED})")
        s = _sid()
        await manager.append_events_batch(stream_id=s, events=_events(10))
        if "get_snapshot" in policy.requires:  # before_snapshot: what the snapshot covers is what it cuts
            await manager.create_snapshot(stream_id=s, data={"state": 9}, version=9)

        async def call(op: str, fn: Any) -> Any:
            if op == "truncate_stream":  # another process deletes the stream and starts it again, just then
                await manager.delete_stream(s)
                await manager.append_events_batch(stream_id=s, events=_events(4, start_day=20))
            return await fn()

        ctx = RetentionContext(provider=provider, now=T0 + timedelta(days=40), call=call)
        assert await policy.apply(ctx) == 0
        assert await self.versions(manager, s) == [1, 2, 3, 4]

    async def test_what_retention_deleted_is_gone_for_every_reader(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """Deleted events vanish from every read path, on this instance and on a fresh one."""
        s, other = _sid(), _sid()
        first = await manager.append_events_batch(stream_id=s, events=_events(6))
        await manager.append_events_batch(stream_id=other, events=_events(2))
        policy = MaxCountPolicy(max_events=2)
        self._require(provider, policy)
        assert (await manager.apply_retention([policy])).deleted() == 4
        gone, kept = first.event_ids[:4], first.event_ids[4:]
        fresh = type(provider)(**provider.spawn_args())  # another process would see the store like this
        await fresh.connect()
        try:
            m2 = self.make_manager()
            await m2.register_provider(fresh, name="under-test", default=True)
            for m in (manager, m2):
                assert await self.versions(m, s) == [5, 6]
                assert [e.event_id async for e in m.read_stream(s, backwards=True)] == kept[::-1]
                for eid in gone:
                    with pytest.raises(EventNotFoundError):
                        await m.get_event_by_id(eid)
                assert (await m.get_event_by_id(kept[0])).version == 5
                page = await m.get_events(stream_id=s, limit=100)
                assert ([e.version for e in page.events], page.total_count) == ([5, 6], 2)
                if provider.capabilities.supports("read_all"):
                    assert {e.event_id async for e in m.read_all()}.isdisjoint(gone)
                info = await m.get_stream_info(s)
                assert (info.version, info.event_count, info.first_version) == (6, 2, 5)
                if provider.capabilities.supports("stats"):
                    assert (await m.get_stats())["under-test"].total_events == 4
            # the fresh instance carries the version on where the first one left it
            assert (await m2.append_event(stream_id=s, event_type="E", data={}, expected_version=6)).version == 7
            assert await self.versions(manager, s) == [5, 6, 7]
        finally:
            await fresh.close()

    async def test_a_stream_emptied_by_retention_keeps_its_version(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        s = _sid()
        await manager.append_events_batch(stream_id=s, events=_events(4))
        policy = MaxAgePolicy(timedelta(days=1))
        self._require(provider, policy)
        assert (await manager.apply_retention([policy], now=T0 + timedelta(days=30))).deleted() == 4
        assert await self.versions(manager, s) == []
        assert await manager.stream_exists(s)
        info = await manager.get_stream_info(s)
        assert (info.version, info.event_count) == (4, 0)
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=0)
        assert (await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=4)).version == 5
        assert await self.versions(manager, s) == [5]

    # ------------------------------------------------------------------ before_snapshot

    async def test_before_snapshot_truncates_what_the_latest_snapshot_covers(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        snapped, plain = _sid(), _sid()
        await manager.append_events_batch(stream_id=snapped, events=_events(8))
        await manager.append_events_batch(stream_id=plain, events=_events(8))
        policy = BeforeSnapshotPolicy()
        self._require(provider, policy)
        if not provider.capabilities.supports("save_snapshot"):  # nothing can be covered by a snapshot
            pytest.skip(f"capability: the store declares 'save_snapshot' unsupported ({REFUSED})")
        await manager.create_snapshot(stream_id=snapped, data={"state": 3}, version=3)
        await manager.create_snapshot(stream_id=snapped, data={"state": 5}, version=5)
        report = await manager.apply_retention([policy])
        assert report.by_provider()["under-test"]["before_snapshot"].deleted_events == 5
        assert await self.versions(manager, snapped) == [6, 7, 8]
        assert await self.versions(manager, plain) == list(range(1, 9))
        assert (await manager.get_snapshot(snapped)).data == {"state": 5}
        assert (await manager.apply_retention([policy])).deleted() == 0

    async def test_before_snapshot_keeps_a_margin(self, manager: EventSourcingManager, provider: Provider) -> None:
        s = _sid()
        await manager.append_events_batch(stream_id=s, events=_events(8))
        policy = BeforeSnapshotPolicy(keep_events=2)
        self._require(provider, policy)
        if not provider.capabilities.supports("save_snapshot"):
            pytest.skip(f"capability: the store declares 'save_snapshot' unsupported ({REFUSED})")
        await manager.create_snapshot(stream_id=s, data={"state": 6}, version=6)
        assert (await manager.apply_retention([policy])).deleted() == 4
        assert await self.versions(manager, s) == [5, 6, 7, 8]

    # ------------------------------------------------------------------ several policies, encryption

    async def test_policies_from_configuration_report_each_outcome(self, provider: Provider) -> None:
        m = self.make_manager(
            retention_policies=[{"policy": "max_count", "max_events": 4}, {"policy": "max_age", "max_age": "2d"}]
        )
        await m.register_provider(provider, name="under-test", default=True)
        assert [p.name for p in m.retention_policies()] == ["max_count", "max_age"]
        s = _sid()
        await m.append_events_batch(stream_id=s, events=_events(6))  # days 0..5
        report = await m.apply_retention(now=T0 + timedelta(days=6))  # cutoff T0+4d
        outcomes = report.by_provider()["under-test"]
        expected_left = list(range(1, 7))
        for name, policy in (("max_count", m.retention_policies()[0]), ("max_age", m.retention_policies()[1])):
            if self.supports(provider, policy):
                assert outcomes[name].status == "ok"
            else:
                assert outcomes[name].status == "unsupported"
        if outcomes["max_count"].status == "ok":
            assert outcomes["max_count"].deleted_events == 2
            expected_left = [3, 4, 5, 6]
        if outcomes["max_age"].status == "ok":
            assert outcomes["max_age"].deleted_events == (2 if outcomes["max_count"].status == "ok" else 4)
            expected_left = [5, 6]
        assert await self.versions(m, s) == expected_left
        assert report.ok
        assert report.as_dict()["outcomes"][0]["policy"] == "max_count"

    async def test_encrypted_events_stay_readable_after_retention(self, provider: Provider) -> None:
        m = self.make_manager(
            encryption=True, encryption_keys={"k1": _KEY}, compression="zlib", compression_threshold=10
        )
        await m.register_provider(provider, name="under-test", default=True)
        s = _sid()
        await m.append_events_batch(stream_id=s, events=_events(5))
        await m.append_event(stream_id=s, event_type="Tick", data={"i": 5}, timestamp=T0 + timedelta(days=5))
        policy = MaxCountPolicy(max_events=2)
        self._require(provider, policy)
        await m.apply_retention([policy])
        got = [(e.version, e.data["i"]) async for e in m.read_stream(s)]
        assert got == [(5, 4), (6, 5)]

    async def test_a_scheduled_run_applies_the_policies(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        s = _sid()
        await manager.append_events_batch(stream_id=s, events=_events(5))
        policy = MaxCountPolicy(max_events=1)
        schedule = await manager.start_retention(3600, [policy])
        report = await schedule.wait_for_run(1)
        await schedule.stop()
        assert not schedule.running
        assert report is not None
        outcome = report.by_provider()["under-test"]["max_count"]
        if self.supports(provider, policy):
            assert outcome.deleted_events == 4
            assert await self.versions(manager, s) == [5]
        else:
            assert outcome.status == "unsupported"


def record_pauses(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[float]:
    """The sleeps a retention run in ``module`` (which calls ``asyncio.sleep``) takes between batches, still taken.

    For a provider's own tests of its pacing: how many pauses a run paid, and how long, without timing it.
    """
    pauses: list[float] = []
    real = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real(seconds)

    monkeypatch.setattr(module, "asyncio", types.SimpleNamespace(sleep=sleep))
    return pauses


skip_what_is_declared(RetentionSuite)  # a test needing an operation the store declares unsupported: skipped, named

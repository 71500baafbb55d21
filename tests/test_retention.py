"""Retention: the conformance suite on the in-memory provider (and SQLite), plus policy configuration,
unsupported primitives, failures and the schedule."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import (
    ConfigurationError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    RetentionError,
    UnsupportedOperationError,
)
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource.provider import Capabilities
from eventsource.retention import MaxAgePolicy, MaxCountPolicy, RetentionPolicy, build_policies
from eventsource.testing.retention import RetentionSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.provider import Provider
    from eventsource.sqlite import SqliteProvider

HOST = PluginHost(load_entrypoints=False)
T0 = datetime(2020, 1, 1, tzinfo=UTC)


class TestMemoryRetention(RetentionSuite):
    @pytest.fixture
    def provider(self, memory_provider: MemoryProvider) -> Provider:
        return memory_provider


class TestSqliteRetention(RetentionSuite):
    @pytest.fixture
    def provider(self, sqlite_provider: SqliteProvider) -> Provider:
        return sqlite_provider


class TestEncryptedSqliteRetention(TestSqliteRetention):
    """The same suite with every payload compressed and encrypted (versions are sealed into each one)."""

    manager_config = {  # noqa: RUF012 - read-only class default, as in RetentionSuite
        "encryption": True,
        "encryption_keys": {"k1": base64.b64encode(bytes(32)).decode()},
        "compression": "brotli",
        "compression_threshold": 0,
    }


class NoTruncateProvider(MemoryProvider):
    """A store that cannot truncate (declares it, and raises if called anyway)."""

    kind = "memory-notruncate"
    capabilities = Capabilities(
        global_order="total", concurrency="in_process", unsupported=frozenset({"truncate_stream"})
    )

    async def truncate_stream(self, stream_id: str, before_version: int, *, if_holds: object = None) -> int:
        raise self.unsupported("truncate_stream")


class TestRetentionOnAStoreThatCannotTruncate(RetentionSuite):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        p = NoTruncateProvider()
        await p.connect()
        yield p
        await p.close()


class BrokenDeleteProvider(MemoryProvider):
    """delete_events_before loses its connection every time."""

    kind = "memory-broken"

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        msg = "connection reset"
        raise ProviderUnavailableError(msg)


def _manager(**config: object) -> EventSourcingManager:
    return EventSourcingManager({"providers": {}, "default_provider": None, "retry_delay": 0, **config}, host=HOST)


def _events(n: int) -> list[EventData]:
    return [EventData(event_type="E", data={"i": i}, timestamp=T0 + timedelta(days=i)) for i in range(n)]


def test_policies_are_built_from_configuration_and_registered_as_plugins() -> None:
    assert HOST.retention_policies.names() == ["before_snapshot", "max_age", "max_count"]
    m = _manager(retention_policies=[{"policy": "max_count", "max_events": 5}], retention_period="30d")
    names = [(p.name, p.describe()) for p in m.retention_policies()]
    assert names == [
        ("max_count", {"policy": "max_count", "max_events": 5}),
        ("max_age", {"policy": "max_age", "max_age": 30 * 86400.0}),
    ]
    # an explicit max_age wins over retention_period
    m = _manager(retention_policies=[{"policy": "max_age", "max_age": 60}], retention_period="30d")
    assert [p.describe() for p in m.retention_policies()] == [{"policy": "max_age", "max_age": 60.0}]
    assert repr(m.retention_policies()[0]) == "MaxAgePolicy(max_age=60.0)"


@pytest.mark.parametrize(
    "entry",
    [
        {"policy": "nope"},
        {"policy": "max_count"},
        {"policy": "max_count", "max_events": 0},
        {"policy": "max_count", "max_events": "3"},
        {"policy": "max_age", "max_age": "soon"},
        {"policy": "max_age", "max_age": 0},
        {"policy": "before_snapshot", "keep_events": -1},
        {"policy": "before_snapshot", "bogus": 1},
    ],
)
def test_bad_policy_configuration_names_the_field(entry: dict[str, object]) -> None:
    m = _manager(retention_policies=[entry])
    with pytest.raises(ConfigurationError) as info:
        m.retention_policies()
    assert info.value.details["field"] == "retention_policies"


def test_a_policy_entry_without_a_name_is_refused_by_the_config_schema() -> None:
    with pytest.raises(ConfigurationError, match="retention_policies"):
        _manager(retention_policies=[{"max_events": 3}])


async def test_no_policy_at_all_is_an_error_not_a_silent_no_op() -> None:
    m = _manager()
    await m.register_provider(MemoryProvider(), name="m")
    with pytest.raises(ConfigurationError):
        await m.apply_retention()
    with pytest.raises(ConfigurationError):
        await m.start_retention(60)


async def test_unsupported_is_reported_across_providers_and_raised_when_named() -> None:
    m = _manager()
    await m.register_provider(MemoryProvider(), name="full")
    await m.register_provider(NoTruncateProvider(), name="partial")
    for name in ("full", "partial"):
        await m.append_events_batch(stream_id="s", events=_events(5), provider=name)
    report = await m.apply_retention(
        [MaxCountPolicy(2), {"policy": "max_age", "max_age": "2d"}], now=T0 + timedelta(days=5)
    )
    by = report.by_provider()
    assert by["full"]["max_count"].status == "ok"
    assert by["full"]["max_count"].deleted_events == 3
    assert by["partial"]["max_count"].status == "unsupported"
    assert "truncate_stream" in (by["partial"]["max_count"].message or "")
    assert by["partial"]["max_age"].status == "ok"
    assert by["partial"]["max_age"].deleted_events == 3  # days 0, 1, 2 are older than T0+3d
    assert report.deleted("full") == 3  # max_age found nothing left to delete after max_count
    assert report.deleted(policy="max_age") == 3
    with pytest.raises(UnsupportedOperationError) as info:
        await m.apply_retention([MaxCountPolicy(2)], provider="partial")
    assert info.value.details["operation"] == "truncate_stream"


async def test_a_failing_policy_raises_with_the_full_report() -> None:
    m = _manager(retry_attempts=2)
    await m.register_provider(MemoryProvider(), name="ok")
    await m.register_provider(BrokenDeleteProvider(), name="broken")
    for name in ("ok", "broken"):
        await m.append_events_batch(stream_id="s", events=_events(4), provider=name)
    with pytest.raises(RetentionError) as info:
        await m.apply_retention([MaxAgePolicy("1d"), MaxCountPolicy(1)], now=T0 + timedelta(days=3))
    report = info.value.report
    by = report.by_provider()
    assert by["broken"]["max_age"].status == "failed"
    assert "ProviderUnavailableError" in (by["broken"]["max_age"].message or "")
    assert by["broken"]["max_count"].status == "ok"  # the other policies still ran
    assert by["ok"]["max_age"].deleted_events == 2
    assert not report.ok
    stats = m.metrics("broken")["broken"]["delete_events_before"]
    assert (stats["calls"], stats["retries"], stats["errors"]) == (1, 1, 1)


async def test_the_schedule_keeps_going_after_a_failed_run_and_stops_on_close() -> None:
    m = _manager(retry_attempts=1)
    await m.register_provider(BrokenDeleteProvider(), name="broken")
    schedule = await m.start_retention("1h", ["before_snapshot", {"policy": "max_age", "max_age": 1}])
    await schedule.wait_for_run(1)
    assert isinstance(schedule.last_error, RetentionError)
    assert schedule.last_report is not None
    assert schedule.running
    schedule.trigger()
    await schedule.wait_for_run(2)
    assert schedule.runs == 2
    assert "running=True" in repr(schedule)
    await m.close()
    assert not schedule.running
    await schedule.stop()  # idempotent


async def test_a_schedule_without_an_immediate_run_waits_for_a_trigger() -> None:
    m = _manager()
    await m.register_provider(MemoryProvider(), name="m")
    await m.append_events_batch(stream_id="s", events=_events(3))
    schedule = await m.start_retention(3600, [MaxCountPolicy(1)], run_now=False)
    assert schedule.runs == 0
    schedule.trigger()
    report = await schedule.wait_for_run()
    assert report is not None
    assert report.deleted() == 2
    await schedule.stop()
    with pytest.raises(ConfigurationError):
        await m.start_retention("soon", [MaxCountPolicy(1)])
    with pytest.raises(ConfigurationError):
        await m.start_retention(0, [MaxCountPolicy(1)])
    with pytest.raises(ProviderNotFoundError):  # refused by the call, not logged by each run of the schedule
        await m.start_retention(1, [MaxCountPolicy(1)], provider="nope")
    assert await m.stop_retention() == 0


async def test_a_third_party_policy_registers_through_the_hook() -> None:
    import eventsource

    class KeepNothingOfType(RetentionPolicy):
        name = "drop_type"
        requires = ("list_streams", "truncate_stream")

        def __init__(self, event_type: str) -> None:
            self.event_type = event_type

        async def apply(self, ctx):  # type: ignore[no-untyped-def]
            n = 0
            async for info in ctx.streams():
                last = [e async for e in ctx.provider.read_stream(info.stream_id, backwards=True, page_size=1)]
                if last and last[0].event_type == self.event_type:
                    n += await ctx.call(
                        "truncate_stream",
                        lambda s=info.stream_id, v=info.version: ctx.provider.truncate_stream(s, v + 1),
                    )
            return n

    class Plugin:
        @eventsource.hookimpl
        def eventsource_register_retention_policies(self, registry):  # type: ignore[no-untyped-def]
            registry.add(KeepNothingOfType)

    host = PluginHost(load_entrypoints=False, plugins=[("drop-type", Plugin())])
    m = EventSourcingManager(
        {
            "providers": {},
            "default_provider": None,
            "retention_policies": [{"policy": "drop_type", "event_type": "Closed"}],
        },
        host=host,
    )
    await m.register_provider(MemoryProvider(), name="m")
    await m.append_events_batch(
        stream_id="a", events=[EventData(event_type="Opened", data={}), EventData(event_type="Closed", data={})]
    )
    await m.append_event(stream_id="b", event_type="Opened", data={})
    report = await m.apply_retention()
    assert report.deleted() == 2
    assert (await m.get_stream_info("a")).event_count == 0
    assert (await m.get_stream_info("b")).event_count == 1
    assert build_policies(host.retention_policies, m.config)[0].name == "drop_type"


def test_retention_policies_from_an_environment_variable() -> None:
    from eventsource.config import ManagerConfig

    cfg = ManagerConfig.from_env(
        {
            "EVENTSOURCE_RETENTION_POLICIES": '[{"policy": "max_count", "max_events": 3}]',
            "EVENTSOURCE_RETENTION_PERIOD": "7d",
        }
    )
    m = EventSourcingManager(cfg, host=HOST)
    assert [p.describe() for p in m.retention_policies()] == [
        {"policy": "max_count", "max_events": 3},
        {"policy": "max_age", "max_age": 7 * 86400.0},
    ]


# ---------------------------------------------------------------------- found by a review (session 3)


@pytest.mark.parametrize("max_age", [float("nan"), float("inf"), 1e20, "99999999d"])
def test_durations_that_are_not_finite_or_overflow_dates_are_refused(max_age: object) -> None:
    with pytest.raises(ConfigurationError):
        MaxAgePolicy(max_age)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError) as e:
        EventSourcingManager({"providers": {}, "default_provider": None, "retention_period": max_age}, host=HOST)
    assert e.value.details["field"] == "retention_period"


async def test_a_schedule_survives_a_policy_raising_any_error_and_a_closed_manager_refuses_retention() -> None:
    class Broken(RetentionPolicy):
        name = "broken"

        async def apply(self, ctx: object) -> int:
            raise ValueError("a bug in a third-party policy")

    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=HOST)
    await m.register_provider(MemoryProvider(f"memory://r-{uuid.uuid4().hex}"), name="m")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigurationError):
            await m.start_retention(bad, [Broken()])
    schedule = await m.start_retention(0.01, [Broken()])
    await schedule.wait_for_run(3)
    assert schedule.running
    assert schedule.last_report is not None
    assert schedule.last_report.outcomes[0].status == "failed"
    await m.close()
    assert not schedule.running
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await m.apply_retention([MaxCountPolicy(1)])
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await m.start_retention(1, [MaxCountPolicy(1)])


async def test_a_run_that_fails_midway_counts_what_it_deleted_and_skips_streams_deleted_meanwhile() -> None:
    m = EventSourcingManager({"providers": {}, "default_provider": None, "retry_attempts": 1}, host=HOST)
    p = MemoryProvider(f"memory://r-{uuid.uuid4().hex}")
    await m.register_provider(p, name="m")
    for sid in "abcd":
        await m.append_events_batch(stream_id=sid, events=[EventData("E", {"i": i}) for i in range(5)])
    real = p.truncate_stream

    async def racing(stream_id: str, before_version: int, **kw: Any) -> int:
        if stream_id == "b":
            await m.delete_stream("b")  # another task deletes it between list_streams and truncate
        if stream_id == "d":
            raise OSError("disk gone")
        return await real(stream_id, before_version, **kw)

    p.truncate_stream = racing  # type: ignore[method-assign]
    with pytest.raises(RetentionError) as e:
        await m.apply_retention([MaxCountPolicy(2)])
    outcome = e.value.report.outcomes[0]
    assert (outcome.status, outcome.deleted_events, outcome.streams_touched) == ("failed", 6, 2)  # a and c
    for sid in "ac":
        assert (await m.get_stream_info(sid)).event_count == 2
    await m.close()


async def test_max_count_keeps_that_many_stored_events_when_a_stream_has_a_gap() -> None:
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=HOST)
    await m.register_provider(MemoryProvider(f"memory://r-{uuid.uuid4().hex}"), name="m")
    now = datetime.now(UTC)
    for i in range(5):
        ts = now - timedelta(days=30) if i == 3 else now
        await m.append_event(stream_id="s", event_type="E", data={"i": i}, timestamp=ts)
    await m.apply_retention([MaxAgePolicy("7d")])  # removes version 4 from the middle
    assert [e.version async for e in m.read_stream("s")] == [1, 2, 3, 5]
    await m.apply_retention([MaxCountPolicy(3)])
    assert [e.version async for e in m.read_stream("s")] == [2, 3, 5]
    await m.close()


async def test_sqlite_truncation_stops_at_a_stream_created_again_between_its_batches(
    sqlite_provider: SqliteProvider,
) -> None:
    """Each batch is its own transaction: each checks ``if_holds`` again, so the new stream keeps every event."""
    p = sqlite_provider
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=HOST)
    await m.register_provider(p, name="s", default=True)
    await m.append_events_batch(stream_id="s", events=[EventData("E", {"i": i}) for i in range(10)])
    *_, last = [e async for e in m.read_stream("s")]
    other = type(p)(**p.spawn_args())  # another process on the same file
    await other.connect()
    m2 = EventSourcingManager({"providers": {}, "default_provider": None}, host=HOST)
    await m2.register_provider(other, name="s", default=True)
    real, batches = p._write, []

    async def write(op: str, fn: Any) -> Any:
        if op == "truncate_stream":
            batches.append(op)
            if len(batches) == 2:  # between the first batch and the second: deleted and started again
                await m2.delete_stream("s")
                await m2.append_events_batch(stream_id="s", events=[EventData("E", {"new": i}) for i in range(12)])
        return await real(op, fn)

    p._write = write  # type: ignore[method-assign]
    p._batches.size = 2
    assert await p.truncate_stream("s", 9, if_holds=(10, last.event_id)) == 2
    assert len(batches) == 2
    assert [e.version async for e in m.read_stream("s")] == list(range(1, 13))
    await m2.close()
    await m.close()

"""The sync API's lane: appends a loop-free store finishes in the caller's thread, without the event loop.

What the lane must keep of the async call: the same checks, ids, metrics and errors; a provider that declines
is awaited as before; a retryable first attempt is retried on the loop with the same encoded events (so a
first attempt that committed without answering is found as this call's own); and once the loop runs on a
thread, the lane is not used at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventData, ValidationError
from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.provider import Provider
from eventsource.sqlite import SqliteProvider
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)


class Watched(SqliteProvider):
    """SQLite noting which append ran, with what timeout, and whether an event loop was running."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, float | None, bool]] = []

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(("append", None, True))
        return await super().append(*args, **kwargs)

    def append_now(self, *args: Any, timeout: float | None) -> Any:
        running = asyncio.events._get_running_loop() is not None
        self.seen.append(("append_now", timeout, running))
        return super().append_now(*args, timeout=timeout)


def watched(es: SyncEventSourcingManager, path: Path) -> Watched:
    provider = Watched(f"sqlite:///{path}")
    es.register_provider(provider, name="w", default=True)
    return provider


def test_sqlite_sync_appends_run_in_the_callers_thread_with_no_loop_running(tmp_path: Path) -> None:
    with SyncEventSourcingManager({"providers": {"m": "memory://"}, "timeout": 7.5}, host=HOST) as es:
        p = watched(es, tmp_path / "es.db")
        for i in range(3):
            assert es.append_event(stream_id="s", event_type="E", data={"i": i}, expected_version=i).version == i + 1
        batch = es.append_events_batch(stream_id="s", events=[EventData("E", {"i": i}) for i in range(3, 8)])
        assert (batch.first_version, batch.last_version) == (4, 8)
        assert p.seen == [("append_now", 7.5, False)] * 4  # never the async append, no loop marked running
        assert [e.data["i"] for e in es.read_stream("s")] == list(range(8))
        stats = es.metrics()["w"]["append"]
        assert (stats["calls"], stats["events"], stats["errors"], stats["retries"]) == (4, 8, 0, 0)
        assert not es._loop.threaded


def test_the_lane_checks_what_the_async_call_checks_in_the_same_order(tmp_path: Path) -> None:
    with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST) as es:
        with pytest.raises(ValidationError) as bad_id:
            es.append_event(stream_id="a\x00b", event_type="", data=1)  # both wrong: the stream id is named first
        assert bad_id.value.details["field"] == "stream_id"
        with pytest.raises(ValidationError) as bad_type:
            es.append_event(stream_id="s", event_type="", data=1)
        assert bad_type.value.details["field"] == "event_type"
        with pytest.raises(ValidationError):
            es.append_event(stream_id="s", event_type="E", data=(1, 2))  # a tuple would come back a list
        with pytest.raises(ValidationError):
            es.append_events_batch(stream_id="s", events=[])
        with pytest.raises(ValidationError):
            es.append_event(EventData("E", 1), stream_id="s")  # type: ignore[arg-type] - a request and kwargs
        assert es.list_streams().total_count == 0  # nothing written by any of them
        assert es.metrics().get("db", {}).get("append", {}).get("calls", 0) == 0


def test_a_provider_that_declines_the_lane_is_awaited_and_counted_once() -> None:
    class Declines(MemoryProvider):
        def append_now(self, *args: Any, timeout: float | None) -> Any:
            self.declined = getattr(self, "declined", 0) + 1
            return None

    with SyncEventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as es:
        p = Declines()
        es.register_provider(p, name="d", default=True)
        r = es.append_event(stream_id="s", event_type="E", data=1)
        es.append_events_batch(stream_id="s", events=[EventData("E", 2), EventData("E", 3)], expected_version=1)
        assert p.declined == 2
        assert next(e.event_id for e in es.read_stream("s")) == r.event_id
        stats = es.metrics()["d"]["append"]
        assert (stats["calls"], stats["events"], stats["retries"]) == (2, 3, 0)


def test_a_first_attempt_that_committed_but_lost_its_answer_is_retried_with_the_same_ids(tmp_path: Path) -> None:
    class LosesTheAnswer(SqliteProvider):
        def append_now(self, *args: Any, timeout: float | None) -> Any:
            super().append_now(*args, timeout=timeout)  # committed...
            msg = "the answer was lost"
            raise ProviderUnavailableError(msg, provider="sqlite")  # ...and the caller cannot know

    cfg = {"providers": {"m": "memory://"}, "retry_attempts": 3, "retry_delay": 0.001}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        es.register_provider(LosesTheAnswer(f"sqlite:///{tmp_path}/es.db"), name="l", default=True)
        r = es.append_event(stream_id="s", event_type="E", data=1)
        assert (r.version, r.duplicate) == (1, False)  # its own first attempt, found by its ids
        b = es.append_events_batch(stream_id="s", events=[EventData("E", 2), EventData("E", 3)], expected_version=1)
        assert (b.first_version, b.last_version, b.duplicate) == (2, 3, False)
        stored = list(es.read_stream("s"))
        assert [e.data for e in stored] == [1, 2, 3]  # written once each
        assert [e.event_id for e in stored] == [r.event_id, *b.event_ids]
        stats = es.metrics()["l"]["append"]
        assert (stats["calls"], stats["retries"], stats["errors"], stats["events"]) == (2, 2, 0, 3)


def test_a_lock_held_past_the_timeout_is_retried_on_the_loop_until_it_is_released(tmp_path: Path) -> None:
    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "timeout": 0.2, "retry_attempts": 5, "retry_delay": 0.05}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        other = sqlite3.connect(tmp_path / "es.db", isolation_level=None, check_same_thread=False)  # another process
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, lambda: other.execute("ROLLBACK"))
        release.start()
        try:
            r = es.append_event(stream_id="s", event_type="E", data=2, expected_version=1)
        finally:
            release.join()
            other.close()
        assert r.version == 2
        assert [e.data for e in es.read_stream("s")] == [1, 2]
        stats = es.metrics()["db"]["append"]
        assert stats["retries"] >= 1  # the lane's attempt timed out on the lock; the loop's later one got it
        assert (stats["calls"], stats["errors"]) == (2, 0)


def test_without_retries_the_lanes_timeout_reaches_the_caller_and_is_counted(tmp_path: Path) -> None:
    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "timeout": 0.2, "retry_attempts": 1}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        other = sqlite3.connect(tmp_path / "es.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(ProviderTimeoutError):
                es.append_event(stream_id="s", event_type="E", data=1)
        finally:
            other.execute("ROLLBACK")
            other.close()
        stats = es.metrics()["db"]["append"]
        assert (stats["calls"], stats["errors"], stats["retries"]) == (1, 1, 0)
        assert es.list_streams().total_count == 0


def test_once_the_loop_runs_on_a_thread_the_lane_is_not_used(tmp_path: Path) -> None:
    with SyncEventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as es:
        p = watched(es, tmp_path / "es.db")
        es._loop.go_threaded()  # what a live subscription or a retention schedule does
        es.append_event(stream_id="s", event_type="E", data=1)
        es.append_events_batch(stream_id="s", events=[EventData("E", 2)])
        assert [s[0] for s in p.seen] == ["append", "append"]
        assert es.get_stream_info("s").version == 2


def test_a_snapshot_threshold_telemetry_or_encryption_sends_the_append_the_async_way(tmp_path: Path) -> None:
    cfg = {"providers": {"m": "memory://"}, "snapshot_threshold": 2}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        p = watched(es, tmp_path / "es.db")
        assert not es.append_event(stream_id="s", event_type="E", data=1).snapshot_due
        assert es.append_event(stream_id="s", event_type="E", data=2).snapshot_due  # the threshold was asked
        assert [s[0] for s in p.seen] == ["append", "append"]
        # (the async append ran inline: on the caller's loop, marked running)
        assert not es._loop.threaded


def test_threads_sharing_a_facade_through_the_lane_never_interleave_a_write(tmp_path: Path) -> None:
    with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST) as es:
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(50):
                    es.append_event(stream_id=f"s{n}", event_type="E", data=i, expected_version=i)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert time.monotonic() - start < 60
        for n in range(4):
            assert [e.data for e in es.read_stream(f"s{n}")] == list(range(50))
        positions = [e.position for e in es.read_all()]
        assert positions == sorted(set(positions))
        assert es.metrics()["db"]["append"]["calls"] == 200


def test_a_subclass_that_overrides_append_keeps_its_append_through_the_sync_api(tmp_path: Path) -> None:
    """Instrumenting a store by overriding ``append`` (as docs/writing-a-provider.md has reads wrapped) must hold
    through the sync API too: an inherited ``append_now`` would write past the override."""

    class AuditedMemory(MemoryProvider):
        async def append(self, *args: Any, **kwargs: Any) -> Any:
            self.audited = getattr(self, "audited", 0) + 1
            return await super().append(*args, **kwargs)

    class AuditedSqlite(SqliteProvider):
        async def append(self, *args: Any, **kwargs: Any) -> Any:
            self.audited = getattr(self, "audited", 0) + 1
            return await super().append(*args, **kwargs)

    class Audit:  # a mixin, not a Provider: its append comes first in the MRO all the same
        async def append(self, *args: Any, **kwargs: Any) -> Any:
            self.audited = getattr(self, "audited", 0) + 1
            return await super().append(*args, **kwargs)  # type: ignore[misc]

    class MixedIn(Audit, SqliteProvider):
        pass

    for p in (AuditedMemory(), AuditedSqlite(f"sqlite:///{tmp_path}/es.db"), MixedIn(f"sqlite:///{tmp_path}/m.db")):
        with SyncEventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as es:
            es.register_provider(p, name="a", default=True)
            es.append_event(stream_id="s", event_type="E", data=1)
            es.append_events_batch(stream_id="s", events=[EventData("E", 2)], expected_version=1)
            assert p.audited == 2, type(p).__name__  # type: ignore[attr-defined]
            assert [e.data for e in es.read_stream("s")] == [1, 2]
            stats = es.metrics()["a"]["append"]
            assert (stats["calls"], stats["events"]) == (2, 2)


def test_a_call_waiting_for_other_threads_calls_gives_up_at_the_managers_timeout(tmp_path: Path) -> None:
    """Calls from several threads take turns; a turn was waited for without limit.

    With ``timeout=0.3`` and the file locked by another process, eight threads' appends failed one after
    another, the last long past its timeout (each before it held the turn through its SQLite wait and its
    retries). A call that cannot get its turn within the timeout now raises, saying so, and writes nothing.
    """
    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "timeout": 0.3}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        es.append_event(stream_id="warm", event_type="E", data=1)
        other = sqlite3.connect(tmp_path / "es.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        errors: list[BaseException] = []
        go = threading.Barrier(8)

        def append(i: int) -> None:
            go.wait()
            try:
                es.append_event(stream_id=f"s{i}", event_type="E", data=i)
            except ProviderTimeoutError as e:
                errors.append(e)

        threads = [threading.Thread(target=append, args=(i,)) for i in range(8)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert len(errors) == 8  # the lock was held throughout: nothing could be written
        waited = [e for e in errors if "another thread" in str(e)]
        assert waited, [str(e) for e in errors]
        assert es.list_streams().total_count == 1


def test_the_lane_opens_when_a_provider_that_takes_it_is_registered_later(tmp_path: Path) -> None:
    class NoLane(MemoryProvider):
        append_now = Provider.append_now  # the base's: this store does not take the lane

    with SyncEventSourcingManager({"providers": {}, "timeout": 7.5}, host=HOST) as es:
        es.register_provider(NoLane(), name="n", default=True)
        assert es.append_event(stream_id="s", event_type="E", data=1).version == 1
        assert not es._manager._providers.lane  # the async call, untouched
        p = watched(es, tmp_path / "es.db")
        assert es.append_event(stream_id="s", event_type="E", data=2).version == 1
        assert p.seen == [("append_now", 7.5, False)]

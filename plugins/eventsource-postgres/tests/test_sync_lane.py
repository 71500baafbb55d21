"""The sync API's lane on PostgreSQL: a single append run blocking on the connection kept for inline calls.

``PostgresProvider.append_now`` runs the append's statement right there, without a coroutine of the manager or a
pool hand-over, and declines (the async path runs, unchanged) whenever it cannot finish the call itself: no
connection kept fresh, the statement wrote nothing (expected version, a stored id), the connection was lost.
Each test first checks which path ran, so none passes on the async path alone.
"""

from __future__ import annotations

import contextlib
import linecache
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from eventsource.errors import (
    ConcurrencyError,
    DuplicateEventError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from eventsource.sync import SyncEventSourcingManager
from eventsource_postgres import PostgresProvider
from eventsource_postgres.inline import InlineConnection


@pytest.fixture
def config(url: str) -> Iterator[dict[str, Any]]:
    schema = f"es_{uuid.uuid4().hex[:16]}"
    settings = {"schema": schema, "pool_max_size": 4, "application_name": f"es-lane-{uuid.uuid4().hex[:12]}"}
    yield {"providers": {"pg": {"url": url, "settings": settings}}, "default_provider": "pg"}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Paths:
    """Which path each append took: the lane's statement (and what it answered) and the provider's async append."""

    def __init__(self, provider: PostgresProvider) -> None:
        self.lane: list[str] = []  # "done", "declined" or the error's type name, per lane attempt
        self.full = 0  # calls of the async append
        now, append = provider._conn.now, provider.append

        def spy_now(*args: Any, **kwargs: Any) -> Any:
            try:
                out = now(*args, **kwargs)
            except BaseException as e:
                self.lane.append(type(e).__name__)
                raise
            self.lane.append("done" if isinstance(out, tuple) else "declined")
            return out

        async def spy_append(*args: Any, **kwargs: Any) -> Any:
            self.full += 1
            return await append(*args, **kwargs)

        provider._conn.now = spy_now  # type: ignore[method-assign]
        provider.append = spy_append  # type: ignore[method-assign]

    def clear(self) -> None:
        self.lane.clear()
        self.full = 0


def _lane(es: SyncEventSourcingManager) -> tuple[PostgresProvider, Paths]:
    provider = es.get_provider()
    assert isinstance(provider, PostgresProvider)
    return provider, Paths(provider)


def _warm(es: SyncEventSourcingManager, paths: Paths) -> None:
    """An append right before the one under test: a connection is kept, fresh (well within ``KEEP_IDLE``)."""
    es.append_event(stream_id=f"warm-{uuid.uuid4().hex[:8]}", event_type="E", data=0)
    paths.clear()


def _interrupted(tracer: Callable[[Any, str, Any], Any], call: Callable[[], object]) -> None:
    """``call()``, which the KeyboardInterrupt ``tracer`` raises where it watches for, must end in it."""
    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
    finally:
        sys.settrace(None)


def test_a_sync_append_on_the_kept_connection_runs_in_the_lane_without_the_async_path(config: dict[str, Any]) -> None:
    with SyncEventSourcingManager(config) as es:
        _, paths = _lane(es)
        first = es.append_event(stream_id="s", event_type="E", data=0)
        assert (paths.lane, paths.full) == (["declined"], 1)  # nothing kept yet: the async path keeps one
        paths.clear()
        for i in range(1, 6):
            res = es.append_event(stream_id="s", event_type="E", data=i, expected_version=i)
            assert res.version == i + 1
            assert res.position > first.position
        batch = es.append_events_batch(stream_id="s", events=[{"event_type": "E", "data": 6}], expected_version=6)
        assert batch.last_version == 7
        assert paths.full == 0, "the async append ran"
        assert paths.lane == ["done"] * 6
        assert [e.data for e in es.read_stream("s")] == list(range(7))
        assert es.get_stream_info("s").version == 7
        assert es.metrics("pg")["pg"]["append"]["calls"] == 7  # counted as the async path counts them


def test_the_lane_declines_a_stale_expected_version_and_the_async_path_raises_the_conflict(
    config: dict[str, Any],
) -> None:
    with SyncEventSourcingManager(config) as es:
        _, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        _warm(es, paths)
        with pytest.raises(ConcurrencyError):
            es.append_event(stream_id="s", event_type="E", data=2, expected_version=0)
        assert (paths.lane, paths.full) == (["declined"], 1)
        assert [e.data for e in es.read_stream("s")] == [1]


def test_a_retry_with_the_same_event_ids_through_the_lane_is_answered_as_a_duplicate(config: dict[str, Any]) -> None:
    with SyncEventSourcingManager(config) as es:
        _, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=0)
        _warm(es, paths)
        first = es.append_event(stream_id="s", event_type="E", data=1, event_id="evt-1", expected_version=1)
        assert (paths.lane, paths.full, first.duplicate) == (["done"], 0, False)
        for expected in (1, 2):  # the same expected version again, and the one the first attempt left behind
            paths.clear()
            again = es.append_event(stream_id="s", event_type="E", data=1, event_id="evt-1", expected_version=expected)
            assert (paths.lane, paths.full) == (["declined"], 1)  # the id is stored: the async path looks it up
            assert again.duplicate
            assert (again.version, again.position) == (first.version, first.position)
        paths.clear()
        with pytest.raises(DuplicateEventError):  # a stored id beside a new one: no retry, and nothing written
            es.append_events_batch(
                stream_id="s",
                events=[{"event_type": "E", "data": 1, "event_id": "evt-1"}, {"event_type": "E", "data": 2}],
                expected_version=2,
            )
        assert (paths.lane, paths.full) == (["declined"], 1)
        assert [e.data for e in es.read_stream("s")] == [0, 1]


def _hold_lock_and(
    url: str, app: str, key: int, act: Callable[[psycopg.Connection[Any], int], None], times: int = 1
) -> threading.Thread:
    """A thread holding the stream's advisory lock that, each time a new backend of the store waits for it, calls
    ``act(connection, pid)``; then it releases the lock. It holds the lock when this returns."""
    held = threading.Event()
    waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"

    def run() -> None:
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [key])
            held.set()
            seen: set[int] = set()
            for _ in range(times):
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    pids = {row[0] for row in other.execute(waiting, [app]).fetchall()} - seen
                    if pids:
                        break
                    time.sleep(0.01)
                pid = min(pids)  # (one: the store's append)
                seen.add(pid)  # (a terminated backend may still show waiting a moment: the next act waits for another)
                act(other, pid)
            other.execute("SELECT pg_advisory_unlock_all()")

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(20)
    return thread


def _terminate(other: psycopg.Connection[Any], pid: int) -> None:
    other.execute("SELECT pg_terminate_backend(%s)", [pid])


@contextlib.contextmanager
def _lock_held(
    es: SyncEventSourcingManager,
    config: dict[str, Any],
    paths: Paths,
    act: Callable[[psycopg.Connection[Any], int], None],
    times: int = 1,
) -> Iterator[None]:
    """Stream ``s``'s advisory lock held by another connection (``_hold_lock_and``) around the call under test.

    The store's connection is warmed right before the block; the thread releasing the lock is joined when it ends.
    """
    pg = config["providers"]["pg"]
    provider = es.get_provider()
    assert isinstance(provider, PostgresProvider)
    key = provider._conn.lock("s")
    thread = _hold_lock_and(pg["url"], pg["settings"]["application_name"], key, act, times=times)
    try:
        _warm(es, paths)
        yield
    finally:
        thread.join()


@pytest.mark.parametrize("kills", [1, 2])
def test_a_connection_terminated_under_the_lanes_statement_is_retried_as_reconnect_retries_say(
    config: dict[str, Any], kills: int
) -> None:
    """``reconnect_retries: 1``: one lost connection is retried on a fresh one, not a second (two attempts in all)."""
    config = {**config, "retry_attempts": 1}
    config["providers"]["pg"]["settings"]["reconnect_retries"] = 1
    with SyncEventSourcingManager(config) as es:
        provider, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        with _lock_held(es, config, paths, _terminate, times=kills):
            if kills == 1:
                assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2
            else:
                with pytest.raises(ProviderUnavailableError):
                    es.append_event(stream_id="s", event_type="E", data=2, expected_version=1)
        assert (paths.lane, paths.full) == (["declined"], 1)  # the lane's attempt lost its connection: one more
        assert [e.data for e in es.read_stream("s")] == ([1, 2] if kills == 1 else [1])
        assert es.append_event(stream_id="s", event_type="E", data=3).version == (3 if kills == 1 else 2)
        assert _checked_out(es, provider) == 0, "a connection never went back to the pool"


def _checked_out(es: SyncEventSourcingManager, provider: PostgresProvider) -> int:
    """Connections out of the pool, but the kept one, once the pool's workers opened those it replaces."""
    out = -1
    for _ in range(100):  # each health check runs the loop a moment: the workers' connection attempts go on
        assert es.health_check()["pg"].healthy
        stats = provider._conn.pool.get_stats()  # type: ignore[union-attr]
        out = stats["pool_size"] - stats["pool_available"] - int(provider._conn._kept is not None)
        if out == 0:
            break
        time.sleep(0.02)
    return out


def test_without_reconnect_retries_a_connection_lost_under_the_lanes_statement_fails_the_append(
    config: dict[str, Any],
) -> None:
    config = {**config, "retry_attempts": 1}
    config["providers"]["pg"]["settings"]["reconnect_retries"] = 0
    with SyncEventSourcingManager(config) as es:
        _, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        with _lock_held(es, config, paths, _terminate), pytest.raises(ProviderUnavailableError):
            es.append_event(stream_id="s", event_type="E", data=2)
        assert (paths.lane, paths.full) == (["ProviderUnavailableError"], 0)
        assert es.append_event(stream_id="s", event_type="E", data=3, expected_version=1).version == 2
        assert [e.data for e in es.read_stream("s")] == [1, 3]


def test_the_managers_timeout_cancels_the_lanes_statement_on_the_server(config: dict[str, Any]) -> None:
    config = {**config, "timeout": 0.5, "retry_attempts": 1}
    app = config["providers"]["pg"]["settings"]["application_name"]
    url = config["providers"]["pg"]["url"]
    with SyncEventSourcingManager(config) as es:
        provider, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [provider._conn.lock("s")])
            _warm(es, paths)
            with pytest.raises(ProviderTimeoutError):
                es.append_event(stream_id="s", event_type="E", data=2)
            assert (paths.lane, paths.full) == (["ProviderTimeoutError"], 0)
            running = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", [app]
            ).fetchone()
            assert running == (0,)  # cancelled on the server, not left waiting for the lock
            other.execute("SELECT pg_advisory_unlock_all()")
        assert es.append_event(stream_id="s", event_type="E", data=3, expected_version=1).version == 2
        assert [e.data for e in es.read_stream("s")] == [1, 3]


def test_a_timeout_in_the_lane_is_retried_on_the_async_path_when_attempts_are_left(config: dict[str, Any]) -> None:
    config = {**config, "timeout": 1.0, "retry_attempts": 2, "retry_delay": 0.01}
    with SyncEventSourcingManager(config) as es:
        _, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        release = lambda other, pid: time.sleep(1.4)  # noqa: E731 - past the lane's timeout, well within the retry's
        with _lock_held(es, config, paths, release):
            assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2
        assert (paths.lane, paths.full) == (["ProviderTimeoutError"], 1)
        assert es.metrics("pg")["pg"]["append"]["retries"] == 1
        assert [e.data for e in es.read_stream("s")] == [1, 2]


def test_ctrl_c_during_the_lanes_statement_cancels_it_and_the_next_append_runs(config: dict[str, Any]) -> None:
    assert threading.current_thread() is threading.main_thread()  # (where Python delivers SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a background run ignores SIGINT)
    app = config["providers"]["pg"]["settings"]["application_name"]
    config["providers"]["pg"]["settings"]["pool_max_size"] = 1  # the next calls get the interrupted connection
    main = threading.main_thread().ident or 0

    def press(_: psycopg.Connection[Any], __: int) -> None:
        signal.pthread_kill(main, signal.SIGINT)
        time.sleep(1.0)  # (the interrupt is handled before the lock is released)

    try:
        with SyncEventSourcingManager(config) as es:
            _, paths = _lane(es)
            es.append_event(stream_id="s", event_type="E", data=1)
            with _lock_held(es, config, paths, press), pytest.raises(KeyboardInterrupt):
                es.append_event(stream_id="s", event_type="E", data=2)
            assert (paths.lane, paths.full) == (["KeyboardInterrupt"], 0)
            with psycopg.connect(config["providers"]["pg"]["url"], autocommit=True) as other:
                running = other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'", [app]
                ).fetchone()
            assert running == (0,)
            paths.clear()
            assert es.append_event(stream_id="s", event_type="E", data=3, expected_version=1).version == 2
            assert paths.lane == ["declined"]  # (an interrupt since the last call: the async path checks the pool)
            assert es.append_event(stream_id="s", event_type="E", data=4, expected_version=2).version == 3
            assert paths.lane == ["declined", "done"]
            assert [e.data for e in es.read_stream("s")] == [1, 3, 4]
            assert not es._loop.threaded
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_lane_is_not_taken_with_sync_inline_off(config: dict[str, Any]) -> None:
    config["providers"]["pg"]["settings"]["sync_inline"] = False
    with SyncEventSourcingManager(config) as es:
        provider, paths = _lane(es)
        for i in range(3):
            es.append_event(stream_id="s", event_type="E", data=i, expected_version=i)
        assert provider.append_now("s", [], 3, None, timeout=1.0) is None  # (not loop-free: declines untouched)
        assert (paths.lane, paths.full) == ([], 3)


def _interrupt_on_release_of_the_connections_lock() -> Callable[[Any, str, Any], Any]:
    """A trace function raising ``KeyboardInterrupt`` where psycopg's cursor is about to release its connection's lock.

    The exit of ``async with self._conn.lock`` in ``AsyncCursor.execute``: a Ctrl-C landing there (the
    ``__aexit__`` coroutine made, not yet awaited) leaves the lock held, with the statement done.
    """
    seen = [0]

    def local(frame: Any, event: str, _: Any) -> Any:
        if event == "line" and "async with self._conn.lock" in linecache.getline(
            frame.f_code.co_filename, frame.f_lineno
        ):
            seen[0] += 1
            if seen[0] == 2:  # (the first is the way in)
                raise KeyboardInterrupt
        return local

    def trace(frame: Any, event: str, _: Any) -> Any:
        code = frame.f_code
        return (
            local
            if event == "call" and code.co_name == "execute" and code.co_filename.endswith("cursor_async.py")
            else None
        )

    return trace


def test_a_connection_whose_lock_a_ctrl_c_left_held_is_replaced_not_reused(config: dict[str, Any]) -> None:
    """Every statement on a connection waits for its lock: left held, each later call on it would time out."""
    config = {**config, "timeout": 2.0, "retry_attempts": 1}
    config["providers"]["pg"]["settings"]["pool_max_size"] = 1  # the next calls get the interrupted connection
    with SyncEventSourcingManager(config) as es:
        provider, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        _warm(es, paths)
        kept = provider._conn._kept
        assert kept is not None
        _interrupted(
            _interrupt_on_release_of_the_connections_lock(),
            lambda: es.append_event(stream_id="s", event_type="E", data=2, event_id="interrupted", expected_version=1),
        )
        assert paths.lane == ["KeyboardInterrupt"]
        assert kept.lock.locked(), "the interrupt did not land where psycopg releases the connection's lock"
        assert es.append_event(stream_id="s", event_type="E", data=2, event_id="interrupted").duplicate
        assert es.append_event(stream_id="s", event_type="E", data=3, expected_version=2).version == 3
        assert [e.data for e in es.read_stream("s")] == [1, 2, 3]


def test_the_reconnect_attempt_after_the_lanes_lost_connection_keeps_to_the_lanes_deadline(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remaining ``reconnect_retries`` run within the call's one deadline, as on the async path: not a new one.

    (Each statement's deadline is recorded as it waits; no time is measured.)
    """
    config = {**config, "retry_attempts": 1, "timeout": 30.0}
    config["providers"]["pg"]["settings"]["reconnect_retries"] = 1
    deadlines: list[tuple[bool, float | None]] = []
    wait_here = InlineConnection._wait_here

    def spy(self: InlineConnection, gen: Any) -> Any:
        deadlines.append((self.here, self.deadline))
        return wait_here(self, gen)

    monkeypatch.setattr(InlineConnection, "_wait_here", spy)
    with SyncEventSourcingManager(config) as es:
        _, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        with _lock_held(es, config, paths, _terminate):
            deadlines.clear()
            assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2
        assert (paths.lane, paths.full) == (["declined"], 1)
        (here, lane), *rest = deadlines
        assert here
        assert lane is not None
        stated = [d for _, d in rest if d is not None]  # (the pool's check of idle connections: CHECK_DEADLINE)
        assert stated, "the async call made no statement"
        assert all(d <= lane for d in stated), (lane, rest)

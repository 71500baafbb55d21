"""What an interrupted or unanswered inline call leaves on a connection, and what the next calls make of it.

A Ctrl-C can cut short the lane's clean-up of its marks on the kept connection, or leave a connection's lock
held; a backend that stops answering leaves an append whose outcome is unknown. Each test first shows the
state it starts from, so none passes without reaching it.
"""

from __future__ import annotations

import linecache
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsource.errors import ProviderTimeoutError
from eventsource.sync import SyncEventSourcingManager
from eventsource_postgres import inline
from eventsource_postgres.connection import KEEP_IDLE
from eventsource_postgres.inline import InlineConnection
from test_sync_lane import (
    _checked_out,
    _interrupt_on_release_of_the_connections_lock,
    _interrupted,
    _lane,
    _warm,
)


@pytest.fixture
def config(url: str) -> Iterator[dict[str, Any]]:
    schema = f"es_{uuid.uuid4().hex[:16]}"
    settings = {"schema": schema, "application_name": f"es-left-{uuid.uuid4().hex[:12]}"}
    yield {"providers": {"pg": {"url": url, "settings": settings}}, "default_provider": "pg", "retry_attempts": 1}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _interrupt_where_the_lane_clears_its_marks() -> Callable[[Any, str, Any], Any]:
    """A trace function raising ``KeyboardInterrupt`` as ``Connection.now``'s ``finally`` begins (its first line).

    No real signal can be placed there (a handler runs only where the interpreter checks for one, and that line
    has no such point); a trace function (a debugger's) or an exception raised by one can.
    """

    def local(frame: Any, event: str, _: Any) -> Any:
        if event == "line" and "conn.here, conn.deadline = False, None" in linecache.getline(
            frame.f_code.co_filename, frame.f_lineno
        ):
            raise KeyboardInterrupt
        return local

    def trace(frame: Any, event: str, _: Any) -> Any:
        code = frame.f_code
        mine = code.co_name == "now" and Path(code.co_filename).parts[-2:] == ("eventsource_postgres", "connection.py")
        return local if event == "call" and mine else None

    return trace


def test_the_lanes_marks_an_interrupt_left_on_the_kept_connection_never_reach_a_call_on_the_loops_thread(
    config: dict[str, Any], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left on, ``here`` makes a call on the loop's own thread wait blocking there, as the lane does.

    The interrupted append, then one on the async path failing on the server (``statement_timeout`` behind a held
    lock): the connection goes back to the pool, not kept, and a subscription's loop thread gets it next.
    """
    settings = config["providers"]["pg"]["settings"]
    settings.update(pool_max_size=1, statement_timeout=0.3)  # the later calls all get the interrupted connection
    blocked: list[str] = []
    wait_here = InlineConnection._wait_here

    def spy(self: InlineConnection, gen: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            blocked.append(threading.current_thread().name)
        return wait_here(self, gen)

    monkeypatch.setattr(InlineConnection, "_wait_here", spy)
    with SyncEventSourcingManager(config) as es, psycopg.connect(url, autocommit=True) as other:
        provider, paths = _lane(es)
        other.execute("SELECT pg_advisory_lock(%s)", [provider._conn.lock("locked")])
        es.append_event(stream_id="s", event_type="E", data=1)
        _warm(es, paths)
        kept = provider._conn._kept
        assert kept is not None
        _interrupted(
            _interrupt_where_the_lane_clears_its_marks(),
            lambda: es.append_event(stream_id="s", event_type="E", data=2, expected_version=1),
        )
        assert paths.lane == ["KeyboardInterrupt"]
        assert kept.here, "the interrupt did not land where the lane clears its marks"
        with pytest.raises(ProviderTimeoutError):  # (its own statement_timeout: cancelled by the server)
            es.append_event(stream_id="locked", event_type="E", data=0)
        other.execute("SELECT pg_advisory_unlock_all()")
        sub = es.subscribe(stream_id="s", poll_interval=0.05)
        try:
            assert es._loop.threaded
            assert es.append_event(stream_id="s", event_type="E", data=3, expected_version=2).version == 3
            got = [event.data for _, event in zip(range(3), sub, strict=False)]
        finally:
            sub.close()
        assert got == [1, 2, 3]
        assert blocked == [], "a call on the loop's thread waited blocking, as the lane does"


@pytest.mark.parametrize("where", ["async path", "lane"])
def test_an_idle_connection_whose_lock_a_ctrl_c_left_held_is_dropped_before_the_pools_check_waits_for_it(
    config: dict[str, Any], url: str, where: str
) -> None:
    """A connection whose lock is held goes back to the pool: the interrupted call's, or the lane's kept one a
    second later. Drawn, it is found stale; but a check of the pool (after another connection the server dropped)
    waits for its lock until the call times out, and the connections it had not checked yet are lost to the pool.
    """
    config = {**config, "timeout": 2.0}
    config["providers"]["pg"]["settings"].update(pool_min_size=2, pool_max_size=2)
    with SyncEventSourcingManager(config) as es:
        provider, paths = _lane(es)
        conn = provider._conn
        es.append_event(stream_id="s", event_type="E", data=1)  # (the async path: its connection is kept)
        if where == "lane":
            _warm(es, paths)
        _interrupted(
            _interrupt_on_release_of_the_connections_lock(),
            (lambda: es.append_event(stream_id="s", event_type="E", data=2, event_id="cut", expected_version=1))
            if where == "lane"
            else lambda: list(es.read_stream("s")),
        )
        pool = conn.pool
        assert pool is not None
        if where == "lane":
            assert paths.lane == ["KeyboardInterrupt"]
            assert conn._kept is not None and conn._kept.lock.locked()
            time.sleep(KEEP_IDLE)  # (the next call gives the kept connection back to the pool: no longer fresh)
            dropped = pool._pool[0]
        else:
            idle = list(pool._pool)
            assert conn._kept is None and len(idle) == 2 and idle[-1].lock.locked()
            dropped = idle[0]
        assert not dropped.lock.locked()
        with psycopg.connect(url, autocommit=True) as other:  # the next call draws it first, and checks the pool
            pid = dropped.info.backend_pid
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
            for _ in range(200):
                if other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() == (0,):
                    break
                time.sleep(0.01)
        expected = 2 if where == "lane" else 1  # (the lane's append wrote its event, then the interrupt came)
        assert es.append_event(stream_id="s", event_type="E", data=3, expected_version=expected).version == expected + 1
        assert es.append_event(stream_id="s", event_type="E", data=4).version == expected + 2
        assert _checked_out(es, provider) == 0, "a connection was lost to the pool"


def _gone(other: psycopg.Connection[Any], pid: int) -> None:
    """Wait until backend ``pid`` has ended (a stopped one that was continued: once it read its client's end)."""
    for _ in range(1000):
        if other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() == (0,):
            return
        time.sleep(0.01)
    pytest.fail(f"backend {pid} still there")


@pytest.mark.parametrize("attempts", [1, 2])
def test_an_inline_append_whose_backend_stops_answering_fails_saying_its_outcome_is_unknown(
    config: dict[str, Any], url: str, monkeypatch: pytest.MonkeyPatch, attempts: int
) -> None:
    """The backend SIGSTOPped (as a hung host would be) while idle, holding nothing: the append is sent, times out,
    is cancelled, not answered, and its connection closed. Continued, the backend reads the append still waiting
    in its socket and runs it. With no attempt left, the caller gets the error and the append commits after it: a
    retry with the caller's own id is answered as a duplicate. With one left, the manager's retry (the same
    generated id, on another connection) commits first, and the late statement fails on the stored id.
    """
    monkeypatch.setattr(inline, "CANCEL_WAIT", 0.5)  # (how long a cancelled statement gets to end: the same path)
    config = {**config, "timeout": 0.5, "retry_attempts": attempts, "retry_delay": 0.01}
    app = config["providers"]["pg"]["settings"]["application_name"]
    with SyncEventSourcingManager(config) as es, psycopg.connect(url, autocommit=True) as other:
        provider, paths = _lane(es)
        es.append_event(stream_id="s", event_type="E", data=1)
        _warm(es, paths)  # (the append's statement is prepared on the kept connection: sent in one message)
        kept = provider._conn._kept
        assert kept is not None
        pid = kept.info.backend_pid
        seen = other.execute("SELECT application_name, state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        assert seen == (app, "idle")  # this test's own backend, idle: it holds no lock while stopped
        os.kill(pid, signal.SIGSTOP)
        try:
            if attempts == 1:
                with pytest.raises(ProviderTimeoutError) as err:
                    es.append_event(stream_id="s", event_type="E", data=2, event_id="mine")
            else:
                assert es.append_event(stream_id="s", event_type="E", data=2).version == 2  # (the retry's)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (paths.lane, paths.full) == (["ProviderTimeoutError"], attempts - 1)
        _gone(other, pid)
        assert [e.data for e in es.read_stream("s")] == [1, 2]  # (attempts 1: committed after the caller's error)
        assert es.get_stream_info("s").version == 2
        if attempts == 1:
            assert "outcome is unknown" in str(err.value), str(err.value)
            assert "may have been committed" in str(err.value), str(err.value)
            again = es.append_event(stream_id="s", event_type="E", data=2, event_id="mine")
            assert again.duplicate
            assert [e.data for e in es.read_stream("s")] == [1, 2]

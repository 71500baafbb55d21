"""The sync API on PostgreSQL: its private loop runs in the caller's thread until something needs it live."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from eventsource.errors import ProviderTimeoutError
from eventsource.sync import SyncEventSourcingManager
from eventsource_postgres import PostgresProvider


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()}


@pytest.fixture
def config(url: str) -> Iterator[dict[str, Any]]:
    schema = f"es_{uuid.uuid4().hex[:16]}"
    settings = {"schema": schema, "pool_max_size": 4, "application_name": f"es-sync-{uuid.uuid4().hex[:12]}"}
    yield {"providers": {"pg": {"url": url, "settings": settings}}, "default_provider": "pg"}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_sync_calls_run_on_the_callers_thread_with_no_loop_thread(config: dict[str, Any]) -> None:
    with SyncEventSourcingManager(config) as es:
        assert not es._loop.threaded
        assert "eventsource-sync" not in _threads()
        assert es.append_event(stream_id="s", event_type="E", data=1).version == 1
        assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2
        assert [e.data for e in es.read_stream("s", page_size=1)] == [1, 2]
        assert not es._loop.threaded
        assert "eventsource-sync" not in _threads()


def test_a_sync_call_on_a_warm_pool_waits_for_the_server_in_the_callers_thread_not_in_the_loop(
    config: dict[str, Any],
) -> None:
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)  # (a connection in the pool, statements prepared)
        ran: list[str] = []
        es._loop.loop.call_soon(ran.append, "a loop iteration")  # runs at the loop's next iteration, if any
        assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2
        assert [e.data for e in es.read_stream("s")] == [1, 2]
        assert es.get_stream_info("s").version == 2
        assert ran == []  # every reply was awaited with a blocking poll, as raw sync psycopg does
        assert not es._loop.threaded


def test_sync_callers_on_several_threads_share_one_pool(config: dict[str, Any]) -> None:
    errors: list[BaseException] = []
    with SyncEventSourcingManager(config) as es:

        def write(w: int) -> None:
            try:
                for i in range(20):
                    es.append_event(stream_id=f"w{w}", event_type="E", data=i, expected_version=i)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        for w in range(4):
            assert [e.data for e in es.read_stream(f"w{w}")] == list(range(20))
        assert [e.stream_id for e in es.read_all()].count("w0") == 20


def test_the_managers_timeout_ends_an_inline_call_waiting_on_the_streams_lock(config: dict[str, Any]) -> None:
    config = {**config, "timeout": 0.5, "retry_attempts": 1}
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        provider = es.get_provider()
        assert isinstance(provider, PostgresProvider)
        with psycopg.connect(config["providers"]["pg"]["url"], autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [provider._conn.lock("s")])  # another writer, say
            start = time.monotonic()
            with pytest.raises(ProviderTimeoutError):
                es.append_event(stream_id="s", event_type="E", data=2)
            took = time.monotonic() - start
            app = config["providers"]["pg"]["settings"]["application_name"]
            running = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", [app]
            ).fetchone()
            assert running == (0,)  # the statement was cancelled on the server, not left waiting for the lock
            other.execute("SELECT pg_advisory_unlock_all()")
        assert took < 5, f"waited {took:.1f}s for a 0.5s timeout"
        assert es.append_event(stream_id="s", event_type="E", data=3).version == 2  # the timed-out one wrote nothing
        assert [e.data for e in es.read_stream("s")] == [1, 3]


def test_connections_the_server_dropped_between_sync_calls_are_replaced(config: dict[str, Any]) -> None:
    app = config["providers"]["pg"]["settings"]["application_name"]
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        with psycopg.connect(config["providers"]["pg"]["url"], autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [app]
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        time.sleep(0.2)  # (the goodbye reaches the idle sockets)
        assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2
        assert [e.data for e in es.read_stream("s")] == [1, 2]


def test_a_subscription_moves_the_loop_to_a_thread_and_the_pool_goes_on_there(config: dict[str, Any]) -> None:
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        assert not es._loop.threaded
        sub = es.subscribe(stream_id="s", poll_interval=0.05)
        assert es._loop.threaded
        try:
            es.append_event(stream_id="s", event_type="E", data=2)
            got = []
            for event in sub:
                got.append(event.data)
                if len(got) == 2:
                    break
            assert got == [1, 2]
        finally:
            sub.close()
        assert es.append_event(stream_id="s", event_type="E", data=3).version == 3


def test_sync_inline_off_keeps_the_loop_on_its_thread_where_calls_from_threads_overlap(config: dict[str, Any]) -> None:
    config["providers"]["pg"]["settings"]["sync_inline"] = False
    with SyncEventSourcingManager(config) as es:
        assert es._loop.threaded
        assert es.append_event(stream_id="s", event_type="E", data=1).version == 1
        assert [e.data for e in es.read_stream("s")] == [1]


def test_the_poll_wait_for_psycopg_before_3_3_drives_a_statement_to_its_end_and_stops_at_its_deadline(url: str) -> None:
    from eventsource_postgres.inline import _Expired, _poll
    from psycopg import generators
    from psycopg.pq import ExecStatus

    with psycopg.connect(url, autocommit=True) as conn:
        pgconn = conn.pgconn
        pgconn.send_query(b"SELECT 42")
        (result,) = _poll(generators.execute(pgconn), pgconn.socket, None)
        assert result.get_value(0, 0) == b"42"
        pgconn.send_query(b"SELECT pg_sleep(30)")
        gen = generators.execute(pgconn)
        with pytest.raises(_Expired):
            _poll(gen, pgconn.socket, time.monotonic() + 0.2)
        conn.cancel()  # what InlineConnection does past the manager's timeout, then it waits for the reply
        (result,) = _poll(gen, pgconn.socket, None)
        assert result.status == ExecStatus.FATAL_ERROR
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"57014"  # query_canceled
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture
def cancels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every cancel request an inline statement sends, counted (the request still goes to the server)."""
    from eventsource_postgres import inline

    sent: list[str] = []
    cancel = inline.InlineConnection._cancel_within

    def counted(self: Any, limit: float) -> bool:
        sent.append("cancel")
        return cancel(self, limit)

    monkeypatch.setattr(inline.InlineConnection, "_cancel_within", counted)
    return sent


def test_the_managers_timeout_bounds_a_whole_inline_call_not_each_of_its_statements(
    config: dict[str, Any], cancels: list[str]
) -> None:
    # delete_stream runs three statements in one transaction (the stream's lock, DELETE events, DELETE the
    # streams row); each here waits for a lock someone else holds for less than the timeout, the two together
    # for more: the call must time out (as on the loop, where the manager's deadline cancels it), not end late
    config = {**config, "timeout": 2.0, "retry_attempts": 1}
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        provider = es.get_provider()
        assert isinstance(provider, PostgresProvider)
        url = config["providers"]["pg"]["url"]
        events = provider._conn.names.events
        with psycopg.connect(url, autocommit=True) as locker, psycopg.connect(url, autocommit=True) as rows:
            locker.execute("SELECT pg_advisory_lock(%s)", [provider._conn.lock("s")])
            rows.execute("BEGIN")
            rows.execute(f"SELECT 1 FROM {events} WHERE stream_id = %s FOR UPDATE", ["s"])

            def release() -> None:
                time.sleep(1.3)
                locker.execute("SELECT pg_advisory_unlock_all()")
                time.sleep(1.3)
                rows.execute("COMMIT")

            releaser = threading.Thread(target=release)
            releaser.start()
            try:
                with pytest.raises(ProviderTimeoutError):
                    es.delete_stream("s")
            finally:
                releaser.join()
        # once, the DELETE; as on the loop (a task is cancelled once), the ROLLBACK after it is not cut short
        assert cancels == ["cancel"]
        assert [e.data for e in es.read_stream("s")] == [1]  # the timed-out transaction deleted nothing


def test_the_psycopg_internals_the_inline_waits_rely_on_are_there(url: str) -> None:
    # InlineConnection overrides AsyncConnection.wait (every statement's wait goes through it) and, from psycopg
    # 3.3 on, drives psycopg's C wait with a timeout, ended by psycopg.errors._WaitTimeout: a psycopg that
    # changes either would silently fall back to the slower poll loop, or to the loop's selector; fail here
    import inspect

    from eventsource_postgres import inline
    from psycopg import generators, waiting

    assert list(inspect.signature(psycopg.AsyncConnection.wait).parameters) == ["self", "gen", "interval", "timeout"]
    major, minor = (int(part) for part in psycopg.__version__.split(".")[:2])
    if (major, minor) < (3, 3):
        assert inline._WAIT_TIMEOUT is None
        return
    assert inline._WAIT_TIMEOUT is psycopg.errors._WaitTimeout
    assert "timeout" in inspect.signature(waiting.wait).parameters
    with psycopg.connect(url, autocommit=True) as conn:
        pgconn = conn.pgconn
        pgconn.send_query(b"SELECT pg_sleep(30)")
        gen = generators.execute(pgconn)
        with pytest.raises(inline._Expired):  # psycopg's wait, stopped at the deadline by its _WaitTimeout
            inline._wait(gen, pgconn.socket, time.monotonic() + 0.2)
        conn.cancel()
        (result,) = inline._wait(gen, pgconn.socket, None)
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"57014"  # query_canceled
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # past the deadline the cancel request is sent with libpq's non-blocking cancel and a timeout (the
        # blocking one holds the GIL until the server answers): a psycopg or libpq without it falls back to that
        assert inline._cancel_is_bounded(), "no bounded cancel: a hung server would freeze the process"
        assert "timeout" in inspect.signature(waiting.wait_conn).parameters
        pgconn.send_query(b"SELECT pg_sleep(30)")
        gen = generators.execute(pgconn)
        cancel = pgconn.cancel_conn()
        cancel.start()
        waiting.wait_conn(generators.cancel(cancel), interval=inline.INTERVAL, timeout=5.0)
        (result,) = inline._wait(gen, pgconn.socket, None)
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"57014"


def test_the_psycopg_pool_internals_the_plugin_reads_are_there_with_their_types(config: dict[str, Any]) -> None:
    # connection.py and repair.py read psycopg_pool's private state (no public API says it): the kept connection's
    # max_lifetime (conn._expire_at, read with a fallback), the waiting clients (no connection kept while one
    # waits), and what tells a pool an interrupt left broken and lets go of it. A psycopg_pool that renames one
    # would silently turn a safety check off, or break only after a Ctrl-C: fail here instead
    import collections

    from eventsource_postgres import inline
    from eventsource_postgres.repair import broken
    from psycopg_pool import pool_async

    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        conn = es.get_provider()._conn
        pool, kept = conn.pool, conn._kept
        assert kept is not None
        assert isinstance(kept._expire_at, float)  # (connection.py reads it with getattr: absent, never expires)
        assert kept._pool is pool  # (repair.discard clears it: putconn of a dropped pool's connection then closes it)
        assert isinstance(pool._pool, collections.deque)
        assert all(isinstance(c, inline.InlineConnection) for c in pool._pool)
        assert isinstance(pool._waiting, collections.deque)
        assert {"conn", "fail"} <= set(dir(pool_async.WaitingClient))  # (what discard reads of a waiting client)
        assert isinstance(pool._nconns, int)
        assert pool._nconns == len(pool._pool) + 1  # (+ the kept one: what broken() compares)
        assert isinstance(pool._lock, asyncio.Lock)
        assert isinstance(pool._sched._lock, asyncio.Lock)
        assert isinstance(pool._sched_runner, asyncio.Task)
        assert isinstance(pool._workers, list)
        assert all(isinstance(t, asyncio.Task) for t in pool._workers)
        assert isinstance(pool.num_workers, int)
        assert len(pool._workers) == pool.num_workers
        assert isinstance(pool._tasks, asyncio.Queue)
        assert pool._closed is False
        assert callable(pool.run_task)
        assert isinstance(pool_async.StopWorker, type)
        assert all(isinstance(c.lock, asyncio.Lock) for c in [*pool._pool, kept])  # (psycopg's: broken() reads it)
        assert not broken(pool, kept=kept)  # a healthy pool with its kept connection out reads as healthy


def test_the_pools_own_tasks_never_block_a_thread_not_even_the_loop_thread_of_a_later_subscription(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pool's worker tasks start inside the sync caller's connect() and outlive it: had they kept its mark
    # (SYNC_CALLER, a thread id), they would block whichever thread later has that id, such as the loop thread
    # a subscription starts once the connecting thread has ended (thread ids are reused)
    import asyncio

    from eventsource_postgres import inline

    blocked: list[tuple[str, str]] = []
    wait_here = inline.InlineConnection._wait_here

    def spy(self: Any, gen: Any) -> Any:
        task = asyncio.current_task()
        blocked.append((threading.current_thread().name, "" if task is None else task.get_name()))
        return wait_here(self, gen)

    monkeypatch.setattr(inline.InlineConnection, "_wait_here", spy)
    config["providers"]["pg"]["settings"]["pool_min_size"] = 2
    app = config["providers"]["pg"]["settings"]["application_name"]
    made: list[SyncEventSourcingManager] = []
    connecting = threading.Thread(target=lambda: made.append(SyncEventSourcingManager(config).connect()))
    connecting.start()
    connecting.join()
    (es,) = made
    with es, psycopg.connect(config["providers"]["pg"]["url"], autocommit=True) as admin:

        def drop_connections() -> None:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [app])
            time.sleep(0.2)  # (the goodbye reaches the idle sockets)

        es.append_event(stream_id="s", event_type="E", data=1)
        drop_connections()  # the pool's workers open new ones (and configure them) during the next call
        assert es.append_event(stream_id="s", event_type="E", data=2).version == 2
        assert blocked  # (the calls' own statements)
        assert not [name for _, name in blocked if "-worker-" in name or "-scheduler" in name]  # not even in connect()
        blocked.clear()
        sub = es.subscribe(stream_id="s", poll_interval=0.05)
        try:
            drop_connections()  # now the workers run on the loop thread
            assert es.append_event(stream_id="s", event_type="E", data=3).version == 3
            got = []
            for event in sub:
                got.append(event.data)
                if len(got) == 3:
                    break
            assert got == [1, 2, 3]
        finally:
            sub.close()
        assert not [thread for thread, _ in blocked if thread == "eventsource-sync"]


def test_ctrl_c_during_an_inline_statement_cancels_it_and_leaves_the_pooled_connection_usable(
    config: dict[str, Any],
) -> None:
    import signal

    assert threading.current_thread() is threading.main_thread()  # (where Python delivers SIGINT)
    # a shell that starts the run in the background (as CI does) ignores SIGINT for it, and Python keeps it
    # ignored: the presses never became a KeyboardInterrupt and the append waited out its timeout
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_during_an_inline_statement(config)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_during_an_inline_statement(config: dict[str, Any]) -> None:
    import signal

    app = config["providers"]["pg"]["settings"]["application_name"]
    config["providers"]["pg"]["settings"]["pool_max_size"] = 1  # the next calls get the interrupted connection
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        provider = es.get_provider()
        assert isinstance(provider, PostgresProvider)
        with psycopg.connect(config["providers"]["pg"]["url"], autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [provider._conn.lock("s")])
            url = config["providers"]["pg"]["url"]

            def press_ctrl_c() -> None:
                # once the append waits for the lock on the server (a fixed delay raced the call on a busy
                # machine), and again while it still waits, as a person would if the first went unseen
                with psycopg.connect(url, autocommit=True) as watch:

                    def waiting() -> bool:
                        row = watch.execute(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE application_name = %s AND wait_event_type = 'Lock'",
                            [app],
                        ).fetchone()
                        return row == (1,)

                    deadline = time.monotonic() + 20
                    while not waiting() and time.monotonic() < deadline:
                        time.sleep(0.02)
                    presses = 0
                    while waiting() and presses < 3 and time.monotonic() < deadline:
                        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                        presses += 1
                        time.sleep(2.0)

            ctrl_c = threading.Thread(target=press_ctrl_c)
            ctrl_c.start()
            try:
                with pytest.raises(KeyboardInterrupt):
                    es.append_event(stream_id="s", event_type="E", data=2)  # waits for the lock until Ctrl-C
            finally:
                ctrl_c.join()
            running = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'", [app]
            ).fetchone()
            assert running == (0,)  # cancelled on the server, not left waiting for the lock
            other.execute("SELECT pg_advisory_unlock_all()")
        assert es.append_event(stream_id="s", event_type="E", data=3, expected_version=1).version == 2
        assert [e.data for e in es.read_stream("s")] == [1, 3]
        assert not es._loop.threaded


@contextlib.contextmanager
def _stalling_proxy(host: str, port: int) -> Iterator[tuple[int, Callable[[str], None]]]:
    """``stall_proxy.py`` in its own process: its port, and a function sending it a command."""
    proc = subprocess.Popen(  # this interpreter, a file of the suite
        [sys.executable, str(Path(__file__).with_name("stall_proxy.py")), host, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None

    def send(command: str) -> None:
        proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == "ok"  # type: ignore[union-attr]

    try:
        yield int(proc.stdout.readline()), send
    finally:
        proc.kill()
        proc.wait()


def _local_port(conn: Any) -> int:
    with socket.socket(fileno=os.dup(conn.fileno())) as s:
        return int(s.getsockname()[1])


def test_the_pool_check_after_a_stale_connection_keeps_to_the_calls_one_deadline(
    config: dict[str, Any], url: str, cancels: list[str]
) -> None:
    # the connection a call takes was terminated while idle, so the call checks the pool's other idle
    # connections first; those hang (the server never gets their check). Each check used to wait a whole
    # timeout of its own, then up to CANCEL_WAIT for its cancel, and the call's statement after them was
    # cancelled too: the call must end at its one deadline, dropping the hung connections without a cancel
    from eventsource_postgres.connection import _stale

    parts = urlsplit(url)
    with _stalling_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as (port, send):
        user = parts.netloc.rpartition("@")[0]
        proxied = urlunsplit(parts._replace(netloc=f"{user}{'@' if user else ''}127.0.0.1:{port}"))
        pg = config["providers"]["pg"]
        pg = {**pg, "url": proxied, "settings": {**pg["settings"], "pool_min_size": 3, "pool_max_size": 3}}
        config = {**config, "providers": {"pg": pg}, "timeout": 1.0, "retry_attempts": 1}
        with SyncEventSourcingManager(config) as es:
            es.append_event(stream_id="s", event_type="E", data=1)
            provider = es.get_provider()
            assert isinstance(provider, PostgresProvider)
            pool = provider._conn.pool
            assert pool is not None
            kept = provider._conn._kept
            assert kept is not None
            idle = [kept, *pool._pool]  # (the connection the last inline call used is kept for the next)
            assert len(idle) == 3
            first, *others = idle  # the next call takes the first
            for c in others:
                send(f"stall {_local_port(c)}")
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [first.info.backend_pid])
            while not _stale(first):
                time.sleep(0.01)
            with pytest.raises(ProviderTimeoutError):
                es.get_stream_info("s")
            assert cancels == []  # the deadline passed in the check: the call ended there, nothing to cancel
            send("release")
            assert es.get_stream_info("s").version == 1  # the pool replaced the connections it dropped


def test_health_check_through_the_sync_api_reports_a_reachable_server_healthy(config: dict[str, Any]) -> None:
    # the store's health check bounds itself with asyncio.timeout, which needs a task: a call's inline first
    # step has none ("Timeout should be used inside a task"), so every sync health check said unhealthy
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        health = es.health_check()
        assert health["pg"].healthy, health["pg"].message
        assert not es._loop.threaded
        assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2


def test_a_sync_call_that_waits_for_the_pool_waits_in_a_task(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pool waits with asyncio.wait_for, which from Python 3.12 needs a task ("Timeout should be used inside
    # a task"): a call's inline first step has none, so a sync call that had to wait for a connection (every
    # one dropped by the server, a pool still filling) failed with ProviderError on Python 3.12 and later
    from psycopg_pool import _acompat

    tasks: list[object] = []
    real = _acompat.ACondition.wait_timeout

    async def wait_timeout(self: Any, timeout: float) -> bool:  # noqa: ASYNC109 - the pool's own signature
        tasks.append(asyncio.current_task())
        return await real(self, timeout)

    monkeypatch.setattr(_acompat.ACondition, "wait_timeout", wait_timeout)
    config["providers"]["pg"]["settings"].update(pool_min_size=1, pool_max_size=1)
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        conn = es.get_provider()._conn
        pids = [c.info.backend_pid for c in [conn._kept, *conn.pool._pool] if c is not None]
        with psycopg.connect(config["providers"]["pg"]["url"], autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)
        assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=1).version == 2
        assert es.get_stream_info("s").version == 2
    assert tasks, "no call waited for the pool (the test no longer reproduces a wait)"
    assert None not in tasks, "the pool waited in a call's inline first step, without a task"


def test_an_offset_timestamp_is_answered_in_utc_as_it_reads(config: dict[str, Any]) -> None:
    """The sync API's one-event append hands the store the caller's offset: the answer said it, reads said UTC."""
    from datetime import UTC, datetime, timedelta, timezone

    given = datetime(2026, 1, 2, 8, 49, 5, 678901, tzinfo=timezone(timedelta(hours=5, minutes=45)))
    with SyncEventSourcingManager(config) as es:
        answer = es.append_event(stream_id="s", event_type="E", data=1, timestamp=given)
        [read] = [e.timestamp for e in es.read_stream("s")]
    assert answer.timestamp.isoformat() == read.isoformat() == given.astimezone(UTC).isoformat()

"""Attacks on reads from a standby (``read_url``) across faults: a standby that goes away, a read pool that reconnects.

Each test runs on private clusters started by :class:`~pair.Pair` (no mocks); hangs are bounded and fail with their
own message, never by an elapsed time.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from conftest import asynchronous_pair
from eventsource import EventData, EventSourcingManager
from eventsource.errors import ConfigurationError, ConflictError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.sync import SyncEventSourcingManager
from test_read_replica import Held

if TYPE_CHECKING:
    from pair import Pair

HANG = 60.0
"""Seconds a call bounded by a 1 s manager timeout may take before the test calls it hung (far above any retry)."""


@pytest.fixture
def other_cluster() -> Iterator[Pair]:
    """A second, unrelated pair: its primary holds a store of the same schema and stream ids."""
    yield from asynchronous_pair()


def _stop_standby(pair: Pair) -> None:
    """Immediate shutdown of the standby; returns once its postmaster has exited (at most 30 s)."""
    pid = int((pair.standby_dir / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGQUIT)
    for _ in range(600):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    msg = f"the standby (pid {pid}) did not exit after SIGQUIT"
    raise AssertionError(msg)


def _bounded(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a thread; its result or error, or an AssertionError naming the hang if it is still running."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out.append(("error", e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    if not out:
        msg = f"the call was still running {HANG}s later, under a manager timeout of 1s: hung"
        raise AssertionError(msg)
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


@contextmanager
def _frozen(pair: Pair, marker: Path) -> Iterator[None]:
    """The standby (postmaster and children) is SIGSTOPped: a hung host, TCP still accepting; resumed at the end.

    A separate process resumes it after ``2 * HANG`` seconds and leaves ``marker``: a call that froze the whole
    test process (a C call holding the GIL) then ends, and the test says so instead of hanging for ever.
    """
    pid = int((pair.standby_dir / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True).stdout.split()
    pids = [str(pid), *children]
    for p in pids:
        os.kill(int(p), signal.SIGSTOP)
    script = f"sleep {2 * HANG}; touch '{marker}'; kill -CONT {' '.join(pids)}"
    rescuer = subprocess.Popen(["sh", "-c", script])
    try:
        yield
    finally:
        rescuer.kill()
        rescuer.wait()
        for p in pids:
            with suppress(ProcessLookupError):  # (a backend that ended meanwhile)
                os.kill(int(p), signal.SIGCONT)


async def _types(es: EventSourcingManager, stream: str) -> list[str]:
    return [e.event_type async for e in es.read_stream(stream)]


@pytest.mark.parametrize("ryw", [True, False], ids=["read_your_writes", "plain"])
async def test_a_read_pool_reconnecting_to_another_cluster_is_refused_not_served(
    standby_pair: Pair, other_cluster: Pair, ryw: bool
) -> None:
    # read_url lists the standby, then (a mistake, or a DNS name that moved) another cluster's primary. At connect
    # the standby answers and the identity check passes; once the standby goes away the pool reconnects down the
    # list and reached the other cluster: its rows were served as this store's (with read_your_writes too: a
    # server not in recovery "has every write"), and health said healthy.
    async with EventSourcingManager({"providers": {"pg": {"url": other_cluster.url()}}}) as other:
        await other.append_event(stream_id="order-1", event_type="Foreign", data={})
    hosts = f"127.0.0.1:{standby_pair.standby_port},127.0.0.1:{other_cluster.primary_port}"
    read_url = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=prefer-standby&connect_timeout=2"
    settings: dict[str, Any] = {"read_url": read_url, "read_your_writes": ryw, "read_your_writes_timeout": 30}
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 30}
    async with EventSourcingManager(config) as es:
        await es.append_event(stream_id="order-1", event_type="Mine", data={})
        for _ in range(600):  # bounded: until the standby has replayed it
            if await _types(es, "order-1") == ["Mine"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the standby never showed the append")
        await asyncio.to_thread(_stop_standby, standby_pair)
        for _ in range(3):
            with pytest.raises(ConfigurationError) as err:
                await _types(es, "order-1")
            assert err.value.details["field"] == "read_url"
            assert "another cluster" in str(err.value)


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "loop_thread"])
def test_a_sync_read_waiting_for_a_lagging_standby_ends_within_the_managers_timeout(
    standby_pair: Pair, inline: bool
) -> None:
    # read_your_writes waits for the standby's replay up to read_your_writes_timeout, polling with asyncio.sleep;
    # the manager's timeout must still bound it. Through the sync API inline, a read_stream page's watchdog had no
    # task to cancel (the call's first step runs without one), so the read waited the whole read_your_writes_timeout.
    settings = {
        "read_url": standby_pair.url("prefer-standby"),
        "read_your_writes": True,
        "read_your_writes_timeout": 3600,
        "sync_inline": inline,
    }
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 1, "retry_attempts": 1}
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="order-s", event_type="Placed", data={})
        with Held(standby_pair):
            es.append_event(stream_id="order-s", event_type="Paid", data={})
            with pytest.raises(ProviderTimeoutError):
                _bounded(lambda: [e.event_type for e in es.read_stream("order-s")])
            with pytest.raises(ProviderTimeoutError):
                _bounded(lambda: es.get_events(stream_id="order-s"))


async def test_health_reports_a_standby_that_is_gone_and_a_standby_that_lags(standby_pair: Pair) -> None:
    # health ran its query on the primary only: with every read failing on a stopped standby it said "healthy",
    # and it never said how far the standby trails (the lag a read_your_writes read waits out)
    settings = {"read_url": standby_pair.dsn(standby_pair.standby_port), "connect_timeout": 2, "pool_timeout": 2}
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 10}
    async with EventSourcingManager(config) as es:
        await es.append_event(stream_id="order-h", event_type="Placed", data={})
        with Held(standby_pair):
            await es.append_event(stream_id="order-h", event_type="Paid", data={"pad": "x" * 1000})
            health = (await es.health_check())["pg"]
            assert health.details["status"] == "healthy", health.message
            assert health.details["read_replica"]["replay_lag_bytes"] > 0
        await asyncio.to_thread(_stop_standby, standby_pair)
        health = (await es.health_check())["pg"]
        assert health.details["status"] == "degraded", health.message
        assert [f["component"] for f in health.details["faults"]] == ["read_replica"]
        assert health.details["read_replica"]["replay_lag_bytes"] is None


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "loop_thread"])
def test_a_sync_read_on_a_standby_that_hangs_times_out_without_freezing_the_process(
    standby_pair: Pair, tmp_path: Path, inline: bool
) -> None:
    # a read inline on a standby that stopped answering (a hung host) outlives the manager's timeout: the
    # statement is cancelled. The cancel was libpq's blocking PQcancel, which waits for the server to close the
    # cancel connection, holding the GIL: every thread of the process froze until the standby came back.
    settings = {"read_url": standby_pair.dsn(standby_pair.standby_port), "sync_inline": inline}
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 1, "retry_attempts": 1}
    marker = tmp_path / "resumed"
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="order-f", event_type="Placed", data={})
        for _ in range(600):  # bounded: until the standby has replayed it
            if [e.event_type for e in es.read_stream("order-f")] == ["Placed"]:
                break
        else:
            raise AssertionError("the standby never showed the append")
        with _frozen(standby_pair, marker):
            try:
                with pytest.raises(ProviderTimeoutError):
                    _bounded(lambda: [e.event_type for e in es.read_stream("order-f")])
            finally:
                assert not marker.exists(), "the process stayed frozen until the standby was resumed"


async def test_a_subscription_on_a_lagging_standby_never_skips_a_late_commit(standby_pair: Pair) -> None:
    # writers commit out of position order (each holds its append open a random moment) while the standby is held
    # back and released again: the subscription, reading on the standby, gets every event once, in position order
    settings = {"read_url": standby_pair.dsn(standby_pair.standby_port), "visibility_wait": 0.05, "pool_max_size": 4}
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 30}
    async with EventSourcingManager(config) as es:
        p = es.get_provider("pg")
        written: list[str] = []

        async def writer(w: int) -> None:
            rng = random.Random(w)
            async with await psycopg.AsyncConnection.connect(standby_pair.dsn(standby_pair.primary_port)) as conn:
                for _ in range(15):
                    events = [
                        NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow()) for _ in range(rng.randint(1, 3))
                    ]
                    cur = await conn.execute(*p._appender.statement(f"w{w}", events, ANY, None))
                    assert await cur.fetchone() is not None
                    await asyncio.sleep(rng.random() * 0.02)  # commit late, while the others commit
                    await conn.commit()
                    written.extend(e.event_id for e in events)

        seen: list[Any] = []
        async with es.subscribe(poll_interval=0.05) as sub:

            async def consume() -> None:
                async for e in sub:
                    seen.append(e)  # noqa: PERF401 - seen is read while this runs

            task = asyncio.create_task(consume())
            writers = [asyncio.create_task(writer(w)) for w in range(6)]
            await asyncio.sleep(0.05)
            with Held(standby_pair):
                await asyncio.sleep(0.3)
            await asyncio.gather(*writers)
            for _ in range(1200):  # bounded: until every written event came
                if len(seen) >= len(written):
                    break
                await asyncio.sleep(0.05)
            task.cancel()
        ids = [e.event_id for e in seen]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert sorted(ids) == sorted(written), "the subscription on the standby skipped an event"
        assert [e.position for e in seen] == sorted(e.position for e in seen)


async def test_a_read_pool_follows_the_primary_to_another_cluster(standby_pair: Pair, other_cluster: Pair) -> None:
    # url and read_url both list two clusters (a blue/green switch): once the first one is gone, the primary pool
    # reaches the second cluster's primary, and the read pool that cluster's standby: a standby of the primary the
    # store now writes to, whose reads are served, not refused as another cluster's
    def hosts(a: int, b: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{a},127.0.0.1:{b}/postgres?connect_timeout=2&target_session_attrs="

    url = hosts(standby_pair.primary_port, other_cluster.primary_port) + "read-write"
    read_url = hosts(standby_pair.standby_port, other_cluster.standby_port) + "standby"
    async with EventSourcingManager({"providers": {"pg": {"url": other_cluster.url()}}}) as other:
        await other.append_event(stream_id="order-g", event_type="Green", data={})
    config = {"providers": {"pg": {"url": url, "settings": {"read_url": read_url}}}, "timeout": 30}
    async with EventSourcingManager(config) as es:
        await es.append_event(stream_id="order-b", event_type="Blue", data={})
        await asyncio.to_thread(standby_pair.stop)
        for _ in range(600):  # bounded: until the green standby shows the green event (reconnects, replay)
            try:
                if await _types(es, "order-g") == ["Green"]:
                    break
            except ProviderUnavailableError:
                pass
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the read pool never served the cluster the primary pool moved to")
        assert await _types(es, "order-b") == []


async def test_a_read_cancelled_by_a_conflict_with_recovery_is_retried_not_a_conflict(standby_pair: Pair) -> None:
    # a standby cancels a query that holds up the replay of a conflicting record (a lock, removed row versions)
    # after max_standby_streaming_delay: SQLSTATE 40001, which became ConflictError ("nothing was written, try
    # again"), never retried, so a read (or a subscription) on a standby failed on a routine replay event
    standby_pair._append(standby_pair.standby_dir / "postgresql.auto.conf", ["max_standby_streaming_delay = 0"])
    standby_pair._run("pg_ctl", "-D", str(standby_pair.standby_dir), "reload")
    settings = {"read_url": standby_pair.dsn(standby_pair.standby_port), "reconnect_retries": 3}
    config = {
        "providers": {"pg": {"url": standby_pair.url(), "settings": settings}},
        "timeout": 30,
        "retry_attempts": 5,
    }
    async with EventSourcingManager(config) as es:
        for i in range(10):
            batch = [EventData(event_type="E", data={"pad": "x" * 200}) for _ in range(300)]
            await es.append_events_batch(stream_id=f"s{i}", events=batch)
        stop = threading.Event()

        def lock_now_and_then() -> None:  # each lock is replayed on the standby, which cancels the reads holding it
            with psycopg.connect(standby_pair.dsn(standby_pair.primary_port), autocommit=True) as c:
                while not stop.wait(0.02):
                    with c.transaction():
                        c.execute("LOCK TABLE eventsource.events IN ACCESS EXCLUSIVE MODE")

        locker = asyncio.get_running_loop().run_in_executor(None, lock_now_and_then)
        failures: list[Exception] = []
        reads = 0
        try:  # reads until the standby has cancelled some (the overlap is a matter of timing), 30 at least
            while reads < 30 or (_lock_conflicts(standby_pair) == 0 and reads < READS_FOR_A_CONFLICT):
                reads += 1
                try:
                    assert len([e async for e in es.read_all(page_size=100)]) == 3000
                except (ConflictError, ProviderUnavailableError) as e:
                    failures.append(e)
        finally:
            stop.set()
            await locker
        assert _lock_conflicts(standby_pair) > 0, "no read was cancelled by a conflict: the test proves nothing"
        assert not [e for e in failures if isinstance(e, ConflictError)], failures[:1]
        assert len(failures) < reads


READS_FOR_A_CONFLICT = 600
"""Reads of the conflict test before it gives up waiting for the standby to cancel one."""


def _lock_conflicts(pair: Pair) -> int:
    """Queries the standby cancelled for a lock it had to replay (``pg_stat_database_conflicts``)."""
    with psycopg.connect(pair.dsn(pair.standby_port), autocommit=True) as c:
        row = c.execute("SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = 'postgres'").fetchone()
    return 0 if row is None else int(row[0])


def _replayed(pair: Pair) -> None:
    """Return once the standby has replayed everything the primary wrote so far (bounded)."""
    with psycopg.connect(pair.dsn(pair.primary_port), autocommit=True) as c:
        row = c.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    with psycopg.connect(pair.dsn(pair.standby_port), autocommit=True) as c:
        for _ in range(600):
            done = c.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", row).fetchone()
            if done == (True,):
                return
            time.sleep(0.05)
    raise AssertionError("the standby did not replay the primary's writes")


def _fence(pair: Pair) -> None:
    """Make the primary read-only without ending a session (a switchover's fencing), as every session sees it."""
    with psycopg.connect(pair.dsn(pair.primary_port), autocommit=True) as c:
        c.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        c.execute("SELECT pg_reload_conf()")


async def test_appends_reach_the_promoted_standby_while_the_fenced_old_primary_stays_up(standby_pair: Pair) -> None:
    # a switchover that fences the old primary read-only (its sessions stay open) and promotes the standby: the
    # pool kept its sessions on the old primary, every append failed there with ProviderError ("cannot execute
    # SELECT in a read-only transaction", sqlstate 25006), never retried, until the pool recycled them (an hour)
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": {"pool_timeout": 2}}}, "timeout": 10}
    async with EventSourcingManager({**config, "retry_attempts": 1}) as es:
        await es.append_event(stream_id="order-f", event_type="Placed", data={})
        await asyncio.to_thread(_replayed, standby_pair)
        await asyncio.to_thread(_fence, standby_pair)
        for _ in range(50):  # bounded: a session takes the reload before its next command but one
            try:
                await es.append_event(stream_id="order-x", event_type="Probe", data={})
            except ProviderUnavailableError as e:  # no server accepts writes now: a passing outage, said so
                assert "read-only" in str(e), e
                break
        else:
            raise AssertionError("the fenced primary kept accepting appends")
        await asyncio.to_thread(standby_pair.promote)
        r = await es.append_event(stream_id="order-f", event_type="Paid", data={}, expected_version=1)
        assert r.version == 2
    async with EventSourcingManager(config) as fresh:
        assert [e.event_type async for e in fresh.read_stream("order-f")] == ["Placed", "Paid"]

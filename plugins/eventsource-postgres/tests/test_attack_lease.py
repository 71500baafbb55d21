"""The advisory-lock lease under a projection runner: how many leases one process can hold, lost sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsource.errors import ConfigurationError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.projections import CheckpointStoreSink, Projection, ProjectionRunner
from eventsource.testing.leases import StallProxy, cut_off_holder_gives_way
from eventsource_postgres import PostgresAdvisoryLease
from eventsource_postgres.checkpoints import PostgresCheckpointStore

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event


def counting(name: str, seen: dict[str, list[str]]) -> Projection[None]:
    p: Projection[None] = Projection(name)

    @p.on("Deposited")
    def deposited(event: Event, _tx: None) -> None:
        seen.setdefault(name, []).append(event.event_id)

    return p


async def test_a_runner_takes_no_more_projections_than_its_lease_can_hold_at_once(
    es: EventSourcingManager, url: str
) -> None:
    """Each running projection keeps one lease connection; one the pool could not give never ran, silently.

    With ``pool_max_size=2`` the third projection of a runner waited for a connection the two others keep for
    as long as they run: it never applied anything (and ``catch_up`` never returned), with no error.
    """
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    lease = PostgresAdvisoryLease(url, namespace=f"t-{uuid.uuid4().hex}", pool_max_size=2)
    store = PostgresCheckpointStore(url, schema=f"cp_{uuid.uuid4().hex[:12]}")
    runner = ProjectionRunner(es, lease=lease, lease_wait=0.2, poll_interval=0.05)
    seen: dict[str, list[str]] = {}
    runner.add(counting("a", seen), CheckpointStoreSink(store))
    runner.add(counting("b", seen), CheckpointStoreSink(store))
    with pytest.raises(ConfigurationError) as info:
        runner.add(counting("c", seen), CheckpointStoreSink(store))
    assert "pool_max_size" in str(info.value)
    assert sorted(runner.states) == ["a", "b"]
    await runner.catch_up(timeout=60)
    assert {name: len(ids) for name, ids in seen.items()} == {"a": 1, "b": 1}
    await _drop(url, store.schema)


async def test_runners_sharing_one_lease_take_no_more_projections_together_than_it_can_hold(
    es: EventSourcingManager, url: str
) -> None:
    """Two runners of one process may share a lease object (a service and a one-off ``catch_up()`` beside it); each
    was checked against the pool alone. With ``pool_max_size=2`` and two projections running, a third one (another
    runner's, or one added to a running runner) waited for a pool connection the others keep as long as they run:
    ``catch_up()`` never returned and nothing said why (each wait ended as the lock's ``ProviderTimeoutError`` and
    was tried again). Now it is refused at once with ``ConfigurationError``, and runs once the others stopped."""
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    lease = PostgresAdvisoryLease(url, namespace=f"t-{uuid.uuid4().hex}", pool_max_size=2)
    store = PostgresCheckpointStore(url, schema=f"cp_{uuid.uuid4().hex[:12]}")
    seen: dict[str, list[str]] = {}
    runners = [ProjectionRunner(es, lease=lease, lease_wait=0.2, poll_interval=0.05) for _ in range(2)]
    tasks = []
    for runner, name in zip(runners, ("a", "b"), strict=True):
        runner.add(counting(name, seen), CheckpointStoreSink(store))
        tasks.append(asyncio.ensure_future(runner.run()))
    try:
        async with asyncio.timeout(60):
            for runner, name in zip(runners, ("a", "b"), strict=True):
                await runner.wait_caught_up(name)
        job = ProjectionRunner(es, lease=lease, lease_wait=0.2, poll_interval=0.05)
        job.add(counting("c", seen), CheckpointStoreSink(store))
        with pytest.raises(ConfigurationError, match="pool_max_size") as info:
            await job.catch_up(timeout=60)
        assert info.value.details["capacity"] == 2
        with pytest.raises(ConfigurationError, match="pool_max_size"):  # its own two would fit, not beside "b"
            runners[0].add(counting("d", seen), CheckpointStoreSink(store))
        assert sorted(runners[0].states) == ["a"]
        assert sorted(seen) == ["a", "b"]
    finally:
        for runner, task in zip(runners, tasks, strict=True):
            await runner.stop()
            await asyncio.wait_for(task, 30)
    await job.catch_up(timeout=60)  # the others' leases are free again
    assert {name: len(ids) for name, ids in seen.items()} == {"a": 1, "b": 1, "c": 1}
    await _drop(url, store.schema)


async def test_a_hold_past_the_pool_says_the_pool_is_what_it_waited_for(url: str) -> None:
    """More holds of one lease object than ``pool_max_size``: the one past it times out (never two holders, never
    a wait without end), and its ``ProviderTimeoutError`` said "could not acquire the lease" alone, as when
    another process holds that key, though nobody held it: the pool's connections were all kept by this object."""
    lease = PostgresAdvisoryLease(url, namespace=f"t-{uuid.uuid4().hex}", pool_max_size=2)
    await lease.connect()
    try:
        async with lease.hold("k1", timeout=5), lease.hold("k2", timeout=5):
            with pytest.raises(ProviderTimeoutError, match="pool_max_size"):
                async with lease.hold("k3", timeout=0.3):
                    pytest.fail("a third lease held on a pool of two connections")
        async with lease.hold("k3", timeout=5):  # free again once one is released
            pass
    finally:
        await lease.close()


async def _drop(url: str, schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_a_holder_whose_session_ends_is_cancelled_and_told(url: str, admin: psycopg.AsyncConnection[Any]) -> None:
    """The server dropped the lock with the session (terminated, restarted), and another process could take it.

    The holder learnt it only when its block ended: a projection runner went on running the projection (an
    at-least-once sink applying every batch a second time) for as long as it kept winning the checkpoint race.
    """
    app = f"es-lease-{uuid.uuid4().hex[:10]}"
    lease = PostgresAdvisoryLease(url, namespace=f"t-{uuid.uuid4().hex}", pool_max_size=2, application_name=app)
    await lease.connect()
    entered = asyncio.Event()

    async def holder() -> None:
        async with lease.hold("projection:p", timeout=5):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(holder())
    try:
        await asyncio.wait_for(entered.wait(), 30)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s AND pid <> "
            "pg_backend_pid()",
            [app],
        )
        with pytest.raises(ProviderUnavailableError, match="lost"):
            await asyncio.wait_for(task, 15)
        async with lease.hold("projection:p", timeout=5):  # and it can be taken again
            pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await lease.close()


async def test_a_waiter_that_times_out_keeps_its_connection_and_logs_nothing(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A standby runner tries every ``lease_wait`` for as long as the holder runs: each try that timed out
    closed its connection (a new server session for the next) and psycopg logged two warnings about it, so a
    standby's log filled with them, two per projection per try."""
    namespace = f"t-{uuid.uuid4().hex}"
    holder = PostgresAdvisoryLease(url, namespace=namespace, pool_max_size=1)
    waiter = PostgresAdvisoryLease(url, namespace=namespace, pool_max_size=1, pool_min_size=1)
    await holder.connect()
    await waiter.connect()
    try:
        async with holder.hold("projection:p", timeout=5):
            caplog.clear()
            pids = set()
            for _ in range(3):
                with pytest.raises(ProviderTimeoutError):
                    async with waiter.hold("projection:p", timeout=1):
                        pytest.fail("the waiter got in")
                assert waiter._pool is not None
                async with waiter._pool.connection() as conn:
                    pids.add(conn.info.backend_pid)
            assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
            assert len(pids) == 1
        async with waiter.hold("projection:p", timeout=5):  # free once the holder left
            pass
    finally:
        await waiter.close()
        await holder.close()


async def test_a_runner_whose_lease_session_ends_takes_the_lease_again_and_goes_on(
    es: EventSourcingManager, url: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    app = f"es-lease-{uuid.uuid4().hex[:10]}"
    lease = PostgresAdvisoryLease(url, namespace=f"t-{uuid.uuid4().hex}", pool_max_size=2, application_name=app)
    store = PostgresCheckpointStore(url, schema=f"cp_{uuid.uuid4().hex[:12]}")
    runner = ProjectionRunner(es, lease=lease, lease_wait=0.1, poll_interval=0.05)
    seen: dict[str, list[str]] = {}
    runner.add(counting("a", seen), CheckpointStoreSink(store))
    task = asyncio.ensure_future(runner.run())
    try:
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
        await asyncio.wait_for(runner.wait_caught_up("a"), 30)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s AND pid <> "
            "pg_backend_pid()",
            [app],
        )
        for n in range(5):
            await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
        await asyncio.wait_for(runner.wait_caught_up("a"), 30)
        assert len(set(seen["a"])) == 6
        assert not task.done()
    finally:
        await runner.stop()
        await asyncio.wait_for(task, 30)
        await _drop(url, store.schema)


FROZEN = """
import asyncio, sys
from eventsource.errors import ProviderUnavailableError
from eventsource_postgres import PostgresAdvisoryLease
async def main():
    lease = PostgresAdvisoryLease(sys.argv[1], namespace=sys.argv[2], ttl=2, pool_max_size=1)
    await lease.connect()
    try:
        async with lease.hold("projection:p", timeout=30):
            print("held", flush=True)
            await asyncio.sleep(3600)
    except ProviderUnavailableError as e:
        print("lost" if "lost" in str(e) else repr(e), flush=True)
asyncio.run(main())
"""


async def test_a_frozen_holder_loses_the_lease_to_another_process_and_is_told_when_it_thaws(url: str) -> None:
    """A holder that stops answering (SIGSTOP, a paused VM, a host gone without a FIN) kept its session, so
    its lock, until the server noticed the connection was dead: never for a paused process, hours for a lost
    host (the kernel's TCP keepalive), and no other runner took over meanwhile.

    With ``ttl`` the held session has ``idle_session_timeout`` and a keepalive: the server ends a frozen
    holder's session after ``ttl``, and the holder, thawed, finds its session gone and is cancelled.
    """
    namespace = f"t-{uuid.uuid4().hex}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FROZEN, url, namespace, stdout=asyncio.subprocess.PIPE
    )
    other = PostgresAdvisoryLease(url, namespace=namespace, ttl=2, pool_max_size=1)
    await other.connect()
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"held\n"
        with pytest.raises(ProviderTimeoutError):  # a live holder keeps it past its ttl (the keepalive)
            async with other.hold("projection:p", timeout=3):
                pass
        os.kill(proc.pid, signal.SIGSTOP)
        async with other.hold("projection:p", timeout=30):
            os.kill(proc.pid, signal.SIGCONT)
            assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"lost\n"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        await proc.wait()
        await other.close()


async def test_the_ttl_setting_is_checked_and_can_be_turned_off(url: str, admin: psycopg.AsyncConnection[Any]) -> None:
    with pytest.raises(ConfigurationError):
        PostgresAdvisoryLease(url, ttl=0.5)
    app = f"es-lease-{uuid.uuid4().hex[:10]}"
    for ttl in (None, 5):
        lease = PostgresAdvisoryLease(url, namespace=f"t-{uuid.uuid4().hex}", ttl=ttl, application_name=app)
        await lease.connect()
        try:
            async with lease.hold("k", timeout=5):
                cur = await admin.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE l.locktype = 'advisory' AND a.application_name = %s",
                    [app],
                )
                assert await cur.fetchone() == (1,)
            assert lease._pool is not None
            async with lease._pool.connection() as conn:  # a pooled session has the server's own setting back
                cur = await conn.execute(
                    "SELECT setting = reset_val FROM pg_settings WHERE name = 'idle_session_timeout'"
                )
                assert await cur.fetchone() == (True,)
        finally:
            await lease.close()


async def test_a_holder_cut_off_from_the_server_gives_up_before_the_server_ends_its_session(url: str) -> None:
    """Its keepalive query went unanswered and the holder waited for it for good (as long as TCP kept the
    connection open): the server ended the silent session after ``ttl``, another process took the lease, and
    the cut-off holder ran on, its block never cancelled."""
    parts = psycopg.conninfo.conninfo_to_dict(url)
    proxy = StallProxy(str(parts.get("host", "127.0.0.1")), int(parts.get("port", 5432)))
    proxied = psycopg.conninfo.make_conninfo(url, host="127.0.0.1", port=str(await proxy.start()))
    namespace = f"t-{uuid.uuid4().hex}"
    cut_off = PostgresAdvisoryLease(proxied, namespace=namespace, ttl=2, pool_max_size=1)
    other = PostgresAdvisoryLease(url, namespace=namespace, ttl=2, pool_max_size=1)
    await cut_off.connect()
    await other.connect()
    await cut_off_holder_gives_way(cut_off, other, proxy, wait=30)  # the server ends the silent session

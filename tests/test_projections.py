"""Projections: the kit's ProjectionSuite on SQLite (a runner SIGKILLed 20 times, a lease handover), plus
handlers and sinks, the error policy, rebuilds, the sync way to run them and the SQLite file lease."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.checkpoints import Checkpoint, MemoryCheckpointStore, SqliteCheckpointStore
from eventsource.errors import ConfigurationError, ProviderTimeoutError, ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.projections import (
    PARKED_TYPE,
    CheckpointStoreSink,
    ErrorPolicy,
    Projection,
    ProjectionError,
    ProjectionRunner,
    ProjectionStoppedError,
    SqliteSink,
)
from eventsource.sqlite.lease import SqliteFileLease
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.projections import ProjectionSuite

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.memory import MemoryProvider
    from eventsource.model import Event
    from eventsource.sqlite import SqliteProvider


class TestSqliteProjections(ProjectionSuite):
    @pytest.fixture
    def provider(self, sqlite_provider: SqliteProvider) -> SqliteProvider:
        return sqlite_provider


class TestMemoryProjections(ProjectionSuite):
    """Memory events live in this process: only the in-process (cancellation) test applies."""

    @pytest.fixture
    def provider(self, memory_provider: MemoryProvider) -> MemoryProvider:
        return memory_provider


def test_the_runner_process_tests_skip_naming_the_declared_cross_process_reads(tmp_path: Path) -> None:
    """Memory declares ``cross_process_reads=False`` and the kit skips naming it; a file store declares it."""
    from eventsource.memory import MemoryProvider
    from eventsource.sqlite import SqliteProvider

    assert MemoryProvider.capabilities.cross_process_reads is False
    assert SqliteProvider.capabilities.cross_process_reads is True
    with pytest.raises(pytest.skip.Exception, match=r"^cross_process_reads=False: "):
        ProjectionSuite._needs_other_processes(MemoryProvider())
    ProjectionSuite._needs_other_processes(SqliteProvider(f"sqlite:///{tmp_path}/x.db"))  # applies: no skip


def balances(name: str = "balances", table: str = "balances", **kw: Any) -> Projection[sqlite3.Connection]:
    """Deposits per account into ``table``."""
    p: Projection[sqlite3.Connection] = Projection(name, **kw)

    @p.on("Deposited")
    def deposited(event: Event, tx: sqlite3.Connection) -> None:
        tx.execute(f"CREATE TABLE IF NOT EXISTS {table} (account TEXT PRIMARY KEY, total INTEGER)")
        tx.execute(
            f"INSERT INTO {table} VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET total = total + excluded.total",
            (event.stream_id, event.data["amount"]),
        )

    @p.on_reset
    def reset(tx: sqlite3.Connection) -> None:
        tx.execute(f"DROP TABLE IF EXISTS {table}")

    return p


def read(path: Path, sql: str) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


async def deposit(es: EventSourcingManager, account: str, *amounts: int) -> None:
    for a in amounts:
        await es.append_event(stream_id=account, event_type="Deposited", data={"amount": a})


async def test_handlers_and_checkpoint_commit_together_and_a_restart_resumes(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    sink_db = tmp_path / "read.db"
    await deposit(es, "acc-1", 10, 20)
    await es.append_event(stream_id="acc-1", event_type="Renamed", data={})  # no handler: skipped
    await ProjectionRunner(es).add(balances(), SqliteSink(f"sqlite:///{sink_db}")).catch_up(timeout=60)
    assert read(sink_db, "SELECT * FROM balances") == [("acc-1", 30)]
    cp = await SqliteCheckpointStore(f"sqlite:///{sink_db}").get("balances", es.get_provider().checkpoint_source)
    assert cp is not None and cp.position >= 2  # the checkpoint store reads what the sink committed
    await deposit(es, "acc-1", 5)
    await ProjectionRunner(es).add(balances(), SqliteSink(str(sink_db))).catch_up(timeout=60)
    assert read(sink_db, "SELECT * FROM balances") == [("acc-1", 35)]  # 10 and 20 were not applied again


async def test_a_failed_batch_rolls_back_the_handlers_writes_with_the_checkpoint(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    sink_db = tmp_path / "read.db"
    await deposit(es, "acc-1", 1, 2, 3)
    p: Projection[sqlite3.Connection] = Projection("rows", errors=ErrorPolicy(retries=0, then="stop"))

    @p.on("Deposited")
    def row(event: Event, tx: sqlite3.Connection) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS seen (n INTEGER)")
        tx.execute("INSERT INTO seen VALUES (?)", (event.data["amount"],))
        if event.data["amount"] == 3:
            raise RuntimeError("boom")

    with pytest.raises(ProjectionStoppedError) as info:
        await ProjectionRunner(es).add(p, SqliteSink(str(sink_db))).catch_up(timeout=60)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert read(sink_db, "SELECT n FROM seen") == [(1,), (2,)]  # the failing event's row rolled back
    [(position,)] = read(sink_db, "SELECT position FROM es_checkpoints WHERE name = 'rows'")
    events = [e async for e in es.read_all()]
    assert position == events[1].position  # stopped before the failing event


async def test_coroutine_handlers_run_in_the_sink_transaction(es: EventSourcingManager, tmp_path: Path) -> None:
    sink_db = tmp_path / "read.db"
    await deposit(es, "acc-1", 4)
    p: Projection[sqlite3.Connection] = Projection("async")

    @p.on("Deposited")
    async def row(event: Event, tx: sqlite3.Connection) -> None:
        await asyncio.sleep(0)
        assert tx.in_transaction
        tx.execute("CREATE TABLE IF NOT EXISTS seen (n INTEGER)")
        tx.execute("INSERT INTO seen VALUES (?)", (event.data["amount"],))

    await ProjectionRunner(es).add(p, SqliteSink(str(sink_db))).catch_up(timeout=60)
    assert read(sink_db, "SELECT n FROM seen") == [(4,)]


async def test_a_handler_that_commits_the_transaction_stops_the_runner(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    await deposit(es, "acc-1", 4)
    p: Projection[sqlite3.Connection] = Projection("rogue", {"Deposited": lambda _e, tx: tx.execute("COMMIT")})
    with pytest.raises(ProjectionError, match="committed or rolled back"):
        await ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "r.db"))).catch_up(timeout=60)


async def test_retries_with_backoff_then_succeeds(es: EventSourcingManager, tmp_path: Path) -> None:
    await deposit(es, "acc-1", 7)
    calls: list[int] = []

    def flaky(event: Event, tx: sqlite3.Connection) -> None:
        calls.append(event.data["amount"])
        if len(calls) < 3:
            raise ConnectionError("not yet")
        tx.execute("CREATE TABLE t (n INTEGER)")
        tx.execute("INSERT INTO t VALUES (?)", (event.data["amount"],))

    p = Projection("flaky", {"Deposited": flaky}, errors=ErrorPolicy(retries=2, backoff=0.01, then="stop"))
    await ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "r.db"))).catch_up(timeout=60)
    assert calls == [7, 7, 7]
    assert read(tmp_path / "r.db", "SELECT n FROM t") == [(7,)]


async def test_park_moves_the_event_to_a_dead_letter_stream_once_and_goes_on(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    await deposit(es, "acc-1", 1, 2, 3)
    bad = ErrorPolicy(retries=1, backoff=0.01, then="park", dead_letter_stream="parked-rows")

    def row(event: Event, tx: sqlite3.Connection) -> None:
        if event.data["amount"] == 2:
            raise ValueError("cannot take 2")
        tx.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
        tx.execute("INSERT INTO t VALUES (?)", (event.data["amount"],))

    runner = ProjectionRunner(es).add(
        Projection("rows", {"Deposited": row}, errors=bad), SqliteSink(str(tmp_path / "r.db"))
    )
    await runner.catch_up(timeout=60)
    assert read(tmp_path / "r.db", "SELECT n FROM t") == [(1,), (3,)]
    assert runner.states["rows"].parked == 1
    parked = [e async for e in es.read_stream("parked-rows")]
    assert [e.event_type for e in parked] == [PARKED_TYPE]
    data = parked[0].data
    assert (data["projection"], data["event_type"], data["data"], data["error"]) == (
        "rows",
        "Deposited",
        {"amount": 2},
        "ValueError: cannot take 2",
    )
    original = [e async for e in es.read_stream("acc-1")][1]
    assert data["event_id"] == original.event_id
    # parking the same event again (a crash between parking and the checkpoint) appends nothing new
    st = runner.states["rows"]
    await runner._park(st, original, ValueError("again"))
    assert len([e async for e in es.read_stream("parked-rows")]) == 1


def test_error_policy_and_projection_reject_bad_settings() -> None:
    with pytest.raises(ValidationError):
        ErrorPolicy(retries=-1)
    with pytest.raises(ValidationError):
        ErrorPolicy(then="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ErrorPolicy(backoff=float("nan"))
    p: Projection[None] = Projection("p")
    p.on("A")(lambda _e, _tx: None)
    with pytest.raises(ConfigurationError):
        p.on("A")(lambda _e, _tx: None)
    with pytest.raises(ValidationError):
        Projection("")
    assert ErrorPolicy(backoff=0.1, max_backoff=0.3).pause(3) == pytest.approx(0.3)


async def test_runner_rejects_bad_arguments(es: EventSourcingManager, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        ProjectionRunner(es).add(Projection("empty"), SqliteSink(str(tmp_path / "r.db")))
    with pytest.raises(ConfigurationError):
        ProjectionRunner(es).add(balances(), "sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ProjectionRunner(es, batch_size=0)
    with pytest.raises(ConfigurationError):
        SqliteSink("sqlite:///:memory:")
    runner = ProjectionRunner(es).add(balances(), SqliteSink(str(tmp_path / "r.db")))
    with pytest.raises(ConfigurationError):
        runner.add(balances(), SqliteSink(str(tmp_path / "r.db")))


async def test_rebuild_into_a_new_version_while_the_old_one_keeps_serving(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    sink = tmp_path / "read.db"
    await deposit(es, "acc-1", 1, 2)
    live = ProjectionRunner(es, poll_interval=0.05).add(balances("balances.v1", "balances_v1"), SqliteSink(str(sink)))
    running = asyncio.create_task(live.run())
    try:
        await asyncio.wait_for(live.wait_caught_up("balances.v1"), 60)
        assert read(sink, "SELECT total FROM balances_v1") == [(3,)]
        # v2 replays from the start into its own table and checkpoint; v1 goes on serving and following
        rebuild = ProjectionRunner(es).add(balances("balances.v2", "balances_v2"), SqliteSink(str(sink)))
        await deposit(es, "acc-1", 4)
        await rebuild.catch_up(timeout=60)
        await asyncio.wait_for(live.wait_caught_up("balances.v1"), 60)
        assert read(sink, "SELECT total FROM balances_v1") == read(sink, "SELECT total FROM balances_v2") == [(7,)]
    finally:
        await live.stop()
        await running
    # switch: readers move to balances_v2; v1 is reset (its hook drops its table, its checkpoint goes)
    old = ProjectionRunner(es).add(balances("balances.v1", "balances_v1"), SqliteSink(str(sink)))
    await old.reset("balances.v1")
    assert read(sink, "SELECT name FROM es_checkpoints") == [("balances.v2",)]
    assert read(sink, "SELECT total FROM balances_v1") == []


async def test_reset_replays_from_the_start(es: EventSourcingManager, tmp_path: Path) -> None:
    sink = tmp_path / "read.db"
    await deposit(es, "acc-1", 1, 2)
    runner = ProjectionRunner(es).add(balances(), SqliteSink(str(sink)))
    await runner.catch_up(timeout=60)
    await runner.reset("balances")
    assert read(sink, "SELECT * FROM balances") == []
    await runner.catch_up(timeout=60)
    assert read(sink, "SELECT * FROM balances") == [("acc-1", 3)]


async def test_at_least_once_sink_stores_the_checkpoint_after_the_handlers(es: EventSourcingManager) -> None:
    await deposit(es, "acc-1", 1, 2)
    seen: list[str] = []
    store = MemoryCheckpointStore(f"memory://{uuid.uuid4().hex}")
    p: Projection[None] = Projection("mailer", {"Deposited": lambda e, _tx: seen.append(e.event_id)})
    await ProjectionRunner(es).add(p, CheckpointStoreSink(store)).catch_up(timeout=60)
    await deposit(es, "acc-1", 3)
    await ProjectionRunner(es).add(p, CheckpointStoreSink(store)).catch_up(timeout=60)
    ids = [e.event_id async for e in es.read_stream("acc-1")]
    assert seen == ids
    cp = await store.get("mailer", es.get_provider().checkpoint_source)
    assert cp is not None and cp.position == (await es.get_provider().head_position())


def test_the_sync_facade_runs_projections(tmp_path: Path) -> None:
    config = {"providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}}, "default_provider": "main"}
    with SyncEventSourcingManager(config, host=PluginHost()) as es:
        for amount in (5, 6):
            es.append_event(stream_id="acc-9", event_type="Deposited", data={"amount": amount})
        ProjectionRunner(es).add(balances(), SqliteSink(str(tmp_path / "read.db"))).catch_up_sync(timeout=60)
        es.append_event(stream_id="acc-9", event_type="Deposited", data={"amount": 1})  # the facade still works
    assert read(tmp_path / "read.db", "SELECT * FROM balances") == [("acc-9", 11)]


# ----------------------------------------------------------------------------- the SQLite file lease


async def test_sqlite_lease_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    lease = PluginHost().create_lease(f"sqlite:///{tmp_path}/events.db")
    assert isinstance(lease, SqliteFileLease)
    await lease.connect()
    async with lease.hold("projection:a", timeout=1):
        with pytest.raises(ProviderTimeoutError):
            async with lease.hold("projection:a", timeout=0.1):
                pass
        async with lease.hold("projection:b", timeout=1):  # another key is free
            pass
    async with lease.hold("projection:a", timeout=1):
        pass
    with pytest.raises(ConfigurationError):
        SqliteFileLease("sqlite:///:memory:")
    with pytest.raises(ConfigurationError):
        SqliteFileLease(f"sqlite:///{tmp_path}/x.db", ttl=3)


async def test_sqlite_lease_excludes_a_holder_that_names_the_file_through_a_symlink(tmp_path: Path) -> None:
    """The lock file was named after the path as written: two processes reaching one database through a
    symlinked folder (or a symlink to the file, as a release folder of a rolling deploy has) held one
    projection's lease at once."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "events.db").touch()
    (tmp_path / "link").symlink_to(shared, target_is_directory=True)
    (tmp_path / "release-2").mkdir()
    (tmp_path / "release-2" / "events.db").symlink_to(shared / "events.db")
    holder = SqliteFileLease(f"sqlite:///{shared}/events.db")
    async with holder.hold("projection:a", timeout=1):
        for other in (tmp_path / "link" / "events.db", tmp_path / "release-2" / "events.db"):
            with pytest.raises(ProviderTimeoutError):
                async with SqliteFileLease(f"sqlite:///{other}").hold("projection:a", timeout=0.1):
                    pass


async def test_sqlite_lease_refuses_a_database_file_with_a_second_hard_link(tmp_path: Path) -> None:
    """Lock files are made beside the name the lease was given: a runner naming the database by a hard link in
    another folder (two names, one file; no symlink to resolve) took the lease the holder held, at once. A
    hard-linked lock file is no hazard (one file, one lock), so only the database's own links are refused."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "events.db").touch()
    holder = SqliteFileLease(f"sqlite:///{a}/events.db")
    async with holder.hold("projection:x", timeout=1):
        os.link(holder.lock_path("projection:x"), tmp_path / "lock-copy")  # the lock file's own link: still one lock
        with pytest.raises(ProviderTimeoutError):
            async with SqliteFileLease(f"sqlite:///{a}/events.db").hold("projection:x", timeout=0.1):
                pass
        (b / "events.db").hardlink_to(a / "events.db")
        for name in (b, a):  # by the new name and by the old one alike
            with pytest.raises(ConfigurationError, match="hard link") as e:
                async with SqliteFileLease(f"sqlite:///{name}/events.db").hold("projection:x", timeout=0.1):
                    pytest.fail("two holders of one lease")
            assert e.value.details["links"] == 2
    (b / "events.db").unlink()
    async with SqliteFileLease(f"sqlite:///{a}/events.db").hold("projection:x", timeout=1):
        pass


async def test_sqlite_lease_whose_lock_file_is_replaced_before_it_locks_does_not_lock_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock file removed between a runner's open and its lock (a clean-up of ``*.lease-*``), and made again and
    locked by another runner: the first locked the removed file, which nobody else opens, and both held the lease.
    It now checks the file it locked is still the one at the path, and otherwise opens that one again."""
    import fcntl
    import pathlib

    lease = SqliteFileLease(f"sqlite:///{tmp_path}/events.db")
    path = lease.lock_path("projection:x")
    flock, other = fcntl.flock, []

    def replaced_first(fd: int, op: int) -> None:
        if not other:  # another process: removes the file, makes it again and locks the new one
            pathlib.Path(path).unlink()
            other.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
            flock(other[0], fcntl.LOCK_EX)
        flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", replaced_first)
    try:
        with pytest.raises(ProviderTimeoutError):
            async with lease.hold("projection:x", timeout=0.2):
                pytest.fail("two holders of one lease")
    finally:
        os.close(other[0])


async def test_sqlite_lease_released_by_its_holder_is_free_even_while_a_forked_child_lives(tmp_path: Path) -> None:
    """A process forked while the lease was held (``multiprocessing`` with ``fork``, a handler's worker) shares
    the lock's open file: closing the holder's descriptor did not release it, so no other process could take
    the projection over until that child exited."""
    import multiprocessing
    import time

    url = f"sqlite:///{tmp_path}/events.db"
    lease = SqliteFileLease(url)
    child = None
    try:
        async with lease.hold("projection:x", timeout=1):
            child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
            child.start()
        async with SqliteFileLease(url).hold("projection:x", timeout=5):
            pass
    finally:
        if child is not None:
            child.kill()
            child.join()


HOLDER = """
import asyncio, sys
from eventsource.sqlite.lease import SqliteFileLease
async def main():
    async with SqliteFileLease(sys.argv[1]).hold("projection:x", timeout=30):
        print("held", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_sqlite_lease_passes_to_another_process_when_the_holder_is_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, url, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"held\n"
        lease = SqliteFileLease(url)
        with pytest.raises(ProviderTimeoutError):
            async with lease.hold("projection:x", timeout=0.2):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        async with lease.hold("projection:x", timeout=30):
            pass
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_two_runners_without_a_lease_still_apply_each_event_once(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """The checkpoint check in the sink transaction fences an overlapping runner (a lease lost, a paused process)."""
    sink = tmp_path / "read.db"
    applied: list[tuple[int, str]] = []

    def projection(runner_id: int) -> Projection[sqlite3.Connection]:
        def row(event: Event, tx: sqlite3.Connection) -> None:
            tx.execute("CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY)")
            tx.execute("INSERT INTO seen VALUES (?)", (event.event_id,))  # a duplicate would raise here
            applied.append((runner_id, event.event_id))

        return Projection("shared", {"Deposited": row}, errors=ErrorPolicy(retries=0))

    runners = [
        ProjectionRunner(es, batch_size=3, poll_interval=0.05).add(projection(i), SqliteSink(str(sink))) for i in (1, 2)
    ]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        for n in range(60):
            await deposit(es, f"acc-{n % 3}", n)
            if n % 7 == 0:
                await asyncio.sleep(0.01)
        for r in runners:
            await asyncio.wait_for(r.wait_caught_up("shared"), 60)
    finally:
        for r in runners:
            await r.stop()
        await asyncio.gather(*tasks)
    assert read(sink, "SELECT count(*) FROM seen") == [(60,)]
    committed = {eid for _, eid in applied}  # handler calls of rolled-back batches are in `applied` too
    assert len(committed) == 60
    [(position,)] = read(sink, "SELECT position FROM es_checkpoints WHERE name = 'shared'")
    assert position == await es.get_provider().head_position()


async def test_a_busy_sink_database_is_waited_out_never_parked(es: EventSourcingManager, tmp_path: Path) -> None:
    """A sink that cannot be written (locked by another process) is an outage, not a bad event."""
    sink_db = tmp_path / "read.db"
    sink = SqliteSink(str(sink_db), timeout=0.05)
    await sink.open()  # es_checkpoints exists before the file is locked
    await sink.close()
    await deposit(es, "acc-1", 10)
    blocker = sqlite3.connect(sink_db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    policy = ErrorPolicy(retries=1, backoff=0.01, then="park")
    runner = ProjectionRunner(es, lease_wait=0.05).add(balances(errors=policy), sink)
    task = asyncio.ensure_future(runner.run())
    await asyncio.wait([task], timeout=1.0)  # the runner tries while the file is locked
    blocker.execute("ROLLBACK")
    blocker.close()
    waiter = asyncio.ensure_future(runner.wait_caught_up("balances"))
    await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    await runner.stop()
    waiter.cancel()
    await task  # no error: the runner waited for the sink
    assert [e async for e in es.read_stream("dead-letter-balances")] == []
    assert runner.states["balances"].parked == 0
    assert read(sink_db, "SELECT * FROM balances") == [("acc-1", 10)]


def test_two_coroutine_projections_can_share_one_sqlite_sink(tmp_path: Path) -> None:
    """One ``SqliteSink`` for several projections is the natural setup.

    Coroutine handlers that await must not block the event loop on the sink's lock, which the other projection
    holds across its awaits.
    """

    def projection(name: str) -> Projection[sqlite3.Connection]:
        async def deposited(event: Event, tx: sqlite3.Connection) -> None:
            await asyncio.sleep(0.001)  # any real await: an HTTP call, a cache
            tx.execute(f"CREATE TABLE IF NOT EXISTS {name} (id TEXT PRIMARY KEY)")
            tx.execute(f"INSERT INTO {name} VALUES (?)", (event.event_id,))

        return Projection(name, {"Deposited": deposited})

    async def main() -> None:
        m = EventSourcingManager(
            {"providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}}, "default_provider": "main"},
            host=PluginHost(),
        )
        await m.connect()
        try:
            for i in range(20):
                await deposit(m, f"acc-{i % 3}", i)
            sink = SqliteSink(str(tmp_path / "read.db"))
            runner = ProjectionRunner(m, batch_size=5).add(projection("a"), sink).add(projection("b"), sink)
            await runner.catch_up(timeout=60)
        finally:
            await m.close()

    errors: list[BaseException] = []

    def thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the event loop is blocked: both projections wait on the sink's lock"
    assert errors == []
    assert read(tmp_path / "read.db", "SELECT count(*) FROM a") == [(20,)]
    assert read(tmp_path / "read.db", "SELECT count(*) FROM b") == [(20,)]


async def test_a_handler_that_commits_then_raises_is_not_retried(es: EventSourcingManager, tmp_path: Path) -> None:
    """Each retry would commit the handler's writes again: a misuse stops the runner at once."""
    await deposit(es, "acc-1", 4)

    def rogue(event: Event, tx: sqlite3.Connection) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS t (id TEXT)")
        tx.execute("INSERT INTO t VALUES (?)", (event.event_id,))
        tx.execute("COMMIT")
        raise RuntimeError("after committing")

    p: Projection[sqlite3.Connection] = Projection("rogue", {"Deposited": rogue}, errors=ErrorPolicy(retries=2))
    with pytest.raises(ProjectionError, match="committed or rolled back"):
        await ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "r.db"))).catch_up(timeout=60)
    assert read(tmp_path / "r.db", "SELECT count(*) FROM t") == [(1,)]


async def test_a_name_no_stream_can_hold_is_refused_up_front(es: EventSourcingManager, tmp_path: Path) -> None:
    """A parked event goes to ``dead-letter-<name>`` (or the policy's stream).

    A name that cannot be a stream id failed only when the first bad event was parked (the runner then
    crashed), long after the projection was added.
    """
    with pytest.raises(ValidationError):
        Projection("orders\ud800", {"Deposited": lambda _e, _tx: None})  # a lone surrogate no store can encode
    with pytest.raises(ValidationError, match="control character"):
        Projection("orders\tv1", {"Deposited": lambda _e, _tx: None})
    newline = ErrorPolicy(then="park", dead_letter_stream="parked\nrows")
    with pytest.raises(ValidationError, match="dead-letter"):
        ProjectionRunner(es).add(balances(errors=newline), SqliteSink(str(tmp_path / "r.db")))
    long_stream = ErrorPolicy(then="park", dead_letter_stream="x" * 5000)
    with pytest.raises(ValidationError, match="dead-letter"):
        ProjectionRunner(es).add(balances(errors=long_stream), SqliteSink(str(tmp_path / "r.db")))


async def test_an_unknown_dead_letter_provider_is_refused_when_added(es: EventSourcingManager, tmp_path: Path) -> None:
    """A typo in ``dead_letter_provider`` surfaced only when the first bad event was parked, crashing the runner."""
    from eventsource.errors import ProviderNotFoundError

    policy = ErrorPolicy(then="park", dead_letter_provider="dead-letters")  # the manager has only "main"
    with pytest.raises(ProviderNotFoundError, match="dead-letters"):
        ProjectionRunner(es).add(balances(errors=policy), SqliteSink(str(tmp_path / "r.db")))


async def test_a_sqlite_lease_in_a_missing_directory_is_a_configuration_error(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """The lease file cannot be created there: the runner logged a warning every ``lease_wait`` forever."""
    await deposit(es, "acc-1", 1)
    runner = ProjectionRunner(es, lease=f"sqlite:///{tmp_path}/no-such-dir/events.db", lease_wait=0.05)
    runner.add(balances(), SqliteSink(str(tmp_path / "r.db")))
    with pytest.raises(ConfigurationError, match="no-such-dir"):
        await runner.catch_up(timeout=30)


async def test_a_projection_added_to_a_running_runner_runs(es: EventSourcingManager, tmp_path: Path) -> None:
    """docs/projections.md rebuilds by ``runner.add(...)`` in the running service: it was never started."""
    sink = tmp_path / "read.db"
    await deposit(es, "acc-1", 1, 2)
    live = ProjectionRunner(es, poll_interval=0.05).add(balances("balances.v1", "balances_v1"), SqliteSink(str(sink)))
    running = asyncio.create_task(live.run())
    try:
        await asyncio.wait_for(live.wait_caught_up("balances.v1"), 60)
        live.add(balances("balances.v2", "balances_v2"), SqliteSink(str(sink)))
        waiter = asyncio.ensure_future(live.wait_caught_up("balances.v2"))
        await asyncio.wait([waiter, running], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert waiter.done(), "the projection added to the running runner never ran"
        waiter.cancel()
        assert read(sink, "SELECT total FROM balances_v2") == [(3,)]
    finally:
        await live.stop()
        await running


def test_a_checkpoint_sink_shows_its_store_url_masked() -> None:
    sink = CheckpointStoreSink(MemoryCheckpointStore("memory://app:S3cr3t@shared"))
    assert "S3cr3t" not in repr(sink), repr(sink)
    assert repr(sink) == "CheckpointStoreSink('memory://app:***@shared')"


async def test_a_projection_of_a_renamed_type_sees_the_events_stored_under_the_old_name(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """Its subscription filtered stored types by the new name only: every event written before the rename was missed."""
    sink_db = tmp_path / "read.db"
    await es.append_event(stream_id="acc-1", event_type="MoneyIn", data={"amount": 10})  # the type's old name
    await deposit(es, "acc-1", 5)
    es.rename_event_type("MoneyIn", "Deposited")
    await ProjectionRunner(es).add(balances(), SqliteSink(f"sqlite:///{sink_db}")).catch_up(timeout=60)
    assert read(sink_db, "SELECT * FROM balances") == [("acc-1", 15)]


async def test_one_projection_name_on_two_stores_keeps_two_checkpoints_in_one_sink(tmp_path: Path) -> None:
    """Review: the runner keyed checkpoints by the masked URL, not the store's checkpoint source.

    Two private in-memory stores share the URL ``memory://``; projection "balances" on the second resumed
    the first's checkpoint in the shared sink and silently skipped the second store's events below it.
    """
    sink_db = tmp_path / "read.db"
    managers = []
    for n in range(2):
        m = EventSourcingManager(
            {"providers": {"main": {"url": "memory://"}}, "default_provider": "main"}, host=PluginHost()
        )
        await m.connect()
        managers.append(m)
        await deposit(m, f"store{n}-acc", 1, 2, 3)
    try:
        for m in managers:
            await ProjectionRunner(m).add(balances(), SqliteSink(f"sqlite:///{sink_db}")).catch_up(timeout=60)
        assert sorted(read(sink_db, "SELECT * FROM balances")) == [("store0-acc", 6), ("store1-acc", 6)]
        sources = {cp.source for cp in await SqliteCheckpointStore(f"sqlite:///{sink_db}").list()}
        assert sources == {m.get_provider().checkpoint_source for m in managers}
    finally:
        for m in managers:
            await m.close()


async def test_a_checkpoint_stored_under_the_bare_url_is_refused_not_guessed(tmp_path: Path) -> None:
    """Earlier releases stored a projection's checkpoint under the masked URL, which stores behind one URL share:
    the runner neither replays (applying everything twice) nor resumes it (perhaps another store's) unasked."""
    sink_db = tmp_path / "read.db"
    m = EventSourcingManager(
        {"providers": {"main": {"url": "memory://"}}, "default_provider": "main"}, host=PluginHost()
    )
    await m.connect()
    try:
        await deposit(m, "acc", 1, 2, 3)
        positions = [e.position async for e in m.read_all()]
        store = SqliteCheckpointStore(f"sqlite:///{sink_db}")
        await store.put(Checkpoint("balances", "memory://", "all", positions[1]))
        with pytest.raises(ConfigurationError, match="source='memory://'") as info:
            await ProjectionRunner(m).add(balances(), SqliteSink(f"sqlite:///{sink_db}")).catch_up(timeout=60)
        assert info.value.details["stored"] == "memory://"
        assert read(sink_db, "SELECT * FROM balances") == []
        runner = ProjectionRunner(m).add(balances(source="memory://"), SqliteSink(f"sqlite:///{sink_db}"))
        await runner.catch_up(timeout=60)
        assert read(sink_db, "SELECT * FROM balances") == [("acc", 3)]  # resumed after the second event
        runner = ProjectionRunner(m).add(balances(), SqliteSink(f"sqlite:///{sink_db}"))
        await runner.reset("balances")  # or start over: a reset replays from the first event, asked for
        await runner.catch_up(timeout=60)
        assert read(sink_db, "SELECT * FROM balances") == [("acc", 6)]
    finally:
        await m.close()


async def test_a_reset_in_one_process_is_not_undone_by_the_bare_url_checkpoint_in_the_next(tmp_path: Path) -> None:
    """Review: ``reset`` (done, as the docs ask, while no runner runs the projection: a one-off script) cleared the
    refusal of an old bare-URL checkpoint in its own runner only. The service's runner, started next, refused
    again and told to pass ``source=<bare URL>``, which resumes the old position over the read model the reset
    hook had just emptied: every event before it silently missing."""
    sink_db = tmp_path / "read.db"
    m = EventSourcingManager(
        {"providers": {"main": {"url": "memory://"}}, "default_provider": "main"}, host=PluginHost()
    )
    await m.connect()
    try:
        await deposit(m, "acc", 1, 2, 3)
        positions = [e.position async for e in m.read_all()]
        old = Checkpoint("balances", "memory://", "all", positions[1])  # stored by an earlier release
        await SqliteCheckpointStore(f"sqlite:///{sink_db}").put(old)
        await ProjectionRunner(m).add(balances(), SqliteSink(f"sqlite:///{sink_db}")).reset("balances")  # a script
        service = ProjectionRunner(m).add(balances(), SqliteSink(f"sqlite:///{sink_db}"))
        await service.catch_up(timeout=60)
        assert read(sink_db, "SELECT * FROM balances") == [("acc", 6)]  # replayed from the first event
    finally:
        await m.close()


async def test_an_outage_of_the_checkpoint_store_is_waited_out_never_blamed_on_an_event(
    es: EventSourcingManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review: the at-least-once sink's checkpoint store failing (its folder gone) reached the error policy as if
    the handler had failed: ``stop`` ended the runner with ProjectionStoppedError naming a healthy event, and
    ``park`` parked it. An outage of where the checkpoint lives is the sink's, as it is for the SQL sinks."""
    folder = tmp_path / "cp"
    folder.mkdir()
    store = SqliteCheckpointStore(f"sqlite:///{folder}/cp.db")
    stop: Projection[None] = Projection("mailer", errors=ErrorPolicy(retries=1, backoff=0))
    park: Projection[None] = Projection("mailer2", errors=ErrorPolicy(retries=0, then="park"))
    for p in (stop, park):

        @p.on("Deposited")
        async def handle(event: Event, tx: None) -> None:
            pass

    await deposit(es, "acc-1", 1)
    runner = ProjectionRunner(es, lease_wait=0.05, poll_interval=0.05)
    runner.add(stop, CheckpointStoreSink(store)).add(park, CheckpointStoreSink(store))
    task = asyncio.ensure_future(runner.run())
    try:
        for name in runner.states:
            await asyncio.wait_for(runner.wait_caught_up(name), 60)
        folder.rename(tmp_path / "away")
        caplog.set_level("WARNING", logger="eventsource.projections")
        await deposit(es, "acc-1", 2)
        for _ in range(6000):  # until each projection has met the outage (as a handler error, or as an outage)
            if task.done() or all(f"projection {n}:" in caplog.text for n in runner.states):
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task.exception()
        assert [e async for e in es.read_stream("dead-letter-mailer2")] == []
        (tmp_path / "away").rename(folder)
        for name in runner.states:
            await asyncio.wait_for(runner.wait_caught_up(name), 60)
    finally:
        await runner.stop()
        await task
    cps = {cp.name: cp.position for cp in await store.list()}
    last = [e.position async for e in es.read_all()][-1]
    assert cps == {"mailer": last, "mailer2": last}


async def test_the_checkpoint_follows_events_the_projection_passes_over(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """Review: a projection's checkpoint moved only with a batch of its own event types, so while only other
    events came it stayed put: its lag (``seconds``, from the oldest event past the checkpoint) grew without
    bound, a health check with ``max_subscription_lag`` called an idle, caught-up projection lagging, and a
    restart read every passed-over event again."""
    sink_db = tmp_path / "read.db"
    await deposit(es, "acc-1", 1)
    runner = ProjectionRunner(es, poll_interval=0.05).add(balances(), SqliteSink(f"sqlite:///{sink_db}"))
    task = asyncio.ensure_future(runner.run())
    store = SqliteCheckpointStore(f"sqlite:///{sink_db}")
    source = es.get_provider().checkpoint_source
    try:
        await asyncio.wait_for(runner.wait_caught_up("balances"), 60)
        for n in range(30):
            await es.append_event(stream_id=f"other-{n}", event_type="Renamed", data={})
        last = [e.position async for e in es.read_all()][-1]
        for _ in range(2000):  # until the checkpoint passes the other events (or the runner fails)
            cp = await store.get("balances", source)
            if task.done() or (cp is not None and cp.position == last):
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task.exception()
        cp = await store.get("balances", source)
        assert cp is not None and cp.position == last
        lag = await es.subscription_lag("balances", store)
        assert (lag.events, lag.seconds) == (0, 0.0)
    finally:
        await runner.stop()
        await task
    assert read(sink_db, "SELECT * FROM balances") == [("acc-1", 1)]


async def test_coroutine_handlers_wait_for_a_busy_sqlite_sink_without_blocking_the_loop(
    es: EventSourcingManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review: a coroutine projection began its sink transaction (``BEGIN IMMEDIATE``) on the event loop, so
    while another connection held the sink's write lock the whole loop stood still, up to the sink's timeout
    (every other projection, subscription and lease refresh of the process with it), and then the batch failed.

    Here the lock is released only once the loop has seen the runner start on the new event: a blocked loop
    cannot see it until the sink's timeout has failed the batch.
    """
    sink_db = tmp_path / "read.db"

    async def deposited(event: Event, tx: sqlite3.Connection) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")
        tx.execute("INSERT INTO seen VALUES (?)", (event.event_id,))

    await deposit(es, "acc-1", 1)
    runner = ProjectionRunner(es, lease_wait=0.05, poll_interval=0.05)
    runner.add(Projection("p", {"Deposited": deposited}), SqliteSink(str(sink_db), timeout=5))
    task = asyncio.ensure_future(runner.run())
    try:
        await asyncio.wait_for(runner.wait_caught_up("p"), 60)
        caplog.set_level("WARNING", logger="eventsource.projections")
        release = threading.Event()

        def hold() -> None:  # another process's writer, holding the lock until told
            db = sqlite3.connect(sink_db, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(60)
            db.execute("ROLLBACK")
            db.close()

        locked = threading.Event()
        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        await asyncio.to_thread(locked.wait, 60)
        await deposit(es, "acc-1", 2)
        st = runner.states["p"]
        for _ in range(6000):  # until the runner has taken the new event (it then goes straight to its sink)
            if not st.idle or task.done():
                break
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.to_thread(holder.join, 60)
        await asyncio.wait_for(runner.wait_caught_up("p"), 60)
    finally:
        await runner.stop()
        await task
    assert "starting over" not in caplog.text  # the batch waited for the lock; it did not fail on it
    assert len(read(sink_db, "SELECT id FROM seen")) == 2


@pytest.mark.parametrize("sink_kind", ["sqlite", "checkpoint_store"])
async def test_a_one_stream_projection_resumed_on_a_stream_created_again_refuses(
    es: EventSourcingManager, tmp_path: Path, sink_kind: str
) -> None:
    """Its checkpoint names the event it counted: the stream deleted and created again beyond it is refused,
    where it used to pass over the new stream's first versions; a reset reads the new stream from its start."""
    from eventsource.errors import StreamDeletedError

    store = MemoryCheckpointStore(f"memory://{uuid.uuid4().hex}")

    def runner() -> ProjectionRunner:
        sink = SqliteSink(f"sqlite:///{tmp_path}/read.db") if sink_kind == "sqlite" else CheckpointStoreSink(store)
        p: Projection[Any] = Projection(
            "one", {"Deposited": lambda e, _tx: seen.append(e.data["amount"])}, stream_id="acc"
        )
        return ProjectionRunner(es, batch_size=2).add(p, sink)

    seen: list[int] = []
    await deposit(es, "acc", 1, 2, 3)
    await runner().catch_up(timeout=60)
    await deposit(es, "acc", 4)
    await runner().catch_up(timeout=60)  # the same stream: resumed after 3
    assert seen == [1, 2, 3, 4]
    await es.delete_stream("acc")
    await deposit(es, "acc", 10, 20, 30, 40, 50)
    with pytest.raises(StreamDeletedError, match=r"runner\.reset"):
        await runner().catch_up(timeout=60)
    assert seen == [1, 2, 3, 4]
    again = runner()
    await again.reset("one", force=True)  # (no runner runs it: an at-least-once sink needs that said)
    await again.catch_up(timeout=60)
    assert seen == [1, 2, 3, 4, 10, 20, 30, 40, 50]

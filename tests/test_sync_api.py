"""The typed sync API: generated in step with the async manager, typed for mypy, and safe under threads,
early exits and interrupts, with SQLite statements run inline in the caller's thread."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import ANY, EventData
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.sqlite import SqliteProvider
from eventsource.sync import SyncEventSourcingManager
from eventsource.syncloop import SyncLoop

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
HOST = PluginHost(load_entrypoints=False)


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("async_to_sync", ROOT / "tools" / "async_to_sync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_sync_module_is_what_the_generator_writes_today() -> None:
    gen = load_generator()
    assert gen.TARGET.read_text() == gen.render(), "sync.py is stale: run python tools/async_to_sync.py"


def test_every_public_manager_member_has_a_sync_twin_with_the_same_parameters() -> None:
    import inspect

    from eventsource.manager import EventSourcingManager

    members: dict[str, Any] = {}
    for base in EventSourcingManager.__mro__[:-1]:  # (the manager may be assembled from role classes)
        for name, member in vars(base).items():
            members.setdefault(name, member)
    for name, member in members.items():
        if name.startswith("_") or isinstance(member, staticmethod):
            continue
        twin = getattr(SyncEventSourcingManager, name)
        if isinstance(member, property):
            assert isinstance(twin, property), name
            continue
        assert list(inspect.signature(twin).parameters) == list(inspect.signature(member).parameters), name
        assert not inspect.iscoroutinefunction(twin), name


SAMPLE = """
from typing import assert_type
from collections.abc import Iterator
from eventsource import SyncEventSourcingManager, EventData
from eventsource.model import AppendEventResponse, AppendEventsBatchResponse, Event, StreamInfo, Snapshot
from eventsource.model import GetEventsResponse, ListStreamsResponse
from eventsource.provider import Provider

with SyncEventSourcingManager({"providers": {"m": "memory://"}}) as es:
    assert_type(es, SyncEventSourcingManager)
    assert_type(es.connect(), SyncEventSourcingManager)
    assert_type(es.append_event(stream_id="s", event_type="E", data={}), AppendEventResponse)
    assert_type(es.append_events_batch(stream_id="s", events=[EventData("E", {})]), AppendEventsBatchResponse)
    assert_type(es.read_stream("s", page_size=10), Iterator[Event])
    assert_type(es.read_all(from_position=0), Iterator[Event])
    assert_type(es.get_stream_info("s"), StreamInfo)
    assert_type(es.stream_exists("s"), bool)
    assert_type(es.get_snapshot("s"), Snapshot)
    assert_type(es.get_events(stream_id="s"), GetEventsResponse)
    assert_type(es.list_streams(limit=5), ListStreamsResponse)
    assert_type(es.get_provider(), Provider)
    assert_type(es.uptime_seconds, float)
    assert_type(es.delete_stream("s"), None)
    es.read_stream("s", page_sise=10)  # E: a misspelt argument is an error
"""

# The request-style methods take a request object or its fields as keywords; both forms are typed, on the
# async manager ({a} = "await ") and on the sync facade ({a} = ""). Lines marked "# E" must be errors.
REQUESTS = """
from eventsource import (EventSourcingManager, SyncEventSourcingManager, AppendEventRequest, AppendEventsBatchRequest,
    CreateSnapshotRequest, CreateStreamRequest, EventData, GetEventsRequest, NO_STREAM)
from eventsource.model import AppendEventResponse, AppendEventsBatchResponse, CreateSnapshotResponse, StreamInfo
from eventsource.model import GetEventsResponse

async def use(es: {manager}, order: str) -> None:
    info: StreamInfo = {a}es.create_stream(stream_id="s", name="n", metadata={{"k": 1}})
    info = {a}es.create_stream(CreateStreamRequest("s"))
    one: AppendEventResponse = {a}es.append_event(stream_id="s", event_type="E", data={{}}, expected_version=NO_STREAM)
    one = {a}es.append_event(AppendEventRequest("s", "E", {{}}))
    many: AppendEventsBatchResponse = {a}es.append_events_batch(stream_id="s", events=[EventData("E", {{}})])
    many = {a}es.append_events_batch(AppendEventsBatchRequest("s", [EventData("E", {{}})]))
    page: GetEventsResponse = {a}es.get_events(stream_id="s", limit=5, sort_order="desc", as_classes=True)
    page = {a}es.get_events(GetEventsRequest(stream_id="s"), as_classes=True)
    page = {a}es.get_events()
    snap: CreateSnapshotResponse = {a}es.create_snapshot(stream_id="s", data={{}}, version=3)
    snap = {a}es.create_snapshot(CreateSnapshotRequest("s", {{}}))
    {a}es.create_stream(strem_id="s")  # E
    {a}es.create_stream(stream_id=1)  # E
    {a}es.append_event(strem_id="s", event_type="E", data={{}})  # E
    {a}es.append_event(stream_id="s", event_type="E", data={{}}, expected_version="any")  # E
    {a}es.append_event(stream_id="s", data={{}})  # E: event_type is required
    {a}es.append_event(AppendEventRequest("s", "E", {{}}), stream_id="t")  # E: a request or keywords, not both
    {a}es.append_events_batch(stream_id="s", events=[EventData("E", {{}}), {{"event_type": "E", "data": 1}}])
    {a}es.append_events_batch(stream_id="s", events=EventData("E", {{}}))  # E: a list of events, not one
    {a}es.get_events(stream_id="s", limt=5)  # E
    {a}es.get_events(stream_id="s", sort_order=order)  # a str: checked at run time, as before the overloads
    {a}es.get_events(event_types=("A", "B"))  # any sequence of types
    {a}es.append_event(None, stream_id="s", event_type="E", data={{}})  # an explicit None request
    {a}es.create_snapshot(stream_id="s", data={{}}, version="3")  # E
    {a}es.create_snapshot(CreateStreamRequest("s"))  # E: the wrong request type
"""


def _mypy(path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=path.parent,
    )
    return [line for line in done.stdout.splitlines() if ": error:" in line]


def test_mypy_sees_the_sync_signatures(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy runs in the core and type tox envs")
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    errors = _mypy(sample)
    # exactly one error: the misspelt keyword on the last line (every assert_type held)
    assert len(errors) == 1, errors
    assert "page_sise" in errors[0], errors
    for manager, a in (("EventSourcingManager", "await "), ("SyncEventSourcingManager", "")):
        sample = tmp_path / f"requests_{manager}.py"
        text = REQUESTS.format(manager=manager, a=a)
        sample.write_text(text)
        lines = dict(enumerate(text.splitlines(), 1))
        errors = _mypy(sample)
        found = {int(line.split(":")[1]) for line in errors}
        missed = [line.strip() for n, line in lines.items() if "# E" in line and n not in found]
        assert not missed, f"{manager}: mypy accepted {missed}"
        wrong = [e for e in errors if "# E" not in lines[int(e.split(":")[1])]]
        assert not wrong, f"{manager}: correct calls rejected: {wrong}"


@pytest.fixture
def sqlite_es(tmp_path: Path) -> Iterator[SyncEventSourcingManager]:
    with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST) as es:
        yield es


def test_sqlite_calls_run_inline_in_the_callers_thread_without_a_worker_hop(
    sqlite_es: SyncEventSourcingManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsource import sqlite

    hops: list[str] = []
    real = sqlite._Worker.submit
    monkeypatch.setattr(sqlite._Worker, "submit", lambda self, fn: hops.append("hop") or real(self, fn))
    for i in range(5):
        sqlite_es.append_event(stream_id="s", event_type="E", data={"i": i})
    assert [e.data["i"] for e in sqlite_es.read_stream("s")] == list(range(5))
    assert not hops
    assert not sqlite_es._loop.threaded


def test_iteration_crosses_one_page_per_loop_call(
    sqlite_es: SyncEventSourcingManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_es.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(1000)])
    calls: list[int] = []
    real = SyncLoop.run
    monkeypatch.setattr(SyncLoop, "run", lambda self, coro: calls.append(1) or real(self, coro))
    assert [e.data for e in sqlite_es.read_stream("s", page_size=100)] == list(range(1000))
    assert len(calls) <= 11


def test_threads_sharing_one_facade_never_lose_or_duplicate_a_write(sqlite_es: SyncEventSourcingManager) -> None:
    sqlite_es.append_events_batch(stream_id="r", events=[EventData("E", i) for i in range(300)])
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(40):
                sqlite_es.append_event(stream_id="hot", event_type="E", data={"w": n, "i": i}, expected_version=ANY)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                assert [e.data for e in sqlite_es.read_stream("r", page_size=7)] == list(range(300))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    events = list(sqlite_es.read_stream("hot"))
    assert [e.version for e in events] == list(range(1, 121))
    assert sorted((e.data["w"], e.data["i"]) for e in events) == [(w, i) for w in range(3) for i in range(40)]


def test_an_iterator_abandoned_mid_page_leaves_the_facade_usable(sqlite_es: SyncEventSourcingManager) -> None:
    import gc

    sqlite_es.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(50)])
    it = sqlite_es.read_stream("s", page_size=10)
    assert next(it).data == 0
    del it
    gc.collect()
    other = sqlite_es.read_stream("s", page_size=10)
    assert [next(other).data for _ in range(15)] == list(range(15))  # left open on another page
    assert sqlite_es.append_event(stream_id="s", event_type="E", data=50).version == 51
    assert len(list(sqlite_es.read_stream("s"))) == 51


def test_an_iterator_used_from_another_thread_works(sqlite_es: SyncEventSourcingManager) -> None:
    sqlite_es.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(30)])
    it = sqlite_es.read_stream("s", page_size=4)
    first = [next(it).data for _ in range(6)]
    rest: list[Any] = []
    t = threading.Thread(target=lambda: rest.extend(e.data for e in it))
    t.start()
    t.join(30)
    assert first + rest == list(range(30))


def test_a_keyboard_interrupt_mid_call_cancels_it_and_the_facade_goes_on(tmp_path: Path) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    async def handler(stream_id: str, version: int) -> None:
        asyncio.get_running_loop().call_soon(interrupt)
        await asyncio.sleep(30)

    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "snapshot_threshold": 1}
    with SyncEventSourcingManager(cfg, host=HOST, snapshot_handler=handler) as es:
        with pytest.raises(KeyboardInterrupt):
            es.append_event(stream_id="s", event_type="E", data=1)
        es.set_snapshot_handler(None)
        assert es.append_event(stream_id="s", event_type="E", data=2).version == 2  # the first one landed
        assert not asyncio.all_tasks(es._loop.loop)


def test_an_interrupt_between_inline_statements_rolls_the_transaction_back(sqlite_es: SyncEventSourcingManager) -> None:
    provider = sqlite_es.get_provider()
    assert isinstance(provider, SqliteProvider)

    sqlite_es.append_event(stream_id="x", event_type="E", data=1)

    def half_done(db: Any) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM es_events")
        raise KeyboardInterrupt

    writer = provider._writer
    assert writer is not None
    with pytest.raises(KeyboardInterrupt):
        provider._inline(writer, "test", half_done, None)
    assert writer.db is not None
    assert not writer.db.in_transaction
    assert [e.data for e in sqlite_es.read_stream("x")] == [1]
    assert sqlite_es.append_event(stream_id="y", event_type="E", data=1).version == 1


BAD_SUBSCRIBE: list[dict[str, Any]] = [
    {"page_size": 0},
    {"poll_interval": -1},
    {"from_position": "soon"},
    {"stream_id": "s", "from_version": -1},
    {"on_decode_error": "ignore"},
    {"stream_prefix": [""]},
]


@pytest.mark.parametrize("bad", BAD_SUBSCRIBE, ids=lambda bad: next(iter(bad)))
def test_a_subscribe_with_bad_arguments_is_refused_before_the_loop_moves(
    sqlite_es: SyncEventSourcingManager, bad: dict[str, Any]
) -> None:
    """``subscribe`` moved the facade's loop to its thread for good, then checked its arguments: a refused call
    left a SQLite facade paying a thread hop on every later call. The checks come first now."""
    from eventsource.errors import ValidationError

    sqlite_es.append_event(stream_id="s", event_type="E", data=1)
    with pytest.raises(ValidationError):
        sqlite_es.subscribe(**bad)
    assert not sqlite_es._loop.threaded
    assert sqlite_es.append_event(stream_id="s", event_type="E", data=2).version == 2
    with sqlite_es.subscribe(stream_id="s") as sub:
        assert [next(sub).data, next(sub).data] == [1, 2]
    assert sqlite_es._loop.threaded  # (a good one moves it: a live subscription waits on the loop)


BAD_RETENTION: list[tuple[str, dict[str, Any]]] = [
    ("interval", {"interval": "soon"}),
    ("zero", {"interval": 0}),
    ("policy", {"policies": ["nope"]}),
    ("lone", {"policies": "max_count"}),
    ("provider", {"provider": "nope"}),
]


@pytest.mark.parametrize("bad", [b for _, b in BAD_RETENTION], ids=[i for i, _ in BAD_RETENTION])
def test_a_start_retention_with_bad_arguments_is_refused_before_the_loop_moves(
    sqlite_es: SyncEventSourcingManager, bad: dict[str, Any]
) -> None:
    """``start_retention`` moved the facade's loop to its thread for good, then checked its arguments: a refused
    call left a SQLite facade paying a thread hop on every later call. An unknown provider was not refused at all
    (each run of the schedule failed). The checks come first now."""
    from eventsource.errors import ConfigurationError, ProviderNotFoundError

    args: dict[str, Any] = {"interval": 3600, "policies": [{"policy": "max_count", "max_events": 5}], **bad}
    with pytest.raises((ConfigurationError, ProviderNotFoundError)):
        sqlite_es.start_retention(args.pop("interval"), args.pop("policies"), run_now=False, **args)
    assert not sqlite_es._loop.threaded
    assert sqlite_es.stop_retention() == 0  # nothing was scheduled
    assert sqlite_es.append_event(stream_id="s", event_type="E", data=1).version == 1
    sqlite_es.start_retention(3600, [{"policy": "max_count", "max_events": 5}], run_now=False, provider="db")
    assert sqlite_es._loop.threaded  # (a good one moves it: a schedule needs the loop live between calls)


def test_a_provider_that_needs_a_live_loop_moves_the_loop_to_a_thread() -> None:
    class Live(MemoryProvider):
        loop_free = False

    with SyncEventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as es:
        assert not es._loop.threaded
        es.register_provider(Live("memory://"), name="live")
        assert es._loop.threaded
        assert es.append_event(stream_id="s", event_type="E", data=1, provider="live").version == 1
    assert es._loop.loop.is_closed()


def test_starting_a_retention_schedule_moves_the_loop_to_a_thread_and_close_stops_it(tmp_path: Path) -> None:
    es = SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST).connect()
    es.append_event(stream_id="s", event_type="E", data=1)
    schedule = es.start_retention(3600, [{"policy": "max_count", "max_events": 5}], run_now=False)
    assert es._loop.threaded
    assert es.append_event(stream_id="s", event_type="E", data=2).version == 2  # SQLite via its worker now
    assert not schedule.done if hasattr(schedule, "done") else True
    es.close()
    es.close()  # idempotent
    assert not any(t.name == "eventsource-sync" and t.is_alive() for t in threading.enumerate())


def test_the_sync_api_called_from_async_code_still_works(tmp_path: Path) -> None:
    async def main() -> int:
        with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST) as es:
            es.append_event(stream_id="s", event_type="E", data=1)
            return len(list(es.read_stream("s")))

    assert asyncio.run(main()) == 1


def test_a_sync_snapshot_handler_calling_the_facade_on_sqlite_fails_fast(tmp_path: Path) -> None:
    from eventsource.errors import EventSourceError

    seen: list[BaseException] = []
    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "snapshot_threshold": 2}
    es = SyncEventSourcingManager(cfg, host=HOST).connect()

    def handler(stream_id: str, version: int) -> dict[str, int]:
        try:
            return {"n": len(list(es.read_stream(stream_id)))}
        except EventSourceError as e:
            seen.append(e)
            raise

    es.set_snapshot_handler(handler)
    try:
        for i in range(3):
            es.append_event(stream_id="s", event_type="E", data={"i": i})
        assert seen
        assert "own event loop" in str(seen[0])

        def closer(stream_id: str, version: int) -> None:
            try:
                es.close()  # would stop the loop it runs on: refused at once, not a deadlock
            except EventSourceError as e:
                seen.append(e)
                raise

        es.set_snapshot_handler(closer)
        seen.clear()
        es.append_event(stream_id="s", event_type="E", data={"i": 3})
        assert "own event loop" in str(seen[0])
        assert es.append_event(stream_id="s", event_type="E", data={"i": 4}).version == 5
    finally:
        es.close()


@pytest.mark.parametrize("threaded", [False, True])
def test_a_real_ctrl_c_while_waiting_cancels_the_call_on_both_loop_modes(tmp_path: Path, threaded: bool) -> None:
    import os
    import signal
    import time

    assert threading.current_thread() is threading.main_thread(), "signals reach the main thread only: run it there"

    async def handler(stream_id: str, version: int) -> None:
        await asyncio.sleep(30)

    # a shell that starts the run in the background ignores SIGINT for it: restore Python's own handler here
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "snapshot_threshold": 1}
    with contextlib.ExitStack() as restore, SyncEventSourcingManager(cfg, host=HOST, snapshot_handler=handler) as es:
        restore.callback(signal.signal, signal.SIGINT, previous)
        if threaded:
            es._loop.go_threaded()
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                es.append_event(stream_id="s", event_type="E", data=1)
        finally:
            timer.cancel()
        deadline = time.monotonic() + 5
        while es._loop.run(_pending(es._loop.loop)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert es._loop.run(_pending(es._loop.loop)) == 0  # the interrupted call is not left running
        es.set_snapshot_handler(None)
        assert es.append_event(stream_id="s", event_type="E", data=2).version == 2


async def _pending(loop: asyncio.AbstractEventLoop) -> int:
    return len([t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()])


def test_an_inline_write_waits_for_a_job_running_on_the_same_connections_worker(
    sqlite_es: SyncEventSourcingManager,
) -> None:
    """The worker thread and an inline caller share one connection: the worker's lock keeps them apart."""
    import time

    provider = sqlite_es.get_provider()
    assert isinstance(provider, SqliteProvider)
    started = threading.Event()

    def slow(db: Any) -> int:
        db.execute("BEGIN IMMEDIATE")
        started.set()
        time.sleep(0.3)  # an inline statement now would land inside this transaction without the lock
        db.execute("ROLLBACK")
        return 1

    async def on_worker() -> int:
        return await provider._submit(provider._writer, "slow", slow)

    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(asyncio.run(on_worker())))
    t.start()
    assert started.wait(10)
    assert sqlite_es.append_event(stream_id="s", event_type="E", data=1).version == 1  # no nested-transaction error
    t.join(10)
    assert result == [1]
    assert [e.data for e in sqlite_es.read_stream("s")] == [1]  # committed, not rolled back with the job


def test_the_generator_finds_methods_a_manager_inherits_from_role_classes_in_other_modules(tmp_path: Path) -> None:
    """The manager is being split into a package by role: methods may move to bases in other modules."""
    (tmp_path / "roles_mod.py").write_text(
        "from __future__ import annotations\n"
        "from collections.abc import AsyncIterator\n"
        "from eventsource.model import Event\n"
        "class Reading:\n"
        "    async def count(self, stream_id: str, *, limit: int = 5) -> int:\n"
        '        """Count."""\n'
        "        return limit\n"
        "    def read_stream(self, stream_id: str, *, page_size: int = 500) -> AsyncIterator[Event]:\n"
        '        """Read."""\n'
        "        raise NotImplementedError\n"
    )
    (tmp_path / "manager_mod.py").write_text(
        "from __future__ import annotations\n"
        "from roles_mod import Reading\n"
        "class Manager(Reading):\n"
        "    def __init__(self, config: str | None = None) -> None:\n"
        "        self._config = config\n"
        "    async def connect(self) -> Manager:\n"
        '        """Connect."""\n'
        "        return self\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        manager_mod = importlib.import_module("manager_mod")
        text = load_generator().Writer(manager_mod.Manager).render()
    finally:
        sys.path.remove(str(tmp_path))
    assert "def count(self, stream_id: str, *, limit: int = 5) -> int:" in text
    assert "def read_stream(self, stream_id: str, *, page_size: int = 500) -> Iterator[Event]:" in text
    assert "return self._loop.iterate(self._manager.read_stream(stream_id, page_size=page_size), page_size)" in text
    assert "from eventsource.model import Event" in text
    compile(text, "sync.py", "exec")


def test_a_call_that_has_to_wait_continues_as_a_task_after_its_inline_first_step(tmp_path: Path) -> None:
    from contextvars import ContextVar

    where: ContextVar[str] = ContextVar("where", default="caller")
    seen: list[object] = []

    async def handler(stream_id: str, version: int) -> dict[str, int]:
        where.set("call")  # a call's context changes stay in the call, as they do in a task
        seen.append(asyncio.current_task())
        await asyncio.sleep(0.01)  # waits: the rest of the call runs as a task on the loop
        seen.append(asyncio.current_task())
        return {"v": version}

    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "snapshot_threshold": 1}
    with SyncEventSourcingManager(cfg, host=HOST, snapshot_handler=handler) as es:
        r = es.append_event(stream_id="s", event_type="E", data=1)
        assert r.version == 1
        assert not r.snapshot_due  # the handler's snapshot was stored after the wait
        assert es.get_snapshot("s").data == {"v": 1}
        assert seen[0] is None  # (the first step ran without a task)
        assert isinstance(seen[1], asyncio.Task)
        assert where.get() == "caller"
        assert not es._loop.run(_pending(es._loop.loop))


def test_errors_from_the_inline_first_step_and_from_the_task_both_reach_the_caller(tmp_path: Path) -> None:
    from eventsource import ConcurrencyError

    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "snapshot_threshold": 1}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        with pytest.raises(ConcurrencyError):  # raised in the inline first step
            es.append_event(stream_id="s", event_type="E", data=2, expected_version=1 - 1)

        async def boom(stream_id: str, version: int) -> None:
            await asyncio.sleep(0)
            raise RuntimeError

        es.set_snapshot_handler(boom)  # fails after a wait, in the task: logged, the append still succeeds
        r = es.append_event(stream_id="s", event_type="E", data=2)
        assert (r.version, r.snapshot_due) == (2, True)
        assert es.manager.metrics()["db"]["snapshot_handler"]["errors"] == 1

        async def raising_after_wait(stream_id: str, version: int) -> None:
            await asyncio.sleep(0)
            raise KeyboardInterrupt  # not an Exception: the manager lets it through, so does the task

        es.set_snapshot_handler(raising_after_wait)
        with pytest.raises(KeyboardInterrupt):
            es.append_event(stream_id="s", event_type="E", data=3)
        es.set_snapshot_handler(None)
        assert es.append_event(stream_id="s", event_type="E", data=4, expected_version=3).version == 4


def _in_a_child(body: Any) -> int:
    """Run ``body()`` in a forked child (killed after 10 s: a hang is a failure too); its exit code."""
    import os
    import signal
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: "fork() of a multi-threaded process"
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(10)
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
@pytest.mark.parametrize("threaded", [False, True])
def test_a_forked_child_refuses_the_facade_instead_of_writing_through_the_parents_connection(
    sqlite_es: SyncEventSourcingManager, threaded: bool
) -> None:
    """SQLite: a connection carried across fork() can corrupt the file (sqlite.org/howtocorrupt.html, 2.6)."""
    from eventsource.errors import ProviderUnavailableError

    if threaded:
        sqlite_es._loop.go_threaded()
    sqlite_es.append_event(stream_id="s", event_type="E", data=1)

    def child() -> int:
        try:
            sqlite_es.append_event(stream_id="s", event_type="E", data="child")
        except ProviderUnavailableError as e:
            return 0 if "fork" in str(e) else 3
        except BaseException:  # noqa: BLE001
            return 4
        return 2  # written through the parent's connection
        # (and close() in the child leaves the parent's loop and connections alone)

    def child_closing() -> int:
        sqlite_es.close()
        return 0

    assert _in_a_child(child) == 0
    assert _in_a_child(child_closing) == 0
    assert [e.data for e in sqlite_es.read_stream("s")] == [1]  # the parent's facade is unharmed
    assert sqlite_es.append_event(stream_id="s", event_type="E", data=2).version == 2


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_forked_child_refuses_an_inherited_sqlite_provider_on_the_async_path(tmp_path: Path) -> None:
    from eventsource.errors import ProviderUnavailableError

    provider = SqliteProvider(f"sqlite:///{tmp_path}/es.db")

    async def setup() -> None:
        await provider.connect()

    asyncio.run(setup())

    def child() -> int:
        try:
            asyncio.run(provider.get_stream_info("s"))  # its worker threads do not exist here: a hang
        except ProviderUnavailableError as e:
            return 0 if "fork" in str(e) else 3
        except BaseException:  # noqa: BLE001
            return 4
        return 2

    try:
        assert _in_a_child(child) == 0
    finally:
        asyncio.run(provider.close())


@pytest.mark.parametrize("threaded", [False, True])
def test_close_from_another_thread_mid_calls_fails_the_others_cleanly_and_never_hangs_them(
    tmp_path: Path, threaded: bool
) -> None:
    import time

    from eventsource.errors import ProviderUnavailableError

    es = SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST).connect()
    if threaded:
        es._loop.go_threaded()
    es.append_events_batch(stream_id="r", events=[EventData("E", i) for i in range(300)])
    errors: list[BaseException] = []
    started = threading.Barrier(7)

    def caller(n: int) -> None:
        started.wait()
        while True:
            try:
                if n % 3 == 0:
                    es.append_event(stream_id=f"s{n}", event_type="E", data=1, expected_version=ANY)
                elif n % 3 == 1:
                    for _ in es.read_stream("r", page_size=1):  # (a page per call: mostly mid-iteration)
                        pass
                else:
                    es.get_stream_info("r")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.2)
    es.close()
    for t in threads:
        t.join(10)
    assert not [t for t in threads if t.is_alive()], "a call racing close() hangs forever"
    assert len(errors) == len(threads)
    odd = [e for e in errors if not (isinstance(e, ProviderUnavailableError) and "closed" in str(e))]
    assert not odd, odd  # not ProviderNotFoundError, not RuntimeError("Event loop is closed")
    assert es._loop.loop.is_closed()


def test_the_managers_timeout_bounds_an_inline_sqlite_call_waiting_for_another_writer(tmp_path: Path) -> None:
    """``timeout`` bounds every call (README); inline, SQLite's lock wait is the only wait there is."""
    import sqlite3
    import time

    from eventsource.errors import ProviderTimeoutError

    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "timeout": 0.3, "retry_attempts": 1}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        other = sqlite3.connect(tmp_path / "es.db", isolation_level=None)  # another process, say
        other.execute("BEGIN IMMEDIATE")
        try:
            start = time.monotonic()
            with pytest.raises(ProviderTimeoutError):
                es.append_event(stream_id="s", event_type="E", data=2)
            took = time.monotonic() - start
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert took < 2, f"waited {took:.1f}s: busy_timeout (5s), not the manager's timeout (0.3s)"
        assert es.append_event(stream_id="s", event_type="E", data=3).version == 2  # the timed-out one wrote nothing
        provider = es.get_provider()
        assert isinstance(provider, SqliteProvider)
        writer = provider._writer
        assert writer is not None
        assert writer.db is not None
        assert writer.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000  # the worker's own wait is kept


def test_an_iterator_finalized_in_a_thread_that_holds_the_loop_never_deadlocks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gc pass (or a signal handler) can run wherever an object is allocated, the loop's lock held or not."""
    from eventsource import syncloop

    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "snapshot_threshold": 1}
    es = SyncEventSourcingManager(cfg, host=HOST).connect()
    es.append_events_batch(stream_id="r", events=[EventData("E", i) for i in range(50)])
    held = [es.read_stream("r", page_size=10)]
    assert next(held[0]).data == 0

    class Dropping(syncloop._Resume):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            held.clear()  # the open iterator's last reference goes here, in this thread, mid-call
            super().__init__(*args)

    monkeypatch.setattr(syncloop, "_Resume", Dropping)

    async def handler(stream_id: str, version: int) -> dict[str, int]:
        await asyncio.sleep(0)  # the call waits after its first step: it goes on as a task
        return {"v": version}

    es.set_snapshot_handler(handler)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(es.append_event(stream_id="s", event_type="E", data=1).version))
    t.daemon = True
    t.start()
    t.join(10)
    assert not t.is_alive(), "deadlocked: the finalizer waited for the lock its own thread held"
    assert done == [1]
    assert not held
    assert [e.data for e in es.read_stream("r", page_size=10)] == list(range(50))
    es.close()


def test_the_managers_timeout_bounds_an_inline_call_that_waits_after_its_first_step() -> None:
    """A loop-free provider may still await; the deadline timer must find the task the call went on in."""
    import time

    from eventsource.errors import ProviderTimeoutError

    class Slow(MemoryProvider):
        async def get_stream_info(self, stream_id: str) -> Any:
            await asyncio.sleep(2)
            return await super().get_stream_info(stream_id)

    cfg = {"providers": {"m": "memory://"}, "timeout": 0.2, "retry_attempts": 1}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        es.register_provider(Slow("memory://slow"), name="slow")
        assert not es._loop.threaded
        start = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            es.stream_exists("s", provider="slow")
        assert time.monotonic() - start < 1.5
        assert es.stream_exists("s", provider="m") is False  # the facade goes on


def test_close_called_again_from_inside_close_in_the_same_thread_returns_instead_of_waiting_for_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SIGTERM handler calling close() can run while the main thread is already in close()."""
    es = SyncEventSourcingManager({"providers": {"m": "memory://"}}, host=HOST).connect()
    real = SyncLoop._run
    reentered: list[bool] = []

    def run(self: SyncLoop, coro: Any, *, closing: bool) -> Any:
        if closing and not reentered:
            reentered.append(True)
            es.close()  # the handler, at this point of close()
        return real(self, coro, closing=closing)

    monkeypatch.setattr(SyncLoop, "_run", run)
    t = threading.Thread(target=es.close, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "close() inside close() waited for itself"
    assert reentered
    assert es._loop.loop.is_closed()


async def test_the_managers_event_iterators_hand_the_sync_api_a_chunk_per_pull(tmp_path: Path) -> None:
    """Review: the sync API pulls a chunk of a page as one list from the manager's iterators; since the policy's
    ``iterate`` became a plain function returning ``pages()``, its code no longer matched and every sync read
    fell back to one loop step per event."""
    from eventsource import EventSourcingManager
    from eventsource.manager.policy import PAGED
    from eventsource.syncloop import _take

    m = EventSourcingManager({"providers": {"m": {"url": f"sqlite:///{tmp_path}/p.db"}}}, host=HOST)
    await m.connect()
    try:
        await m.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(25)])
        for it in (m.read_stream("s", page_size=10), m.read_all(page_size=10)):
            assert it.ag_code in PAGED  # type: ignore[attr-defined]  # what the sync API's _take recognises
            assert (await it.__anext__()).data == 0
            assert [e.data for e in await it.asend(4)] == [1, 2, 3, 4]  # type: ignore[attr-defined]
            items, done, error = await _take(it, 12)
            assert ([e.data for e in items], done, error) == (list(range(5, 17)), False, None)
            await it.aclose()  # type: ignore[attr-defined]
    finally:
        await m.close()

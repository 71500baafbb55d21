"""The sync API as services use it: one facade shared by threads, iterators abandoned or handed over, close()
racing calls, interrupts mid-iteration. Every wait here is bounded (a join with a timeout, then a check)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventData
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.threads import consumers_share_one_subscription

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from eventsource.model import RecordedEvent

HOST = PluginHost(load_entrypoints=False)


class Handing(MemoryProvider):
    """A store that needs its loop live and hands a connection back asynchronously when a read stops (PostgreSQL
    with ``sync_inline`` off, say); ``hook`` runs on the loop as the second page is being read."""

    loop_free = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hook: Any = None
        self.cleaned = 0

    async def read_stream_pages(self, stream_id: str, **kwargs: Any) -> AsyncIterator[Sequence[RecordedEvent]]:
        try:
            n = 0
            async for page in super().read_stream_pages(stream_id, **kwargs):
                n += 1
                if n == 2 and self.hook is not None:
                    self.hook()
                    await asyncio.sleep(5)  # the page is slow: the interrupt lands meanwhile
                yield page
        finally:
            await asyncio.sleep(0.5)  # the connection goes back to its pool
            self.cleaned += 1


def test_a_ctrl_c_mid_iteration_on_the_loop_thread_stays_a_keyboard_interrupt() -> None:
    """It surfaced as ``RuntimeError: aclose(): asynchronous generator is already running``: the page call was
    cancelled but not waited for, and the iterator's close raced the read's own cleanup (seen on PostgreSQL
    with ``sync_inline`` off, about one Ctrl-C in thirty)."""
    assert threading.current_thread() is threading.main_thread(), "signals reach the main thread only: run it there"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert main is not None
    with contextlib.ExitStack() as restore, SyncEventSourcingManager({"providers": {}}, host=HOST) as es:
        restore.callback(signal.signal, signal.SIGINT, previous)
        store = Handing("memory://")
        es.register_provider(store, name="h", default=True)
        assert es._loop.threaded
        es.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(30)])
        store.hook = lambda: signal.pthread_kill(main, signal.SIGINT)
        seen: list[int] = []
        with pytest.raises(KeyboardInterrupt):
            seen.extend(e.data for e in es.read_stream("s", page_size=10))
        assert seen == list(range(10))
        assert store.cleaned == 1  # the read ended before the interrupt reached the caller
        store.hook = None
        assert [e.data for e in es.read_stream("s", page_size=10)] == list(range(30))


def _waiting_in(thread: threading.Thread, function: str) -> bool:
    """Whether ``thread`` is inside ``function`` right now (its stack, seen from another thread)."""
    import sys

    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def _until(check: Any, what: str) -> None:
    import time

    for _ in range(1000):
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(what)


def test_closing_an_iterator_while_another_thread_closes_the_facade_is_quiet(tmp_path: Any) -> None:
    """An iterator closed (``break``, ``it.close()``) as another thread closed the facade raised
    ProviderUnavailableError out of ``close()`` ("Exception ignored in ... SyncLoop.iterate" when it was a
    ``break``): the facade's close() closes what the iterator read anyway."""
    gate = threading.Event()
    entered = threading.Event()

    def handler(stream_id: str, version: int) -> None:
        if stream_id == "slow":
            entered.set()
            gate.wait(20)  # holds the loop (a call in flight) until the iterator's close waits for its turn

    cfg = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "snapshot_threshold": 1}
    es = SyncEventSourcingManager(cfg, host=HOST, snapshot_handler=handler).connect()
    try:
        es.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(30)])
        it = es.read_stream("s", page_size=10)
        assert next(it).data == 0
        errors: list[BaseException] = []

        def guarded(fn: Any) -> Any:
            def run() -> None:
                try:
                    fn()
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)

            return run

        busy = threading.Thread(target=guarded(lambda: es.append_event(stream_id="slow", event_type="E", data=1)))
        busy.start()
        assert entered.wait(20)
        closer = threading.Thread(target=guarded(it.close))
        closer.start()
        _until(lambda: _waiting_in(closer, "_in_turn"), "the iterator's close never waited for its turn")
        shut = threading.Thread(target=es.close)
        shut.start()
        _until(lambda: es._loop._closed, "close() never started")
        gate.set()
        for t in (busy, closer, shut):
            t.join(30)
            assert not t.is_alive()
        assert errors == []
    finally:
        gate.set()
        es.close()


@pytest.mark.parametrize("threaded", [False, True])
def test_close_returns_after_every_thread_the_facade_started_has_ended(tmp_path: Any, threaded: bool) -> None:
    """After close() the event loop's default executor thread (``asyncio_0``, SQLite's connect ran there) was
    still alive: close() did not wait for it, so a leak check (or a fork) right after close() saw it."""
    before = set(threading.enumerate())
    es = SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST).connect()
    if threaded:
        es._loop.go_threaded()
    assert es.append_event(stream_id="s", event_type="E", data=1).version == 1
    es.close()
    started = [t.name for t in threading.enumerate() if t not in before]  # (by the facade: its loop's, its stores')
    assert [name for name in started if name.startswith(("asyncio", "eventsource"))] == []


SCRIPT = """
import sys
from eventsource import EventData
from eventsource.sync import SyncEventSourcingManager

es = SyncEventSourcingManager({"providers": {"db": sys.argv[1]}}).connect()
es.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(30)])
sub = es.subscribe(stream_id="s").start()  # the loop now runs on its thread
first = next(sub)
events = es.read_stream("s", page_size=10)
print(next(events).data, first.data, flush=True)
# no close(): the script just ends, its iterators still open
"""


def test_a_script_that_exits_without_closing_the_facade_mid_iteration_exits(tmp_path: Any) -> None:
    """It hung for ever at exit: the open iterator, finalized as the interpreter shut down, sent its close to the
    loop's thread, which no longer runs then (a daemon thread), and waited for the answer."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    try:
        args = [sys.executable, str(script), f"sqlite:///{tmp_path}/es.db"]
        done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the script hung at exit; it printed {e.stdout!r}") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # (3.12+): the case itself
def test_a_child_forked_while_another_thread_made_an_event_id_can_append(tmp_path: Any) -> None:
    """The process-wide id generator's lock stayed held in a child forked while another thread was inside it (an
    append from a worker thread): every append in the child, on a facade of its own, hung for ever (about one
    fork in seven while three threads appended)."""
    import os
    import time

    from eventsource.manager.ids import event_id

    inside = threading.Event()
    forked = threading.Event()

    def making_an_id() -> None:
        with event_id.lock:  # where a thread making an id stands
            inside.set()
            forked.wait(20)

    t = threading.Thread(target=making_an_id)
    t.start()
    assert inside.wait(20)
    pid = os.fork()
    if pid == 0:  # the child: a facade of its own, one append, and out
        code = 1
        try:
            with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/child.db"}}, host=HOST) as es:
                code = 0 if es.append_event(stream_id="s", event_type="E", data=1).version == 1 else 1
        finally:
            os._exit(code)
    forked.set()
    t.join(20)
    for _ in range(2000):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the child hung making an event id")
    assert os.waitstatus_to_exitcode(status) == 0


def test_threads_sharing_one_sync_subscription_each_get_distinct_events(tmp_path: Any) -> None:
    with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST) as es:
        consumers_share_one_subscription(es, batches=10)

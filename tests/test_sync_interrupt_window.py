"""A Ctrl-C landing between a sync call's inline first step and the task that takes the rest over.

The first step of a call runs in the caller's thread without a task (:meth:`SyncLoop.call`); a call that has to
wait goes on as a task. An interrupt in between left the call's coroutine suspended and owned by nobody: what it
held (a pooled connection, a lock) stayed held, and when the garbage collector closed it later, its ``finally``
blocks ran in whatever context was current then (on PostgreSQL: "Token ... was created in a different Context").
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest
from eventsource import syncloop
from eventsource.syncloop import SyncLoop

VAR: ContextVar[str] = ContextVar("window_var", default="unset")


@pytest.fixture
def loop() -> Iterator[SyncLoop]:
    """A sync facade's loop of its own, closed after the test."""
    sync_loop = SyncLoop()
    yield sync_loop
    sync_loop.close()


def _call(log: list[str]) -> Any:
    async def call() -> str:
        token = VAR.set("call")
        try:
            await asyncio.sleep(0)  # the first step ends here: the rest goes on as a task
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        else:
            return "done"
        finally:
            await asyncio.sleep(0)  # cleanup that waits (a connection given back to its pool)
            try:
                VAR.reset(token)
                log.append("reset")
            except ValueError as e:  # the token's context is not the current one
                log.append(f"wrong context: {e}")

    return call()


def _interrupt_once(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``syncloop.<name>`` raises KeyboardInterrupt on its first call (as a Ctrl-C landing there would)."""
    real = getattr(syncloop, name)
    fired: list[bool] = []

    def hit(*args: Any, **kwargs: Any) -> Any:
        if not fired:
            fired.append(True)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(syncloop, name, hit)


@pytest.mark.parametrize("where", ["_finish", "_Resume", "_until_done"])
def test_an_interrupt_before_the_task_takes_over_cancels_the_call_in_its_own_context(
    monkeypatch: pytest.MonkeyPatch, where: str, loop: SyncLoop
) -> None:
    log: list[str] = []
    _interrupt_once(monkeypatch, where)
    with pytest.raises(KeyboardInterrupt):
        loop.call(_call(log))
    assert log == ["cancelled", "reset"], "the call was left suspended, owned by no task"
    gc.collect()
    assert log == ["cancelled", "reset"]
    assert VAR.get() == "unset"
    assert loop.call(_call(log)) == "done"  # the facade goes on
    assert log[-1:] == ["reset"]


def test_an_interrupt_as_the_task_is_created_still_cancels_it(monkeypatch: pytest.MonkeyPatch, loop: SyncLoop) -> None:
    log: list[str] = []
    real = loop.loop.create_task

    def create_then_interrupt(*args: Any, **kwargs: Any) -> Any:
        task = real(*args, **kwargs)
        monkeypatch.setattr(loop.loop, "create_task", real)
        created.append(task)
        raise KeyboardInterrupt

    created: list[asyncio.Task[Any]] = []
    monkeypatch.setattr(loop.loop, "create_task", create_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.call(_call(log))
    assert created
    assert created[0].done(), "the task was left pending: the next call's loop run would resume it"
    assert log == ["cancelled", "reset"]
    assert loop.call(_call(log)) == "done"


@pytest.mark.parametrize("where", ["_finish", "_Resume"])
def test_an_interrupt_before_the_task_takes_over_cancels_what_the_call_awaits(
    monkeypatch: pytest.MonkeyPatch, where: str, loop: SyncLoop
) -> None:
    # a task's cancel() cancels the future it waits on (a child task, a gather); a CancelledError thrown into
    # the coroutine left that future running: the child ran on to its end in the next call, after the Ctrl-C
    log: list[str] = []

    async def child() -> None:
        try:
            await asyncio.sleep(0.2)
            log.append("child ran to its end")
        except asyncio.CancelledError:
            log.append("child cancelled")
            raise

    async def call() -> None:
        await asyncio.ensure_future(child())

    _interrupt_once(monkeypatch, where)
    with pytest.raises(KeyboardInterrupt):
        loop.call(call())
    assert log == ["child cancelled"], "the call was cancelled, what it awaited was not"
    loop.call(asyncio.sleep(0.3))
    assert log == ["child cancelled"]


class _LeakyOnce:
    """The loop's turn lock, whose next acquire takes it and then raises KeyboardInterrupt, as a Ctrl-C handled
    right after the acquire returned (before the ``try`` that releases it) would."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.fired = False

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        got = self.real.acquire(*args, **kwargs)
        if got and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.real.release()


@pytest.mark.parametrize("path", ["append (lane)", "read (call)"])
def test_an_interrupt_right_after_the_turn_was_taken_does_not_leave_the_facade_locked(path: str) -> None:
    """A Ctrl-C between taking the turn's lock and the ``try`` that gives it back left it held: every later call,
    from any thread, waited out the manager's timeout ("no turn"), and close() hung on it for ever."""
    import threading

    from eventsource import SyncEventSourcingManager

    es = SyncEventSourcingManager({"providers": {"m": "memory://"}, "timeout": 2.0})
    es.__enter__()
    closed = threading.Event()
    try:
        es.append_event(stream_id="s", event_type="E", data=1)
        sync_loop = es._loop
        real = sync_loop._lock
        sync_loop._lock = _LeakyOnce(real)
        with pytest.raises(KeyboardInterrupt):
            if path == "append (lane)":
                es.append_event(stream_id="s", event_type="E", data=2)
            else:
                list(es.read_stream("s"))
        sync_loop._lock = real
        assert es.append_event(stream_id="s", event_type="E", data=3).version >= 2  # this thread again
        out: list[object] = []
        other = threading.Thread(target=lambda: out.append(es.get_stream_info("s").version))
        other.start()
        other.join(30)
        assert out and out[0] == es.get_stream_info("s").version  # another thread gets its turn
    finally:
        closer = threading.Thread(target=lambda: (es.__exit__(None, None, None), closed.set()), daemon=True)
        closer.start()
        closer.join(30)
    assert closed.is_set(), "close() hung on the lock the interrupt left held"

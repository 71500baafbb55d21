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

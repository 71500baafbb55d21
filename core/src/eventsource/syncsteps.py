"""Driving an event loop's coroutine by hand, for the sync API's loop run in its caller's thread (:mod:`.syncloop`).

:class:`Resume` hands a coroutine whose first step ran outside any task to a task for the rest, and
:func:`until_done` runs the loop until a task is done, even when an interrupted earlier run left a stop behind;
:func:`release_leaked` gives back the facade's lock an interrupt left held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio
    import threading
    from collections.abc import Coroutine

T = TypeVar("T")


class Resume:
    """Awaitable that drives an already started coroutine to its end from inside a task.

    ``yield from`` by hand: what the coroutine yields (a future it waits for) goes to the task, what the
    task sends or throws (a result, a cancellation) goes back into the coroutine.
    """

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Any:
        coro, value = self.coro, self.yielded
        while True:
            try:
                sent = yield value
            except BaseException as e:  # noqa: BLE001 - a cancellation (or anything) thrown in by the task
                try:
                    value = coro.throw(e)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def finish(resume: Resume) -> Any:
    """What ``resume`` gives: a coroutine for a task to run (``loop.create_task(finish(Resume(coro, yielded)))``)."""
    return await resume


STALE_STOPS = 4
"""Runs of a call's task that a stop left pending by an earlier interrupted run may end early (see until_done)."""


def until_done(loop: asyncio.AbstractEventLoop, task: asyncio.Task[T]) -> T:
    """``run_until_complete(task)``, run again when a stop left over by an interrupted run ended it early.

    A Ctrl-C in a run may leave that run's own stop callback ready but not run (or the stop flag set, in
    ``run_forever``'s cleanup): the next run stops after one iteration ("Event loop stopped before Future
    completed") with its task still pending.
    """
    for _ in range(STALE_STOPS):
        try:
            return loop.run_until_complete(task)
        except RuntimeError:
            if task.done() or loop.is_running() or loop.is_closed():
                raise
    return loop.run_until_complete(task)


def release_leaked(lock: threading.RLock) -> None:
    """Give ``lock`` back if this thread holds it while not in a turn (a caller checks that it is not).

    A Ctrl-C handled right after the lock was taken, before the ``try`` that gives it back (Python runs signal
    handlers between bytecodes, there too), left it held: every later call, from any thread, waited out the
    timeout for a turn, and close() waited for ever. The first call of the thread that left it repairs it.
    """
    if lock._is_owned():  # type: ignore[attr-defined] # noqa: SLF001 - the C RLock's own, as threading.Condition's
        lock.release()

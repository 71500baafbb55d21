"""Timeouts without a timer per call: one deadline timer for single calls, one watchdog per iteration."""

from __future__ import annotations

import asyncio
from typing import Any

from eventsource.inline import CALL_TASK


class Deadlines:
    """One timer bounding every in-flight provider call of a manager by ``timeout``.

    ``asyncio.timeout`` arms and cancels a timer per call. Here a call only adds itself to an
    insertion-ordered dict (oldest first) and removes itself when done; a single timer, armed for the
    oldest call's deadline, cancels the calls that overran (as ``asyncio.timeout`` does) and re-arms for
    the next oldest. :meth:`expired` tells the caller's ``except CancelledError`` whether the
    cancellation was this deadline (then it is undone) or a real cancellation, which propagates.
    """

    __slots__ = ("calls", "handle", "loop", "timeout")

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.calls: dict[int, list[Any]] = {}
        self.handle: asyncio.TimerHandle | None = None

    def enter(self) -> list[Any]:
        """Register the current task's call: ``[task, start, fired, cancelling-before]``.

        ``task`` is a one-item list instead when the sync API runs the call's first step without a task
        (:data:`~eventsource.inline.CALL_TASK`): it receives the task if the call has to wait.
        """
        task = asyncio.current_task()
        entry: list[Any] = [task if task is not None else CALL_TASK.get(), self.loop.time(), False, 0]
        self.calls[id(entry)] = entry
        if self.handle is None:
            self.handle = self.loop.call_at(entry[1] + self.timeout, self._fire)
        return entry

    def exit(self, entry: list[Any]) -> None:
        """The call is done (whatever the outcome)."""
        self.calls.pop(id(entry), None)

    def expired(self, entry: list[Any]) -> bool:
        """Whether this deadline cancelled the call (the cancellation is then undone)."""
        return bool(entry[2]) and _task(entry[0]).uncancel() <= entry[3]

    def close(self) -> None:
        """Disarm the timer."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        limit = self.loop.time() - self.timeout + 0.001
        calls = self.calls
        while calls:
            key = next(iter(calls))
            entry = calls[key]
            if entry[1] > limit:
                self.handle = self.loop.call_at(entry[1] + self.timeout, self._fire)
                return
            del calls[key]
            task = _task(entry[0])
            if task is not None and not task.done():
                entry[2] = True
                entry[3] = task.cancelling()
                task.cancel()


def _task(held: Any) -> Any:
    """The task of an entry (see :meth:`Deadlines.enter`)."""
    return held[0] if type(held) is list else held


class Watchdog:
    """Bounds every step of an iteration by ``timeout`` without arming a timer per step.

    ``asyncio.timeout`` around each ``__anext__`` schedules and cancels a timer per event. Instead one
    timer checks, at most once per ``timeout``, whether the current step started more than ``timeout``
    ago; if so it cancels the task (as ``asyncio.timeout`` does) and :meth:`timed_out` turns that
    cancellation into a timeout. A step sets ``start`` (loop clock), ``task`` (the task driving it) and
    ``stepping``.
    """

    __slots__ = ("base", "fired", "handle", "loop", "start", "stepping", "task", "timeout")

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.start = self.loop.time()
        self.stepping = False
        self.fired = False
        self.base = 0
        self.task: Any = None
        """The task driving the step, or (the sync API's first step runs without one) the call's one-item list
        that receives it if the step has to wait (:data:`~eventsource.inline.CALL_TASK`), as :class:`Deadlines`."""
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(self.start + timeout, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        task = _task(self.task)
        if self.stepping and task is not None and now >= self.start + self.timeout - 0.001:
            self.fired = True
            self.base = task.cancelling()
            task.cancel()
            self.handle = None
            return
        self.handle = self.loop.call_at((self.start if self.stepping else now) + self.timeout, self._check)

    def timed_out(self) -> bool:
        """Called on ``CancelledError``: whether this watchdog caused it (then the cancel is undone)."""
        task = _task(self.task)
        if not self.fired or task is None:
            return False
        self.fired = False
        self.handle = self.loop.call_at(self.loop.time() + self.timeout, self._check)
        return bool(task.uncancel() <= self.base)

    def close(self) -> None:
        """Disarm the timer."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

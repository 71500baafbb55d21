"""An in-process change signal: writers bump it after a commit, live subscriptions wait on it.

:class:`ChangeSignal` is a counter with waiters. It is thread-safe and loop-agnostic (a waiter on one event
loop is woken from a commit made on another loop or thread), and it is level-triggered: a waiter passes the
counter value it saw *before* looking at the store, so a commit that lands between that look and the wait
still wakes it. It carries no events; readers always read the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ChangeSignal:
    """A commit counter that wakes waiters on any thread or event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    @property
    def count(self) -> int:
        """How many times :meth:`notify` ran (take it before reading the store, then :meth:`wait` on it)."""
        return self._count

    def notify(self) -> None:
        """Record a commit and wake every waiter."""
        with self._lock:
            self._count += 1
            waiters = self._waiters
            if not waiters:  # the usual commit: nobody waits (no set made, nothing to wake)
                return
            self._waiters = set()
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there any more
                loop.call_soon_threadsafe(_wake, fut)

    async def wait(self, seen: int, max_wait: float) -> bool:
        """Wait until the counter passes ``seen`` or ``max_wait`` seconds pass; whether it passed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._lock:
            if self._count != seen:
                return True
            self._waiters.add(entry)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that arrives in the
            # same loop turn as the wake-up (the waiting task then runs on, un-cancellable by its owner)
            async with asyncio.timeout(max_wait):
                await asyncio.shield(fut)
        except TimeoutError:
            return self._count != seen
        finally:
            with self._lock:
                self._waiters.discard(entry)
        return True


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

"""The event loop behind the sync API: run in the caller's thread while the providers allow it, else on a thread.

:class:`SyncLoop` owns one private event loop. While every provider declares ``loop_free`` (SQLite, memory) it
runs that loop only during a call, in the calling thread, under a lock (one call at a time, whichever thread
makes it), and marks the call's context with :data:`~eventsource.provider.SYNC_CALLER` so a store whose
driver blocks anyway runs its statements inline: no thread hop at all. Once a provider needs a live loop
between calls (a connection pool, pings) or a retention schedule starts, the loop moves to a daemon thread for
good and calls cross to it. Iterators cross a page of events per call, never one event at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import EventSourceError, ProviderUnavailableError
from eventsource.provider import SYNC_CALLER

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine, Iterator

T = TypeVar("T")

OWN_LOOP = (
    "SyncEventSourcingManager was called from its own event loop (a sync snapshot handler or upcaster "
    "calling the facade?), where the call would wait for itself forever: make the handler async and "
    "use facade.manager, or leave the facade out of it"
)


async def _take(it: AsyncIterator[T], n: int) -> tuple[list[T], bool, BaseException | None]:
    """Up to ``n`` items of ``it``; whether it ended; the error that stopped it early (items before it kept)."""
    out: list[T] = []
    append = out.append
    anext_ = it.__anext__
    try:
        for _ in range(n):
            append(await anext_())
    except StopAsyncIteration:
        return out, True, None
    except Exception as e:  # noqa: BLE001 - delivered after the items that came before it
        return out, True, e
    return out, False, None


class SyncLoop:
    """One private event loop for one sync facade; see the module docstring."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread running the loop inline right now
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def threaded(self) -> bool:
        """Whether the loop runs on its own thread (for good) rather than in each caller's thread."""
        return self._thread is not None

    def _usable(self) -> None:
        """Refuse a call that could never finish: on a closed facade, or from the facade's own loop."""
        if self._closed or self.loop.is_closed():
            msg = "this SyncEventSourcingManager is closed; create a new one"
            raise ProviderUnavailableError(msg)
        me = threading.get_ident()
        thread = self._thread
        if me == self._owner or (thread is not None and me == thread.ident):
            raise EventSourceError(OWN_LOOP)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and return its result (its exception propagates)."""
        try:
            self._usable()
        except EventSourceError:
            coro.close()  # never scheduled: no "coroutine was never awaited" warning
            raise
        if self._thread is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:  # async code calling the sync API: its own loop occupies this thread, so use another one
                with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="eventsource-sync-call") as pool:
                    return pool.submit(self.run, coro).result()
            with self._lock:
                if self._thread is None:
                    return self._inline(coro)
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()  # the caller gave up (KeyboardInterrupt): leave nothing running for it
            raise

    def _inline(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run the loop in this thread until ``coro`` is done (the lock is held)."""
        me = threading.get_ident()
        token = None
        try:  # (an interrupt right after taking ownership still reaches the finally)
            self._owner = me
            token = SYNC_CALLER.set(me)
            task = self.loop.create_task(coro)  # the task's context carries SYNC_CALLER
            try:
                return self.loop.run_until_complete(task)
            except BaseException:
                if not task.done():  # interrupted (KeyboardInterrupt) mid-call: cancel it, leave nothing running
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        self.loop.run_until_complete(task)
                raise
        finally:
            if token is not None:
                SYNC_CALLER.reset(token)
            self._owner = None

    def go_threaded(self) -> None:
        """Move the loop to its own daemon thread for good (a provider or schedule needs it live between calls)."""
        self._usable()
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self.loop.run_forever, name="eventsource-sync", daemon=True)
            thread.start()
            self._thread = thread

    def iterate(self, agen: AsyncIterator[T], page: int) -> Iterator[T]:
        """A blocking iterator over ``agen``: one loop call per ``page`` items; closed early, it closes ``agen``."""
        self._usable()
        it = agen.__aiter__()
        done = False
        try:
            while not done:
                items, done, error = self.run(_take(it, page))
                yield from items
                if error is not None:
                    raise error
        finally:
            if not done:
                self._close_iterator(it)

    def _close_iterator(self, it: AsyncIterator[Any]) -> None:
        aclose = getattr(it, "aclose", None)
        if aclose is None:
            return
        try:
            self._usable()
        except EventSourceError:
            # closed facade, or an iterator dropped inside a call on this loop: the loop's async-generator
            # hooks close it on its next run (or at close(), by shutdown_asyncgens)
            return
        self.run(aclose())

    def close(self, final: Coroutine[Any, Any, Any] | None = None) -> None:
        """Run ``final`` (if given), close the async generators still open, and stop the loop. Idempotent."""
        try:
            self._usable()  # from the facade's own loop: refuse (stopping it there would deadlock)
        except ProviderUnavailableError:
            if final is not None:
                final.close()
            return
        except EventSourceError:
            if final is not None:
                final.close()
            raise
        try:
            if final is not None:
                self.run(final)
        finally:
            try:
                with contextlib.suppress(Exception):
                    self.run(self.loop.shutdown_asyncgens())
            finally:
                self._closed = True
                thread = self._thread
                with self._lock:  # no inline call is running once the lock is ours
                    if thread is not None:
                        self.loop.call_soon_threadsafe(self.loop.stop)
                        thread.join()
                    self.loop.close()

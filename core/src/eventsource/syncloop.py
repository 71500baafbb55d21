"""The event loop behind the sync API: run in the caller's thread while the providers allow it, else on a thread.

:class:`SyncLoop` owns one private event loop. While every provider declares ``loop_free`` (SQLite, memory) it
runs that loop only during a call, in the calling thread, under a lock (one call at a time, whichever thread
makes it), and marks the call's context with :data:`~eventsource.inline.SYNC_CALLER` so a store whose
driver blocks anyway runs its statements inline: no thread hop at all. Once a provider needs a live loop
between calls (a connection pool, pings) or a retention schedule starts, the loop moves to a daemon thread for
good and calls cross to it. Iterators cross up to 100 events (of one page) per call, never one event at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import os
import sys
import threading
import weakref
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import EventSourceError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.inline import CALL_TASK, INTERRUPTS, SYNC_CALLER, SYNC_TIMEOUT
from eventsource.manager.policy import PAGED
from eventsource.syncsteps import Resume as _Resume
from eventsource.syncsteps import finish as _finish
from eventsource.syncsteps import release_leaked as _release_leaked
from eventsource.syncsteps import until_done as _until_done

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping

T = TypeVar("T")
R = TypeVar("R")
CHUNK = 100
"""Events the sync API takes per call at most: a page of 500 decoded at once would leave the CPU's caches cold."""

OWN_LOOP = (
    "SyncEventSourcingManager was called from its own event loop (a sync snapshot handler or upcaster "
    "calling the facade?), where the call would wait for itself forever: make the handler async and "
    "use facade.manager, or leave the facade out of it (a signal handler that ran while this thread was inside a "
    "call: raise SystemExit or KeyboardInterrupt there, or set a flag and call the facade after the call)"
)
IN_CALL = (
    "SyncEventSourcingManager.close() was called by a thread that is inside a call on it (from a signal handler "
    "that ran during the call?): close() waits for calls in flight, and this one cannot end until the handler "
    "returns. In a signal handler raise SystemExit or KeyboardInterrupt instead (the call is cancelled, and a "
    "`with` block or `finally` closes the facade on the way out), or set a flag and close after the call"
)


CLOSED = "this SyncEventSourcingManager is closed; create a new one"
TURN = (
    "this call waited {limit}s (the manager's timeout) for another thread's call on the same "
    "SyncEventSourcingManager (calls from several threads take turns) and was not started: nothing was done; "
    "retry, raise timeout, or give each thread a manager of its own"
)

EXITING = "the interpreter is exiting: the SyncEventSourcingManager's loop thread no longer runs (close it before)"

FORKED = (
    "this SyncEventSourcingManager was created in the parent process before fork(); its event loop, threads and "
    "connections stayed there: create a new one in the child"
)

_LOOPS: weakref.WeakSet[SyncLoop] = weakref.WeakSet()

_MOVED = object()  # what SyncLoop._in_turn returns when the loop moved to its thread while the call waited
_UNKNOWN = object()  # what a call's first step yielded, when an interrupt came before it was known


def _mark(me: int, timeout: float | None, box: list[asyncio.Task[Any] | None]) -> None:
    """Mark a call's context: its sync caller, the manager's timeout, the box for its task."""
    SYNC_CALLER.set(me)
    SYNC_TIMEOUT.set(timeout)
    CALL_TASK.set(box)


def _mark_caller(me: int, timeout: float | None) -> None:
    """Mark a call's context with its sync caller and the manager's timeout (a call run as a task from the start)."""
    SYNC_CALLER.set(me)
    SYNC_TIMEOUT.set(timeout)


def _forked() -> None:
    """In a forked child: every facade inherited from the parent refuses calls (and close() leaves it alone)."""
    for sync_loop in list(_LOOPS):
        sync_loop._forked = True  # noqa: SLF001
        sync_loop._closed = True  # noqa: SLF001
        sync_loop._lock = threading.RLock()  # noqa: SLF001 - (another thread may have held it at the fork)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


async def _take(it: AsyncIterator[T], n: int) -> tuple[list[T], bool, BaseException | None]:
    """Up to ``n`` items of ``it``; whether it ended; the error that stopped it early (items before it kept).

    From the manager's own iterators (:data:`~eventsource.manager.policy.PAGED`) it takes up to ``n`` events
    of a page as one list (:data:`~eventsource.manager.policy.CHUNK_PULL`).
    """
    out: list[T] = []
    append = out.append
    anext_ = it.__anext__
    try:
        if getattr(it, "ag_code", None) in PAGED:  # the manager's event iterators
            asend = it.asend  # type: ignore[attr-defined]
            while len(out) < n:
                append(await anext_())
                k = n - len(out)
                if k:
                    out.extend(await asend(k))
        else:
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
        self._lock = threading.RLock()  # (an RLock knows its holder: _release_leaked)
        self._owner: int | None = None  # the thread holding the lock (running the loop inline) right now
        self._thread: threading.Thread | None = None
        self.timeout: float | None = None  # the manager's per-call timeout, for statements run inline (SYNC_TIMEOUT)
        self._closed = False  # set first thing by close(): every call starting after that is refused
        self._forked = False
        self._calls = threading.Condition()  # guards _closed and _inflight (calls waiting on the loop thread)
        self._inflight = 0
        self._waiting: dict[int, int] = {}  # thread id -> its calls waiting on the loop thread (in _inflight)
        self._ends: weakref.WeakKeyDictionary[Any, Callable[[Any], Coroutine[Any, Any, Any]]]
        self._ends = weakref.WeakKeyDictionary()  # what close() ends first (end_on_close)
        self._shut = threading.Event()  # close() is done
        self._closer: int | None = None  # the thread running close()
        _LOOPS.add(self)
        # the loop's async-generator hooks (run_forever installs them; the first-step fast path does too)
        self._firstiter = getattr(self.loop, "_asyncgen_firstiter_hook", None)
        self._finalizer = getattr(self.loop, "_asyncgen_finalizer_hook", None)
        has_hooks = self._firstiter is not None and self._finalizer is not None
        self._drive = self._drive_inline if has_hooks and hasattr(asyncio.events, "_set_running_loop") else None

    @property
    def threaded(self) -> bool:
        """Whether the loop runs on its own thread (for good) rather than in each caller's thread."""
        return self._thread is not None

    def _on_own_loop(self) -> bool:
        """Whether this thread is running the private loop right now (a handler or upcaster calling back)."""
        me = threading.get_ident()
        thread = self._thread
        return me == self._owner or (thread is not None and me == thread.ident)

    def _usable(self) -> None:
        """Refuse a call that could never finish: on a closed facade, or from the facade's own loop."""
        if self._closed or self.loop.is_closed():
            raise ProviderUnavailableError(FORKED if self._forked else CLOSED)
        if self._on_own_loop():
            raise EventSourceError(OWN_LOOP)

    def check(self) -> None:
        """Raise now what a call would: the facade is closed, or this is its own loop calling back."""
        self._usable()

    def run(self, coro: Coroutine[Any, Any, T], *, settle: bool = False) -> T:
        """Run ``coro`` on the private loop and return its result (its exception propagates).

        ``settle``: if the caller is interrupted (Ctrl-C), wait until the cancelled call has ended (as a call run
        inline does) before the interrupt propagates, so what the call did meanwhile is done when the caller
        goes on (a subscription's batch: the coroutine keeps it itself).
        """
        return self._run(coro, closing=False, settle=settle)

    def _run(self, coro: Coroutine[Any, Any, T], *, closing: bool, settle: bool = False) -> T:
        """:meth:`run`; ``closing``: close()'s own calls, which run after the facade is marked closed."""
        if not closing:
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
                    return pool.submit(self._run, coro, closing=closing, settle=settle).result()
            done = self._in_turn(lambda: self._inline(coro), coro.close, closing=closing)
            if done is not _MOVED:
                return done  # type: ignore[return-value]
        return self._threaded(coro, closing=closing, settle=settle)

    def _threaded(self, coro: Coroutine[Any, Any, T], *, closing: bool, settle: bool = False) -> T:
        """Run ``coro`` on the loop's thread; counted, so close() lets it finish before it stops the loop."""
        with self._calls:
            if (self._closed and not closing) or sys.is_finalizing():  # a loop that stops (or no longer runs: a
                coro.close()  # daemon thread at the interpreter's exit) would leave this call waiting forever
                raise ProviderUnavailableError(EXITING if sys.is_finalizing() else CLOSED)
            self._inflight += 1
            me = threading.get_ident()
            self._waiting[me] = self._waiting.get(me, 0) + 1
        try:
            if settle:
                return self._settled(coro)
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
            try:
                return fut.result()
            except BaseException:
                fut.cancel()  # the caller gave up (KeyboardInterrupt): leave nothing running for it
                raise
        finally:
            with self._calls:
                self._inflight -= 1
                if self._waiting[me] == 1:
                    del self._waiting[me]
                else:
                    self._waiting[me] -= 1
                self._calls.notify_all()

    def _settled(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`_threaded` with ``settle``: an interrupted caller cancels the call and waits until it has ended.

        (Cancelling the future it waits on would return at once, the call still running on the loop thread.)
        """
        loop = self.loop
        ended: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def copy(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                ended.cancel()
            elif (error := task.exception()) is not None:
                ended.set_exception(error)
            else:
                ended.set_result(task.result())

        def start() -> None:
            task = loop.create_task(coro)
            task.add_done_callback(copy)
            tasks.append(task)

        def stop() -> None:  # (after start(), if that was scheduled at all: the loop keeps the order)
            if tasks:
                tasks[0].cancel()
            elif not ended.done():  # interrupted before start() was scheduled: it never ran
                coro.close()
                ended.cancel()

        try:  # (an interrupt inside call_soon_threadsafe, start() scheduled or not, is handled below too)
            loop.call_soon_threadsafe(start)
            return ended.result()
        except BaseException:
            if not ended.done():  # interrupted: cancel the call...
                loop.call_soon_threadsafe(stop)
                with contextlib.suppress(Exception, concurrent.futures.CancelledError):
                    ended.result()  # ... and wait for it to end (a second Ctrl-C gives up)
            raise

    def call(self, coro: Coroutine[Any, Any, T], *, settle: bool = False) -> T:
        """Like :meth:`run`, cheaper for a call that usually never waits (an append or a lookup on SQLite/memory).

        On the inline loop the coroutine's first step runs right here, with the loop marked running in
        this thread but without a task or a loop iteration; a call that completes in that step (every
        inline SQLite or memory call that needs no retry) is done. One that waits for something
        continues as a task on the loop, exactly as :meth:`run` would have run it (``settle`` as there).
        """
        if self._thread is not None or self._drive is None:
            return self.run(coro, settle=settle)
        try:
            self._usable()
        except EventSourceError:
            coro.close()
            raise
        if asyncio.events._get_running_loop() is not None:  # noqa: SLF001 - get_running_loop() raises when none
            return self.run(coro)
        drive = self._drive
        done = self._in_turn(lambda: drive(coro), coro.close)
        if done is _MOVED:
            return self._threaded(coro, closing=False, settle=settle)  # (the lock is released first)
        return done  # type: ignore[return-value]

    def _in_turn(
        self, step: Callable[[], T], abandon: Callable[[], object] | None = None, *, closing: bool = False
    ) -> T | object:
        """``step()`` in this thread, holding the lock as its owner, while the loop runs inline.

        Owner for as long as the lock is held: a finalizer or signal handler that runs in this thread meanwhile
        and calls the facade is refused (_usable) instead of waiting for itself. :data:`_MOVED` when the loop
        moved to its thread while this call waited for the lock; a facade closed meanwhile raises, after
        ``abandon()`` (a coroutine's ``close``: no warning), unless ``closing`` (close()'s own calls). A turn not
        had within the manager's timeout raises :class:`ProviderTimeoutError` (nothing was done). An interrupt
        out of ``step()`` counts in :data:`~eventsource.inline.INTERRUPTS`.
        """
        me = threading.get_ident()
        limit = self.timeout
        lock = self._lock  # uncontended (the usual call): no timed wait's cost; else at most the manager's timeout
        if self._owner != me:
            _release_leaked(lock)
        got = False
        try:
            got = lock.acquire(blocking=False) or lock.acquire(timeout=-1 if closing or limit is None else limit)
        finally:  # (no turn, or a Ctrl-C while waiting or right after the lock was taken: _release_leaked)
            if not got and abandon is not None:
                abandon()
        if not got:
            raise ProviderTimeoutError(TURN.format(limit=limit))
        try:
            self._owner = me
            if self._thread is not None:
                return _MOVED
            if self._closed and not closing:  # close() ran while this call waited for the lock
                if abandon is not None:
                    abandon()
                raise ProviderUnavailableError(CLOSED)
            try:
                return step()
            except BaseException as e:
                if not isinstance(e, Exception):  # a Ctrl-C while the loop ran here: stores check their state
                    INTERRUPTS[0] += 1
                raise
        finally:
            self._owner = None
            lock.release()

    def now(
        self,
        lane: Callable[[R | None, Mapping[str, Any], float | None], T | Coroutine[Any, Any, T]],
        full: Callable[..., Coroutine[Any, Any, T]],
        request: R | None,
        kwargs: dict[str, Any],
    ) -> T:
        """``lane(request, kwargs, timeout)`` right here while the loop runs inline; else ``full(request, **kwargs)``.

        A lane (:class:`~eventsource.manager.lane.SyncLane`) returns the result, or the coroutine that
        finishes the call, which goes on as :meth:`call` runs one. Once the loop runs on its thread (or this
        thread runs another loop), the lane is not used: ``full``, the async method, runs as :meth:`call` runs it.
        """
        drive = self._drive
        if self._thread is None and drive is not None and asyncio.events._get_running_loop() is None:  # noqa: SLF001
            me = threading.get_ident()
            if self._closed or self.loop.is_closed() or self._owner == me:
                self._usable()  # raises (the checks of _usable, inline: no loop thread, so only the owner calls back)
            lock = self._lock
            if lock._is_owned():  # type: ignore[attr-defined] # noqa: SLF001 - _release_leaked, without its frame
                lock.release()  # (not this thread's turn: _owner is not me)
            if lock.acquire(blocking=False):  # the usual call, nobody else in one: what _in_turn does, in this frame
                try:
                    self._owner = me
                    if self._thread is None and not self._closed:  # (else _in_turn below says moved or closed)
                        out = lane(request, kwargs, self.timeout)
                        return drive(out) if type(out) is CoroutineType else out  # type: ignore[return-value]
                except BaseException as e:
                    if not isinstance(e, Exception):  # a Ctrl-C while the loop ran here: stores check their state
                        INTERRUPTS[0] += 1
                    raise
                finally:
                    self._owner = None
                    lock.release()

            def step() -> T:
                out = lane(request, kwargs, self.timeout)
                return drive(out) if type(out) is CoroutineType else out  # type: ignore[return-value] # native ones

            done = self._in_turn(step)
            if done is not _MOVED:
                return done  # type: ignore[return-value]
        return self.call(full(request, **kwargs))  # (on the loop's thread: the lock is released first)

    def _drive_inline(self, coro: Coroutine[Any, Any, T]) -> T:
        """First step of ``coro`` in this thread (the lock is held); the rest, if any, as a task on the loop.

        An interrupt after the first step and before a task owns the rest cancels the call as a task would be
        cancelled, in the call's context (:meth:`_cancel_started`): never left suspended, owned by nobody.
        """
        loop = self.loop
        me = threading.get_ident()
        ctx = contextvars.copy_context()  # the call's own context, as a task would have
        box: list[asyncio.Task[Any] | None] = [None]
        ctx.run(_mark, me, self.timeout, box)
        hooks = sys.get_asyncgen_hooks()
        yielded: Any = _UNKNOWN
        try:
            try:
                sys.set_asyncgen_hooks(firstiter=self._firstiter, finalizer=self._finalizer)
                asyncio.events._set_running_loop(loop)  # noqa: SLF001 - what run_forever does, without the iteration
                yielded = ctx.run(coro.send, None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                asyncio.events._set_running_loop(None)  # noqa: SLF001
                sys.set_asyncgen_hooks(*hooks)
            result: T = self._inline(_finish(_Resume(coro, yielded)), ctx, box)
        except BaseException:
            task = box[0]
            if task is None or task.done():  # no task took the rest over (or it was cancelled before it began)
                self._cancel_started(coro, ctx, yielded)
            raise
        return result

    def _cancel_started(self, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context, yielded: Any) -> None:
        """End a coroutine suspended after its first step, that no task owns, as a cancelled task ends.

        A task in the call's context ``ctx`` takes it over and is cancelled (what it awaits, ``yielded``, with it),
        its cleanup run to its end; ``yielded`` unknown (the interrupt came as the step returned): thrown in.
        """
        if inspect.getcoroutinestate(coro) != inspect.CORO_SUSPENDED:
            return  # it ended in its first step (an interrupt raised inside it went through its frames)
        loop = self.loop
        if yielded is not _UNKNOWN:
            task = loop.create_task(_finish(_Resume(coro, yielded)), context=ctx)
            loop.call_soon(task.cancel)  # (after the task's first run: it then waits on what the coroutine awaits)
            with contextlib.suppress(BaseException):
                _until_done(loop, task)
            return
        asyncio.events._set_running_loop(loop)  # noqa: SLF001
        try:
            yielded = ctx.run(coro.throw, asyncio.CancelledError())
        except BaseException:  # noqa: BLE001 - it ended (cancelled, or its own error): nothing is left running
            return
        finally:
            asyncio.events._set_running_loop(None)  # noqa: SLF001
        task = loop.create_task(_finish(_Resume(coro, yielded)), context=ctx)  # its cleanup waits: run it out
        with contextlib.suppress(BaseException):
            _until_done(loop, task)

    def _inline(
        self,
        coro: Coroutine[Any, Any, T],
        ctx: contextvars.Context | None = None,
        box: list[asyncio.Task[Any] | None] | None = None,
    ) -> T:
        """Run the loop in this thread until ``coro`` is done (the lock is held, this thread is ``_owner``)."""
        if ctx is None:  # the call's own context, marked (its thread's context is left as it is)
            ctx = contextvars.copy_context()
            ctx.run(_mark_caller, threading.get_ident(), self.timeout)
        task: asyncio.Task[T] | None = None
        try:  # (an interrupt as the task is created still finds it below, and cancels it)
            task = self.loop.create_task(coro, context=ctx)
            if box is not None:
                box[0] = task  # (before the loop runs: no timer can fire in between)
            return _until_done(self.loop, task)
        except BaseException:
            if task is None:  # interrupted as it was created: find it
                task = next((t for t in asyncio.all_tasks(self.loop) if t.get_coro() is coro), None)
            if task is not None and not task.done():  # interrupted mid-call: cancel it, leave nothing running
                task.cancel()
                with contextlib.suppress(BaseException):
                    _until_done(self.loop, task)
            raise

    def go_threaded(self, checks: Callable[[], object] = lambda: None) -> None:
        """Move the loop to its own thread for good (a provider or schedule needs it live); first, ``checks``."""
        self._usable()
        checks()  # a call's argument checks: refused, it leaves the loop where it was
        me = threading.get_ident()
        with self._lock:
            self._owner = me  # (as in _in_turn)
            try:
                if self._thread is not None or self._closed:
                    return
                thread = threading.Thread(target=self.loop.run_forever, name="eventsource-sync", daemon=True)
                thread.start()
                self._thread = thread
            finally:
                self._owner = None

    def iterate(self, agen: AsyncIterator[T], page: int) -> Iterator[T]:
        """A blocking iterator over ``agen``: a loop call per ``page`` (at most CHUNK); closed early, closes it.

        An interrupted page call is waited for (``settle``): closing ``agen`` while its cancelled read still
        cleans up (a connection going back to its pool) raised RuntimeError instead of the KeyboardInterrupt.
        """
        self._usable()
        it = agen.__aiter__()
        done = False
        try:
            while not done:
                items, done, error = self.call(_take(it, min(page, CHUNK)), settle=True)
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
        try:
            self.run(aclose())
        except ProviderUnavailableError:
            if not self._closed and not sys.is_finalizing():
                raise  # (closed by another thread while this waited for its turn: shutdown_asyncgens closes it)

    def end_on_close(self, obj: Any, end: Callable[[Any], Coroutine[Any, Any, Any]]) -> None:
        """Have close() run ``end(obj)`` on the loop before it waits for calls in flight (while ``obj`` lives).

        For what a call may wait on forever: a subscription's next event, a projection runner's ``run()``.
        """
        self._ends[obj] = end

    def _end_waits(self) -> None:
        """End what would keep a call in flight until close() gives up (see :meth:`end_on_close`)."""
        for obj, end in list(self._ends.items()):
            with contextlib.suppress(Exception):
                self._run(end(obj), closing=True)

    def _before_waiting(self, final: Coroutine[Any, Any, Any] | None) -> None:
        """What close() does before it waits for calls in flight, so that the wait ends.

        Refuses close() from a thread waiting for its own call (a signal handler), which would wait forever;
        ends the subscriptions, whose ``next()`` in another thread would wait for the next event.
        """
        if threading.get_ident() in self._waiting:
            if final is not None:
                final.close()
            raise EventSourceError(IN_CALL)
        if self._thread is not None and not self._closed:
            self._end_waits()

    def _wind_down(self) -> None:
        """Close the async generators still open; end the default executor's threads (as ``asyncio.run`` does)."""
        with contextlib.suppress(Exception):
            self._run(self.loop.shutdown_asyncgens(), closing=True)
        with contextlib.suppress(Exception):  # (else a thread of the facade outlived close())
            self._run(asyncio.wait_for(self.loop.shutdown_default_executor(), self.timeout), closing=True)

    def close(self, final: Coroutine[Any, Any, Any] | None = None) -> None:  # noqa: C901, PLR0912 - each branch is one close() race, kept together
        """Run ``final`` (if given), close the async generators still open, and stop the loop. Idempotent.

        Calls from other threads that start after this one are refused (:class:`ProviderUnavailableError`);
        those already running finish first (subscriptions are ended first: a ``next()`` waiting in one returns).
        """
        try:
            self._usable()  # from the facade's own loop: refuse (stopping it there would deadlock)
        except ProviderUnavailableError:
            if final is not None:
                final.close()
            if not self._forked and not self._on_own_loop() and self._closer != threading.get_ident():
                self._shut.wait()  # (a close() in another thread may still be at it)
            return
        except EventSourceError:
            if final is not None:
                final.close()
            raise
        self._before_waiting(final)
        with self._calls:
            first = not self._closed
            self._closed = True
            if first:
                self._closer = threading.get_ident()
            try:
                while first and self._inflight:  # calls already on the loop's thread finish first
                    self._calls.wait()
            except BaseException:  # interrupted while waiting: not closed after all
                self._closed = False
                raise
        if not first:
            if final is not None:
                final.close()
            if self._closer != threading.get_ident():  # (a signal handler closing inside close(): no wait)
                self._shut.wait()
            return
        try:
            if final is not None:
                self._run(final, closing=True)
        finally:
            try:
                self._wind_down()
            finally:
                thread = self._thread
                try:
                    with self._lock:  # no inline call is running once the lock is ours
                        if thread is not None:
                            self.loop.call_soon_threadsafe(self.loop.stop)
                            thread.join()
                        self.loop.close()
                finally:
                    self._shut.set()

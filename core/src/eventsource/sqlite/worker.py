"""The thread that owns one SQLite connection: jobs in on a queue, outcomes back to the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.sqlite.connection import settle_moved

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.sqlite.connection import OpenedFiles


T = TypeVar("T")

_WORKERS: weakref.WeakSet[_Worker] = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []  # a forked child's copies of the parent's connections: never closed here


def _forked() -> None:
    """In a forked child: drop every inherited connection, unclosed.

    No worker thread came along, and a connection carried across fork() can corrupt the file
    (https://sqlite.org/howtocorrupt.html, section 2.6).
    """
    for worker in list(_WORKERS):
        worker.forked = True
        if worker.db is not None:
            _INHERITED.append(worker.db)
        worker.db = None
        worker.lock = threading.Lock()  # (another thread may have held it at the fork)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Hand a job's outcome to its future (on the loop's thread)."""
    if fut.cancelled():
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)


class _Worker:
    """One thread that owns one connection. Jobs arrive on a queue; outcomes go back to the loop.

    Leaner than ``run_in_executor`` (no ``concurrent.futures`` future chained to an asyncio one): one
    queue put, one ``call_soon_threadsafe``. Jobs run in submission order; :meth:`stop` closes the
    connection on the thread after the jobs already queued.
    """

    def __init__(self, name: str) -> None:
        self.db: sqlite3.Connection | None = None
        self.forked = False  # this is a forked child's copy: its thread and connection stayed in the parent
        # the writer's: the database file and -wal it opened (connection.opened_files), checked before each write
        self.files: OpenedFiles | None = None
        self.lock = threading.Lock()  # held by whoever uses the connection: this thread or an inline sync caller
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _WORKERS.add(self)

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                break
            fn, fut, loop = job
            try:
                with self.lock:
                    result, error = fn(), None
            except Exception as e:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, e
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile: nobody is waiting
                loop.call_soon_threadsafe(_settle, fut, result, error)
            del job, fn, fut, result, error
        with self.lock:
            db, self.db = self.db, None
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn`` for the thread; the returned future completes on the calling loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, fut, loop))
        return fut

    def stop(self) -> None:
        """Close the connection and end the thread once the queued jobs are done. Idempotent."""
        self._jobs.put(None)

    async def close(self) -> None:
        """Close the connection on its thread (after the jobs already queued), then end the thread."""
        if self.forked:  # the thread and the connection belong to the parent process
            return
        try:
            await self.submit(self._close_db)
        finally:
            self.stop()
        # the jobs are done, the connection closed: the thread ends as soon as it takes the stop from the queue (a
        # loaded machine ran a leak check after close() before it had); close() returns once it has
        self._thread.join(timeout=5)

    def _close_db(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            try:
                settle_moved(db, self.files)
            finally:
                db.close()

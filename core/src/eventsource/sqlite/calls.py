"""How the SQLite provider runs a statement: on the connection's own thread, or inline for a sync caller.

:class:`ConnectionCalls` is the provider's base: :meth:`~ConnectionCalls._write` and
:meth:`~ConnectionCalls._read` run a function of the connection on the writer's or the reader's thread
(:mod:`.worker`), or inline under the worker's lock when the running loop belongs to a sync caller blocked in
this thread; either way a driver error comes back typed (:func:`~eventsource.sqlite.errors.map_error`).
:func:`tx` runs a body in one transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import EventSourceError, ProviderUnavailableError
from eventsource.inline import SYNC_TIMEOUT, inline_io_allowed
from eventsource.model import utcnow
from eventsource.sqlite.errors import map_error

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Coroutine

    from eventsource.sqlite.worker import _Worker

T = TypeVar("T")

CANNOT_WRITE = frozenset(
    {
        "SQLITE_FULL",
        "SQLITE_IOERR",
        "SQLITE_READONLY",
        "SQLITE_CANTOPEN",
        "SQLITE_PERM",
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
    }
)
"""Error families of a write that mean the file cannot take writes (disk full, I/O error, read-only...), not a
conflict or a busy lock: the writer keeps the first of a run as a fault that ``health()`` reports."""


def cannot_write(e: BaseException) -> bool:
    """Whether ``e`` (a ``sqlite3`` error) says the database file cannot take writes (:data:`CANNOT_WRITE`)."""
    name = getattr(e, "sqlite_errorname", None) or ""
    return "_".join(name.split("_")[:2]) in CANNOT_WRITE or isinstance(e, OSError)


def tx(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
    """Run ``body`` in one transaction (``BEGIN IMMEDIATE`` for writes: the write lock first)."""
    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = body(db)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


class ConnectionCalls:
    """Runs functions of a connection on its worker thread, or inline for a blocked sync caller."""

    path: str
    settings: dict[str, Any]
    _writer: _Worker | None
    _reader: _Worker | None

    _tx = staticmethod(tx)
    write_fault: dict[str, Any] | None = None
    """The writer's failure to write (:data:`CANNOT_WRITE`) since no write has committed: ``component``, ``error``,
    ``since`` (the first of the run), ``failures``; ``None`` once a write commits a change."""

    def _failed(self, worker: _Worker, op: str, e: Exception) -> EventSourceError:
        """``e`` typed; a writer's failure to write is kept in :attr:`write_fault` (health reports it)."""
        if worker is self._writer and op != "health" and cannot_write(e):
            fault = self.write_fault
            self.write_fault = {
                "component": "writes",
                "error": f"{op}: {type(e).__name__}: {e}",
                "since": fault["since"] if fault is not None else utcnow().isoformat(),
                "failures": fault["failures"] + 1 if fault is not None else 1,
            }
        return map_error(e, op, self.path)

    def _run(self, worker: _Worker, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(db)`` while there is a :attr:`write_fault`: a call of the writer that commits a change clears it."""
        if worker is not self._writer:
            return fn(db)
        before = db.total_changes
        result = fn(db)
        if db.total_changes != before and not db.in_transaction:
            self.write_fault = None
        return result

    def _submit(self, worker: _Worker | None, op: str, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``fn(connection)`` on the connection's own thread now; errors come back typed."""
        if worker is None or worker.db is None:
            raise self._not_connected(worker, op)
        db = worker.db
        files = worker.files

        def call() -> T:
            try:
                if files is not None:
                    files.check(op)
                return fn(db) if self.write_fault is None else self._run(worker, db, fn)
            except EventSourceError:
                raise
            except Exception as e:
                raise self._failed(worker, op, e) from e

        return worker.submit(call)

    async def _on(self, worker: _Worker | None, op: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the connection's own thread (one hop), or inline for a sync caller.

        Inline only when the running loop belongs to a sync caller blocked in this thread
        (:func:`~eventsource.inline.inline_io_allowed`): nothing else waits on that loop, so the
        statement runs here under the worker's lock, the same one-at-a-time discipline as the thread.
        """
        if worker is not None and inline_io_allowed():
            return self._inline(worker, op, fn, SYNC_TIMEOUT.get())
        return await self._submit(worker, op, fn)

    def _inline(self, worker: _Worker, op: str, fn: Callable[[sqlite3.Connection], T], limit: float | None) -> T:
        """``fn(connection)`` here, under the worker's lock; SQLite waits for a lock at most ``limit`` seconds."""
        with worker.lock:
            db = worker.db
            if db is None:
                raise self._not_connected(worker, op)
            if worker.files is not None:
                worker.files.check(op)
            busy = self.settings["busy_timeout"]
            if limit is not None and limit < busy:  # no lock wait past the manager's timeout (nothing can cancel it)
                return self._inline_within(worker, db, op, fn, (limit, busy))
            try:
                return fn(db) if self.write_fault is None else self._run(worker, db, fn)
            except EventSourceError:
                raise
            except Exception as e:
                raise self._failed(worker, op, e) from e
            except BaseException:  # KeyboardInterrupt between two statements: leave no transaction open
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def _inline_within(
        self,
        worker: _Worker,
        db: sqlite3.Connection,
        op: str,
        fn: Callable[[sqlite3.Connection], T],
        waits: tuple[float, float],
    ) -> T:
        """``fn(db)`` with SQLite's lock wait lowered, then put back (the worker shares ``db``).

        ``waits`` is ``(limit, busy)``: the wait during the call, in seconds, and the setting it goes back to.
        """
        limit, busy = waits
        try:
            db.execute(f"PRAGMA busy_timeout = {int(limit * 1000)}")
            try:
                return fn(db) if self.write_fault is None else self._run(worker, db, fn)
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
        except EventSourceError:
            raise
        except Exception as e:
            raise self._failed(worker, op, e) from e

    def _not_connected(self, worker: _Worker | None, op: str) -> ProviderUnavailableError:
        if worker is not None and worker.forked:
            msg = (
                f"sqlite {op}: this provider was connected in the parent process before fork(); a SQLite "
                "connection must not cross a fork: create (and connect) a new manager in the child"
            )
        else:
            msg = f"sqlite {op}: the provider is not connected (call connect())"
        return ProviderUnavailableError(msg, provider="sqlite", operation=op)

    def _write(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> Coroutine[Any, Any, T]:
        """Run ``fn`` on the writer thread."""
        return self._on(self._writer, op, fn)

    def _read(self, op: str, fn: Callable[[sqlite3.Connection], T]) -> Coroutine[Any, Any, T]:
        """Run ``fn`` on the reader thread (the writer's for in-memory databases)."""
        return self._on(self._reader or self._writer, op, fn)

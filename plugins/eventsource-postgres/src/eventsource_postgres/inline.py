"""Pooled connections that wait for the server in the caller's thread when a sync caller runs the loop inline.

Through the sync API (``sync_inline``) the private event loop runs only while a call runs, in the caller's
thread (:func:`~eventsource.inline.inline_io_allowed`). There, :class:`InlineConnection` waits for each
reply with a blocking ``poll`` instead of the loop's reader callbacks, so a call that needs no other task
ends in its first step, with no loop iteration, as a raw sync psycopg call would. The manager's ``timeout``
still bounds the whole call (each statement, and the pool's check of its idle connections after a stale one,
waits only for what is left of it): past it the running statement is cancelled on the server and the call
times out. Anywhere else (an async caller, the loop on its own thread) the connection waits as psycopg's does.
"""

from __future__ import annotations

import inspect
import logging
import select
from contextvars import ContextVar
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from eventsource.inline import SYNC_TIMEOUT, inline_io_allowed
from psycopg import errors as e
from psycopg import generators, waiting
from psycopg.pq import TransactionStatus
from psycopg.waiting import Ready, Wait

if TYPE_CHECKING:
    from psycopg.abc import PQGen

RV = TypeVar("RV")


def _wait_timeout() -> type[Exception] | None:
    """What psycopg's own wait raises past its ``timeout`` (3.3 on), ``None`` where it takes none (internals)."""
    try:
        takes = "timeout" in inspect.signature(waiting.wait).parameters
    except (TypeError, ValueError):
        takes = False
    found = getattr(e, "_WaitTimeout", None)
    return found if takes and isinstance(found, type) and issubclass(found, Exception) else None


_WAIT_TIMEOUT = _wait_timeout()
"""psycopg's own wait functions take a ``timeout`` (raising this) since 3.3; else :func:`_poll` waits
(``test_sync_inline.py`` fails if a psycopg from 3.3 on loses either: the C wait is the fast path)."""
INTERVAL = 0.1
"""How often psycopg's wait wakes up while a statement runs (its connections' default)."""

CANCEL_WAIT = 5.0
"""Seconds a cancelled (or interrupted) statement gets to end before its connection is closed (as psycopg)."""

UNKNOWN = "its outcome is unknown (a write may have been committed, even after this error)"
"""What a statement closed with its connection, never answered, may have done: the server may still run it."""

log = logging.getLogger("eventsource.postgres")

CHECK_DEADLINE: ContextVar[float | None] = ContextVar("eventsource_postgres_check_deadline", default=None)
"""While a call checks the pool's idle connections (after finding one stale): when the call must end. A check
waits only until then, and one still waiting then closes its connection (the pool replaces it) at once."""


class _Expired(Exception):  # noqa: N818 - internal signal, never leaves this module
    """The deadline passed while the statement was still running."""


class StatementTimeoutError(TimeoutError):
    """A statement run inline outlived the manager's ``timeout`` (mapped to ``ProviderTimeoutError``)."""


def _wait(gen: PQGen[RV], fd: int, deadline: float | None) -> RV:
    """Drive one psycopg generator to its end, blocking this thread (psycopg's C wait where it takes a timeout)."""
    if _WAIT_TIMEOUT is None:
        return _poll(gen, fd, deadline)
    try:
        timeout = None if deadline is None else max(0.0, deadline - monotonic())
        return waiting.wait(gen, fd, interval=INTERVAL, timeout=timeout)
    except _WAIT_TIMEOUT:
        raise _Expired from None


_MASKS = {Wait.R: select.POLLIN, Wait.W: select.POLLOUT, Wait.RW: select.POLLIN | select.POLLOUT}


def _poll(gen: PQGen[RV], fd: int, deadline: float | None) -> RV:
    """:func:`_wait` for psycopg 3.2: blocking ``poll`` calls on ``fd`` until ``deadline`` (as ``wait_poll``)."""
    try:
        s = next(gen)
        poller = select.poll()
        poller.register(fd, _MASKS[s])
        while True:
            events = poller.poll(None if deadline is None else max(0, int((deadline - monotonic()) * 1000) + 1))
            if not events:
                raise _Expired
            ev = events[0][1]
            ready = (Ready.R if ev & select.POLLIN else Ready.NONE) | (Ready.W if ev & select.POLLOUT else Ready.NONE)
            if not ready:  # POLLERR, POLLHUP, POLLNVAL alone
                msg = "connection socket closed"
                raise e.OperationalError(msg)
            s = gen.send(ready)
            poller.modify(fd, _MASKS[s])
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except OSError as ex:
        msg = "connection socket closed"
        raise e.OperationalError(msg) from ex


def _cancel_is_bounded() -> bool:
    """Whether a cancel request can be sent with a timeout here (libpq 17 on, psycopg's waits taking one)."""
    return _WAIT_TIMEOUT is not None and psycopg.capabilities.has_cancel_safe()


class InlineConnection(psycopg.AsyncConnection[Any]):
    """An ``AsyncConnection`` whose waits block the thread when the sync API's caller runs the loop inline."""

    kept_since: float | None = None
    """When an inline sync caller's call last took it from the pool, while it stays kept for the next one
    (``Connection._keep``); ``None`` in the pool."""

    reaches: tuple[str, str] | None = None
    """The cluster's system identifier and the database this connection reaches, once a standby pool asked."""

    deadline: float | None = None
    """When the provider call holding this connection must end (``monotonic``), set by ``Connection.call``
    for an inline caller: every statement of the call waits only for what is left of the manager's timeout."""

    here = False
    """Set while the sync API's lane runs a statement on it right here (``Connection.now``): it waits blocking,
    as for an inline sync caller, its deadline that of the lane's call (:attr:`deadline`, :attr:`limit`)."""

    limit: float | None = None
    """With :attr:`here`: the manager's timeout (what :data:`~eventsource.inline.SYNC_TIMEOUT` holds for a call)."""

    _append_cursor: psycopg.AsyncCursor[Any] | None = None

    def append_cursor(self) -> psycopg.AsyncCursor[Any]:
        """The cursor the store's appends run on, kept with the connection.

        A statement run again on the cursor of its last run keeps psycopg's adapters (its ``Transformer`` and the
        dumpers it found): no cursor to build and no dumper to look up per append.
        """
        cur = self._append_cursor
        if cur is None or cur.closed:
            cur = self._append_cursor = self.cursor()
        return cur

    async def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """Wait as psycopg does; for an inline sync caller, block the thread (bounded by the manager's timeout)."""
        if kwargs.get("timeout") is not None or len(args) > 1 or not (self.here or inline_io_allowed()):
            return await super().wait(gen, *args, **kwargs)
        return self._wait_here(gen)

    def _wait_here(self, gen: PQGen[RV]) -> RV:
        limit = self.limit if self.here else SYNC_TIMEOUT.get()
        fd = self.pgconn.socket
        deadline = self.deadline
        checked = deadline is None and CHECK_DEADLINE.get() is not None
        if checked:
            deadline = CHECK_DEADLINE.get()  # an idle connection checked for a call: the call's deadline
        elif deadline is None and limit is not None:
            deadline = monotonic() + limit  # a statement outside a provider call (the pool's own, say)
        try:
            return _wait(gen, fd, deadline)
        except _Expired:
            if checked:  # no cancel to wait for: the pool drops a connection whose check failed
                self.pgconn.finish()
                msg = f"the pool's check of an idle connection outlived the manager's timeout ({limit}s)"
                raise StatementTimeoutError(msg) from None
            # the manager's timeout (nothing else can end a wait in this thread): cancel the statement, let
            # the server answer, and time out, also when the statement ended as the cancel came (as a task's
            # cancellation does): a commit's wait for a synchronous standby, cancelled, ends in success with a
            # warning, committed on the primary alone. It fires once: what runs on the way out (a ROLLBACK) is
            # not cut short
            self.deadline = None
            msg = f"the call did not finish within the manager's timeout ({limit}s): its statement was cancelled"
            try:
                self._after_cancel(gen, fd)
            except e.QueryCanceled:
                raise StatementTimeoutError(msg) from None
            raise StatementTimeoutError(f"{msg} as it ended: {UNKNOWN}") from None
        except (KeyboardInterrupt, SystemExit):
            if self.pgconn.transaction_status == TransactionStatus.ACTIVE:
                try:
                    self._after_cancel(gen, fd)
                except e.QueryCanceled:
                    pass
                except BaseException as ex:  # noqa: BLE001 - the interrupt is what the caller gets
                    log.warning("statement not ended after an interrupt (%s): closing the connection", ex)
                    self.pgconn.finish()
            raise

    def _cancel_within(self, limit: float) -> bool:
        """Send a cancel request, waiting at most ``limit`` seconds for the server to take it; whether it did.

        Not libpq's blocking ``PQcancel`` (``cancel()``): it waits for the server's answer holding the GIL, so a
        hung server (a stopped or unreachable host) froze every thread of the process until it came back.
        """
        if not _cancel_is_bounded():
            self.cancel()  # (libpq before 17: no other way)
            return True
        try:
            cancel = self.pgconn.cancel_conn()
            cancel.start()
            waiting.wait_conn(generators.cancel(cancel), interval=INTERVAL, timeout=limit)
        except Exception as ex:  # noqa: BLE001 - a cancel that failed or timed out: the caller closes the connection
            log.warning("query cancellation failed (%s): closing the connection", type(ex).__name__)
            return False
        return True

    def _after_cancel(self, gen: PQGen[RV], fd: int) -> RV:
        """Cancel the running statement and drive ``gen`` to its end (close the connection if it hangs)."""
        if not self._cancel_within(CANCEL_WAIT):
            self.pgconn.finish()  # a server that does not take a cancel request will not end the statement either
            msg = f"the server did not take the cancel request within {CANCEL_WAIT}s; connection closed: {UNKNOWN}"
            raise StatementTimeoutError(msg)
        try:
            return _wait(gen, fd, monotonic() + CANCEL_WAIT)
        except _Expired:
            self.pgconn.finish()  # the server never answered: the connection is in an unknown state
            msg = f"the statement did not end within {CANCEL_WAIT}s of its cancel request; connection closed: {UNKNOWN}"
            raise StatementTimeoutError(msg) from None

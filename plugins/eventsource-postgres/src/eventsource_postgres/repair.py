"""A pool an interrupt left broken: how to tell (psycopg_pool's internals), and how to let go of it.

Through the sync API the loop runs in the caller's thread during a call (``sync_inline``), so a Ctrl-C lands
wherever that thread is: in the call, in psycopg_pool's own code between taking a connection and handing it
over, in one of the pool's worker tasks (which dies of it), in the loop itself. After one
(:data:`~eventsource.inline.INTERRUPTS` moved), the store's next call asks :func:`broken` and, if so, swaps in a
new pool and drops the old one with :func:`discard`. Anything out of the ordinary counts as broken: a needless
swap costs a reconnect, a missed one every later call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool


def broken(pool: AsyncConnectionPool[Any], *, kept: AsyncConnection[Any] | None = None) -> bool:
    """Whether ``pool`` (open, no call of the store on it) may have lost a worker, a connection or a lock.

    Between calls every connection is idle in the pool but ``kept`` (one the store keeps for its next inline
    call), nobody waits for one, no upkeep is queued, its workers and scheduler are alive, and no connection's
    own lock (psycopg's, taken by every statement) is held: a Ctrl-C landing as a statement released it leaves
    it held, and every statement on that connection waits for it, the pool's check of its idle ones too
    (which loses to the pool those it had not checked yet when the call's deadline ends it). (A pool closed by
    the store is left as it is.)
    """
    if pool.closed:
        return False
    runner = pool._sched_runner  # noqa: SLF001 - psycopg_pool has no public health check
    tasks = [*pool._workers, runner]  # noqa: SLF001
    conns = [*pool._pool, *([] if kept is None else [kept])]  # noqa: SLF001
    return (
        runner is None
        or len(pool._workers) != pool.num_workers  # noqa: SLF001
        or any(task is None or task.done() for task in tasks)
        or bool(pool._waiting)  # noqa: SLF001
        or pool._lock.locked()  # noqa: SLF001
        or pool._sched._lock.locked()  # noqa: SLF001
        or pool._nconns != len(conns)  # noqa: SLF001
        or not pool._tasks.empty()  # noqa: SLF001
        or any(conn.lock.locked() for conn in conns)
    )


async def discard(pool: AsyncConnectionPool[Any]) -> None:
    """Close ``pool`` without waiting on anything in it (its lock, its tasks: either may be stuck for good).

    Its workers are told to stop (as on close()), its scheduler is cancelled, its idle connections and those
    handed to a client no longer waiting are closed; one a call still holds is closed when it comes back
    (``putconn`` on a closed pool), one lost in the interrupt when it is collected.
    """
    from psycopg_pool import PoolClosed
    from psycopg_pool.pool_async import StopWorker

    if pool.closed:
        return
    pool._closed = True  # noqa: SLF001 - getconn refuses, putconn closes, upkeep tasks are dropped
    for _ in pool._workers:  # noqa: SLF001 - each live one ends on its next turn, as on close()
        pool.run_task(StopWorker(pool))
    tasks = [*pool._workers, pool._sched_runner]  # noqa: SLF001
    pool._workers, pool._sched_runner = [], None  # noqa: SLF001
    for task in tasks:
        if task is None:
            continue
        if task.done():  # killed by the interrupt: seen here, not logged as never retrieved
            _ = task.cancelled() or task.exception()
        elif task is tasks[-1]:  # the scheduler
            task.cancel()
    conns = list(pool._pool)  # noqa: SLF001
    pool._pool.clear()  # noqa: SLF001
    waiting = list(pool._waiting)  # noqa: SLF001
    pool._waiting.clear()  # noqa: SLF001
    for pos in waiting:
        if pos.conn is not None:  # handed over, never taken: its client is gone
            conns.append(pos.conn)
        else:  # a client still waiting hears it, as from close()
            asyncio.get_running_loop().create_task(pos.fail(PoolClosed(f"the pool {pool.name!r} is closed")))
    for conn in conns:
        conn._pool = None  # noqa: SLF001
        await conn.close()  # (no wait: it ends the socket)

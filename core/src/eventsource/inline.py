"""Context a sync caller sets while its private event loop runs in its own thread, for stores that block anyway.

The sync API (:mod:`eventsource.syncloop`) marks each call's context; a provider whose driver blocks (SQLite, a
PostgreSQL pool in ``sync_inline`` mode) asks :func:`inline_io_allowed` and runs its statements right there.
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar
from typing import Any

SYNC_CALLER: ContextVar[int | None] = ContextVar("eventsource_sync_caller", default=None)
"""The thread id of a sync caller that runs its private event loop in its own thread (set by the sync API).

While it equals the current thread, the loop belongs to a blocked sync caller and nothing else runs on it, so a
provider whose driver blocks anyway may run a statement inline instead of handing it to a thread.
"""


SYNC_TIMEOUT: ContextVar[float | None] = ContextVar("eventsource_sync_timeout", default=None)
"""The manager's ``timeout`` for the sync caller of :data:`SYNC_CALLER` (set with it by the sync API).

Nothing can cancel a statement run inline, so a store that runs one should not let it wait (for a lock,
say) longer than this: ``timeout`` bounds every call.
"""


INTERRUPTS: list[int] = [0]
"""How many calls a sync caller ran inline ended by a ``BaseException`` that is no ``Exception`` (a Ctrl-C).

Landing anywhere in the caller's thread while the loop runs there (a driver's or a pool's own task, the
loop itself), it may leave a provider's shared state broken: a store compares this count with the one it
saw last, at the start of a call, and checks (and repairs) its state only when it moved.
"""


def inline_io_allowed() -> bool:
    """Whether blocking I/O may run inline: the running loop belongs to a sync caller waiting in this thread."""
    return SYNC_CALLER.get() == threading.get_ident()


CALL_TASK: ContextVar[list[asyncio.Task[Any] | None] | None] = ContextVar("eventsource_sync_call_task", default=None)
"""While a call's first step runs without a task (:meth:`eventsource.syncloop.SyncLoop.call`): a box that receives
the task the call goes on in if it has to wait, so what the first step armed against ``asyncio.current_task()``
(the manager's deadline timer) can still cancel it."""

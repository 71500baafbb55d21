"""Change detection for live subscriptions on SQLite: an in-process signal plus ``PRAGMA data_version``.

Appends made through this provider bump its :class:`~eventsource.subscriptions.ChangeSignal` after they
commit, which wakes waiting subscriptions at once. Commits from other connections (other processes, other
provider instances) show up as a change of ``PRAGMA data_version`` on the reader connection, polled every
:data:`CHANGE_POLL` seconds; only then is the head position read again. SQLite has one writer at a time, so
positions commit in order and a reader following ``position > last`` never skips a late commit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Awaitable, Callable

    from eventsource.subscriptions.signal import ChangeSignal

CHANGE_POLL = 0.005
"""Seconds between two ``PRAGMA data_version`` probes while a subscription waits."""


def head(db: sqlite3.Connection) -> int:
    """The highest position ever handed out (``AUTOINCREMENT`` never reuses one, even after deletes)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'es_events'").fetchone()
    return int(row[0]) if row is not None else 0


async def wait_for_change(
    read: Callable[[Callable[[sqlite3.Connection], int | None]], Awaitable[int | None]],
    changes: ChangeSignal,
    after_position: int,
    max_wait: float,
) -> None:
    """Return once the head passes ``after_position``, or after ``max_wait`` seconds.

    ``read`` runs a function on the reader connection. The head is read on entry and again whenever
    ``data_version`` moved or the in-process signal fired; both are taken before the read they guard.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait
    version: list[int | None] = [None]

    def probe(db: sqlite3.Connection) -> int | None:
        now = int(db.execute("PRAGMA data_version").fetchone()[0])
        if now == version[0]:
            return None
        version[0] = now
        return head(db)

    seen = changes.count
    while True:
        top = await read(probe)
        if top is not None and top > after_position:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        if await changes.wait(seen, min(remaining, CHANGE_POLL)):
            seen = changes.count
            version[0] = None  # our own commit: data_version of a shared connection does not show it

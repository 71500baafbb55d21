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
SQL_HEAD = "SELECT MAX(IFNULL((SELECT MAX(position) FROM es_events), 0), position) FROM es_head WHERE id = 1"


def has_after(db: sqlite3.Connection, after_position: int) -> bool:
    """Whether an event above ``after_position`` is stored (deleted ones don't count), by the primary key."""
    return bool(
        db.execute("SELECT EXISTS (SELECT 1 FROM es_events WHERE position > ?)", (after_position,)).fetchone()[0]
    )


def head(db: sqlite3.Connection) -> int:
    """The highest position ever handed out: the highest stored, or the highest deleted (``es_head``), if above."""
    row = db.execute(SQL_HEAD).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def wait_for_change(
    read: Callable[[Callable[[sqlite3.Connection], bool]], Awaitable[bool]],
    changes: ChangeSignal,
    after_position: int,
    max_wait: float,
) -> None:
    """Return once an event above ``after_position`` is stored, or after ``max_wait`` seconds.

    ``read`` runs a function on the reader connection. Stored events above ``after_position`` are looked
    for on entry and again whenever ``data_version`` moved or the in-process signal fired; both are taken
    before the look they guard. A position handed out to an event since deleted does not count, so a
    deleted tail never makes a waiter return at once, over and over.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait
    version: list[int | None] = [None]

    def probe(db: sqlite3.Connection) -> bool:
        now = int(db.execute("PRAGMA data_version").fetchone()[0])
        if now == version[0]:
            return False
        version[0] = now
        return has_after(db, after_position)

    seen = changes.count
    while True:
        if await read(probe):
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        if await changes.wait(seen, min(remaining, CHANGE_POLL)):
            seen = changes.count
            version[0] = None  # our own commit: data_version of a shared connection does not show it

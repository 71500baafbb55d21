"""SQLite: the counts' fold that follows an append is housekeeping; its failure must not fail the append.

The fold runs in its own write transaction after the append committed. Another connection holding the write lock
past ``busy_timeout`` at that moment made the committed append raise ``ProviderTimeoutError``, which the docs
call retryable with nothing written (review).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider, counts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

T0 = datetime(2022, 1, 1, tzinfo=UTC)


def new() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", T0)


def hold_lock_before_the_fold(provider: SqliteProvider, path: Path) -> tuple[sqlite3.Connection, threading.Event]:
    """Another connection takes the write lock between the append's commit and the fold's ``BEGIN IMMEDIATE``.

    The event is set once it holds it (the fold may run on the writer thread after the append returned).
    """
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    taken = threading.Event()
    seen = {"insert": False}

    def trace(sql: str) -> None:
        if sql.startswith("INSERT INTO es_events"):
            seen["insert"] = True
        elif sql == "BEGIN IMMEDIATE" and seen["insert"] and not other.in_transaction:
            other.execute("BEGIN IMMEDIATE")
            taken.set()

    assert provider._writer is not None and provider._writer.db is not None
    provider._writer.db.set_trace_callback(trace)
    return other, taken


@contextlib.asynccontextmanager
async def folding_next(
    tmp_path: Path, busy_timeout: float
) -> AsyncIterator[tuple[SqliteProvider, sqlite3.Connection, threading.Event]]:
    """A provider holding stream 's' at version 1 whose next append folds, the lock taken before that fold."""
    path = tmp_path / "f.db"
    p = SqliteProvider(f"sqlite:///{path}", busy_timeout=busy_timeout)
    await p.connect()
    try:
        await p.append("s", [new()], -1)
        p._unfolded = counts.FOLD_EVERY - 1  # the next append is the one after which the provider folds
        other, taken = hold_lock_before_the_fold(p, path)
        try:
            yield p, other, taken
        finally:
            other.close()
    finally:
        await p.close()


async def test_an_append_whose_fold_finds_the_lock_held_still_returns_its_result(tmp_path: Path) -> None:
    async with folding_next(tmp_path, busy_timeout=0.2) as (p, other, taken):
        event = new()
        result = await p.append("s", [event], 1)  # raised ProviderTimeoutError from the fold
        assert await asyncio.to_thread(taken.wait, 60)
        other.execute("ROLLBACK")
        assert result.first_version == 2
        assert (await p.get_event(event.event_id)) is not None
        assert (await p.stats()).total_events == 2


def test_a_sync_append_whose_fold_finds_the_lock_held_still_returns_its_result(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    p = SqliteProvider(f"sqlite:///{path}", busy_timeout=0.2)
    asyncio.run(p.connect())
    try:
        asyncio.run(p.append("s", [new()], -1))
        p._unfolded = counts.FOLD_EVERY - 1
        other, _ = hold_lock_before_the_fold(p, path)
        event = new()
        result = p.append_now("s", [event], 1, None, timeout=None)  # the sync API's inline append
        other.execute("ROLLBACK")
        assert result is not None and result.first_version == 2
        assert asyncio.run(p.get_event(event.event_id)) is not None
        other.close()
    finally:
        asyncio.run(p.close())


async def test_an_append_returns_without_waiting_for_its_fold(tmp_path: Path) -> None:
    """A caller's timeout that ran out while the fold waited for the lock reported the stored append as failed."""
    async with folding_next(tmp_path, busy_timeout=30) as (p, other, taken):
        event = new()
        try:
            result = await asyncio.wait_for(p.append("s", [event], 1), 10)  # the fold alone waits 30 s
        finally:
            assert await asyncio.to_thread(taken.wait, 60)
            other.execute("ROLLBACK")
        assert result.first_version == 2
        assert (await p.get_event(event.event_id)) is not None
        assert (await p.stats()).total_events == 2

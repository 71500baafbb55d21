"""The SQLite provider's WAL checkpoint thread: a failure shows in ``health()`` and the log, and passes.

The failure is real: the database's folder is renamed while the provider runs and a file put in its place,
so the thread's connection (opened by path on its first checkpoint) cannot open (the writer refuses to commit
meanwhile: its files are not at their path). Put back, the next checkpoint works and health is as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import sqlite3
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.sqlite.checkpoints import CHECKPOINT_EVERY

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import FolderStore, OpenSqlite
    from eventsource.sqlite import SqliteProvider


async def _a_pokes_worth(p: SqliteProvider) -> None:
    """Single-event appends enough to poke the thread (a batch counts by the WAL it writes, far below n)."""
    for _ in range(CHECKPOINT_EVERY):
        await p.append("s", _events(1), ANY)


def _events(n: int, size: int = 0) -> list[NewEvent]:
    now = utcnow()
    return [
        NewEvent(
            event_id=f"e-{i}-{uuid.uuid4().hex}",
            event_type="T",
            data=b'"' + b"a" * size + b'"' if size else b"{}",
            metadata=b"",
            encoding="json",
            timestamp=now,
        )
        for i in range(n)
    ]


async def _until(check: object, what: str) -> None:
    for _ in range(3000):  # the thread runs on its own: a bounded wait for it, never a time asserted
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_a_failing_checkpoint_is_reported_in_health_and_logged_and_the_thread_recovers(
    folder_store: FolderStore, caplog: pytest.LogCaptureFixture
) -> None:
    p, checkpoints, folder = folder_store.provider, folder_store.checkpoints, folder_store.folder
    before = await p.health()
    assert "faults" not in before.details
    folder_store.move_away()
    folder.write_text("")  # in the way of the folder the thread's connection opens the file in
    with caplog.at_level(logging.WARNING, logger="eventsource.sqlite"):
        checkpoints.poke()  # (no write: the writer refuses while its files are not at their path)
        await _until(lambda: checkpoints.error is not None, "the checkpoint failed")
    folder.unlink()
    folder_store.move_back()
    health = await p.health()  # what it knows: the last checkpoint failed
    assert health.healthy  # the store answers
    assert health.details["status"] == "degraded", health.message
    [fault] = health.details["faults"]
    assert fault["component"] == "wal_checkpoints"
    assert "Not a directory" in fault["error"]  # (the file in the way of its folder)
    assert "wal_checkpoints" in health.message
    assert any("checkpoint" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    done, thread = checkpoints.done, checkpoints._thread
    await _a_pokes_worth(p)  # the same thread tries again
    await _until(lambda: checkpoints.done > done, "a checkpoint after the failure")
    assert checkpoints._thread is thread  # the thread kept working through the failure
    after = await p.health()
    assert "faults" not in after.details
    assert after.details["status"] == before.details["status"]
    assert after.details["wal_checkpoints"]["failures"] >= 1  # (health's own retry may have failed too)


@pytest.mark.parametrize("gone", ["removed", "replaced"])
async def test_the_checkpoint_thread_checkpoints_only_the_store_s_own_database(
    folder_store: FolderStore, gone: str
) -> None:
    # the thread opens its connection by path (on its first checkpoint, and again after a failure); with the
    # folder gone it made the folder and a new, empty database there (or opened the other database put in its
    # place), checkpointed that, and health said ok, while the writer kept committing to its own file, still
    # open, whose WAL was then never checkpointed (the writer now refuses to commit there too: see
    # test_sqlite_hostile.py; the thread is poked directly)
    p, checkpoints, folder = folder_store.provider, folder_store.checkpoints, folder_store.folder
    folder_store.move_away()
    if gone == "replaced":
        folder.mkdir()
        with contextlib.closing(sqlite3.connect(folder / "events.db")) as other:
            other.execute("PRAGMA journal_mode = WAL")
            other.execute("CREATE TABLE t (x)")
    checkpoints.poke()
    await _until(lambda: checkpoints.error is not None or checkpoints.done > 0, "the thread ran")
    assert checkpoints.done == 0, "the checkpoint thread checkpointed another database at the store's path"
    assert folder.exists() == (gone == "replaced"), "the checkpoint thread created a database"
    health = await p.health()
    assert not health.healthy
    assert "moved, removed or replaced" in health.message


async def test_health_retries_a_failed_checkpoint_on_an_idle_store(folder_store: FolderStore) -> None:
    # the thread retried only when writes poked it: after one failure an idle store stayed degraded (and
    # health --strict exited 7) however long ago the cause went away
    p, checkpoints = folder_store.provider, folder_store.checkpoints
    folder_store.move_away()
    checkpoints.poke()
    await _until(lambda: checkpoints.error is not None, "the checkpoint failed")
    folder_store.move_back()  # the cause goes away; no more writes come
    assert (await p.health()).details["status"] == "degraded"  # health says what it knows: the last one failed
    healthy: list[bool] = []

    async def check() -> None:
        healthy.append("faults" not in (await p.health()).details)

    for _ in range(300):  # bounded: the retry runs on the thread
        await check()
        if healthy[-1]:
            break
        await asyncio.sleep(0.01)
    assert healthy[-1], "health stayed degraded on an idle store after the cause went away"
    assert checkpoints.done >= 1


async def test_an_append_commits_when_the_checkpoint_it_runs_first_fails(
    tmp_path: Path, open_sqlite: OpenSqlite
) -> None:
    # the append after a finished checkpoint first copies what the thread left, on the writer's connection
    # (checkpoints.finish_then); that copy must not fail the append. A real failure: the file may not grow
    # (RLIMIT_FSIZE at its size; Python ignores SIGXFSZ, so the write gets EFBIG) and the pages left to copy
    # lie past its end, while the append's own frames fit in the WAL
    path = tmp_path / "events.db"
    p = await open_sqlite(path)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        checkpoints = p._checkpoints
        assert checkpoints is not None
        for b in range(40):  # a file far larger than the WAL will be
            await p.append("fill", _events(50, size=3000), b * 50)
        done = checkpoints.done
        checkpoints.poke()
        await _until(lambda: checkpoints.done > done, "a checkpoint")
        assert checkpoints.copied  # so the next append copies first
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:  # pages past the file's end
            other.execute("CREATE TABLE filler (x)")
            other.execute("INSERT INTO filler VALUES (zeroblob(200000))")
        size = path.stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, limit[1]))
        try:
            result = await p.append("s", _events(1), 0)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        assert path.stat().st_size == size  # (the copy was refused: nothing went past the limit)
        assert result.last_version == 1
        assert [e.event_id async for e in p.read_stream("s")] == list(result.event_ids)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)

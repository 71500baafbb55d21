"""SQLite's v3 position rule and off-writer WAL checkpoints under attack (review of issues #10, #12, #17).

A process still running the v2 code on a file another process migrated, and a workload whose writes never
poke the checkpoint thread, on real files and real processes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import textwrap
import uuid
from asyncio.subprocess import PIPE
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from eventsource.model import NewEvent, NewSnapshot, NewStream
from eventsource.sqlite import SqliteProvider
from eventsource.sqlite.checkpoints import WAL_BACKSTOP_PAGES
from eventsource.sqlite.schema import MIGRATIONS

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2022, 1, 1, tzinfo=UTC)

# what the v2 provider ran for an append: the position left to AUTOINCREMENT (the rowid, since v3)
V2_INSERT = (
    "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp) "
    "VALUES (?, ?, 'E', ?, x'7b7d', x'7b7d', 'json', 0)"
)
V2_PROCESS = textwrap.dedent(
    """
    import sqlite3, sys, uuid
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    print(db.execute("PRAGMA user_version").fetchone()[0], flush=True)  # connected while the file is at v2
    for line in sys.stdin:  # one append per line: stream id and version
        sid, version = line.split()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(sys.argv[2], (str(uuid.uuid4()), sid, int(version)))
            pos = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            db.execute("COMMIT")
            print("ok", pos, flush=True)
        except sqlite3.Error as e:
            db.execute("ROLLBACK")
            print("refused", type(e).__name__, str(e).replace(chr(10), " "), flush=True)
    """
)


def new() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", T0)


async def test_a_process_still_on_v2_code_cannot_reuse_a_deleted_position(tmp_path: Path) -> None:
    """The v2 code checks the schema version only when it connects; its appends go on after another process
    migrated the file, taking rowid = highest stored + 1: a position delete_stream of the newest stream freed,
    which a subscriber that read up to it skips for good. Such an insert must fail rather than reuse it."""
    path = tmp_path / "v2.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    for v in (1, 2):
        for statement in MIGRATIONS[v]:
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 2")
    raw.close()
    old = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        V2_PROCESS,
        str(path),
        V2_INSERT,
        stdin=PIPE,
        stdout=PIPE,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert old.stdin is not None
    assert old.stdout is not None
    try:
        assert (await old.stdout.readline()).strip() == b"2"
        p = SqliteProvider(f"sqlite:///{path}")
        await p.connect()  # migrates to v3 under the old process's feet
        try:
            await p.append("a", [new(), new()], 0)
            top = (await p.append("b", [new(), new()], 0)).positions[-1]
            await p.delete_stream("b")  # the newest stream: positions top-1, top are gone
            assert await p.head_position() == top
            old.stdin.write(b"a 3\n")
            await old.stdin.drain()
            answer = (await old.stdout.readline()).decode().split()
            assert answer[0] == "refused", f"the v2 process appended at position {answer[1]}, handed out before"
            assert [e.position async for e in p.read_all()] == [1, 2]  # the store unchanged
            assert (await p.append("a", [new()], 2)).positions == (top + 1,)
        finally:
            await p.close()
    finally:
        old.stdin.close()
        await asyncio.wait_for(old.wait(), 60)


@pytest.mark.parametrize("writes", ["snapshots", "create_stream"])
async def test_the_wal_stays_bounded_when_no_write_pokes_the_checkpoint_thread(tmp_path: Path, writes: str) -> None:
    """The writer's own automatic checkpoints were off; only appends, retention and delete_stream poked the thread.
    Snapshots (or rewrite_events, create_stream...) alone grew the WAL without bound; so would a thread that
    lags or keeps failing. SQLite's own checkpoint stays on as a backstop, far above where the thread works."""
    path = tmp_path / "w.db"
    p = SqliteProvider(f"sqlite:///{path}")
    await p.connect()
    try:
        await p.append("s", [new()], 0)
        data = os.urandom(12_000)  # a few overflow pages per write
        for i in range(2500):
            if writes == "snapshots":
                await p.save_snapshot(NewSnapshot(f"snap-{i % 2}", "s", 1, data, b"{}", "bytes", T0))
            else:  # never pokes the thread: the backstop alone bounds the WAL
                await p.create_stream(NewStream(f"s{i}", metadata={"blob": data.hex()[:12_000]}))
        raw = sqlite3.connect(path)
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
        raw.close()
        wal_pages = (path.parent / (path.name + "-wal")).stat().st_size // page_size
        assert wal_pages < WAL_BACKSTOP_PAGES + 1000, f"the WAL grew to {wal_pages} pages"
    finally:
        await p.close()

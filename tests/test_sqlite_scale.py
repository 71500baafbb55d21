"""SQLite at scale (issue #17): the v2 migration from a v1 file, counts that stay exact through folds and deletes
across instances, and query plans that find every filter's page through an index."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import TYPE_CHECKING

import pytest
from eventsource.model import ANY, EventFilter, NewEvent
from eventsource.sqlite.checkpoints import WAL_BACKSTOP_PAGES, Checkpointer
from eventsource.sqlite.counts import FOLD_EVERY, SQL_STREAM_TAIL, SQL_TAIL
from eventsource.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import OpenSqlite
    from eventsource.sqlite import SqliteProvider

T0 = datetime(2022, 1, 1, tzinfo=UTC)


def new(event_type: str = "E", days: int = 0, **kw: str) -> NewEvent:
    return NewEvent(str(uuid.uuid4()), event_type, b"{}", b"{}", "json", T0 + timedelta(days=days), **kw)  # type: ignore[arg-type]


async def recount(p: SqliteProvider) -> tuple[dict[str, int], dict[str, int]]:
    by_type: dict[str, int] = {}
    by_stream: dict[str, int] = {}
    async for e in p.read_all():
        by_type[e.event_type] = by_type.get(e.event_type, 0) + 1
        by_stream[e.stream_id] = by_stream.get(e.stream_id, 0) + 1
    return by_type, by_stream


async def assert_exact(p: SqliteProvider) -> None:
    by_type, by_stream = await recount(p)
    st = await p.stats()
    assert st.events_by_type == by_type
    assert st.total_events == sum(by_type.values())
    assert {k: n for k, n in st.events_by_stream.items() if n} == by_stream
    assert st.estimated == ()


def old_file(path: Path, version: int, events: list[tuple[str, str, int, str | None]]) -> None:
    """A file at schema ``version`` built by that version's own statements, holding ``events``
    (stream, type, version, tenant), inserted as that version's provider did (positions by AUTOINCREMENT)."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    for v in range(1, version + 1):
        for statement in MIGRATIONS[v]:
            raw.execute(statement)
    raw.execute(f"PRAGMA user_version = {version}")
    us = int(T0.timestamp() * 1e6)
    for sid in dict.fromkeys(e[0] for e in events):
        raw.execute(
            "INSERT INTO es_streams (stream_id, version_floor, deleted_count, created_at, updated_at, metadata) "
            "VALUES (?, 0, 0, ?, ?, '{}')",
            (sid, us, us),
        )
    for sid, event_type, version_, tenant in events:
        raw.execute(
            "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp, "
            "tenant_id) VALUES (?, ?, ?, ?, ?, x'7b7d', 'json', ?, ?)",
            (str(uuid.uuid4()), sid, event_type, version_, f'{{"v": {version_}}}'.encode(), us + version_, tenant),
        )
    raw.close()


async def test_a_v1_file_migrates_with_counts_backfilled(tmp_path: Path, open_sqlite: OpenSqlite) -> None:
    path = tmp_path / "v1.db"
    old_file(path, 1, [("a", "X", 1, None), ("a", "Y", 2, None), ("a", "X", 3, None), ("b", "Y", 1, None)])
    p = await open_sqlite(path)
    st = await p.stats(top_streams=1)
    assert st.events_by_type == {"X": 2, "Y": 2}
    assert st.events_by_stream == {"a": 3}
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    raw.close()
    assert {"es_events_type_position", "es_events_tenant", "es_events_correlation"} <= names
    await p.append("b", [new("Z")], 1)
    await assert_exact(p)


def dump(path: Path) -> tuple[list[tuple[object, ...]], set[str]]:
    """Every event row (by position) and the names of the events table's indexes and triggers."""
    raw = sqlite3.connect(path)
    rows = raw.execute("SELECT * FROM es_events ORDER BY position").fetchall()
    sql = "SELECT name FROM sqlite_master WHERE tbl_name = 'es_events' AND type = 'index'"
    names = {r[0] for r in raw.execute(sql)}
    raw.close()
    return rows, names


async def test_a_v2_file_upgrades_in_place_with_rows_positions_and_the_head_kept(
    tmp_path: Path, open_sqlite: OpenSqlite
) -> None:
    path = tmp_path / "v2.db"
    events = [("a", "X", 1, "t1"), ("a", "Y", 2, None), ("b", "X", 1, "t2"), ("a", "X", 3, None), ("c", "Z", 1, None)]
    old_file(path, 2, events)
    raw = sqlite3.connect(path, isolation_level=None)  # v2's delete_stream of the newest stream: position 5 is gone
    raw.execute("DELETE FROM es_events WHERE stream_id = 'c'")
    raw.execute("DELETE FROM es_streams WHERE stream_id = 'c'")
    assert raw.execute("SELECT seq FROM sqlite_sequence WHERE name = 'es_events'").fetchone()[0] == 5
    raw.close()
    rows, indexes = dump(path)
    p = await open_sqlite(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    table = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'es_events'").fetchone()[0]
    raw.close()
    assert "AUTOINCREMENT" not in table
    assert dump(path) == (rows, indexes)  # every row, column and position; every index
    assert [e.position async for e in p.read_all()] == [1, 2, 3, 4]
    assert await p.head_position() == 5  # the deleted newest position still counts as handed out
    r = await p.append("c", [new("Z")], -1)
    assert r.positions == (6,)  # never 5 again
    page = await p.query(EventFilter(tenant_id="t2"), limit=10, offset=0)
    assert [e.stream_id for e in page.events] == ["b"]
    await assert_exact(p)


async def test_positions_are_never_reused_after_the_newest_events_are_deleted(open_sqlite: OpenSqlite) -> None:
    p = await open_sqlite()
    q = await open_sqlite(p.path)
    await p.append("a", [new(), new()], 0)
    top = (await p.append("b", [new(), new(), new()], 0)).positions[-1]
    await p.delete_stream("b")
    assert (await q.append("c", [new()], 0)).positions == (top + 1,)  # another connection, the same head
    assert (await p.append("c", [new()], 1)).positions == (top + 2,)  # the one-statement path
    assert await p.delete_events_before(T0 + timedelta(days=1)) == 4  # every event of the store
    assert await q.head_position() == top + 2
    assert (await q.append("d", [new(), new()], 0)).positions == (top + 3, top + 4)  # the batch path
    await assert_exact(q)


async def test_counts_stay_exact_across_folds_deletes_and_a_second_instance(open_sqlite: OpenSqlite) -> None:
    p = await open_sqlite()
    q = await open_sqlite(p.path)
    for i in range(5):  # past FOLD_EVERY through p: the counts fold, some events lie above the fold
        await p.append(f"s{i}", [new("A" if j % 3 else "B", days=j % 10) for j in range(1000)], 0)
    await p.append("s4", [new("C", days=9) for _ in range(7)], 1000)
    counted = await p._read("t", lambda db: db.execute("SELECT position FROM es_counted").fetchone()[0])
    assert counted == 5000  # folded on the append that crossed FOLD_EVERY; 7 events above it
    await assert_exact(p)
    # another instance appends a long tail p never folded: stats fold it (or count it) and stay exact
    for i in range(5):
        await q.append(f"q{i}", [new("Q") for _ in range(FOLD_EVERY)], 0)
    await assert_exact(p)
    await p.delete_stream("s0")  # folded events
    await q.delete_stream("q4")  # events above the fold
    await assert_exact(p)
    assert await p.truncate_stream("s1", 2500) == 1000
    assert await p.truncate_stream("s2", 400) == 399
    await assert_exact(p)
    assert await p.delete_events_before(T0 + timedelta(days=5)) > 0  # folded and unfolded, several batches
    await assert_exact(q)
    await q.append("q0", [new("B")], FOLD_EVERY)
    await assert_exact(q)
    info = await p.get_stream_info("s3")
    assert info is not None
    assert (info.version, info.event_count) == (1000, 500)
    info = await p.get_stream_info("s4")
    assert info is not None
    assert (info.version, info.event_count) == (1007, 507)


@pytest.mark.parametrize(
    ("flt", "index"),
    [
        (EventFilter(event_types=("A",)), "es_events_type_position"),
        (EventFilter(tenant_id="t"), "es_events_tenant"),
        (EventFilter(correlation_id="c"), "es_events_correlation"),
        (EventFilter(aggregate_id="g"), "es_events_aggregate"),
        (EventFilter(aggregate_type="T"), "es_events_aggregate_type"),
        (EventFilter(stream_id="s"), "es_events_stream_version"),
        (EventFilter(from_timestamp=T0, to_timestamp=T0), "es_events_timestamp"),
    ],
)
async def test_each_filter_finds_its_page_through_an_index(
    sqlite_provider: SqliteProvider, flt: EventFilter, index: str
) -> None:
    p = sqlite_provider
    await p.append("s", [new("A", tenant_id="t", correlation_id="c", aggregate_id="g", aggregate_type="T")], 0)
    statements: list[str] = []
    reader = p._reader or p._writer
    assert reader is not None
    assert reader.db is not None
    await p._read("t", lambda db: db.set_trace_callback(statements.append))  # bound values expanded
    for count in ("none", "exact"):
        statements.clear()
        page = await p.query(flt, limit=10, offset=0, count=count)  # type: ignore[arg-type]
        assert len(page.events) == 1
        explained = [s for s in statements if s.startswith(("SELECT event_id", "SELECT COUNT(*) FROM es_events"))]
        plans = [
            r[3]
            for s in explained
            for r in await p._read("t", lambda db, s=s: db.execute("EXPLAIN QUERY PLAN " + s).fetchall())
        ]
        assert plans
        assert any(index in line for line in plans), plans
        assert not any(line.startswith("SCAN es_events") and "INDEX" not in line for line in plans), plans


@pytest.mark.parametrize("sql", [SQL_TAIL, SQL_STREAM_TAIL])
async def test_the_counts_tail_is_read_through_the_primary_key(sqlite_provider: SqliteProvider, sql: str) -> None:
    p = sqlite_provider
    for i in range(20):
        await p.append(f"s{i}", [new() for _ in range(50)], 0)
    await p._write("t", lambda db: db.execute("ANALYZE"))  # statistics that tempt the planner to an index
    plan = await p._read("t", lambda db: db.execute("EXPLAIN QUERY PLAN " + sql, (990,)).fetchall())
    assert any("PRIMARY KEY" in r[3] for r in plan), plan
    assert not any(r[3].startswith("SCAN") for r in plan), plan


async def test_counts_stay_exact_when_a_retention_run_is_killed_midway(tmp_path: Path, open_sqlite: OpenSqlite) -> None:
    path = tmp_path / "k.db"
    p = await open_sqlite(path)
    for i in range(40):
        await p.append(f"s{i}", [new("A" if j % 2 else "B", days=j % 30) for j in range(500)], 0)
    await p.close()
    script = (
        "import asyncio, sys\n"
        "from datetime import UTC, datetime\n"
        "from eventsource.sqlite import SqliteProvider\n"
        "async def main():\n"
        f"    p = SqliteProvider({f'sqlite:///{path}'!r})\n"
        "    await p.connect()\n"
        "    print('go', flush=True)\n"
        "    await p.delete_events_before(datetime(2100, 1, 1, tzinfo=UTC))\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"go"
    while True:  # kill it once some batches have committed, whatever batch it is in then
        raw = sqlite3.connect(path)
        left = raw.execute("SELECT COUNT(*) FROM es_events").fetchone()[0]
        raw.close()
        if left < 20_000:
            break
        await asyncio.sleep(0.005)
    proc.kill()
    await proc.wait()
    p = await open_sqlite(path)
    await assert_exact(p)
    for i in range(40):
        info = await p.get_stream_info(f"s{i}")
        assert info is not None
        assert info.version == 500
        assert info.event_count == len([e async for e in p.read_stream(f"s{i}")])


async def test_the_writer_never_checkpoints_a_thread_of_its_own_does_through_retention(
    sqlite_provider: SqliteProvider,
) -> None:
    """A commit that checkpoints holds the write lock while it copies the WAL: an append behind it waits."""
    p = sqlite_provider

    def mark(db: sqlite3.Connection) -> int:
        return int(db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    try:
        assert await p._write("t", mark) == WAL_BACKSTOP_PAGES  # (far above where the thread works)
        for i in range(10):  # 2,400 events to delete: each 128 deleted poke the checkpoint thread
            await p.append(f"s{i}", [new(days=j % 10) for j in range(300)], 0)
        checkpoints = p._checkpoints
        assert checkpoints is not None
        before = await settled(checkpoints)  # the setup's own checkpoints: not what this test is about
        run = asyncio.ensure_future(p.delete_events_before(T0 + timedelta(days=8)))
        appended = 0
        while not run.done():  # the run pauses after each batch: appends go in between
            await p.append("w", [new(days=20)], appended)
            appended += 1
        assert await run == 2400
        assert appended > 0
        for _ in range(3000):  # the checkpoints run on their thread: wait for one to be done (a bounded wait)
            if checkpoints.done > before:
                break
            await asyncio.sleep(0.01)
        assert checkpoints.done > before
        assert checkpoints.error is None
        assert await p._write("t", mark) == WAL_BACKSTOP_PAGES
        await assert_exact(p)
    finally:
        await p.close()  # here: the thread must be gone once it returns
    assert not any(t.name == "eventsource-sqlite-c" and t.is_alive() for t in threading.enumerate())


async def settled(checkpoints: Checkpointer) -> int:
    """How many checkpoints the thread has done once it stops doing more (a bounded wait)."""
    done = -1
    for _ in range(300):
        if checkpoints.done == done:
            break
        done = checkpoints.done
        await asyncio.sleep(0.05)
    return int(checkpoints.done)


def count_pokes(p: SqliteProvider) -> list[int]:
    """A list that grows by one each time ``p`` pokes its WAL checkpoint thread."""
    checkpoints = p._checkpoints
    assert checkpoints is not None
    pokes: list[int] = []
    poke = checkpoints.poke
    checkpoints.poke = lambda: (pokes.append(1), poke())  # type: ignore[method-assign]
    return pokes


async def test_a_batch_counts_toward_a_checkpoint_by_the_wal_it_writes_not_as_commits_per_event(
    sqlite_provider: SqliteProvider,
) -> None:
    """A commit of 100 events writes about 20-140 WAL pages, not the ~500 of 100 one-event commits.

    Counted per event, a stream of such batches poked the checkpoint thread every commit or two (two syncs each,
    beside the writer's own); single appends keep their rate: one poke per CHECKPOINT_EVERY commits.
    """
    from eventsource.sqlite.checkpoints import CHECKPOINT_EVERY

    p = sqlite_provider
    pokes = count_pokes(p)
    for b in range(20):
        await p.append("batches", [new() for _ in range(100)], b * 100)
    assert 1 <= len(pokes) <= 5, f"{len(pokes)} pokes for 20 batches of 100"
    pokes.clear()
    for v in range(CHECKPOINT_EVERY):
        await p.append("singles", [new()], v)
    assert len(pokes) == 1


async def test_big_payloads_poke_the_checkpointer_by_the_pages_they_fill(sqlite_provider: SqliteProvider) -> None:
    """A poke comes before SQLite's 1,000 WAL pages whatever the payload size, not only for small events.

    Counted by events alone (1 + 2(n - 1)/7 for a batch), 50 KB payloads filled ~6,000 pages (each byte of
    payload lands in a page the commit writes) before the thread heard of them: the writer's 4,000-page backstop,
    which checkpoints inside a commit, became what kept the WAL.
    """
    page = 4096

    def big(size: int) -> NewEvent:
        return NewEvent(str(uuid.uuid4()), "E", b'"' + b"a" * size + b'"', b"{}", "json", T0)

    p = sqlite_provider
    pokes = count_pokes(p)
    payload = 0
    for b in range(10):
        batch = [big(50_000) for _ in range(50)]
        payload += sum(e.size for e in batch)
        await p.append("batches", batch, b * 50)
    assert len(pokes) >= payload // page // 1000, f"{len(pokes)} pokes for {payload // page} pages of payload"
    pokes.clear()
    payload = 0
    for v in range(40):
        one = big(200_000)
        payload += one.size
        await p.append("singles", [one], v)
    assert len(pokes) >= payload // page // 1000, f"{len(pokes)} pokes for {payload // page} pages of payload"


async def test_the_wal_stays_bounded_under_back_to_back_batches_of_big_payloads(
    tmp_path: Path, open_sqlite: OpenSqlite
) -> None:
    """150 MB in batches of 100 events of 50 KB: the WAL file never grows past the backstop and a few commits.

    Under back-to-back commits the thread's passive checkpoints never leave the WAL fully copied when the writer
    begins; with batches this big the thread is mostly still copying when the next append would finish its copy
    (checkpoints.finish_then), so mostly the writer's backstop (a checkpoint in its commit) restarts the WAL; a
    poke that arrives while the thread is still copying is dropped, so the thread does not hold the checkpoint
    lock at the moment that backstop runs (with every poke queued, this pattern grew the WAL to about 12,000
    pages).
    """
    p = await open_sqlite(tmp_path / "wal.db")
    wal = tmp_path / "wal.db-wal"
    frame = 4096 + 24
    largest = 0
    for b in range(30):
        batch = [NewEvent(str(uuid.uuid4()), "E", b'"' + b"a" * 50_000 + b'"', b"{}", "json", T0) for _ in range(100)]
        await p.append("big", batch, b * 100)
        largest = max(largest, wal.stat().st_size // frame)
    written = 30 * 100 * 50_000 // 4096
    assert written > 3 * WAL_BACKSTOP_PAGES  # (the bound below is not just the total written)
    assert largest <= 2 * WAL_BACKSTOP_PAGES, f"the WAL reached {largest} pages"
    checkpoints = p._checkpoints
    assert checkpoints is not None
    assert checkpoints.done > 0


def test_back_to_back_single_appends_keep_the_wal_near_the_checkpoint_interval(tmp_path: Path) -> None:
    """1,500 one-event commits back to back through the sync API: the WAL file stays far below the backstop.

    The thread's passive checkpoint always leaves the commits made while it copied, so SQLite never restarted
    the WAL and the file grew to the 4,000-page backstop (each commit's sync then also wrote the file's new
    size). The writer now copies that remainder before its next write, which restarts the WAL.
    """
    from eventsource.sync import SyncEventSourcingManager

    wal = tmp_path / "b.db-wal"
    frame = 4096 + 24
    largest = 0
    with SyncEventSourcingManager({"providers": {"s": {"url": f"sqlite:///{tmp_path}/b.db"}}}) as m:
        for v in range(1500):
            m.append_event(stream_id="s", event_type="E", data={"n": v}, expected_version=v)
            largest = max(largest, wal.stat().st_size // frame)
        checkpoints = m.get_provider()._checkpoints  # type: ignore[attr-defined]
        assert checkpoints.done > 0
    assert largest < WAL_BACKSTOP_PAGES // 2, f"the WAL reached {largest} pages"


async def test_concurrent_async_appends_keep_the_wal_near_the_checkpoint_interval(
    tmp_path: Path, open_sqlite: OpenSqlite
) -> None:
    """The same through the async API: four tasks append back to back (on the writer thread, not inline)."""
    wal = tmp_path / "c.db-wal"
    frame = 4096 + 24
    largest = 0
    p = await open_sqlite(tmp_path / "c.db")

    async def appends(stream_id: str) -> None:
        nonlocal largest
        for v in range(400):
            await p.append(stream_id, [new()], v)
            largest = max(largest, wal.stat().st_size // frame)

    await asyncio.gather(*(appends(f"s{i}") for i in range(4)))
    checkpoints = p._checkpoints
    assert checkpoints is not None
    assert checkpoints.done > 0
    assert largest < WAL_BACKSTOP_PAGES // 2, f"the WAL reached {largest} pages"


def count_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the sleeps a SQLite retention run takes between its batches (and still take them)."""
    from eventsource.sqlite import maintenance
    from eventsource.testing.retention import record_pauses

    return record_pauses(monkeypatch, maintenance)


async def append_until(p: SqliteProvider, stop: asyncio.Event) -> int:
    """A writer: one event after another to stream ``w`` until ``stop`` is set; how many it appended."""
    n = 0
    while not stop.is_set():
        await p.append("w", [new(days=999)], ANY)
        n += 1
    return n


@pytest.mark.parametrize("quiet", [True, False])
async def test_retention_with_no_write_of_its_provider_near_runs_longer_batches_still_paused(
    tmp_path: Path, open_sqlite: OpenSqlite, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    # an operator's retention job (its own provider, nothing else written through it) kept the 0.25 ms
    # batches (2 events each) and 4x pauses meant for its writers: 1,000,000 events took about 16 minutes
    from eventsource.pacing import Pacer
    from eventsource.sqlite import maintenance
    from eventsource.timestamps import to_us

    p = await open_sqlite(tmp_path / "q.db")
    for s in range(4):
        await p.append(f"s{s}", [new(days=d) for d in range(500)], ANY)
    pauses = count_pauses(monkeypatch)
    sizes: list[int] = []

    def batch(size: int, db: sqlite3.Connection) -> tuple[int, bool]:
        sizes.append(size)
        return maintenance.delete_old_batch(to_us(T0 + timedelta(days=400)), None, size, db)

    async def write(op: str, fn: Callable[[sqlite3.Connection], tuple[int, bool, float]]) -> tuple[int, bool, float]:
        n, done, _ = await p._write(op, fn)
        return n, done, 0.0004  # each batch as if it held the lock 0.4 ms: over the busy target, under the quiet one

    deleted = await maintenance.in_batches(
        write, "delete_events_before", batch, last=maintenance.Batches(8),
        pace=Pacer(maintenance.RETENTION_PAUSE, 0.0),  # (each batch's pause paid at once)
        quiet=lambda: quiet, written=lambda n: None,
    )  # fmt: skip
    assert deleted == 1600
    assert max(sizes) >= (64 if quiet else 8)
    assert sizes[-2] == (min(maintenance.RETENTION_BATCH, 2 ** (len(sizes) + 1)) if quiet else 2)
    assert pauses  # paused either way: writers of other processes wait in SQLite's busy handler, unseen
    assert pauses[-1] == pytest.approx(0.0004 * (maintenance.QUIET_PAUSE if quiet else maintenance.RETENTION_PAUSE))
    assert (await p.stats()).total_events == 400


def test_a_provider_is_quiet_until_a_write_and_for_a_while_after() -> None:
    from eventsource.sqlite import SqliteProvider
    from eventsource.sqlite.maintenance import QUIET_AFTER

    p = SqliteProvider("sqlite:///:memory:")
    assert p._quiet()
    p._wrote_at = monotonic() - QUIET_AFTER / 2
    assert not p._quiet()
    p._wrote_at = monotonic() - QUIET_AFTER * 1.5
    assert p._quiet()


async def test_retention_pauses_for_a_writer_appending_meanwhile(
    tmp_path: Path, open_sqlite: OpenSqlite, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = await open_sqlite(tmp_path / "w.db")
    for s in range(4):
        await p.append(f"s{s}", [new(days=d) for d in range(500)], ANY)
    pauses = count_pauses(monkeypatch)
    stop = asyncio.Event()
    task = asyncio.create_task(append_until(p, stop))
    await asyncio.sleep(0)
    assert await p.delete_events_before(T0 + timedelta(days=400)) == 1600
    stop.set()
    appended = await task
    assert pauses  # the writer gets the lock between batches
    assert (await p.stats()).total_events == 400 + appended


async def test_retention_runs_at_once_on_one_provider_with_a_writer_and_one_cancelled_keep_counts_exact(
    tmp_path: Path, open_sqlite: OpenSqlite
) -> None:
    # the pauses owed are the provider's (one schedule for every run): two runs and a truncation at once,
    # a writer appending meanwhile, one run cancelled mid-way
    p = await open_sqlite(tmp_path / "c.db")
    for s in range(8):
        await p.append(f"s{s}", [new("A" if d % 2 else "B", days=d) for d in range(400)], ANY)
    head = (await p.stats()).total_events
    stop = asyncio.Event()
    task = asyncio.create_task(append_until(p, stop))
    cut = asyncio.create_task(p.delete_events_before(T0 + timedelta(days=390)))
    runs = await asyncio.gather(p.delete_events_before(T0 + timedelta(days=200)), p.truncate_stream("s0", 301))
    cut.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cut
    stop.set()
    appended = await task
    assert sum(runs) <= 8 * 200 + 100
    # (behind the batch the cancelled run had sent: a cancelled call's batch in flight still commits)
    last = await p.append("w", [new(days=999)], ANY)
    assert last.positions[0] == head + appended + 1  # positions never reused
    await assert_exact(p)
    for s in range(8):
        info = await p.get_stream_info(f"s{s}")
        assert info is not None
        assert info.version == 400
        assert info.event_count == len([e async for e in p.read_stream(f"s{s}")]) >= 10

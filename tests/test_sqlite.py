"""The SQLite provider: the conformance kit on a fresh file per test, plus SQLite-specific checks
(URLs, durability pragmas, schema versions, busy writers, the loop never blocking, exact timestamps)."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from eventsource.manager import EventSourcingManager
from eventsource.model import NO_STREAM, EventData, EventFilter, NewEvent, NewStream, RecordedEvent, RowPage, utcnow
from eventsource.plugins import PluginHost
from eventsource.sqlite import (
    SCHEMA_VERSION,
    SqliteProvider,
    from_us,
    path_from_url,
    to_us,
)
from eventsource.testing import AbsentStore, ProviderSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class TestSqliteProvider(ProviderSuite):
    @pytest.fixture
    def absent_store(self, absent_sqlite: AbsentStore) -> AbsentStore:
        return absent_sqlite

    @pytest.fixture
    def provider(self, sqlite_provider: SqliteProvider) -> SqliteProvider:
        return sqlite_provider


def new_event(i: int = 0, *, ts: datetime | None = None, event_id: str | None = None) -> NewEvent:
    return NewEvent(
        event_id=event_id or str(uuid.uuid4()),
        event_type="E",
        data=json.dumps({"i": i}).encode(),
        metadata=b"",
        encoding="json",
        timestamp=ts or utcnow(),
    )


@pytest.fixture
def store(sqlite_provider: SqliteProvider) -> SqliteProvider:
    return sqlite_provider


# ---------------------------------------------------------------------------- URLs and settings


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///events.db", "events.db"),
        ("sqlite:///data/dir/events.db", "data/dir/events.db"),
        ("sqlite:////abs/path/events.db", "/abs/path/events.db"),
        ("sqlite:///with%20space.db", "with space.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///upper.db", "upper.db"),
    ],
)
def test_url_forms(url: str, path: str) -> None:
    assert path_from_url(url) == path


@pytest.mark.parametrize("url", ["postgresql://x/db", "sqlite://host/x.db", "sqlite:///", "sqlite:///dir/"])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SqliteProvider(url)


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        SqliteProvider("sqlite:///x.db", synchronous="off")
    assert info.value.details["field"] == "synchronous"
    with pytest.raises(ConfigurationError):
        SqliteProvider("sqlite:///x.db", busy_timeout=-1)
    with pytest.raises(ConfigurationError):
        SqliteProvider("sqlite:///x.db", bogus=1)


def test_registered_for_the_sqlite_scheme(tmp_path: Path) -> None:
    p = PluginHost(load_entrypoints=False).create_provider(f"sqlite:///{tmp_path}/r.db", busy_timeout=2)
    assert isinstance(p, SqliteProvider)
    assert p.settings["busy_timeout"] == 2


def test_spawn_args_name_the_file_absolutely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    p = SqliteProvider("sqlite:///rel/events.db", busy_timeout=3)
    args = p.spawn_args()
    assert args["url"] == f"sqlite:///{tmp_path}/rel/events.db"
    assert args["busy_timeout"] == 3
    json.dumps(args)


# ---------------------------------------------------------------------------- file, pragmas, schema


async def test_file_is_wal_with_full_synchronous_and_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "f.db"
    p = SqliteProvider(f"sqlite:///{path}")
    await p.connect()
    try:
        assert path.exists()
        assert p._writer is not None
        assert await p._write("t", lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
        assert await p._read("t", lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 2
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        raw.close()
        st = await p.stats()
        assert st.storage_size is not None
        assert st.storage_size > 0
        assert st.extra["journal_mode"] == "wal"
    finally:
        await p.close()


async def test_synchronous_normal_is_opt_in(tmp_path: Path) -> None:
    p = SqliteProvider(f"sqlite:///{tmp_path}/n.db", synchronous="normal")
    await p.connect()
    try:
        assert await p._write("t", lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 1
    finally:
        await p.close()


async def test_concurrent_first_connects_of_a_new_file_all_succeed(tmp_path: Path) -> None:
    # switching a new file to WAL needs an exclusive lock that SQLite refuses at once (no busy
    # handler) while another connection is opening the same file; a start-up race must not fail
    for round_ in range(20):
        providers = [SqliteProvider(f"sqlite:///{tmp_path}/r{round_}.db", busy_timeout=10) for _ in range(6)]
        try:
            await asyncio.gather(*(p.connect() for p in providers))
            assert (await providers[-1].append("s", [new_event()], NO_STREAM)).last_version == 1
        finally:
            for p in providers:
                await p.close()


async def test_connect_is_idempotent_and_concurrent_first_connects_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    providers = [SqliteProvider(url, busy_timeout=10) for _ in range(4)]
    await asyncio.gather(*(p.connect() for p in providers))
    await providers[0].connect()
    try:
        res = await providers[1].append("s", [new_event()], 0)
        assert res.first_version == 1
        info = await providers[3].get_stream_info("s")
        assert info is not None
        assert info.version == 1
    finally:
        for p in providers:
            await p.close()


async def test_a_file_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    p = SqliteProvider(f"sqlite:///{path}")
    with pytest.raises(ProviderError, match="newer"):
        await p.connect()
    await p.close()


async def test_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    p = SqliteProvider(f"sqlite:///{path}")
    with pytest.raises(ProviderUnavailableError):
        await p.connect()
    await p.close()


async def test_operations_before_connect_and_after_close_are_unavailable(tmp_path: Path) -> None:
    p = SqliteProvider(f"sqlite:///{tmp_path}/c.db")
    with pytest.raises(ProviderUnavailableError):
        await p.get_stream_info("s")
    await p.connect()
    await p.append("s", [new_event()], 0)
    await p.close()
    await p.close()  # idempotent
    with pytest.raises(ProviderUnavailableError):
        await p.append("s", [new_event()], 1)
    health = await p.health()
    assert not health.healthy
    await p.connect()  # reconnectable, data kept
    try:
        info = await p.get_stream_info("s")
        assert info is not None
        assert info.version == 1
        assert (await p.health()).healthy
    finally:
        await p.close()


async def test_in_memory_database(tmp_path: Path) -> None:
    p = SqliteProvider("sqlite:///:memory:")
    await p.connect()
    try:
        await p.create_stream(NewStream("m", name="mem", metadata={"k": [1, 2]}))
        await p.append("m", [new_event(i) for i in range(3)], 0)
        assert [e.version async for e in p.read_stream("m")] == [1, 2, 3]
        info = await p.get_stream_info("m")
        assert info is not None
        assert (info.name, info.metadata, info.event_count) == ("mem", {"k": [1, 2]}, 3)
        assert p.spawn_args()["url"] == "sqlite:///:memory:"
    finally:
        await p.close()


async def test_an_in_memory_database_declares_that_no_other_process_reads_it(tmp_path: Path) -> None:
    """``sqlite:///:memory:`` lives in this instance's connection: what ``spawn_args()`` builds (in a runner
    process, a racing worker) opens a new, empty database. So it declares ``cross_process_reads=False`` and an
    ``in_process`` version check, the kit's runner-process tests skip naming it, and a file declares both."""
    from eventsource.testing.projections import ProjectionSuite

    p = SqliteProvider("sqlite:///:memory:")
    other = SqliteProvider(**p.spawn_args())
    await p.connect()
    await other.connect()
    try:
        await p.create_stream(NewStream("m"))
        assert await other.get_stream_info("m") is None  # what the declaration says: the events stay here
    finally:
        await other.close()
        await p.close()
    assert (p.capabilities.cross_process_reads, p.capabilities.concurrency) == (False, "in_process")
    m = EventSourcingManager({"providers": {"mem": "sqlite:///:memory:"}}, host=PluginHost(load_entrypoints=False))
    async with m:
        described = {d.name: d.capabilities for d in m.get_provider_info()}
    assert described["mem"]["cross_process_reads"] is False
    with pytest.raises(pytest.skip.Exception, match=r"^cross_process_reads=False: "):
        ProjectionSuite._needs_other_processes(p)
    f = SqliteProvider(f"sqlite:///{tmp_path}/f.db")
    assert (f.capabilities.cross_process_reads, f.capabilities.concurrency) == (True, "cross_process")
    ProjectionSuite._needs_other_processes(f)  # applies: no skip


# ---------------------------------------------------------------------------- concurrency


async def test_a_held_write_lock_gives_a_typed_busy_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    p = SqliteProvider(f"sqlite:///{path}", busy_timeout=0.2)
    await p.connect()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(ProviderTimeoutError, match="busy"):
            await p.append("s", [new_event()], 0)
        # reads are not blocked by a writer (WAL)
        assert await p.get_stream_info("s") is None
        other.execute("ROLLBACK")
        assert (await p.append("s", [new_event()], 0)).first_version == 1
    finally:
        other.close()
        await p.close()


async def test_single_appends_at_an_exact_version_check_it_in_their_one_statement(tmp_path: Path) -> None:
    # one event at an exact version is one INSERT ... WHERE <stream at version - 1>; every other outcome
    # (wrong version, missing stream, a retry, a held lock, a stream emptied by truncation) must still be right
    path = tmp_path / "exact.db"
    p = SqliteProvider(f"sqlite:///{path}", busy_timeout=0.2)
    await p.connect()
    try:
        with pytest.raises(ConcurrencyError):
            await p.append("s", [new_event()], 1)  # no such stream
        assert (await p.append("s", [new_event(0)], 0)).last_version == 1
        again = new_event(1)
        first = await p.append("s", [again], 1)
        assert (first.first_version, first.duplicate) == (2, False)
        retry = await p.append("s", [again], 1)  # same id, now-stale version: the original result
        assert (retry.first_version, retry.positions, retry.duplicate) == (2, first.positions, True)
        for wrong in (1, 3, 7):
            with pytest.raises(ConcurrencyError):
                await p.append("s", [new_event()], wrong)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(ProviderTimeoutError, match="busy"):
                await p.append("s", [new_event()], 2)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await p.truncate_stream("s", 3) == 2  # every event gone; the version stays 2
        with pytest.raises(ConcurrencyError):
            await p.append("s", [new_event()], 1)
        res = await p.append("s", [new_event(3)], 2)
        assert (res.first_version, res.last_version) == (3, 3)
        assert [e.version async for e in p.read_stream("s")] == [3]
        info = await p.get_stream_info("s")
        assert info is not None
        assert info.version == 3
    finally:
        await p.close()


async def test_a_subclass_wrapping_the_page_view_is_read_through_by_the_manager(tmp_path: Path) -> None:
    # docs/writing-a-provider.md: the page view is the one read a store implements; wrapping it instruments
    # every read (the manager's and the record view built on it)
    seen: list[int] = []

    class Traced(SqliteProvider):
        async def read_stream_pages(self, stream_id: str, **kw: Any) -> AsyncIterator[RowPage]:  # type: ignore[override]
            async for page in super().read_stream_pages(stream_id, **kw):
                seen.extend(r.version for r in page.records())
                yield page

    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    p = Traced(f"sqlite:///{tmp_path}/t.db")
    await m.register_provider(p, name="t", default=True)
    try:
        await m.append_events_batch(stream_id="s", events=[EventData("E", {"i": i}) for i in range(3)])
        assert [e.data["i"] async for e in m.read_stream("s")] == [0, 1, 2]
        assert seen == [1, 2, 3]
        assert [r.version async for r in p.read_stream("s")] == [1, 2, 3]
        assert seen == [1, 2, 3, 1, 2, 3]
    finally:
        await m.close()


def test_a_store_cannot_override_a_record_view() -> None:
    """One canonical read per view: a record view is built on the page view, never a second implementation."""
    with pytest.raises(TypeError, match="implement read_stream_pages"):

        class Bad(SqliteProvider):
            def read_stream(self, stream_id: str, **kw: Any) -> AsyncIterator[RecordedEvent]:  # type: ignore[override]
                raise NotImplementedError

    with pytest.raises(TypeError, match="implement read_all_pages"):

        class Bad2(SqliteProvider):
            def read_all(self, **kw: Any) -> AsyncIterator[RecordedEvent]:  # type: ignore[override]
                raise NotImplementedError


async def test_the_event_loop_keeps_running_while_sqlite_waits(tmp_path: Path) -> None:
    path = tmp_path / "loop.db"
    p = SqliteProvider(f"sqlite:///{path}", busy_timeout=30)
    await p.connect()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(p.append("s", [new_event()], 0))
        # if the provider blocked the loop, the append would have run to its end (after the lock is
        # released, which only this coroutine does) before this coroutine got control back
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert not task.done()
        other.execute("COMMIT")
        assert (await task).first_version == 1
    finally:
        other.close()
        await p.close()


async def test_writers_in_threads_of_one_instance_and_across_instances_never_share_a_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/many.db"
    a, b = SqliteProvider(url), SqliteProvider(url)
    await a.connect()
    await b.connect()
    try:
        outcomes: list[int] = []

        async def writer(p: SqliteProvider) -> None:
            for _ in range(10):
                info = await p.get_stream_info("shared")
                current = info.version if info else 0
                try:
                    outcomes.append((await p.append("shared", [new_event()], current)).first_version)
                except ConcurrencyError:
                    continue

        await asyncio.gather(writer(a), writer(b), writer(a), writer(b))
        assert sorted(outcomes) == list(range(1, len(outcomes) + 1))
        assert [e.version async for e in a.read_stream("shared")] == sorted(outcomes)
    finally:
        await a.close()
        await b.close()


# ---------------------------------------------------------------------------- positions, timestamps, records


async def test_positions_are_never_reused_after_the_newest_events_are_deleted(store: SqliteProvider) -> None:
    first = await store.append("p", [new_event(i) for i in range(3)], 0)
    await store.delete_stream("p")
    again = await store.append("p", [new_event()], 0)
    assert again.first_version == 1
    assert again.positions[0] > max(first.positions)
    assert [e.position async for e in store.read_all()] == list(again.positions)


async def test_batch_positions_are_consecutive_and_match_reads(store: SqliteProvider) -> None:
    await store.append("other", [new_event()], 0)
    res = await store.append("b", [new_event(i) for i in range(7)], 0)
    assert list(res.positions) == list(range(res.positions[0], res.positions[0] + 7))
    assert [e.position async for e in store.read_stream("b")] == list(res.positions)


@pytest.mark.parametrize(
    "ts",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1900, 5, 17, 3, 4, 5, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 123456, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
async def test_timestamps_round_trip_exactly_as_utc(store: SqliteProvider, ts: datetime) -> None:
    res = await store.append(f"t-{uuid.uuid4().hex}", [new_event(ts=ts)], 0)
    ev = await store.get_event(res.event_ids[0])
    assert ev is not None
    assert ev.timestamp == ts
    assert ev.timestamp.utcoffset() == timedelta(0)
    assert ev.timestamp.microsecond == ts.microsecond


def test_microsecond_conversion_is_exact_on_the_fast_path() -> None:
    rnd = random.Random(7)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    samples = [rnd.randrange(-(2**31) * 10**6 + 1, 2**31 * 10**6) for _ in range(20_000)]
    samples += [0, 1, -1, 999_999, -999_999, 2**31 * 10**6 - 1, -(2**31) * 10**6 + 1, 2**31 * 10**6, 10**17]
    for us in samples:
        dt = epoch + timedelta(microseconds=us)
        assert from_us(us) == dt, us
        assert to_us(dt) == us, us


def test_the_fast_record_builder_makes_the_same_record() -> None:
    row = (
        "id",
        "s",
        "E",
        3,
        9,
        b"{}",
        b"m",
        "json",
        to_us(datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
        "c",
        None,
        "u",
        "t",
        "a",
        "T",
    )
    (fast,) = RowPage([row], from_us).records()  # the SQLite row path: a typed row page
    plain = RecordedEvent(*row[:8], datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC), *row[9:])  # type: ignore[misc]
    assert type(fast) is RecordedEvent
    assert fast == plain
    assert hash(fast) == hash(plain)
    with pytest.raises(AttributeError):
        fast.version = 4  # type: ignore[misc]


# ---------------------------------------------------------------------------- reads and query


async def test_reads_page_by_keyset_and_see_writes_between_pages(store: SqliteProvider) -> None:
    await store.append("k", [new_event(i) for i in range(10)], 0)
    seen = []
    async for e in store.read_stream("k", page_size=4):
        seen.append(e.version)
        if e.version == 6:
            await store.append("k", [new_event(99)], 10)
    assert seen == list(range(1, 12))
    back = [e.version async for e in store.read_stream("k", backwards=True, page_size=3, from_version=2, to_version=9)]
    assert back == list(range(9, 1, -1))


async def test_query_binds_hostile_values_and_counts(store: SqliteProvider) -> None:
    hostile = "x' OR '1'='1"
    await store.append(hostile, [new_event(i) for i in range(3)], 0)
    await store.append("plain", [new_event()], 0)
    page = await store.query(EventFilter(stream_id=hostile), limit=2, offset=1, descending=True)
    assert page.total_count == 3
    assert [e.version for e in page.events] == [2, 1]
    none = await store.query(EventFilter(event_types=("E') OR 1=1 --",)), limit=10, offset=0)
    assert none.total_count == 0
    empty = await store.query(EventFilter(event_types=()), limit=10, offset=0)
    assert empty.total_count == 0


# ---------------------------------------------------------------------------- stream info under retention


async def test_stream_info_stays_exact_when_retention_removes_the_newest_and_middle_events(
    store: SqliteProvider,
) -> None:
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    # timestamps out of version order: deleting by time punches holes in the middle of the stream
    stamps = [t0 + timedelta(days=d) for d in (5, 1, 6, 2, 7)]
    res = await store.append("r", [new_event(i, ts=ts) for i, ts in enumerate(stamps)], 0)
    assert await store.delete_events_before(t0 + timedelta(days=3), "r") == 2  # versions 2 and 4
    info = await store.get_stream_info("r")
    assert info is not None
    assert (info.version, info.event_count, info.first_version, info.last_event_id) == (5, 3, 1, res.event_ids[-1])
    assert [e.version async for e in store.read_stream("r")] == [1, 3, 5]
    assert await store.delete_events_before(t0 + timedelta(days=30)) == 3  # everything, newest included
    info = await store.get_stream_info("r")
    assert info is not None
    assert (info.version, info.event_count, info.first_version, info.last_event_id) == (5, 0, None, res.event_ids[-1])
    assert info.updated_at == stamps[-1]
    with pytest.raises(ConcurrencyError):
        await store.append("r", [new_event()], 0)
    nxt = await store.append("r", [new_event(), new_event()], 5)
    assert (nxt.first_version, nxt.last_version) == (6, 7)
    info = await store.get_stream_info("r")
    assert info is not None
    assert (info.version, info.event_count, info.first_version, info.last_event_id) == (7, 2, 6, nxt.event_ids[-1])
    assert await store.truncate_stream("r", 8) == 2
    info = await store.get_stream_info("r")
    assert info is not None
    assert (info.version, info.event_count, info.first_version) == (7, 0, None)
    assert (await store.stats()).events_by_stream == {"r": 0}
    streams, total = await store.list_streams(limit=10, offset=0)
    assert total == 1
    assert (streams[0].version, streams[0].event_count) == (7, 0)


def test_statements_use_only_plain_question_mark_placeholders() -> None:
    """``:name`` placeholders bound from a sequence warn from Python 3.12 (an error from 3.14), and
    3.12.0-3.12.3 warn on numbered ``?NNN`` ones too: every statement the provider sends uses plain ``?``."""
    import re

    import eventsource.sqlite as module

    numbered = re.compile(r"\?\d|(?<![:\w]):[A-Za-z_]")
    statement = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b")
    statements = {k: v for k, v in vars(module).items() if isinstance(v, str) and statement.match(v)}
    assert len(statements) > 10  # the check sees the statement constants
    offending = {k: v for k, v in statements.items() if numbered.search(v)}
    assert not offending, offending


async def test_appends_and_state_reads_raise_no_deprecation_warning(store: SqliteProvider) -> None:
    """The one-statement append, the transaction path and the stream-state read, warnings as errors
    (on the writer thread too: the filter list is process-wide)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        await store.append("s", [new_event(1)], NO_STREAM)
        await store.append("s", [new_event(2)], 1)
        await store.append("s", [new_event(3), new_event(4)], 2)
    info = await store.get_stream_info("s")
    assert info is not None
    assert info.version == 4


async def test_the_largest_expected_version_is_a_conflict_not_an_overflow(store: SqliteProvider) -> None:
    await store.append("s", [new_event(1)], NO_STREAM)
    for events in ([new_event(2)], [new_event(3), new_event(4)]):
        with pytest.raises(ConcurrencyError):
            await store.append("s", events, 2**63 - 1)
    info = await store.get_stream_info("s")
    assert info is not None
    assert info.version == 1


async def test_a_directory_that_cannot_be_made_is_a_typed_unavailable_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    p = SqliteProvider(f"sqlite:///{tmp_path}/afile/x.db")
    with pytest.raises(ProviderUnavailableError):
        await p.connect()


async def test_the_one_statement_append_writes_only_at_the_version_after_the_streams_and_leaves_nothing_else(
    store: SqliteProvider,
) -> None:
    """``append_at`` (``INSERT ... VALUES`` with the version check in the version column): the version after the
    stream's, short and full forms, each field kept; anything else refused whole, ``None`` for the careful path."""
    from dataclasses import replace

    from eventsource.sqlite.appends import append_at

    await store.append("s", [new_event(1)], NO_STREAM)
    writer = store._writer
    assert writer is not None
    db = writer.db
    assert db is not None
    taken = new_event(2)
    with writer.lock:
        assert append_at(db, "s", taken, 2) is not None
        full = replace(
            new_event(3),
            correlation_id="c",
            causation_id="k",
            user_id="u",
            tenant_id="t",
            aggregate_id="a",
            aggregate_type="A",
        )
        done = append_at(db, "s", full, 3)
        assert done is not None
        assert done.first_version == 3
        before = db.execute("SELECT COUNT(*), MAX(position) FROM es_events").fetchone()
        refused = [
            append_at(db, "s", new_event(4), 3),  # the stream is at 3, not 2
            append_at(db, "s", new_event(4), 5),  # nor at 4
            append_at(db, "nope", new_event(4), 1),  # no such stream
            append_at(db, "s", replace(new_event(4), event_id=taken.event_id), 4),  # the id is taken
            append_at(db, "s", replace(full, event_id=str(uuid.uuid4())), 5),  # the full form checks too
        ]
        assert refused == [None] * 5
        assert db.execute("SELECT COUNT(*), MAX(position) FROM es_events").fetchone() == before
        assert not db.in_transaction
    stored = [e async for e in store.read_stream("s")]
    assert [e.version for e in stored] == [1, 2, 3]
    last = stored[-1]
    assert (
        last.correlation_id,
        last.causation_id,
        last.user_id,
        last.tenant_id,
        last.aggregate_id,
        last.aggregate_type,
    ) == ("c", "k", "u", "t", "a", "A")
    assert await store.truncate_stream("s", 4) == 3  # every event goes; the stream stays at version 3 (its floor)
    with writer.lock:
        assert append_at(db, "s", new_event(5), 3) is None
        assert append_at(db, "s", new_event(5), 4) is not None

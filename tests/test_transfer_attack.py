"""Attacks on copy / import (review of issue #15): a target or a map that is not what the copy assumes.

Each test reproduced a silent merge or a silent loss on real SQLite stores before its fix: the copy wrote
into a stream that held other data, or skipped events it had never written, and reported success.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ConcurrencyError
from eventsource.model import NO_STREAM, NewEvent, NewStream, RecordedSnapshot
from eventsource.sqlite import SqliteProvider
from eventsource.timestamps import from_us
from eventsource.transfer import copy_store, export_store, import_store, verify_stores

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventsource.manager import EventSourcingManager


def _event(event_type: str = "T", data: bytes = b'{"a":1}') -> NewEvent:
    return NewEvent(str(uuid.uuid4()), event_type, data, b"", "json", from_us(1_700_000_000_000_000))


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[dict[str, SqliteProvider]]:
    """Connected SQLite stores by name, each its own file under ``tmp_path``, closed after the test."""
    opened: dict[str, SqliteProvider] = {}
    for name in ("src", "dst", "other"):
        opened[name] = SqliteProvider(f"sqlite:///{tmp_path / name}.db")
        await opened[name].connect()
    yield opened
    for p in opened.values():
        await p.close()


async def _types(p: SqliteProvider, stream_id: str) -> list[str]:
    return [r.event_type async for r in p.read_stream(stream_id)]


async def test_a_foreign_stream_below_a_truncated_sources_first_version_is_refused(
    stores: dict[str, SqliteProvider],
) -> None:
    """The source keeps versions 6..10 of 'x'; the target's 'x' holds two events of its own.

    The copy appended placeholders 3..5 after them, then the source's 6..10, kept everything (the first event
    was no placeholder, so nothing was truncated) and reported success: a merged stream.
    """
    src, dst = stores["src"], stores["dst"]
    await src.append("x", [_event() for _ in range(10)], 0)
    await src.truncate_stream("x", 6)
    await dst.append("x", [_event("Foreign") for _ in range(2)], 0)
    with pytest.raises(ConcurrencyError, match="'x'"):
        await copy_store(src, dst)
    assert await _types(dst, "x") == ["Foreign", "Foreign"]


async def test_a_foreign_stream_ending_at_a_truncated_sources_floor_is_refused(
    stores: dict[str, SqliteProvider],
) -> None:
    """The target's 'x' holds exactly the versions the source truncated away (1..5), none of them the source's."""
    src, dst = stores["src"], stores["dst"]
    await src.append("x", [_event() for _ in range(10)], 0)
    await src.truncate_stream("x", 6)
    await dst.append("x", [_event("Foreign") for _ in range(5)], 0)
    with pytest.raises(ConcurrencyError, match="'x'"):
        await copy_store(src, dst)
    assert await _types(dst, "x") == ["Foreign"] * 5


async def test_a_target_event_with_the_source_id_but_other_bytes_is_refused(stores: dict[str, SqliteProvider]) -> None:
    """The target holds the source's event ids at versions 1..2 with other payloads (an older, rewritten copy).

    The copy counted them 'already there', appended version 3 and reported success.
    """
    src, dst = stores["src"], stores["dst"]
    events = [_event() for _ in range(3)]
    await src.append("y", events, 0)
    await dst.append("y", [replace(e, data=b'{"a":2}') for e in events[:2]], 0)
    with pytest.raises(ConcurrencyError, match=r"'y'.*version 1 with another data"):
        await copy_store(src, dst)
    assert [r.data async for r in dst.read_stream("y")] == [b'{"a":2}'] * 2


async def test_a_second_export_through_the_same_map_is_refused(
    stores: dict[str, SqliteProvider], tmp_path: Path
) -> None:
    """Two exports of different stores, both holding 's', imported into one store with one map (stdin's default).

    The map said versions 1..3 of 's' were copied, so the second import skipped its own 1..3 unchecked and
    appended its 4..5 after the first export's events.
    """
    a, b, dst = stores["src"], stores["other"], stores["dst"]
    await a.append("s", [_event("A") for _ in range(3)], 0)
    await b.append("s", [_event("B") for _ in range(5)], 0)
    first, second = io.BytesIO(), io.BytesIO()
    await export_store(a, first)
    await export_store(b, second)
    first.seek(0)
    second.seek(0)
    await import_store(first, dst, position_map=tmp_path / "map.db", check_first=True)
    with pytest.raises(ConcurrencyError, match="'s'"):
        await import_store(second, dst, position_map=tmp_path / "map.db", check_first=True)
    assert await _types(dst, "s") == ["A"] * 3


async def test_a_copy_from_a_replaced_source_with_the_old_map_misses_nothing(tmp_path: Path) -> None:
    """The source file is replaced by another store (restored from another backup) and the copy run again.

    The map's cursor said source positions 1..3 were written, so the re-run skipped the new source's first
    three events (all of stream 'p'), created 'p' empty on the target, copied 'q', and reported success.
    """
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    mapfile = tmp_path / "map.db"
    try:
        src = SqliteProvider(f"sqlite:///{tmp_path / 'src.db'}")
        await src.connect()
        await src.append("old", [_event("Old") for _ in range(3)], 0)
        await copy_store(src, dst, position_map=mapfile)
        await src.close()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"src.db{suffix}").unlink(missing_ok=True)
        src = SqliteProvider(f"sqlite:///{tmp_path / 'src.db'}")
        await src.connect()
        try:
            await src.append("p", [_event("New") for _ in range(3)], 0)
            await src.append("q", [_event("New")], 0)
            result = await copy_store(src, dst, position_map=mapfile)
            assert (result.written, result.skipped) == (4, 0)
            # every stream of the new source matches; the old source's stream is the target's alone
            report = await verify_stores(src, dst)
            assert report.differences == ["1 stream on the target only (not on the source): 'old'"]
            assert await _types(dst, "p") == ["New"] * 3
            await src.append("old", [_event("Other") for _ in range(3)], 0)  # the same id, other events
            with pytest.raises(ConcurrencyError, match="'old'"):
                await copy_store(src, dst, position_map=mapfile)
            assert await _types(dst, "old") == ["Old"] * 3
        finally:
            await src.close()
    finally:
        await dst.close()


async def test_verify_names_the_version_and_field_that_differ(source: EventSourcingManager, tmp_path: Path) -> None:
    """A copy corrupted on the target in four ways; each difference must say where and what.

    Verification reported 'the events differ (digest ...)', '48 events on the source, 47 on the target',
    'attributes or version differ' and 'the snapshots differ': true, but nobody could tell which event, field
    or snapshot to look at in a stream of a million events.
    """
    src = source.get_default_provider()
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    await copy_store(src, dst, verify=True)
    await dst.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "dst.db")) as db, db:
        db.execute("UPDATE es_events SET timestamp = timestamp + 1 WHERE stream_id = 's-0003' AND version = 2")
        db.execute("DELETE FROM es_events WHERE stream_id = 's-0004' AND version = 5")
        db.execute("UPDATE es_streams SET name = 'renamed' WHERE stream_id = 's-0002'")
        db.execute("DELETE FROM es_snapshots WHERE stream_id = 's-0002' AND version = 1")
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        report = await verify_stores(src, dst)
    finally:
        await dst.close()
    text = "\n".join(report.differences)
    assert "stream 's-0003': version 2: the timestamp differs" in text, text
    assert "stream 's-0004': version 5: missing on the target" in text, text
    assert "stream 's-0002': the name differs" in text, text
    assert "stream 's-0002': the snapshot at version 1 is missing on the target" in text, text


def _written_meanwhile(src: SqliteProvider) -> None:
    """Make an application write to ``src`` once a transfer has read the first page of its global log."""
    pages = src.read_all_pages

    async def reading(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with contextlib.aclosing(pages(*args, **kwargs)) as read:
            first = True
            async for page in read:
                yield page
                if first:
                    first = False
                    await src.append("a9", [_event() for _ in range(3)], 10)
                    late = NewStream("late", "Late", "agg", "T", {"k": 1})
                    await src.append("late", [_event() for _ in range(3)], NO_STREAM, late)
                    await src.save_snapshot(RecordedSnapshot("snap-late", "late", 3, b"{}", b"", "json", from_us(0)))

    src.read_all_pages = reading  # type: ignore[method-assign]


async def test_an_export_of_a_store_written_to_meanwhile_can_be_imported(
    stores: dict[str, SqliteProvider], tmp_path: Path
) -> None:
    """Events appended to a listed stream while the export ran went into the file after its stream line.

    The file's stream line said versions 1..10, its events ran to 13: the import refused the whole backup.
    """
    src, dst = stores["src"], stores["dst"]
    for i in range(10):
        await src.append(f"a{i}", [_event() for _ in range(10)], 0)
    _written_meanwhile(src)
    out = io.BytesIO()
    await export_store(src, out, page_size=10)
    out.seek(0)
    result = await import_store(out, dst, check_first=True)
    assert result.written == 100
    info = await dst.get_stream_info("a9")
    assert info is not None
    assert info.version == 10


async def test_a_stream_created_while_a_copy_runs_keeps_its_attributes(stores: dict[str, SqliteProvider]) -> None:
    """A stream the listing did not show was created on the target by its events' append, with no attributes.

    A re-run never restored them (the stream existed); verification reported its name, aggregate and metadata.
    """
    src, dst = stores["src"], stores["dst"]
    for i in range(10):
        await src.append(f"a{i}", [_event() for _ in range(10)], 0)
    _written_meanwhile(src)
    await copy_store(src, dst, page_size=10, window=10)
    del src.read_all_pages  # the application is done
    result = await copy_store(src, dst, verify=True)
    assert result.verify is not None
    assert result.verify.ok, result.verify.differences
    late = await dst.get_stream_info("late")
    assert late is not None
    assert (late.name, late.aggregate_id, late.metadata) == ("Late", "agg", {"k": 1})


async def test_a_target_stream_with_other_attributes_is_refused(stores: dict[str, SqliteProvider]) -> None:
    """The target holds its own empty 'order-1' (another aggregate); the source's events went into it, under
    the target's name, aggregate and metadata, and the copy reported success."""
    src, dst = stores["src"], stores["dst"]
    await src.append("order-1", [_event() for _ in range(3)], NO_STREAM, NewStream("order-1", "Ours", "o-1", "Order"))
    await dst.create_stream(NewStream("order-1", "Theirs", "x-9", "Invoice", {"owner": "billing"}))
    with pytest.raises(ConcurrencyError, match=r"'order-1'.*name"):
        await copy_store(src, dst)
    info = await dst.get_stream_info("order-1")
    assert info is not None
    assert (info.version, info.name) == (0, "Theirs")

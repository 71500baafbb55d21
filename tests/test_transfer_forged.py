"""Forged or damaged transfers (third review of issue #15): what passed the checks and hurt a store, or lied.

Each test failed before its fix: a hand-edited export whose records no manager writes passed the check of a
file and was imported half-way (or whole, leaving a store that could no longer be listed).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ConcurrencyError, ConfigurationError
from eventsource.model import ANY, NO_STREAM, NewEvent, NewStream
from eventsource.transfer import copy_store, verify_stores
from eventsource.transfer.verify import json_value
from test_transfer_hostile import _event, _snapshot, _stream, refused_whole

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import OpenSqlite


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# the bad records, and what the message says (a good stream 'ok' and its event come first in each file)
FORGED: dict[str, tuple[list[dict[str, Any]], str]] = {
    # PostgreSQL's jsonb refuses these: 'ok' was written, then the import failed at the store
    "NUL in stream metadata": ([_stream("n", 0, metadata={"k": "a\x00b"})], "NUL"),
    "lone surrogate in stream metadata": ([_stream("n", 0, metadata={"k": "\ud800"})], "lone surrogate"),
    "stream metadata nested 300 deep": ([_stream("n", 0, metadata={"k": _nested(300)})], "nested"),
    # a NUL in a descriptor: PostgreSQL refuses it at the store; no codec reads it anywhere
    "NUL in an encoding": ([_event("b", encoding="js\x00on")], "control character"),
    "empty encoding": ([_event("b", encoding="")], "encoding must not be empty"),
    # stored as given: the store then failed every list_streams (its UTC time is outside years 1-9999)
    "timestamp before year 1 in UTC": ([_event("b", timestamp="0001-01-01T00:00:00+01:00")], "years 1-9999"),
    "snapshot created after year 9999 in UTC": (
        [{**_snapshot("ok", 1), "created_at": "9999-12-31T23:59:00-05:00"}],
        "years 1-9999",
    ),
}


@pytest.mark.parametrize("case", list(FORGED))
async def test_a_forged_export_the_target_cannot_hold_is_refused_before_anything_is_written(
    case: str, tmp_path: Path
) -> None:
    bad, message = FORGED[case]
    await refused_whole(bad, message, tmp_path, "forged.jsonl")


@pytest.mark.parametrize(("ours", "theirs"), [(1, True), (False, 0), ([1, True], [True, 1])])
async def test_verify_and_copy_see_stream_metadata_of_another_json_type(
    ours: object, theirs: object, open_sqlite: OpenSqlite
) -> None:
    """{'tier': 1} and {'tier': true} are different JSON; Python's 1 == True made verify say they match."""
    src, dst = await open_sqlite(), await open_sqlite()
    await src.create_stream(NewStream("s", "n", None, None, {"tier": ours}))
    await dst.create_stream(NewStream("s", "n", None, None, {"tier": theirs}))
    assert (await dst.get_stream_info("s")).metadata == {"tier": theirs}  # type: ignore[union-attr]
    report = await verify_stores(src, dst)
    assert report.differences == ["stream 's': the metadata differs"]
    with pytest.raises(ConcurrencyError, match="another metadata"):  # copying into it: refused, not merged
        await copy_store(src, dst)


def test_stream_metadata_numbers_compare_by_value() -> None:
    """JSON has one number type: 1e20 read back as 100000000000000000000 (PostgreSQL's jsonb) is the same value."""
    for ours, theirs in [(1e20, 10**20), (1.0, 1), (-0.0, 0), (1e300, 10**300)]:
        assert json_value({"n": ours}) == json_value({"n": theirs})
    assert json_value({"n": 0.1}) != json_value({"n": 0.10000000000000002})
    assert json_value({"n": 10**20 + 1}) != json_value({"n": 1e20})
    assert json_value({"a": 1, "b": [1, {"c": None}]}) == json_value({"b": [1, {"c": None}], "a": 1})


async def test_a_map_naming_a_stores_database_is_refused_and_the_store_left_alone(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """--map events.db (the source's own file, a typo away): the copy wrote its map tables into the source store."""
    path = tmp_path / "events.db"
    src, dst = await open_sqlite(path), await open_sqlite()
    await src.append("s", [_new("e1")], NO_STREAM)
    await src.close()
    before = _tables(path)
    for mapfile in (path, tmp_path / "app.db"):
        if mapfile != path:  # an application's database with a table the map's name
            with sqlite3.connect(mapfile) as db:
                db.execute("CREATE TABLE positions (account TEXT PRIMARY KEY, amount INTEGER)")
        src = await open_sqlite(path)
        with pytest.raises(ConfigurationError, match="not a position map") as caught:
            await copy_store(src, dst, position_map=mapfile)
        assert str(mapfile) in str(caught.value)
    assert _tables(path) == before
    assert _tables(tmp_path / "app.db") == {"positions": ["account", "amount"]}
    assert (await dst.list_streams(limit=10, offset=0))[1] == 0


def _new(event_id: str) -> NewEvent:
    return NewEvent(event_id, "T", b"{}", b"", "json", datetime.now(UTC))


def _tables(path: Path) -> dict[str, list[str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: [c[1] for c in db.execute(f"PRAGMA table_info({n})")] for n in names}


async def test_a_copy_of_a_store_written_faster_than_it_copies_ends(open_sqlite: OpenSqlite) -> None:
    """A copy read the source's log until it caught up with the writers: under a faster writer it never ended."""
    src, dst = await open_sqlite(), await open_sqlite()
    for i in range(4):
        await src.append(f"s{i}", [_new(f"e{i}-{v}") for v in range(50)], NO_STREAM)
    writes = asyncio.Queue[int]()
    written = 0

    async def writer() -> None:  # 100 events more for every 50 the copy writes, 40 times over
        nonlocal written
        for turn in range(40):
            await writes.get()
            await src.append("live", [_new(f"live-{turn}-{k}") for k in range(100)], ANY)
            written += 100
            writes.task_done()

    task = asyncio.create_task(writer())
    try:
        result = await copy_store(src, dst, page_size=50, window=50, progress=lambda _p: writes.put_nowait(1))
        await writes.join()  # what the writer was asked for meanwhile is written
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert written > 0  # the source grew while the copy ran
    assert result.events == 200  # what it held when the copy began; not what came since
    again = await copy_store(src, dst, verify=True)  # a re-run takes the rest
    assert again.verify is not None
    assert again.verify.ok, again.verify.differences
    assert again.written == written

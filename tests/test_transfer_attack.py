"""Attacks on copy / import (review of issue #15): a target or a map that is not what the copy assumes.

Each test reproduced a silent merge or a silent loss on real SQLite stores before its fix: the copy wrote
into a stream that held other data, or skipped events it had never written, and reported success.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConcurrencyError
from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider
from eventsource.timestamps import from_us
from eventsource.transfer import copy_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


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

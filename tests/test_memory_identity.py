"""Checkpoints of core stores: two private stores (``memory://``, ``sqlite:///:memory:``) are two sources.

Both checkpointed under one source ("memory://", "sqlite:///:memory:"), so a subscription on one store
picked up the other's checkpoint of the same stream id: refused as ahead, or resumed at the wrong version.
Two SQLite files are two sources by their URLs. The scenario is the kit's :func:`check_own_checkpoints`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.memory import MemoryProvider
from eventsource.sqlite import SqliteProvider
from eventsource.testing.identity import check_own_checkpoints

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from eventsource.provider import Provider


STORES: dict[str, Callable[[Path, str], Provider]] = {
    "memory": lambda _dir, _name: MemoryProvider(),  # private: no URL tells two apart
    "sqlite": lambda _dir, _name: SqliteProvider("sqlite:///:memory:"),  # private too
    "sqlite-file": lambda folder, name: SqliteProvider(f"sqlite:///{folder / name}.db"),  # two files, two URLs
}


@pytest.mark.parametrize("kind", STORES)
async def test_two_stores_keep_their_own_checkpoints(kind: str, tmp_path: Path) -> None:
    a, b = STORES[kind](tmp_path, "a"), STORES[kind](tmp_path, "b")
    for p in (a, b):
        await p.connect()
    try:
        await check_own_checkpoints(a, b)  # with a shared source, a's checkpoint was refused as ahead on b
    finally:
        for p in (a, b):
            await p.close()


def test_a_named_memory_store_is_one_source_for_every_instance() -> None:
    name = f"memory://ident-{uuid.uuid4().hex}"
    assert MemoryProvider(name).checkpoint_source == MemoryProvider(name).checkpoint_source == name
    assert MemoryProvider().checkpoint_source.startswith("memory://#store=")


def test_a_file_database_keeps_its_url_as_its_source() -> None:
    assert SqliteProvider("sqlite:///a.db").checkpoint_source == "sqlite:///a.db"


@pytest.mark.parametrize(
    "url",
    ["sqlite:///a.db", "sqlite:////var/lib/app/events.db", "sqlite:///data/x.db?synchronous=normal", "memory://shared"],
)
def test_every_store_with_a_url_keeps_the_source_it_had(url: str) -> None:
    # literal: a changed source orphans every checkpoint stored under the old one (subscriptions restart
    # from the beginning and redo their side effects); only private in-memory stores got their own
    make = MemoryProvider if url.startswith("memory:") else SqliteProvider
    assert make(url).checkpoint_source == url

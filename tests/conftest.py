"""Fixtures the core tests share: a connected provider of each core store on a fresh namespace.

A kit suite's ``provider`` fixture returns one of them: ``sqlite_provider`` (a new file under the test's
``tmp_path``) or ``memory_provider`` (a memory store named for the test, so the kit's second instance shares
it); each is closed after the test.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.memory import MemoryProvider
from eventsource.sqlite import SqliteProvider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def sqlite_provider(tmp_path: Path) -> AsyncIterator[SqliteProvider]:
    """A connected SQLite provider on a new file under ``tmp_path``."""
    p = SqliteProvider(f"sqlite:///{tmp_path}/events-{uuid.uuid4().hex}.db")
    await p.connect()
    yield p
    await p.close()


@pytest.fixture
async def memory_provider() -> AsyncIterator[MemoryProvider]:
    """A connected memory provider on a store named for this test (other instances of that name share it)."""
    p = MemoryProvider(f"memory://test-{uuid.uuid4().hex}")
    await p.connect()
    yield p
    await p.close()

"""Fixtures and helpers the core tests share: a connected provider of each core store, a populated source.

A kit suite's ``provider`` fixture returns one of them: ``sqlite_provider`` (a new file under the test's
``tmp_path``) or ``memory_provider`` (a memory store named for the test, so the kit's second instance shares
it); each is closed after the test. ``folder_store`` is a SQLite store in a folder the test moves away.
``source`` is a manager on a SQLite store of 600 events in 20 streams (the transfer tests copy it);
:func:`console_script` finds the installed ``eventsource`` command.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from eventsource.memory import MemoryProvider
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import manager_on, populate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.manager import EventSourcingManager
    from eventsource.sqlite.checkpoints import Checkpointer


@pytest.fixture
async def sqlite_provider(tmp_path: Path) -> AsyncIterator[SqliteProvider]:
    """A connected SQLite provider on a new file under ``tmp_path``."""
    p = SqliteProvider(f"sqlite:///{tmp_path}/events-{uuid.uuid4().hex}.db")
    await p.connect()
    yield p
    await p.close()


@dataclass
class FolderStore:
    """A connected SQLite provider on ``events.db`` in ``folder``, which the test moves away (and back)."""

    provider: SqliteProvider
    checkpoints: Checkpointer  # the provider's WAL checkpoint thread
    folder: Path
    moved: Path  # where :meth:`move_away` puts the folder

    def move_away(self) -> None:
        self.folder.rename(self.moved)

    def move_back(self) -> None:
        self.moved.rename(self.folder)


@pytest.fixture
async def folder_store(tmp_path: Path) -> AsyncIterator[FolderStore]:
    """A :class:`FolderStore` under ``tmp_path`` (``db/``, moved to ``moved/``), closed after the test."""
    folder = tmp_path / "db"
    folder.mkdir()
    p = SqliteProvider(f"sqlite:///{folder / 'events.db'}")
    await p.connect()
    try:
        assert p._checkpoints is not None  # a file database has the thread
        yield FolderStore(p, p._checkpoints, folder, tmp_path / "moved")
    finally:
        await p.close()


@pytest.fixture
async def memory_provider() -> AsyncIterator[MemoryProvider]:
    """A connected memory provider on a store named for this test (other instances of that name share it)."""
    p = MemoryProvider(f"memory://test-{uuid.uuid4().hex}")
    await p.connect()
    yield p
    await p.close()


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[EventSourcingManager]:
    """A manager on a SQLite store of 600 events in 20 streams (``source.db`` under ``tmp_path``)."""
    m = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}"))
    await populate(m, streams=20, events=600)
    yield m
    await m.close()


def console_script() -> tuple[str, dict[str, str]]:
    """The installed script, and an environment without EVENTSOURCE_* and PYTHON* (stdout block-buffered)."""
    script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
    assert script is not None, "the eventsource console script is not installed next to this interpreter"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVENTSOURCE_", "PYTHON")) or k.startswith("EVENTSOURCE_TEST_")
    }
    return script, env

"""Fixtures and helpers the core tests share: a connected provider of each core store, a populated source.

A kit suite's ``provider`` fixture returns one of them: ``sqlite_provider`` (a new file under the test's
``tmp_path``; ``open_sqlite`` opens any file, as often as a test asks) or ``memory_provider`` (a memory
store named for the test, so the kit's second instance shares it); each is closed after the test.
``absent_memory`` and ``absent_sqlite`` name a store nothing has created (the kit's ``absent_store``).
``folder_store`` is a SQLite store in a folder the test moves away. ``source`` is a manager on a SQLite
store of 600 events in 20 streams (the transfer tests copy it); :func:`console_script` finds the
installed ``eventsource`` command; :func:`isolate` gives a CLI test a directory and environment of its own;
:class:`ProviderPlugin` registers a test's provider classes; a module whose helpers open managers puts each in
:data:`OPENED` and uses the ``close_opened`` fixture, which closes them after each test."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import eventsource
import pytest
from eventsource.memory import MemoryProvider
from eventsource.sqlite import SqliteProvider
from eventsource.testing import AbsentStore
from eventsource.testing.transfer import manager_on, populate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from eventsource.manager import EventSourcingManager
    from eventsource.sqlite.checkpoints import Checkpointer


OpenSqlite = Callable[..., Awaitable[SqliteProvider]]
"""The type of the ``open_sqlite`` fixture."""

OPENED: list[EventSourcingManager] = []
"""Managers a test module's helpers opened (``pytestmark = pytest.mark.usefixtures("close_opened")``)."""


@pytest.fixture
async def close_opened() -> AsyncIterator[None]:
    """Close every manager in :data:`OPENED` after the test, newest first."""
    yield
    while OPENED:
        await OPENED.pop().close()


@pytest.fixture
async def open_sqlite(tmp_path: Path) -> AsyncIterator[OpenSqlite]:
    """``await open_sqlite(path=None)``: a connected SQLite provider on ``path`` (a new file under ``tmp_path``).

    Open one file as often as a test needs instances of it; every provider is closed after the test (closing
    is idempotent, so a test may close one itself first).
    """
    opened: list[SqliteProvider] = []

    async def open_(path: Path | str | None = None) -> SqliteProvider:
        p = SqliteProvider(f"sqlite:///{path or tmp_path / f'events-{uuid.uuid4().hex}.db'}")
        await p.connect()
        opened.append(p)
        return p

    yield open_
    for p in reversed(opened):
        await p.close()


@pytest.fixture
async def sqlite_provider(open_sqlite: OpenSqlite) -> SqliteProvider:
    """A connected SQLite provider on a new file under ``tmp_path``."""
    return await open_sqlite()


class FakeEntryPoint:
    """A stand-in for an installed entry point (what ``importlib.metadata.entry_points`` yields)."""

    def __init__(self, name: str, dist: str, plugin: object) -> None:
        self.name, self._plugin = name, plugin
        self.dist = type("Dist", (), {"name": dist, "version": "1.0"})()

    def load(self) -> object:
        return self._plugin


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
async def folder_store(tmp_path: Path, open_sqlite: OpenSqlite) -> FolderStore:
    """A :class:`FolderStore` under ``tmp_path`` (``db/``, moved to ``moved/``), closed after the test."""
    folder = tmp_path / "db"
    folder.mkdir()
    p = await open_sqlite(folder / "events.db")
    assert p._checkpoints is not None  # a file database has the thread
    return FolderStore(p, p._checkpoints, folder, tmp_path / "moved")


@pytest.fixture
def absent_memory() -> Iterator[AbsentStore]:
    """A memory store name no instance has used (an instance that creates it keeps it in this process)."""
    import eventsource.memory

    name = f"absent-{uuid.uuid4().hex}"

    async def leftovers() -> list[str]:
        return [f"memory://{name}"] if name in eventsource.memory._NAMED else []

    yield AbsentStore({"url": f"memory://{name}"}, leftovers)
    eventsource.memory._NAMED.pop(name, None)


@pytest.fixture
def absent_sqlite(tmp_path: Path) -> AbsentStore:
    """A SQLite file in a folder that does not exist (under ``tmp_path``, which takes whatever is left)."""
    folder = tmp_path / "absent"

    async def leftovers() -> list[str]:
        return [str(folder)] if folder.exists() else []

    return AbsentStore({"url": f"sqlite:///{folder / 'events.db'}"}, leftovers)


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


@pytest.fixture
async def es(tmp_path: Path) -> AsyncIterator[EventSourcingManager]:
    """A manager on a SQLite file of its own (the projection tests' store)."""
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    m = EventSourcingManager(
        {"providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}}, "default_provider": "main"},
        host=PluginHost(),
    )
    await m.connect()
    yield m
    await m.close()


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a CLI test in its own directory, with no store or config from the environment."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("EVENTSOURCE_") and not key.startswith("EVENTSOURCE_TEST_"):
            monkeypatch.delenv(key)


class ProviderPlugin:
    """A plugin object registering extra provider classes (class, URL scheme) for one test."""

    def __init__(self, *classes: tuple[type[MemoryProvider], str]) -> None:
        self.classes = classes

    @eventsource.hookimpl
    def eventsource_register_providers(self, registry: Any) -> None:
        for cls, scheme in self.classes:
            registry.add(cls, schemes=(scheme,))


ON_MEMORY = """
def _on(store):  # a kit suite's provider fixture: a new memory store of class store, connected, closed after
    @pytest.fixture
    async def provider(self):
        p = store(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()

    return provider
"""
"""Source of ``_on(store)``, which :func:`kit_outcomes` puts where a module's text says ``{ON_MEMORY}`` (the module
imports ``pytest`` and ``uuid``)."""


def kit_outcomes(pytester: pytest.Pytester, source: str, *args: str) -> dict[str, str]:
    """Run the kit suites of the module ``source`` in ``pytester`` (``args``: pytest's, e.g. ``-k``).

    The outcome of each test class's one selected test, by class name.
    """
    pytester.makepyfile(test_kit_stores=source.replace("{ON_MEMORY}", ON_MEMORY))
    run = pytester.inline_run(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function", *args
    )  # fmt: skip
    reports = run.getreports("pytest_runtest_logreport")
    return {r.nodeid.split("::")[1]: r.outcome for r in reports if r.when == "call"}

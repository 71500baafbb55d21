"""``create_store`` on the core stores, and the command line's read-only commands that pass it off.

Off, ``connect()`` creates and changes nothing: a SQLite file that is missing, empty, another application's
database, at an older schema or not in WAL mode is refused (``StoreNotFoundError``) and left byte for byte; a
named memory store no instance created is refused and stays uncreated. A read-only command on a store at an
older schema migrated it; on a named memory store it created one.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import eventsource
import eventsource.memory
import pytest
from eventsource.cli import EXIT_NOT_FOUND, EXIT_OK, main
from eventsource.errors import ConfigurationError, ProviderError, StoreNotFoundError
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.model import NewEvent
from eventsource.plugins import PluginHost
from eventsource.sqlite import SqliteProvider, counts
from eventsource.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

HOST = PluginHost(load_entrypoints=False)
T0 = datetime(2022, 1, 1, tzinfo=UTC)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def older_store(path: Path, version: int) -> None:
    """A SQLite store as a release at schema ``version`` made it (WAL, one event)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for v in range(1, version + 1):
        for statement in MIGRATIONS[v]:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {v}")
    db.close()


async def refused(url: str, **settings: Any) -> StoreNotFoundError:
    p = SqliteProvider(url, create_store=False, **settings)
    with pytest.raises(StoreNotFoundError) as e:
        await p.connect()
    await p.close()
    return e.value


# ---------------------------------------------------------------------------- SQLite


async def test_sqlite_a_missing_file_and_its_folder_are_not_made(tmp_path: Path) -> None:
    path = tmp_path / "data" / "events.db"
    e = await refused(f"sqlite:///{path}")
    assert e.details["why"] == f"no file {str(path)!r}"
    assert "create_store is off" in str(e)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("kind", ["empty", "foreign"])
async def test_sqlite_a_database_without_the_stores_tables_is_left_byte_for_byte(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    path.write_bytes(b"")  # an empty database (what sqlite3.connect leaves on a new path)
    if kind == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.commit()
        db.close()
    before = digest(path)
    e = await refused(f"sqlite:///{path}")
    assert ("users" in e.details["why"]) == (kind == "foreign"), e.details
    assert digest(path) == before
    assert listing(tmp_path) == ["app.db"]  # no -wal/-shm left either


async def test_sqlite_an_older_schema_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    older_store(path, SCHEMA_VERSION - 1)
    before = digest(path)
    e = await refused(f"sqlite:///{path}")
    assert e.details["outdated"] is True
    assert f"at version {SCHEMA_VERSION - 1}" in e.details["why"]
    assert digest(path) == before
    p = SqliteProvider(f"sqlite:///{path}")  # create_store on (the default): migrated
    await p.connect()
    await p.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_sqlite_a_store_out_of_wal_mode_is_not_switched(tmp_path: Path) -> None:
    path = tmp_path / "rollback.db"
    made = SqliteProvider(f"sqlite:///{path}")
    await made.connect()
    await made.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = DELETE")
    db.close()
    before = digest(path)
    e = await refused(f"sqlite:///{path}")
    assert "journal mode is 'delete'" in e.details["why"]
    assert digest(path) == before


async def test_sqlite_a_newer_schema_is_refused_as_when_creating(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    older_store(path, SCHEMA_VERSION)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    p = SqliteProvider(f"sqlite:///{path}", create_store=False)
    with pytest.raises(ProviderError, match="newer than this eventsource"):
        await p.connect()
    await p.close()


async def test_sqlite_the_setting_comes_in_the_url_too_and_memory_databases_are_always_there(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    p = SqliteProvider(f"sqlite:///{path}?create_store=false")
    with pytest.raises(StoreNotFoundError):
        await p.connect()
    await p.close()
    assert not path.exists()
    own = SqliteProvider("sqlite:///:memory:", create_store=False)  # this instance's own database
    await own.connect()
    assert await own.get_stream_info("s") is None
    await own.close()


async def test_sqlite_stats_on_a_store_found_does_not_fold_the_counts_into_it(tmp_path: Path) -> None:
    # five processes, each appending under FOLD_EVERY events and leaving: none folded, the tail is long enough
    # that stats with create_store on fold it (a write); off, stats only read, and the file stays byte for byte
    path = tmp_path / "tail.db"
    per_writer = counts.FOLD_EVERY - 96
    for w in range(5):
        p = SqliteProvider(f"sqlite:///{path}")
        await p.connect()
        for b in range(0, per_writer, 1000):
            n = min(1000, per_writer - b)
            await p.append(f"s{w}", [NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", T0) for _ in range(n)], -1)
        await p.close()
    total = 5 * per_writer
    assert total > 4 * counts.FOLD_EVERY  # the tail past which stats fold before they count
    before = digest(path)
    reader = SqliteProvider(f"sqlite:///{path}", create_store=False)
    await reader.connect()
    try:
        st = await reader.stats()
    finally:
        await reader.close()
    assert (st.total_events, st.total_streams, st.events_by_type) == (total, 5, {"E": total})  # exact all the same
    assert digest(path) == before
    assert listing(tmp_path) == ["tail.db"]
    db = sqlite3.connect(path)
    assert db.execute(counts.SQL_COUNTED).fetchone()[0] == 0  # nothing folded
    db.close()


async def test_the_manager_takes_it_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "cfg.db"
    cfg = {"providers": {"a": {"url": f"sqlite:///{path}", "settings": {"create_store": False}}}}
    with pytest.raises(StoreNotFoundError):
        async with EventSourcingManager(cfg, host=HOST):
            pass
    assert not path.exists()


# ---------------------------------------------------------------------------- memory


async def test_memory_a_named_store_no_instance_created_is_refused_and_stays_uncreated() -> None:
    name = f"never-{uuid.uuid4().hex}"
    p = MemoryProvider(f"memory://{name}", create_store=False)
    with pytest.raises(eventsource.ProviderUnavailableError):  # unusable until connect() found the store
        await p.get_stream_info("s")
    with pytest.raises(StoreNotFoundError) as e:
        await p.connect()
    assert e.value.details["store"] == f"memory://{name}"
    assert name not in eventsource.memory._NAMED
    MemoryProvider(f"memory://{name}")  # created (create_store on)
    await p.connect()  # found now
    assert await p.get_stream_info("s") is None
    eventsource.memory._NAMED.pop(name)


async def test_memory_a_private_store_is_always_there_and_the_setting_is_checked() -> None:
    p = MemoryProvider("memory://", create_store=False)
    await p.connect()
    assert await p.get_stream_info("s") is None
    with pytest.raises(ConfigurationError, match="create_store"):
        MemoryProvider("memory://", create_store="maybe")


# ---------------------------------------------------------------------------- the command line


def test_a_read_only_command_does_not_migrate_an_older_sqlite_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    older_store(path, SCHEMA_VERSION - 1)
    before = digest(path)
    assert main(["--store", f"sqlite:///{path}", "stats"], host=HOST) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "needs a migration" in err and "only reads never migrates it" in err, err
    assert digest(path) == before
    assert listing(tmp_path) == ["old.db"]
    assert main(["--store", f"sqlite:///{path}", "append", "s", "E", "{}"], host=HOST) == EXIT_OK  # a write does
    assert main(["--store", f"sqlite:///{path}", "stats"], host=HOST) == EXIT_OK


@pytest.mark.parametrize("command", [["stats"], ["read", "s"], ["streams"], ["info", "s"]])
def test_a_read_only_command_on_a_named_memory_store_creates_none(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"typo-{uuid.uuid4().hex}"
    assert main(["--store", f"memory://{name}", *command], host=HOST) == EXIT_NOT_FOUND
    assert f"no eventsource store at memory://{name}" in capsys.readouterr().err
    assert name not in eventsource.memory._NAMED


class Older(MemoryProvider):
    """A third-party store written before the setting (no settings at all)."""

    kind = "older"
    settings_schema = None


class _OlderPlugin:
    @eventsource.hookimpl
    def eventsource_register_providers(self, registry: Any) -> None:
        registry.add(Older, schemes=("older",))


def test_a_store_without_the_setting_is_read_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("older", _OlderPlugin())])
    assert main(["--store", "older://", "stats"], host=host) == EXIT_OK
    err = capsys.readouterr().err
    assert "the 'older' provider has no create_store setting" in err, err

"""``create_store`` on checkpoint stores, and ``eventsource projections`` creating no checkpoint table.

``eventsource projections`` listed checkpoints through a store whose ``connect()`` created its table: run on a
SQLite event file that never held checkpoints, it added ``es_checkpoints`` to it (and ``stats``/``health``
with a configured ``checkpoint_store`` did the same). Checkpoint stores now take ``create_store`` like
providers; off, a missing table is refused with :class:`StoreNotFoundError` and the file is left as it was.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from eventsource.checkpoints import MemoryCheckpointStore, SqliteCheckpointStore
from eventsource.checkpoints.base import CheckpointNotFoundError
from eventsource.cli import EXIT_OK, main
from eventsource.errors import StoreNotFoundError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.testing import AbsentCheckpoints, CheckpointStoreSetupSuite
from eventsource.testing.checkpoint_setup import old_checkpoints_read_as_they_are

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

HOST = PluginHost(load_entrypoints=False)


def tables(path: Path) -> list[str]:
    """The tables of the SQLite file at ``path``, looked at without creating it (``mode=rw``)."""
    if not path.exists():
        return []
    db = sqlite3.connect(path.absolute().as_uri() + "?mode=rw", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    finally:
        db.close()


def columns(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[1] for r in db.execute("PRAGMA table_info(es_checkpoints)")]
    finally:
        db.close()


def event_file(tmp_path: Path) -> Path:
    """A SQLite event store with one event, and no checkpoints."""
    path = tmp_path / "events.db"

    async def make() -> None:
        m = EventSourcingManager({"providers": {"s": {"url": f"sqlite:///{path}"}}}, host=HOST)
        await m.connect()
        await m.append_event(stream_id="s-1", event_type="Made", data={})
        await m.close()

    asyncio.run(make())
    assert "es_checkpoints" not in tables(path)
    return path


class TestSqliteMissingFile(CheckpointStoreSetupSuite):
    @pytest.fixture
    async def absent_checkpoints(self, tmp_path: Path) -> AsyncIterator[AbsentCheckpoints]:
        path = tmp_path / "cp.db"

        async def leftovers() -> list[str]:
            return [f"file {path.name}", *tables(path)] if path.exists() else []

        yield AbsentCheckpoints(lambda on: SqliteCheckpointStore(f"sqlite:///{path}", create_store=on), leftovers)


class TestSqliteFileWithoutTheTable(CheckpointStoreSetupSuite):
    @pytest.fixture
    async def absent_checkpoints(self, tmp_path: Path) -> AsyncIterator[AbsentCheckpoints]:
        path = tmp_path / "other.db"
        sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.close()

        async def leftovers() -> list[str]:
            return [t for t in tables(path) if t != "other"]

        yield AbsentCheckpoints(lambda on: SqliteCheckpointStore(f"sqlite:///{path}", create_store=on), leftovers)


def old_table(path: Path) -> None:
    """``es_checkpoints`` as a release before checkpoint anchors made it (no ``anchor`` column)."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE es_checkpoints (name TEXT NOT NULL, source TEXT NOT NULL, scope TEXT NOT NULL, "
        "position INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (name, source))"
    )
    db.execute("INSERT INTO es_checkpoints VALUES ('view', 'src', 'all', 4, '')")
    db.commit()
    db.close()


async def test_create_store_off_reads_an_old_table_as_it_is_and_refuses_to_write_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_table(path)

    async def anchor_column() -> bool:
        return "anchor" in columns(path)

    await old_checkpoints_read_as_they_are(
        lambda on: SqliteCheckpointStore(f"sqlite:///{path}", create_store=on), anchor_column
    )


async def test_memory_checkpoints_take_create_store() -> None:
    store = MemoryCheckpointStore("memory://", create_store=False)
    await store.connect()
    assert await store.list() == []


def test_projections_on_a_store_without_checkpoints_creates_no_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = event_file(tmp_path)
    before = tables(path)
    monkeypatch.chdir(tmp_path)
    for argv in (["projections"], ["--json", "projections"], ["projections", "--checkpoints", f"sqlite:///{path}"]):
        assert main(["--store", f"sqlite:///{path}", *argv], host=HOST) == EXIT_OK
        out = capsys.readouterr()
        assert "no checkpoints in" in out.err, out
        assert "Traceback" not in out.err and out.out == ""
        assert tables(path) == before


def test_stats_with_a_checkpoint_store_creates_no_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = event_file(tmp_path)
    before = tables(path)
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "es.json"
    url = f"sqlite:///{path}"
    cfg.write_text(f'{{"providers": {{"s": {{"url": "{url}"}}}}, "checkpoint_store": "{url}"}}')
    for command in ("stats", "health"):
        assert main(["--config", str(cfg), "--json", command], host=HOST) == EXIT_OK
        out = capsys.readouterr()
        assert "Error" not in out.out, out
        assert tables(path) == before


@pytest.mark.parametrize("where", ["missing file", "event file"])
def test_subscription_lag_at_a_url_creates_no_checkpoint_store(where: str, tmp_path: Path) -> None:
    # a lag query given a URL opened the store with create_store on: a missing file was made with its
    # es_checkpoints table, an event file got the table. No store there: no checkpoint was ever committed
    path = event_file(tmp_path)
    cp = tmp_path / "cp.db" if where == "missing file" else path
    before = tables(cp)

    async def lag() -> None:
        async with EventSourcingManager({"providers": {"s": {"url": f"sqlite:///{path}"}}}, host=HOST) as m:
            await m.subscription_lag("view", f"sqlite:///{cp}")

    with pytest.raises(CheckpointNotFoundError) as e:
        asyncio.run(lag())
    assert tables(cp) == before
    assert cp.exists() == (where == "event file")
    assert "no eventsource store at" in str(e.value) and e.value.details["store"], e.value
    assert isinstance(e.value.__cause__, StoreNotFoundError)  # what is missing, in its details

"""The offline upcast rewrite: RewriteSuite on memory and SQLite, SQLite's folded counts, and the CLI command."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import ProviderPlugin
from eventsource.cli import EXIT_OK, EXIT_UNSUPPORTED, EXIT_USAGE, main
from eventsource.domain.rewrite import rewrite_stream, rewrite_stream_sync
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource.provider import Capabilities
from eventsource.sqlite import SqliteProvider, counts
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.rewrite import KEY, RewriteSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryRewrite(RewriteSuite):
    @pytest.fixture
    def provider(self, memory_provider: MemoryProvider) -> MemoryProvider:
        return memory_provider


class TestSqliteRewrite(RewriteSuite):
    @pytest.fixture
    def provider(self, sqlite_provider: SqliteProvider) -> SqliteProvider:
        return sqlite_provider


class _AppendOnly(MemoryProvider):
    """A store that declares it cannot change a stored event."""

    kind = "appendonly"
    capabilities = Capabilities(unsupported=frozenset({"rewrite_events"}))


class TestDeclaredUnsupportedRewrite(RewriteSuite):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[_AppendOnly]:
        p = _AppendOnly(f"memory://rw-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()


async def test_sqlite_rename_moves_folded_events_between_the_type_counts(tmp_path: Path) -> None:
    p = SqliteProvider(f"sqlite:///{tmp_path}/fold.db")
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="db", default=True)
    try:
        await m.append_events_batch(stream_id="s", events=[EventData("rw.Old", {"i": i}) for i in range(5)])
        await m.append_events_batch(stream_id="t", events=[EventData("rw.Old", {"i": 9})])
        await p._write("fold", lambda db: p._tx(db, counts.fold))  # the counts cover every event now
        m.rename_event_type("rw.Old", "rw.New")
        await rewrite_stream(m, "s")
        by_type = (await m.get_stats())["db"].events_by_type
        assert (by_type.get("rw.Old"), by_type.get("rw.New")) == (1, 5)
    finally:
        await m.close()


def _migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "rw_migrations.py").write_text(
        "def register(registry):\n    registry.add('rw.Added', 1, lambda d: {'item': d['name']})\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "rw_migrations:register"


def _run(capsys: pytest.CaptureFixture[str], *argv: str, host: PluginHost | None = None) -> tuple[int, str, str]:
    code = main(list(argv), host=host or PluginHost(load_entrypoints=False))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_dry_run_reports_then_the_run_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": "pen"}), EventData("rw.X", {})])
    spec = _migrations(tmp_path, monkeypatch)
    code, out, err = _run(capsys, "--store", url, "--json", "upcast-rewrite", "s", "--upcasters", spec, "--dry-run")
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert (report["dry_run"], report["read"], report["rewritten"], report["current"]) == (True, 2, 1, 1)
    assert report["changes"] == {"rw.Added v1 -> rw.Added v2": 1}
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        assert next(iter(m.read_stream("s"))).data == {"name": "pen"}  # the dry run wrote nothing
    code, out, err = _run(capsys, "--store", url, "upcast-rewrite", "s", "--upcasters", spec)
    assert code == EXIT_OK, err
    assert "s: read 2, rewrote 1, already current 1" in out
    assert "rw.Added v1 -> rw.Added v2: 1" in out
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        [first, _] = list(m.read_stream("s"))  # no upcaster registered here: the stored data is the new version
        assert (first.data, first.metadata) == ({"item": "pen"}, {"eventsource.schema": 2})


def test_cli_refuses_on_a_store_that_cannot_rewrite_and_on_bad_upcasters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("appendonly", ProviderPlugin((_AppendOnly, "appendonly")))])
    store = f"appendonly://{uuid.uuid4().hex}"
    assert _run(capsys, "--store", store, "append", "s", "rw.Added", '{"name": "pen"}', host=host)[0] == EXIT_OK
    spec = _migrations(tmp_path, monkeypatch)
    code, _, err = _run(capsys, "--store", store, "upcast-rewrite", "s", "--upcasters", spec, "--dry-run", host=host)
    assert code == EXIT_UNSUPPORTED
    assert "does not support rewrite_events" in err
    code, _, err = _run(capsys, "--store", store, "upcast-rewrite", "s", "--upcasters", "no_such_module:f", host=host)
    assert code == EXIT_USAGE
    assert "no_such_module" in err


async def test_events_of_a_shredded_scope_are_left_as_they_are(tmp_path: Path) -> None:
    config = {
        "providers": {"db": f"sqlite:///{tmp_path}/shred.db"},
        "encryption": True,
        "encryption_keys": {"k1": KEY},
        "encryption_scope": "stream",
        "encryption_key_store": "memory",
    }
    async with EventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        await m.append_events_batch(stream_id="gone", events=[EventData("rw.Added", {"name": "pen"})])
        m.add_upcaster("rw.Added", 1, lambda d: {"item": d["name"]})
        assert await m.shred(stream_id="gone") == 1
        before = [r async for r in m.get_provider().read_stream("gone")]
        report = await rewrite_stream(m, "gone")
        assert (report.read, report.shredded, report.rewritten) == (1, 1, 0)
        assert [r async for r in m.get_provider().read_stream("gone")] == before


def test_the_sync_manager_rewrites_through_the_same_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sync.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": "pen"})])
        m.add_upcaster("rw.Added", 1, lambda d: {"item": d["name"]})
        dry = rewrite_stream_sync(m, "s", dry_run=True)
        assert (dry.dry_run, dry.rewritten) == (True, 1)
        report = rewrite_stream_sync(m, "s")
        assert (report.rewritten, report.changes) == (1, {"rw.Added v1 -> rw.Added v2": 1})
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        assert next(iter(m.read_stream("s"))).data == {"item": "pen"}  # stored as v2: no upcaster here


def test_console_script_imports_upcasters_from_the_working_directory(tmp_path: Path) -> None:
    """``--upcasters mymodule:register`` names a module in the working directory, as ``python -m`` does."""
    script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
    assert script is not None, "the eventsource console script is not installed next to this interpreter"
    (tmp_path / "rw_local_migrations.py").write_text(
        "def register(registry):\n    registry.add('rw.Added', 1, lambda d: {'item': d['name']})\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_") and k != "PYTHONPATH"}
    url = f"sqlite:///{tmp_path}/local.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": "pen"})])
    done = subprocess.run(
        [script, "--store", url, "upcast-rewrite", "s", "--upcasters", "rw_local_migrations:register"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert "s: read 1, rewrote 1, already current 0" in done.stdout


async def test_dry_run_creates_no_key_for_a_stream_it_would_encrypt(tmp_path: Path) -> None:
    """Events stored before encryption was on would be sealed by the run; the dry run must not mint their key."""
    url = f"sqlite:///{tmp_path}/plain.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        await m.append_events_batch(stream_id="p", events=[EventData("rw.Added", {"name": "pen"})])
    keys = tmp_path / "keys.jsonl"
    config = {
        "providers": {"db": url},
        "encryption": True,
        "encryption_keys": {"k1": KEY},
        "encryption_scope": "stream",
        "encryption_key_store": str(keys),
    }
    async with EventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        m.add_upcaster("rw.Added", 1, lambda d: {"item": d["name"]})
        report = await rewrite_stream(m, "p", dry_run=True)
        assert (report.dry_run, report.rewritten) == (True, 1)
        assert "stream:p" not in (keys.read_text(encoding="utf-8") if keys.exists() else "")  # no key minted
        await rewrite_stream(m, "p")
        assert "stream:p" in keys.read_text(encoding="utf-8")  # the real run seals it under a key of its own
        assert [e.data async for e in m.read_stream("p")] == [{"item": "pen"}]


def test_cli_says_what_a_run_that_failed_part_way_already_rewrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/half.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": n}) for n in "abcde"])
    (tmp_path / "rw_failing.py").write_text(
        "def register(registry):\n"
        "    registry.add('rw.Added', 1, lambda d: {'item': d['name'] if d['name'] != 'c' else 1 / 0})\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = _run(
        capsys, "--store", url, "upcast-rewrite", "s", "--upcasters", "rw_failing:register", "--batch-size", "2"
    )
    assert code != EXIT_OK
    assert "ZeroDivisionError" in err
    # the first batch (versions 1-2) is stored at the new version: the person needs to know, and what to do
    assert "s: stopped part-way: rewrote 2 of 4 events read" in err, err
    assert "run it again" in err
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        assert [e.data for e in m.read_stream("s")][:3] == [{"item": "a"}, {"item": "b"}, {"name": "c"}]


def test_cli_with_json_says_what_a_failed_run_rewrote_in_the_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/half.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": n}) for n in "abcde"])
    (tmp_path / "rw_failing.py").write_text(
        "def register(registry):\n"
        "    registry.add('rw.Added', 1, lambda d: {'item': d['name'] if d['name'] != 'c' else 1 / 0})\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = _run(
        capsys,
        "--store",
        url,
        "--json",
        "upcast-rewrite",
        "s",
        "--upcasters",
        "rw_failing:register",
        "--batch-size",
        "2",
    )
    # the note came as a text line before the JSON error line, where a script reading the error never saw it
    *before, last = err.splitlines()
    assert not [line for line in before if "stopped part-way" in line], err
    err = json.loads(last)["error"]["message"]
    assert code != EXIT_OK
    assert "ZeroDivisionError" in err
    # the first batch (versions 1-2) is stored at the new version: the person needs to know, and what to do
    assert "s: stopped part-way: rewrote 2 of 4 events read" in err, err
    assert "run it again" in err


async def test_upcast_data_its_event_class_refuses_is_never_stored(tmp_path: Path) -> None:
    """The rewrite replaces the only copy of the old payload: data its class refuses on read must not replace it."""
    import marshmallow
    from eventsource.domain import DomainEvent
    from eventsource.errors import ValidationError

    class _Schema(marshmallow.Schema):
        item = marshmallow.fields.String(required=True)
        qty = marshmallow.fields.Integer(required=True)

    @dataclasses.dataclass(frozen=True)
    class Added(DomainEvent, type_name="rw.Added", version=2, schema=_Schema):
        item: str
        qty: int

    url = f"sqlite:///{tmp_path}/classes.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        await m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": "pen"})])
        before = [r async for r in m.get_provider().read_stream("s")]
        m.add_upcaster("rw.Added", 1, lambda d: {"item": d["name"], "qty": "one"})  # a buggy step
        m.register_event_class(Added)
        for dry_run in (True, False):
            with pytest.raises(ValidationError) as info:
                await rewrite_stream(m, "s", dry_run=dry_run)
            assert info.value.details["field"] == "qty"
        assert [r async for r in m.get_provider().read_stream("s")] == before  # v1, as stored


def test_cli_without_any_upcaster_says_so_instead_of_reporting_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forgotten --upcasters used to print 'rewrote 0, already current N' and exit 0, as if migrated."""
    url = f"sqlite:///{tmp_path}/none.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": "pen"})])
    code, out, err = _run(capsys, "--store", url, "upcast-rewrite", "s")
    assert code == EXIT_USAGE, (out, err)
    assert "--upcasters" in err
    assert "eventsource_register_upcasters" in err


async def test_an_upcaster_that_returns_nothing_is_an_error_not_null_data(tmp_path: Path) -> None:
    """A step that updates its dict in place and forgets to return it would replace the only copy with null."""
    from eventsource.errors import UpcastError

    url = f"sqlite:///{tmp_path}/none.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        await m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": "pen"})])
        before = [r async for r in m.get_provider().read_stream("s")]
        m.add_upcaster("rw.Added", 1, lambda d: d.update(qty=1))  # returns None
        with pytest.raises(UpcastError, match="returned None"):
            [e async for e in m.read_stream("s")]
        with pytest.raises(UpcastError, match="returned None"):
            await rewrite_stream(m, "s")
        assert [r async for r in m.get_provider().read_stream("s")] == before  # as stored

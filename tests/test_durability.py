"""The durability audit on the embedded stores (SQLite pragmas, the memory store) and ``eventsource health --strict``.

The audit reads the writer connection, so a pragma changed after connecting is what health reports.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

import eventsource
import pytest
from eventsource.cli import main
from eventsource.cli.exitcodes import EXIT_CODES, EXIT_DEGRADED, EXIT_OK, EXIT_UNAVAILABLE
from eventsource.manager.monitoring import with_durability, with_faults
from eventsource.memory import MemoryProvider
from eventsource.model import HealthStatus
from eventsource.plugins import PluginHost
from eventsource.sqlite import durability
from eventsource.sqlite.provider import SqliteProvider
from eventsource.testing import DurabilitySuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, or where /tmp is a tmpfs (Fedora, Arch...) a directory under the working directory: the safe
    SQLite store must not sit on a RAM file system, which the audit reports."""
    import shutil
    import tempfile
    from pathlib import Path

    if not durability.filesystem(str(tmp_path / "x.db"))[0]:
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix=".es-durability-", dir=Path.cwd()))
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def _set(p: SqliteProvider, pragma: str) -> None:
    await p._write("test", lambda db: db.execute(f"PRAGMA {pragma}"))


class TestSqliteDurability(DurabilitySuite):
    """``synchronous=OFF`` set on the writer connection after it opened (the settings still say ``full``)."""

    @pytest.fixture
    async def provider(self, disk_dir: Path) -> AsyncIterator[SqliteProvider]:
        p = SqliteProvider(f"sqlite:///{disk_dir}/safe-{uuid.uuid4().hex}.db")
        await p.connect()
        yield p
        await p.close()

    @pytest.fixture
    async def unsafe(self, provider: SqliteProvider) -> AsyncIterator[tuple[SqliteProvider, str]]:
        await _set(provider, "synchronous = OFF")
        yield provider, "synchronous"


@pytest.mark.parametrize("mode", ["MEMORY", "OFF"])
def test_sqlite_journal_mode_without_a_journal_on_disk_is_a_risk(tmp_path: Path, mode: str) -> None:
    """A file whose journal is in memory or off (the provider switches to WAL; another process may not)."""
    db = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    try:
        db.execute(f"PRAGMA journal_mode = {mode}")
        db.execute("PRAGMA synchronous = FULL")
        assert [(r["setting"], r["value"]) for r in durability.audit(db, memory=False)] == [("journal_mode", mode)]
        db.execute("PRAGMA journal_mode = WAL")
        assert durability.audit(db, memory=False) == []
    finally:
        db.close()


@pytest.mark.parametrize(("pragma", "value"), [("synchronous = NORMAL", "NORMAL"), ("synchronous = OFF", "OFF")])
async def test_sqlite_synchronous_level_is_read_from_the_connection(disk_dir: Path, pragma: str, value: str) -> None:
    p = SqliteProvider(f"sqlite:///{disk_dir}/x.db", synchronous="full")
    await p.connect()
    try:
        await _set(p, pragma)
        h = await p.health()
    finally:
        await p.close()
    assert [(r["setting"], r["value"]) for r in h.details["durability_risks"]] == [("synchronous", value)]


async def test_sqlite_in_memory_database_and_memory_store_are_degraded() -> None:
    for p in (SqliteProvider("sqlite:///:memory:"), MemoryProvider()):
        await p.connect()
        try:
            h = await DurabilitySuite.health_of(p)
        finally:
            await p.close()
        assert h.healthy, h.message
        assert h.details["status"] == "degraded", h


def test_health_strict_exits_on_a_degraded_store(capsys: pytest.CaptureFixture[str], disk_dir: Path) -> None:
    """Without --strict a degraded store exits 0 with its risks listed; with --strict, 7."""
    assert main(["--store", "memory://", "health"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "DEGRADED" in out
    assert "risk: storage=memory" in out
    assert main(["--store", "memory://", "--json", "health", "--strict"]) == EXIT_DEGRADED
    status = json.loads(capsys.readouterr().out)["default"]
    assert status["details"]["status"] == "degraded"
    assert status["details"]["durability_risks"][0]["setting"] == "storage"
    assert main(["--store", f"sqlite:///{disk_dir}/ok.db", "append", "s", "E"]) == EXIT_OK  # health opens a store
    capsys.readouterr()  # (it no longer creates one where the path names no file: that is unhealthy)
    assert main(["--store", f"sqlite:///{disk_dir}/ok.db", "health", "--strict"]) == EXIT_OK
    assert "healthy, answered" in capsys.readouterr().out


class Plain(MemoryProvider):
    """A provider whose health does not audit durability (a third-party store that predates the audit)."""

    kind = "plain"

    async def health(self) -> HealthStatus:
        return HealthStatus(healthy=True, provider=self.name)


class Noted(MemoryProvider):
    """A provider whose audit found a note and a setting it could not read, and no risk."""

    kind = "noted"

    async def health(self) -> HealthStatus:
        ok = HealthStatus(healthy=True, provider=self.name, latency_ms=0.1)
        return with_durability(ok, [], notes=["one replica on one server"], unread=["sync_interval"])


class Faulted(MemoryProvider):
    """A provider with no durability risk and one part failing."""

    kind = "faulted"

    async def health(self) -> HealthStatus:
        ok = with_durability(HealthStatus(healthy=True, provider=self.name, latency_ms=0.1), [])
        return with_faults(ok, [{"component": "wal_checkpoints", "error": "OperationalError: disk I/O error"}])


@pytest.fixture(autouse=True)
def _store_x() -> None:
    """The fakes below are memory stores named by their URLs' path (``x``): created, as a store in use is."""
    MemoryProvider("memory://x")


class _Plugin:
    @eventsource.hookimpl
    def eventsource_register_providers(self, registry: Any) -> None:
        registry.add(Plain, schemes=("plain",))
        registry.add(Noted, schemes=("noted",))
        registry.add(Faulted, schemes=("faulted",))


def test_health_strict_names_a_fault_as_a_fault(capsys: pytest.CaptureFixture[str]) -> None:
    # a store degraded only by a fault was told it "can lose acknowledged writes or has a fault", and the exit
    # codes' list said 7 meant a setting that can lose acknowledged writes
    host = PluginHost(load_entrypoints=False, plugins=[("durability", _Plugin())])
    assert main(["--store", "faulted://x", "health"], host=host) == EXIT_OK
    assert main(["--store", "faulted://x", "health", "--strict"], host=host) == EXIT_DEGRADED
    captured = capsys.readouterr()
    assert "  fault: wal_checkpoints: OperationalError: disk I/O error" in captured.out
    assert "error: degraded (--strict): default has a failing part (wal_checkpoints)" in captured.err
    assert "lose acknowledged writes" not in captured.out + captured.err
    assert "a part of it fails" in EXIT_CODES[EXIT_DEGRADED]


def test_health_prints_notes_and_what_was_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("durability", _Plugin())])
    assert main(["--store", "noted://x", "health", "--strict"], host=host) == EXIT_OK
    out = capsys.readouterr().out
    assert "noted://x): healthy, answered in 0.1 ms" in out
    assert "  note: one replica on one server" in out
    assert "  not read: sync_interval" in out
    assert main(["--store", "plain://x", "health", "--strict"], host=host) == EXIT_OK
    assert "not read: durability settings: provider 'plain' does not audit them" in capsys.readouterr().out


async def test_a_store_without_the_audit_is_declared_unread() -> None:
    """A third-party provider that does not audit its settings is healthy, and says the audit was not read."""
    p = Plain()
    await p.connect()
    h = await DurabilitySuite.health_of(p)
    await p.close()
    assert h.details["status"] == "healthy"
    assert h.details["durability_unread"] == ["durability settings: provider 'plain' does not audit them"]


async def test_a_sqlite_file_on_a_ram_filesystem_is_a_risk(ram_dir: str) -> None:
    """Review: a store in /dev/shm (tmpfs: RAM) loses every event at reboot or power loss, whatever the pragmas;
    health said healthy. The file system is read from the kernel's mount table."""
    p = SqliteProvider(f"sqlite:///{ram_dir}/es.db")
    await p.connect()
    try:
        h = await DurabilitySuite.health_of(p)
    finally:
        await p.close()
    assert h.details["status"] == "degraded", h.message
    (r,) = h.details["durability_risks"]
    assert (r["setting"], r["value"]) == ("filesystem", "tmpfs"), r
    assert "/dev/shm" in r["scope"]


@pytest.fixture
def ram_dir() -> Iterator[str]:
    """A fresh directory in /dev/shm (a tmpfs on Linux), removed afterwards."""
    import shutil
    import tempfile
    from pathlib import Path

    assert Path("/dev/shm").is_dir(), "this test needs /dev/shm (a tmpfs) on Linux"
    d = tempfile.mkdtemp(prefix="es-review-", dir="/dev/shm")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Broken(MemoryProvider):
    """A third-party provider whose health check has a bug: it raises something that is not an EventSourceError."""

    kind = "broken"

    async def health(self) -> HealthStatus:
        msg = "boom: a bug in the plugin's health check"
        raise RuntimeError(msg)


async def test_a_health_check_that_raises_anything_is_reported_unhealthy() -> None:
    """Review: health "never raises"; a plugin's RuntimeError escaped health_check() (and the CLI's health)."""
    p = Broken()
    await p.connect()
    try:
        h = await DurabilitySuite.health_of(p)
    finally:
        await p.close()
    assert not h.healthy
    assert h.details["status"] == "unhealthy"
    assert h.details["reason"] == "error"
    assert "RuntimeError: boom" in h.message


def test_the_cli_reports_a_health_check_that_raises_as_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    class _Broken:
        @eventsource.hookimpl
        def eventsource_register_providers(self, registry: Any) -> None:
            registry.add(Broken, schemes=("broken",))

    host = PluginHost(load_entrypoints=False, plugins=[("broken", _Broken())])
    assert main(["--store", "broken://x", "health"], host=host) == EXIT_UNAVAILABLE
    assert "UNHEALTHY: RuntimeError: boom" in capsys.readouterr().out


def test_a_fault_makes_a_store_degraded_beside_its_durability_risks() -> None:
    fault = {"component": "wal_checkpoints", "error": "OperationalError: disk I/O error", "since": "now"}
    assert with_faults(HealthStatus(healthy=True), []).details == {}
    alone = with_faults(HealthStatus(healthy=True), [fault])
    assert alone.details["status"] == "degraded"
    assert alone.message == "degraded: wal_checkpoints: OperationalError: disk I/O error"
    risky = with_durability(HealthStatus(healthy=True), [{"setting": "synchronous", "value": "0", "scope": "connection",
                                                          "risk": "loses commits"}])  # fmt: skip
    both = with_faults(risky, [fault])
    assert both.details["status"] == "degraded"
    assert both.message.startswith(risky.message)
    assert both.message.endswith("wal_checkpoints: OperationalError: disk I/O error")
    down = with_faults(HealthStatus(healthy=False, message="unreachable"), [fault])
    assert (down.details["status"], down.message) == ("unhealthy", "unreachable")

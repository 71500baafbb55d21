"""The SQLite store in a hostile environment, through the public manager API: its file replaced, removed
or made read-only under it, the disk full. Nothing acknowledged may be lost; every refusal is typed and says
what to do."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from eventsource import EventSourcingManager
from eventsource.errors import ConfigurationError, ProviderError, ProviderUnavailableError
from eventsource.model import ANY
from eventsource.plugins import PluginHost
from eventsource.sqlite import SqliteProvider
from eventsource.sqlite.connection import LOOK_EVERY

if TYPE_CHECKING:
    from pathlib import Path


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _manager(path: Path) -> EventSourcingManager:
    url = f"sqlite:///{quote(str(path))}"
    return EventSourcingManager({"providers": {"s": url}}, host=PluginHost(load_entrypoints=False))


async def test_an_append_after_the_file_was_replaced_is_refused_not_acknowledged_and_lost(tmp_path: Path) -> None:
    # another store's file renamed over the open one (a backup restored with mv, its -wal and -shm cleared):
    # the writer went on committing into the unlinked file and acknowledged each append; at close SQLite
    # does not checkpoint a moved file, so every event acknowledged after the swap was gone
    path, other = tmp_path / "events.db", tmp_path / "other.db"
    async with _manager(other) as o:
        await o.append_event(stream_id="b", event_type="B", data={}, expected_version=0)
    m = await _manager(path).connect()
    try:
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
        other.replace(path)
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"events.db{suffix}").unlink()
        await asyncio.sleep(LOOK_EVERY)  # the files are looked at once in that time (docs/internals/sqlite.md)
        for _ in range(2):  # the first write after the look, and every one after it
            with pytest.raises(ProviderUnavailableError, match="replaced") as e:
                await m.append_event(stream_id="a", event_type="A", data={}, expected_version=ANY)
            assert "connect again" in str(e.value)
        health = (await m.health_check())["s"]
        assert not health.healthy
        assert "replaced" in health.message
    finally:
        await m.close()
    async with _manager(path) as again:  # the file now at the path is the other store's, untouched
        assert (await again.get_stream_info("b")).version == 1
        assert not await again.stream_exists("a")


async def _swapped(tmp_path: Path) -> tuple[EventSourcingManager, Path]:
    """A manager whose file was renamed away (its -wal and -shm left at the path) and a copy of another put there."""
    path, other = tmp_path / "events.db", tmp_path / "other.db"
    async with _manager(other) as o:
        await o.append_event(stream_id="b", event_type="B", data={}, expected_version=0)
    m = await _manager(path).connect()
    for n in range(3):  # still in the -wal (the checkpoint thread copies it past a threshold)
        await m.append_event(stream_id="a", event_type="A", data={"n": n})
    assert (tmp_path / "events.db-wal").stat().st_size > 0
    path.rename(tmp_path / "moved.db")
    path.write_bytes(other.read_bytes())
    await asyncio.sleep(LOOK_EVERY)
    return m, path


async def test_a_read_after_the_file_was_swapped_is_refused_not_served_from_the_moved_file(tmp_path: Path) -> None:
    # only the writer looked at the files: the reader went on answering from the file renamed away, as if it
    # were the one at the path (stream "a" there, none of the new file's "b")
    m, _ = await _swapped(tmp_path)
    try:
        for read in (m.read_stream("a"), m.read_stream("b"), m.read_all()):
            with pytest.raises(ProviderUnavailableError, match="nothing was read"):
                [e async for e in read]
        with pytest.raises(ProviderUnavailableError, match="replaced"):
            await m.get_stream_info("a")
    finally:
        await m.close()


async def test_the_moved_file_s_wal_is_never_applied_to_the_file_now_at_the_path(tmp_path: Path) -> None:
    # SQLite names the -wal after the path and does not checkpoint a moved file at close: the WAL of the file
    # renamed away stayed at the path, and the next connect applied it to the file put there: "a" (the moved
    # file's events) showed up in it, its own "b" was gone, and the moved file lost every event still in its WAL
    m, path = await _swapped(tmp_path)
    await m.close()
    async with _manager(path) as now:
        assert not await now.stream_exists("a")
        assert [e.event_type async for e in now.read_stream("b")] == ["B"]
    async with _manager(tmp_path / "moved.db") as moved:
        assert [e.data["n"] async for e in moved.read_stream("a")] == [0, 1, 2]


async def test_a_checkpoint_asked_for_after_the_swap_leaves_the_file_now_at_the_path_alone(tmp_path: Path) -> None:
    # the checkpoint thread, connecting for its first checkpoint after the swap, opened the file put at the path,
    # saw it was not the provider's and closed it: closing that connection checkpointed the moved file's WAL
    # (still at the path) into it, overwriting its pages ("b" gone, "a" there, before the provider even closed)
    import sqlite3

    m, path = await _swapped(tmp_path)
    try:
        checkpoints = m.get_provider("s")._checkpoints  # (health pokes it when it reports a fault)
        assert checkpoints.db is None  # not connected yet: three small appends do not ask for a checkpoint
        checkpoints.poke()
        for _ in range(200):
            if checkpoints.error is not None:
                break
            await asyncio.sleep(0.05)
        assert "no longer the database" in str(checkpoints.error)
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)  # the file alone, no -wal read
        try:
            assert db.execute("SELECT stream_id FROM es_streams").fetchall() == [("b",)]
        finally:
            db.close()
    finally:
        await m.close()


_KILLED = """
import asyncio, os, signal, sys
from eventsource import EventSourcingManager
from eventsource.model import ANY
from eventsource.plugins import PluginHost
from eventsource.sqlite.connection import LOOK_EVERY

path = sys.argv[1]


async def main() -> None:
    m = EventSourcingManager({"providers": {"s": f"sqlite:///{path}"}}, host=PluginHost(load_entrypoints=False))
    await m.connect()
    await m.append_event(stream_id="a", event_type="A", data={}, expected_version=ANY)
    os.unlink(path + "-wal")
    os.unlink(path + "-shm")
    await asyncio.sleep(LOOK_EVERY)
    try:
        r = await m.append_event(stream_id="a", event_type="A", data={}, expected_version=ANY)
        print("acknowledged", r.event_id, flush=True)
    except Exception as e:
        print("refused", type(e).__name__, e, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


asyncio.run(main())
"""


def test_an_append_after_the_wal_was_removed_is_refused_not_acknowledged_into_a_deleted_file(tmp_path: Path) -> None:
    # the -wal and -shm deleted while open (taken for temporary files): the writer appended into the
    # unlinked WAL and acknowledged; a crash (here SIGKILL) then lost every such event
    path = tmp_path / "events.db"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout.startswith("refused ProviderUnavailableError"), out.stdout + out.stderr
    assert "connect again" in out.stdout


_READ_ONLY = """
import asyncio, ctypes, json, os, sys

if os.geteuid() == 0:  # root writes any file whatever its mode: drop that, for this process only
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    assert libc.capget(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())
    data[0].effective &= ~0b1110  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
    data[0].permitted &= ~0b1110
    assert libc.capset(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())

from eventsource import EventSourcingManager
from eventsource.model import ANY
from eventsource.plugins import PluginHost


async def main() -> None:
    out = {}
    m = EventSourcingManager({"providers": {"s": "sqlite:///" + sys.argv[1]}}, host=PluginHost(load_entrypoints=False))
    try:
        await m.connect()
        out["version"] = (await m.get_stream_info("a")).version
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=ANY)
        out["appended"] = True
    except Exception as e:
        out["error"] = [type(e).__name__, str(e)]
    if m.list_providers():
        out["health"] = (await m.health_check())["s"].details.get("status")
    await m.close()
    print(json.dumps(out))


asyncio.run(main())
"""


@pytest.mark.parametrize("what", ["file", "folder"])
async def test_a_read_only_database_is_a_typed_error_that_says_what_to_do(tmp_path: Path, what: str) -> None:
    # a file (or its folder, where SQLite makes the -wal and -shm) this user may not write: the append was an
    # untyped "ProviderError ... failed: OperationalError: attempt to write a readonly database" (the folder:
    # at connect), and health() said ok on a store that refused every write
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "events.db"
    async with _manager(path) as m:
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
    assert sorted(p.name for p in folder.iterdir()) == ["events.db"]
    (path if what == "file" else folder).chmod(0o444 if what == "file" else 0o555)
    try:
        run = partial(subprocess.run, capture_output=True, text=True, timeout=120, check=False)
        out = await asyncio.to_thread(run, [sys.executable, "-c", textwrap.dedent(_READ_ONLY), str(path)])
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    kind, message = result["error"]
    assert kind == "ProviderUnavailableError", message
    assert "read-only" in message
    assert "write permission" in message
    if what == "file":  # it opens (reads work), so health must say writes do not: unhealthy, as for PostgreSQL
        assert result["version"] == 1
        assert result["health"] == "unhealthy"
    async with _manager(path) as m:  # nothing was written
        assert (await m.get_stream_info("a")).version == 1


_FULL = """
import asyncio, json, os, resource, sys
from eventsource import EventData, EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.sqlite.connection import LOOK_EVERY

path = sys.argv[1]


async def main() -> None:
    m = EventSourcingManager({"providers": {"s": "sqlite:///" + path}}, host=PluginHost(load_entrypoints=False))
    out = {"acknowledged": [], "errors": {}}
    async with m:
        version = 0
        for i in range(30):
            r = await m.append_event(stream_id="a", event_type="A", data={"i": i}, expected_version=version)
            version = r.version
            out["acknowledged"].append(r.event_id)
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        wal = os.path.getsize(path + "-wal")
        # the file may not grow (SIGXFSZ is ignored by Python: the write gets EFBIG, SQLite's "disk I/O error")
        resource.setrlimit(resource.RLIMIT_FSIZE, (wal, limit[1]))
        big = {"x": "y" * 20000}
        calls = {
            "append": lambda: m.append_event(stream_id="a", event_type="A", data=big, expected_version=version),
            "batch": lambda: m.append_events_batch(
                stream_id="a", expected_version=version, events=[EventData("A", big) for _ in range(5)]
            ),
            "snapshot": lambda: m.create_snapshot(stream_id="a", data=big),
            "retention": lambda: m.apply_retention([{"policy": "max_count", "max_events": 1}]),
        }
        for name, call in calls.items():
            try:
                await call()
            except Exception as e:
                out["errors"][name] = [type(e).__name__, str(e)]
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        out["version"] = (await m.get_stream_info("a")).version
        r = await m.append_event(stream_id="a", event_type="A", data=big, expected_version=version)
        out["acknowledged"].append(r.event_id)
        out["after"] = r.version
    print(json.dumps(out))


asyncio.run(main())
"""


async def test_a_full_disk_is_a_typed_error_that_says_what_to_do_and_the_store_works_once_space_returns(
    tmp_path: Path,
) -> None:
    # every write refused by the file system was "cannot use the database file: disk I/O error": typed, but
    # no word of what to do (nor that nothing was stored)
    path = tmp_path / "events.db"
    run = partial(subprocess.run, capture_output=True, text=True, timeout=120, check=False)
    out = await asyncio.to_thread(run, [sys.executable, "-c", textwrap.dedent(_FULL), str(path)])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["errors"]) == {"append", "batch", "snapshot", "retention"}, result["errors"]
    for name, (kind, message) in result["errors"].items():
        if name == "retention":  # a RetentionError wrapping the store's error
            assert "ProviderUnavailableError" in message, message
        else:
            assert kind == "ProviderUnavailableError", message
        assert "free space" in message, message
    assert result["version"] == 30  # nothing of a refused write
    assert result["after"] == 31
    async with _manager(path) as m:  # every acknowledged event, once, in order
        ids = [e.event_id async for e in m.read_stream("a")]
        assert ids == result["acknowledged"]


_FULL_AT_CONNECT = """
import asyncio, json, resource, signal, sys
from pathlib import Path
from eventsource import EventSourcingManager
from eventsource.plugins import PluginHost

folder = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)


async def use(path: Path) -> None:
    m = EventSourcingManager({"providers": {"s": f"sqlite:///{path}"}}, host=PluginHost(load_entrypoints=False))
    try:
        await m.connect()
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
    finally:
        await m.close()


async def main() -> None:
    out = {}
    for limit in [int(a) for a in sys.argv[2:]]:
        path = folder / f"at-{limit}" / "events.db"
        path.parent.mkdir()
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            await use(path)
            first = ["ok", ""]
        except Exception as e:
            first = [type(e).__name__, str(e)]
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        try:
            await use(path)  # the disk has room again: the file left behind must be usable
            again = ["ok", ""]
        except Exception as e:
            again = [type(e).__name__, str(e)]
        out[limit] = {"first": first, "again": again}
    print(json.dumps(out))


asyncio.run(main())
"""


async def test_a_connect_on_a_full_disk_says_so_and_leaves_nothing_a_later_connect_trips_on(tmp_path: Path) -> None:
    # with room for the database file but not its -wal and -shm (a file size limit of 4 to 20 KB), connect
    # failed with sqlite3's bare OperationalError "disk I/O error": not an eventsource error, no word of the disk
    limits = [0, 100, 4096, 8192, 12288, 20000, 40000, 70000]
    run = partial(subprocess.run, capture_output=True, text=True, timeout=120, check=False)
    script = [sys.executable, "-c", textwrap.dedent(_FULL_AT_CONNECT), str(tmp_path), *map(str, limits)]
    out = await asyncio.to_thread(run, script)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for limit, outcome in result.items():
        kind, message = outcome["first"]
        assert kind == "ProviderUnavailableError", (limit, kind, message)
        assert "free space" in message, (limit, message)
        assert outcome["again"] == ["ok", ""], (limit, outcome["again"])
    for limit in limits:  # each file left behind holds one event now, at the current schema
        async with _manager(tmp_path / f"at-{limit}" / "events.db") as m:
            assert (await m.get_stream_info("a")).version == 1


async def test_a_nul_in_the_path_is_a_configuration_error(tmp_path: Path) -> None:
    # 'sqlite:///a%00b.db' passed the URL checks and failed at connect with Python's untyped ValueError
    # (embedded null byte)
    url = f"sqlite:///{tmp_path}/a%00b.db"
    m = EventSourcingManager({"providers": {"s": url}}, host=PluginHost(load_entrypoints=False))
    with pytest.raises(ConfigurationError, match="NUL"):
        await m.connect()
    await m.close()
    with pytest.raises(ConfigurationError, match="NUL"):
        SqliteProvider(f"sqlite:///{tmp_path}/a%00b.db")


@pytest.mark.parametrize("what", ["folder", "fifo", "symlink loop", "name too long"])
async def test_a_path_that_cannot_be_a_database_file_says_what_it_is_and_makes_nothing(
    tmp_path: Path, what: str
) -> None:
    # a folder, a FIFO or a symlink loop was "unable to open database file" (the FIFO: "disk I/O error");
    # a file name with no room for its "-wal" suffix made an empty file there, then failed the same way
    path = tmp_path / ("L" * (255 - len(".db")) + ".db" if what == "name too long" else "events.db")
    if what == "folder":
        path.mkdir()
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "symlink loop":
        path.symlink_to(path)
    before = _names(tmp_path)
    m = _manager(path)
    with pytest.raises(ProviderUnavailableError) as e:
        await m.connect()
    await m.close()
    said = {
        "folder": "is a directory",
        "fifo": "is not a regular file",
        "symlink loop": "symbolic links",
        "name too long": "too long",
    }[what]
    assert said in str(e.value)
    assert _names(tmp_path) == before


async def test_a_file_overwritten_in_place_is_reported_corrupt_with_what_to_do(tmp_path: Path) -> None:
    # garbage written over the open file (same inode: cp or > onto it): reads failed with the catch-all
    # "ProviderError ... failed: DatabaseError: database disk image is malformed", nothing said what to do, and
    # a new manager's connect said the same
    path = tmp_path / "events.db"
    async with _manager(path) as m:
        for i in range(200):
            await m.append_event(stream_id=f"s{i % 7}", event_type="A", data={"p": "x" * 300}, expected_version=ANY)
        await m.health_check()
    async with _manager(path) as m:  # a fresh start: every page comes from the file now
        with path.open("r+b") as f:
            f.write(b"\xa5" * path.stat().st_size)
        health = (await m.health_check())["s"]  # it read the schema version only, and said ok
        assert not health.healthy
        assert "corrupt" in health.message
        with pytest.raises(ProviderError) as e:
            await m.get_stream_info("s3")
        assert "corrupt" in str(e.value)
        assert "backup" in str(e.value)


@pytest.mark.parametrize("where", ["missing folder", "folder"])
async def test_a_checkpoint_file_that_cannot_open_is_named_with_its_cause(tmp_path: Path, where: str) -> None:
    # "cannot open the checkpoint file: OperationalError": no file, no reason, nothing to act on
    path = tmp_path / "missing" / "c.db" if where == "missing folder" else tmp_path / "adir"
    if where == "folder":
        path.mkdir()
    async with _manager(tmp_path / "events.db") as m:
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
        with pytest.raises(ProviderUnavailableError) as e:
            async with m.subscribe(checkpoint=f"sqlite:///{path}", name="n") as sub:
                async for _ in sub:
                    break
    assert str(path) in str(e.value)
    said = {"missing folder": "does not exist", "folder": "is a directory"}[where]
    assert said in str(e.value)


async def test_an_append_after_the_shm_alone_was_removed_is_refused(tmp_path: Path) -> None:
    # the -shm holds the WAL's index and its locks: with it removed, another process opening the file makes a
    # new one and takes the write lock there while this one holds it in the old one; both append into one WAL.
    # This provider went on writing (only the file and -wal were compared)
    path = tmp_path / "events.db"
    async with _manager(path) as m:
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
        (tmp_path / "events.db-shm").unlink()
        await asyncio.sleep(LOOK_EVERY)
        with pytest.raises(ProviderUnavailableError, match="-shm"):
            await m.append_event(stream_id="a", event_type="A", data={}, expected_version=1)
    async with _manager(path) as m:
        assert (await m.get_stream_info("a")).version == 1


async def test_health_of_a_relative_path_after_a_chdir_looks_at_the_file_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the working directory changed after connect: health looked for the relative path in the new one
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    m = EventSourcingManager({"providers": {"s": "sqlite:///events.db"}}, host=PluginHost(load_entrypoints=False))
    async with m:
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
        before = (await m.health_check())["s"]
        monkeypatch.chdir(tmp_path / "b")
        after = (await m.health_check())["s"]
        assert after.details["status"] == before.details["status"], after.message
        assert (await m.append_event(stream_id="a", event_type="A", data={}, expected_version=1)).version == 2


@pytest.mark.parametrize("name", ["a?b.db", "a#b.db", "a%41b.db", "a b é.db"])
async def test_spawn_args_name_the_same_file_whatever_its_characters(tmp_path: Path, name: str) -> None:
    # spawn_args() wrote the absolute path into a URL unquoted: '?' began a query string (refused), '#' was
    # refused, and '%41' was read back as 'A': another process was sent to another file, or none
    path = tmp_path / name
    async with _manager(path) as m:
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
        other = SqliteProvider(**m.get_provider("s").spawn_args())
        assert other.path == str(path)


async def test_a_database_file_with_a_second_hard_link_is_a_durability_risk(tmp_path: Path) -> None:
    # SQLite names the -wal and -shm after the name it opened: a manager on each of two hard links of one file
    # writes two WALs into one database (here appends failed with "UNIQUE constraint failed: es_events.position";
    # across processes, commits are lost). health() said ok
    path = tmp_path / "events.db"
    async with _manager(path) as m:
        await m.append_event(stream_id="a", event_type="A", data={}, expected_version=0)
        assert "hard_links" not in str((await m.health_check())["s"].details.get("durability_risks"))
        (tmp_path / "copy.db").hardlink_to(path)
        health = (await m.health_check())["s"]
        assert health.details["status"] == "degraded", health.message
        [found] = [r for r in health.details["durability_risks"] if r["setting"] == "hard_links"]
        assert found["value"] == "2"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///es.db?password=s3cret&bogus=1",
        "sqlite:///es.db?synchronous=maybe&password=s3cret",
        "sqlite://app:s3cret@host/es.db",
    ],
)
def test_a_refused_sqlite_url_is_quoted_with_its_secrets_masked(url: str) -> None:
    """A SQLite URL refused for its form was quoted as given: a password pasted into it (a URL copied from another
    store's configuration) went into the error, the CLI's output and logs, where every other store masks it."""
    with pytest.raises(ConfigurationError) as info:
        SqliteProvider(url)
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)

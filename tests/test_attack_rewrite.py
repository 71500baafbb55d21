"""Attack review of the offline upcast rewrite: what a run may write, mint or leave behind, and how it stops."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from eventsource.cli import EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_OK, main
from eventsource.domain.rewrite import rewrite_stream
from eventsource.errors import ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

KEY = base64.b64encode(bytes(range(32))).decode()
HOST = PluginHost(load_entrypoints=False)


def _migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "rw_attack_migrations.py").write_text(
        "def register(registry):\n    registry.add('rw.Added', 1, lambda d: {'item': d['name']})\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "rw_attack_migrations:register"


@pytest.mark.parametrize("dry_run", [True, False])
def test_cli_on_a_mistyped_sqlite_path_creates_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    """``upcast-rewrite`` only changes events a store already holds: a missing file is a typo, not a new store.

    It used to create an empty SQLite file (a dry run included) and then say the stream does not exist.
    """
    spec = _migrations(tmp_path, monkeypatch)
    path = tmp_path / "typo.db"
    argv = ["--store", f"sqlite:///{path}", "upcast-rewrite", "s", "--upcasters", spec]
    code = main([*argv, "--dry-run"] if dry_run else argv, host=HOST)
    err = capsys.readouterr().err
    assert code == EXIT_NOT_FOUND, err
    assert "no store at" in err
    assert not path.exists()
    assert not list(tmp_path.glob("typo.db*"))


async def test_an_upcast_over_max_event_size_mints_no_key(tmp_path: Path) -> None:
    """A refused rewrite must not mint (and persist) a data key, as a refused append does not.

    The events were stored in the clear before encryption was on, so the run would seal them under a new key
    of the stream's scope; the size check used to run only after sealing, leaving a key nothing uses.
    """
    url = f"sqlite:///{tmp_path}/plain.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=HOST) as m:
        await m.append_events_batch(stream_id="p", events=[EventData("rw.Added", {"name": "pen"})])
    keys = tmp_path / "keys.jsonl"
    config = {
        "providers": {"db": url},
        "encryption": True,
        "encryption_keys": {"k1": KEY},
        "encryption_scope": "stream",
        "encryption_key_store": str(keys),
        "max_event_size": 1000,
    }
    async with EventSourcingManager(config, host=HOST) as m:
        before = [r async for r in m.get_provider().read_stream("p")]
        m.add_upcaster("rw.Added", 1, lambda d: {"item": d["name"], "pad": "x" * 5000})
        with pytest.raises(ValidationError, match="max_event_size"):
            await rewrite_stream(m, "p")
        assert "stream:p" not in (keys.read_text(encoding="utf-8") if keys.exists() else "")
        assert [r async for r in m.get_provider().read_stream("p")] == before


async def test_a_cancelled_rewrite_on_the_memory_store_stops_at_the_next_batch() -> None:
    """A rewrite is cancellable between batches on every store (Ctrl-C, a shutdown, a timeout).

    The memory store never suspends, so the cancel used to land only after the whole stream was rewritten
    (and nothing else on the loop, a live subscription say, ran meanwhile).
    """
    async with EventSourcingManager({"providers": {"db": "memory://rw-attack-cancel"}}, host=HOST) as m:
        for _ in range(3):
            await m.append_events_batch(stream_id="s", events=[EventData("rw.Added", {"name": "pen"})] * 1000)
        task = asyncio.current_task()
        assert task is not None
        seen = 0

        def step(d: dict[str, Any]) -> dict[str, Any]:
            nonlocal seen
            seen += 1
            if seen == 1200:  # in the third batch of 500
                task.cancel()
            return {"item": d["name"]}

        m.add_upcaster("rw.Added", 1, step)
        with pytest.raises(asyncio.CancelledError):
            await rewrite_stream(m, "s", batch_size=500)
        task.uncancel()
        stored = [r async for r in m.get_provider().read_stream("s")]
        assert seen == 1500  # the batch under way is finished (one atomic write), the next one never read
        assert all(r.metadata == b"" for r in stored[1500:])  # the rest as it was
        report = await rewrite_stream(m, "s")  # a second run finishes, without a second step on any event
        assert (report.rewritten, report.current) == (1500, 1500)
        assert {e.data["item"] async for e in m.read_stream("s")} == {"pen"}


_SLOW = """
import asyncio, os, pathlib, time

def register(registry):
    seen = 0

    def step(d):
        nonlocal seen
        seen += 1
        if seen == 1200:  # in the third batch: say so, then wait for the Ctrl-C to reach the run
            pathlib.Path(os.environ["RW_MARK"]).write_text("x")
            task = asyncio.current_task()
            for _ in range(6000):
                if task.cancelling():
                    break
                time.sleep(0.01)
        return {"item": d["name"], "n": d["n"]}

    registry.add("rw.Added", 1, step)
"""


def test_ctrl_c_mid_way_says_what_stays_and_a_rerun_finishes(tmp_path: Path) -> None:
    """Ctrl-C during a run: exit 130 with what stays and what to do; every event is old or new; a rerun finishes.

    The CLI used to print only ``interrupted``: nothing said that earlier batches are stored, or that the
    command can simply be run again, or that the streams after it were not started.
    """
    url = f"sqlite:///{tmp_path}/ctrl_c.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=HOST) as m:
        for i in range(3):
            events = [EventData("rw.Added", {"name": "pen", "n": i * 1000 + j}) for j in range(1000)]
            m.append_events_batch(stream_id="s", events=events)
        m.append_events_batch(stream_id="t", events=[EventData("rw.Added", {"name": "ink", "n": 0})])
    (tmp_path / "rw_slow_migrations.py").write_text(_SLOW, encoding="utf-8")
    mark = tmp_path / "mark"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env.update(RW_MARK=str(mark), PYTHONPATH=os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]))
    argv = [sys.executable, "-m", "eventsource.cli", "--store", url, "upcast-rewrite", "s", "t"]
    argv += ["--upcasters", "rw_slow_migrations:register", "--batch-size", "500"]
    proc = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - a shell may ignore it
    )
    try:
        while not mark.exists() and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, (out, err)
    assert "s: interrupted part-way" in err, err
    assert "run it again" in err
    assert "not started: t" in err
    with SyncEventSourcingManager({"providers": {"db": url}}, host=HOST) as m:
        stored = list(m.read_stream("s"))
        old = [e for e in stored if e.metadata.get("eventsource.schema", 1) == 1]
        new = [e for e in stored if e.metadata.get("eventsource.schema", 1) == 2]
        assert len(old) + len(new) == 3000
        assert 0 < len(new) < 3000
        assert all(e.data == {"name": "pen", "n": e.data["n"]} for e in old)
        assert all(e.data == {"item": "pen", "n": e.data["n"]} for e in new)
    env.pop("RW_MARK")
    (tmp_path / "rw_done_migrations.py").write_text(
        "def register(registry):\n    registry.add('rw.Added', 1, lambda d: {'item': d['name'], 'n': d['n']})\n",
        encoding="utf-8",
    )
    argv[argv.index("rw_slow_migrations:register")] = "rw_done_migrations:register"
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == EXIT_OK, done.stderr
    assert f"s: read 3000, rewrote {len(old)}, already current {len(new)}" in done.stdout
    with SyncEventSourcingManager({"providers": {"db": url}}, host=HOST) as m:
        assert [e.data for e in m.read_stream("s")] == [{"item": "pen", "n": n} for n in range(3000)]


@pytest.mark.parametrize("store", ["sqlite", "memory"])
@pytest.mark.parametrize("new_type", ["rw.New\n", "rw.\x00New", "x" * 300, "rw.\ud800"])
async def test_a_rename_to_a_type_name_an_append_refuses_is_never_stored(
    tmp_path: Path, store: str, new_type: str
) -> None:
    """The rewrite stores nothing an append would refuse: a renamed type (a typo, a name read from a file)
    with a control character, NUL, over 256 characters or a lone surrogate is a ValidationError, dry run or not.

    It used to be stored as is (SQLite, memory; PostgreSQL stored the newline and the long name), leaving events
    whose type no filter can name, or failed deep in the store with an encoding error.
    """
    url = f"sqlite:///{tmp_path}/names.db" if store == "sqlite" else f"memory://rw-names-{tmp_path.name}"
    async with EventSourcingManager({"providers": {"db": url}}, host=HOST) as m:
        await m.append_events_batch(stream_id="s", events=[EventData("rw.Old", {"n": 1})] * 3)
        before = [r async for r in m.get_provider().read_stream("s")]
        m.rename_event_type("rw.Old", new_type)
        for dry_run in (True, False):
            with pytest.raises(ValidationError) as info:
                await rewrite_stream(m, "s", dry_run=dry_run)
            assert info.value.details["field"] == "event_type"
            assert info.value.details["rewrite_report"]["rewritten"] == 0
        assert [r async for r in m.get_provider().read_stream("s")] == before


@pytest.mark.parametrize("module", ["eventsource.plugins", "eventsource.domain", "eventsource.domain.rewrite"])
def test_each_module_the_rewrite_touches_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """The rewrite's checks live in the manager package, which imports the plugin host: never at import time."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr

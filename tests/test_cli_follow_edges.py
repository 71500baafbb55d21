"""``eventsource follow`` edge cases, run as the installed console script on SQLite (a stream not created yet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import eventsource
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.sync import SyncEventSourcingManager

WAIT = 60.0
"""Seconds to wait for a line that must come (a loaded machine starts Python slowly)."""


def _follow(cwd: Path, *argv: str) -> subprocess.Popen[str]:
    script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
    assert script is not None, "the eventsource console script is not installed next to this interpreter"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTHON"))}
    pipe = subprocess.PIPE
    return subprocess.Popen([script, *argv], stdout=pipe, stderr=pipe, cwd=cwd, env=env, text=True)


def _line(pipe: object) -> str:
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(pipe.readline()), daemon=True)  # type: ignore[attr-defined]
    reader.start()
    reader.join(WAIT)
    return got[0] if got else ""


def test_follow_from_the_end_of_a_stream_not_created_yet_prints_its_first_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/follow.db"
    es = SyncEventSourcingManager({"providers": {"s": {"url": url}}})
    es.connect()
    try:
        es.append_events_batch(stream_id="other-1", events=[eventsource.EventData("Placed", {"n": 0})])
        # `tail -F` of a file not there yet: --from end means "only what is appended from now on"
        proc = _follow(tmp_path, "--store", url, "follow", "orders-new", "--from", "end", "--limit", "1")
        try:
            assert "following stream 'orders-new' from version 1" in _line(proc.stderr), proc.poll()
            es.append_events_batch(stream_id="orders-new", events=[eventsource.EventData("Placed", {"n": 1})])
            assert _line(proc.stdout).split()[3] == "orders-new@1"
            _, err = proc.communicate(timeout=WAIT)
            assert proc.returncode == EXIT_OK, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        es.close()


def test_follow_reports_every_skipped_event_even_past_the_kept_window(tmp_path: Path) -> None:
    import asyncio

    from eventsource.model import ANY, NewEvent, utcnow
    from eventsource.sqlite import SqliteProvider
    from eventsource.subscriptions.subscription import SKIPPED_KEPT

    url = f"sqlite:///{tmp_path}/skips.db"
    bad_count = SKIPPED_KEPT * 2 + 50  # in a row: one read of the next event passes over them all

    async def write() -> None:
        p = SqliteProvider(url)
        await p.connect()

        def bad_event(i: int) -> NewEvent:
            return NewEvent(f"bad-{i:04}", "Ok", b"?", b"", "x-gone", utcnow())

        bad = [bad_event(i) for i in range(bad_count)]
        await p.append("s", bad, ANY)
        await p.close()

    asyncio.run(write())
    es = SyncEventSourcingManager({"providers": {"s": {"url": url}}})
    es.connect()
    try:
        es.append_events_batch(stream_id="s", events=[eventsource.EventData("Ok", {"n": 1})])
    finally:
        es.close()
    script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
    assert script is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTHON"))}
    argv = [script, "--store", url, "--json", "follow", "--skip-undecodable", "--limit", "1"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == EXIT_OK, done.stderr
    named = done.stderr.count("skipped undecodable event at position")
    # every skip is named, or the ones not kept are counted: none passes unreported (stderr is not a terminal,
    # so no closing total is printed either)
    unnamed = [line for line in done.stderr.splitlines() if "more undecodable events skipped" in line]
    told = named + sum(int(line.split()[0].replace(",", "")) for line in unnamed)
    assert told == bad_count, done.stderr[-500:]

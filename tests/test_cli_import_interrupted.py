"""``eventsource import`` stopped by Ctrl-C says what it leaves and how to finish (exit 130), not only "interrupted"."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from conftest import console_script

if TYPE_CHECKING:
    from pathlib import Path


SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)
"""Run the CLI with Ctrl-C as a KeyboardInterrupt even where the test runs with SIGINT ignored (a background job)."""


def _export(tmp_path: Path, n: int) -> list[str]:
    """The lines of a real export of ``n`` events (header first)."""
    from eventsource.sync import SyncEventSourcingManager

    src = f"sqlite:///{tmp_path / 'src.db'}"
    with SyncEventSourcingManager({"providers": {"s": {"url": src}}, "default_provider": "s"}) as es:
        for k in range(0, n, 500):
            es.append_events_batch(
                stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(k, k + 500)]
            )
    out = tmp_path / "x.jsonl"
    script, env = console_script()
    subprocess.run([script, "--store", src, "export", "-o", str(out)], check=True, capture_output=True, env=env)
    return out.read_text().splitlines(keepends=True)


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(db) as c:
            return int(c.execute("SELECT COUNT(*) FROM es_events").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_an_import_stopped_by_ctrl_c_says_what_stays_and_how_to_finish(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    script, env = console_script()
    lines = _export(tmp_path, 3000)
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_DEFAULT, script, "import", "-", "--to", f"sqlite:///{db}", "--window", "500"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,  # the position map of an import from stdin goes to the working directory
    )
    assert proc.stdin is not None
    proc.stdin.write("".join(lines))
    proc.stdin.flush()  # the pipe stays open: the import waits for more after writing these
    deadline = time.monotonic() + 60
    while _stored(db) < 3000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _stored(db) == 3000, "the import did not write what it read"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    # the count is the progress the import last heard of: the write of the last window (500) may have landed
    # before its progress report, so it can lag the store by that window, never more
    assert re.search(r"after reading (2,500|3,000) events", err) and "again" in err, err

"""Attack review: Ctrl-C at any moment of an inline sync call on PostgreSQL (not only while a statement waits).

The SIGINTs go to a child process (the test runner must not get them). ``test_sync_inline.py`` covers a Ctrl-C
while a statement waits on the server; here the presses land anywhere: in the library's or psycopg's Python
code, or in one of the pool's own tasks, which run on the caller's thread while the loop runs inline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest

CHILD = """
import json, os, random, signal, sys, threading, time
from eventsource import SyncEventSourcingManager

url, schema = sys.argv[1], sys.argv[2]
settings = {"schema": schema, "pool_max_size": 4}
es = SyncEventSourcingManager({"timeout": 2, "providers": {"pg": {"url": url, "settings": settings}}}).connect()
es.append_event(stream_id="s", event_type="E", data={})
go = threading.Event()

pressing = threading.Lock()  # held from a round's start to its Ctrl-C

def press() -> None:  # one Ctrl-C a few milliseconds into each round of calls
    while True:
        go.wait()
        with pressing:
            go.clear()
            time.sleep(random.uniform(0, 0.004))
            os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=press, daemon=True).start()
interrupts = 0
for _ in range(150):
    try:
        go.set()
        for _ in range(5):
            es.append_event(stream_id="s", event_type="E", data={})
            list(es.read_stream("s", from_version=1, to_version=3))
        time.sleep(0.01)  # (the press lands here at the latest)
    except KeyboardInterrupt:  # a REPL, a management command that reports it and goes on
        interrupts += 1
ignored = False
while not ignored:  # on a loaded machine the last round's Ctrl-C may come after it: taken here, not uncaught
    try:
        with pressing:  # no Ctrl-C on its way
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        ignored = True
    except KeyboardInterrupt:
        interrupts += 1
time.sleep(0.1)
started = time.monotonic()
try:
    es.append_event(stream_id="s", event_type="E", data={"last": True})
    outcome = "ok"
except Exception as e:
    outcome = f"{type(e).__name__}: {e}"
took = time.monotonic() - started
conn = es.get_provider()._conn

def measure() -> tuple[int, dict]:
    stats = conn.pool.get_stats()
    kept = int(conn._kept is not None and conn._kept_pool is conn.pool)  # the one kept for the next inline call
    return kept, stats

kept, stats = measure()
# pool_size counts a connection the pool is still making to replace one a Ctrl-C broke: its task runs only while
# the loop runs, which an inline call does for just that call. Let the loop run on its thread a while: a connection
# a call never gave back stays checked out; one on its way settles.
es._loop.go_threaded()
deadline = time.monotonic() + 10
while stats["pool_size"] - stats["pool_available"] - kept and time.monotonic() < deadline:
    time.sleep(0.05)
    kept, stats = measure()
out = {"interrupts": interrupts, "outcome": outcome, "took": took, "kept": kept}
out.update(checked_out=stats["pool_size"] - stats["pool_available"] - kept, waiting=stats.get("requests_waiting", 0))
print(json.dumps(out), flush=True)  # os._exit below does not flush a pipe
os._exit(0)
"""


def test_ctrl_c_anywhere_in_inline_calls_leaves_the_pool_whole_and_later_calls_within_the_timeout(
    url: str, tmp_path: Path
) -> None:
    schema = f"atk_{uuid.uuid4().hex[:10]}"
    script = tmp_path / "child.py"
    # a Ctrl-C must be a KeyboardInterrupt even where the test runs with SIGINT ignored (a background job)
    script.write_text(
        "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n" + textwrap.dedent(CHILD)
    )
    try:
        try:
            done = subprocess.run(
                [sys.executable, str(script), url, schema], capture_output=True, text=True, timeout=120, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the child hung: a call after the interrupts never ended (the manager's timeout is 2s)")
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.splitlines()[-1])
        assert out["interrupts"] > 100
        assert out["outcome"] == "ok", out
        assert out["took"] < 5, out  # the manager's timeout is 2s
        assert out["checked_out"] == 0, f"pooled connections never returned: {out}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

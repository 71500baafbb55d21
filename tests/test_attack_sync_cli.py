"""Attack review of the sync API and the command line, as services and people use them.

Each test failed on the code it was written against. A Ctrl-C is a real SIGINT, sent to a child process
(the test runner must not get it); stores are real SQLite files.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import console_script

SUBSCRIPTION_INTERRUPTED = """
import os, signal, sys
from eventsource import SyncEventSourcingManager

db, ck = sys.argv[1], sys.argv[2]
es = SyncEventSourcingManager({"providers": {"d": f"sqlite:///{db}"}}).connect()
for b in range(3):
    es.append_events_batch(stream_id="s", events=[{"event_type": "E", "data": {"n": b * 100 + k}} for k in range(100)])
fired = []

def upcaster(event):
    # a Ctrl-C while the loop thread decodes a batch (the consumer waits in next(sub)): a real SIGINT, once
    if event.data["n"] == 150 and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)
    return event

es.register_upcaster("E", upcaster)
seen, interrupts, commits, last = [], 0, [], 0
sub = es.subscribe(checkpoint=f"sqlite:///{ck}", name="mailer", page_size=100, poll_interval=0.05)
with sub:
    while 299 not in seen and interrupts < 5:
        try:
            for event in sub:
                seen.append(event.data["n"])
                last = event.position
                if event.data["n"] == 299:  # the last one stored
                    break
        except KeyboardInterrupt:  # a REPL or a service that logs the interrupt and carries on
            interrupts += 1
            commits.append([sub.commit().position, last])  # "after the last event the iterator handed out"
signal.signal(signal.SIGINT, signal.SIG_IGN)
es.close()
print(json.dumps({"interrupts": interrupts, "seen": seen, "commits": commits}))
"""


INTERRUPTIBLE = "import signal as _signal\n_signal.signal(_signal.SIGINT, _signal.default_int_handler)\n"


def _child(tmp_path: Path, script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "child.py"
    # a Ctrl-C must be a KeyboardInterrupt even where the test runs with SIGINT ignored (a background job)
    path.write_text(INTERRUPTIBLE + "import json\n" + textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_sync_subscription_keeps_the_batch_a_ctrl_c_interrupted(tmp_path: Path) -> None:
    """A KeyboardInterrupt in ``next(sub)`` must not drop the batch the loop thread had read meanwhile.

    The SyncSubscription is still usable after the interrupt (nothing says otherwise), and its async
    subscription counted the whole batch as handed out: iterating on skipped it without a word, and the
    ``commit()`` the docs describe as "after the last event the iterator handed out" stored a checkpoint past
    100 events nobody handled (a restart never delivers them either).
    """
    done = _child(tmp_path, SUBSCRIPTION_INTERRUPTED, str(tmp_path / "e.db"), str(tmp_path / "ck.db"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["interrupts"] == 1
    [(committed, handled)] = out["commits"]
    assert committed <= handled, "the checkpoint went past events the consumer never got"
    seen = out["seen"]
    assert sorted(set(seen)) == list(range(300)), f"lost: {sorted(set(range(300)) - set(seen))[:5]}..."


@pytest.mark.parametrize("argv", [("read", "orders-1"), ("info", "orders-1"), ("streams",), ("stats",)])
def test_a_read_only_command_on_a_mistyped_sqlite_path_says_there_is_no_store_and_creates_none(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    """``eventsource --store sqlite:///evnts.db stats`` (a typo) made an empty store and reported 0 events.

    ``read``/``info`` said "stream 'orders-1' does not exist" (true of the empty file they had just created,
    not of the user's store) and ``stats``/``streams`` exited 0 with an empty store; each left an empty
    database behind, and created every missing directory of the path. ``copy``, ``export`` and
    ``projections`` already refuse such a source; these now do too (exit 3, not found), naming the path.
    """
    script, env = console_script()
    typo = tmp_path / "data" / "evnts.db"
    done = subprocess.run(  # the installed console script
        [script, "--store", f"sqlite:///{typo}", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert not typo.parent.exists(), "a read-only command created the store (and its directory)"
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)  # not found
    assert str(typo) in done.stderr
    assert "no file" in done.stderr


CLOSE_IN_SIGNAL_HANDLER = """
import os, signal, sqlite3, sys, threading
from eventsource import SyncEventSourcingManager

es = SyncEventSourcingManager({"providers": {"d": f"sqlite:///{sys.argv[1]}"}}).connect()
if sys.argv[2] == "threaded":
    es.subscribe(stream_id="other")  # (any subscription moves the loop to its thread)

def on_term(signum, frame):  # the textbook graceful shutdown
    es.close()
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
es.append_event(stream_id="s", event_type="E", data={})
holder = sqlite3.connect(sys.argv[1], check_same_thread=False, isolation_level=None)
holder.execute("BEGIN IMMEDIATE")  # another writer: the next append waits for it, so the SIGTERM lands in the call
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
threading.Timer(1.0, holder.rollback).start()
for n in range(3):
    es.append_event(stream_id="s", event_type="E", data={"n": n})
print("the signal handler never ran")
"""


@pytest.mark.parametrize("mode", ["inline", "threaded"])
def test_close_from_a_signal_handler_during_a_call_never_hangs_and_says_what_to_do(tmp_path: Path, mode: str) -> None:
    """A SIGTERM handler calling ``es.close()`` while the main thread is inside a call.

    With the loop on its thread (after a ``subscribe``), close() waited for the calls in flight, one of them
    the very call the handler had interrupted: the process hung until SIGKILL. Inline, it was refused as "called
    from its own event loop (a sync snapshot handler or upcaster ...)", which names neither the signal
    handler nor what to do. Either way close() cannot finish there; it must refuse at once, saying so.
    """
    try:
        done = _child(tmp_path, CLOSE_IN_SIGNAL_HANDLER, str(tmp_path / "e.db"), mode, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("close() in the signal handler hung")
    assert "signal handler" in done.stderr, done.stderr[-2000:]


RUN_SYNC_INTERRUPTED = """
import os, signal, sqlite3, sys, threading, time
from eventsource import SyncEventSourcingManager
from eventsource.projections import Projection, ProjectionRunner, SqliteSink

d = sys.argv[1]
es = SyncEventSourcingManager({"providers": {"d": f"sqlite:///{d}/ev.db"}}).connect()
for b in range(50):
    es.append_events_batch(stream_id="o", events=[{"event_type": "P", "data": {"n": b * 100 + k}} for k in range(100)])
read = sqlite3.connect(f"{d}/read.db")
read.execute("CREATE TABLE seen (n INTEGER PRIMARY KEY)")
read.commit()

def placed(event, tx):
    tx.execute("INSERT INTO seen VALUES (?)", (event.data["n"],))
    time.sleep(0.0002)

runner = ProjectionRunner(es, batch_size=100, poll_interval=0.2)
runner.add(Projection("p", {"P": placed}), SqliteSink(f"sqlite:///{d}/read.db"))
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C while it catches up
try:
    runner.run_sync()
except KeyboardInterrupt:
    pass
es.close()
at_close = read.execute("SELECT count(*) FROM seen").fetchone()[0]
time.sleep(1.0)
later = read.execute("SELECT count(*) FROM seen").fetchone()[0]
print(json.dumps({"at_close": at_close, "later": later}))
"""


def test_an_interrupted_run_sync_has_stopped_the_runner_before_the_interrupt_propagates(tmp_path: Path) -> None:
    """Ctrl-C in ``runner.run_sync()``, then ``es.close()``: nothing may write to the sink after that.

    run_sync returned at once, its runner still running on the loop thread; close() then stopped the loop
    under it ("Task was destroyed but it is pending"), and the sink's worker committed another batch after
    close() had returned, which the next runner found as "another runner moved it".
    """
    done = _child(tmp_path, RUN_SYNC_INTERRUPTED, str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert 0 < out["at_close"] < 5000
    assert out["later"] == out["at_close"], "the interrupted runner went on writing after close()"
    assert "Task was destroyed but it is pending" not in done.stderr


def test_closing_the_facade_ends_a_subscription_another_thread_waits_in(tmp_path: Path) -> None:
    """A worker thread in ``for event in sub`` at the tail, the main thread shutting down with ``es.close()``.

    close() waited for the calls in flight before it closed anything, and the worker's ``next(sub)`` waits for
    the next event: close() hung until someone appended to the stream (forever, on a quiet one). The
    async manager's close() ends open subscriptions; the facade's now does that first.
    """
    from eventsource import SyncEventSourcingManager

    es = SyncEventSourcingManager({"providers": {"d": f"sqlite:///{tmp_path / 'e.db'}"}}).connect()
    es.append_event(stream_id="x", event_type="E", data={})
    seen: list[object] = []
    sub = es.subscribe(stream_id="x", poll_interval=0.2)

    def consume() -> None:
        with sub:
            seen.extend(e.version for e in sub)  # ends when the subscription is closed
        seen.append("ended")

    _close_beside(es, consume, lambda: bool(seen), "the subscription's next()")
    assert seen == [1, "ended"]


def test_closing_the_facade_stops_a_runner_another_thread_runs_with_run_sync(tmp_path: Path) -> None:
    """A thread in ``runner.run_sync()`` (it never returns by itself), the main thread calling ``es.close()``.

    close() waited forever for the runner's call; it now stops the runner first (``run_sync`` returns).
    """
    import sqlite3

    from eventsource import SyncEventSourcingManager
    from eventsource.projections import Projection, ProjectionRunner, SqliteSink

    es = SyncEventSourcingManager({"providers": {"d": f"sqlite:///{tmp_path / 'ev.db'}"}}).connect()
    es.append_event(stream_id="o", event_type="P", data={"n": 1})
    with sqlite3.connect(tmp_path / "read.db") as read:
        read.execute("CREATE TABLE seen (n INTEGER)")
    runner = ProjectionRunner(es, poll_interval=0.2)

    def placed(event: object, tx: sqlite3.Connection) -> None:
        tx.execute("INSERT INTO seen VALUES (1)")

    runner.add(Projection("p", {"P": placed}), SqliteSink(f"sqlite:///{tmp_path / 'read.db'}"))
    out: list[object] = []

    def applied() -> bool:
        with contextlib.closing(sqlite3.connect(tmp_path / "read.db")) as read:
            return bool(read.execute("SELECT * FROM seen").fetchall())

    _close_beside(es, lambda: out.append(runner.run_sync()), applied, "run_sync() in another thread")
    assert out == [None]


def _close_beside(es: Any, work: Callable[[], object], ready: Callable[[], bool], what: str) -> None:
    """``work()`` in a thread until ``ready()``, then ``es.close()`` in another: it must return, and so ``work``."""
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    closer = threading.Thread(target=es.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), f"es.close() hung waiting for {what}"
    worker.join(10)

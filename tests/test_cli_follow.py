"""``eventsource follow`` and ``eventsource projections``, run as the installed console script on SQLite.

Each test starts the real command in a subprocess on a SQLite file, appends from the test process and reads
the command's output line by line; Ctrl-C is a real SIGINT.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import eventsource
import pytest
from conftest import console_script
from eventsource.checkpoints import Checkpoint, SqliteCheckpointStore
from eventsource.cli.exitcodes import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.sqlite import SqliteProvider
from eventsource.sync import SyncEventSourcingManager

WAIT = 60.0
"""Seconds to wait for a line that must come (a loaded machine starts Python slowly)."""

_DEFAULT_SIGINT_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


class Follower:
    """A running ``eventsource follow``: read its lines with a deadline, interrupt it like Ctrl-C."""

    def __init__(self, cwd: Path, *argv: str) -> None:
        script, env = console_script()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _DEFAULT_SIGINT_THEN_EXEC, script, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env, text=True,
        )  # fmt: skip

    def lines(self, n: int, *, stderr: bool = False) -> list[str]:
        out: list[str] = []
        pipe = self.proc.stderr if stderr else self.proc.stdout

        def read() -> None:
            assert pipe is not None
            while len(out) < n:
                line = pipe.readline()
                if not line:
                    return
                out.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(WAIT)
        assert len(out) == n, f"follow printed {len(out)} of {n} lines: {out} (exit {self.proc.poll()})"
        return out

    def finish(self, *, interrupt: bool) -> tuple[int, str]:
        if interrupt:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        return self.proc.returncode, err


def cli(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    script, env = console_script()
    return subprocess.run([script, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/follow.db"


@pytest.fixture
def es(url: str) -> Any:
    m = SyncEventSourcingManager({"providers": {"s": {"url": url}}})
    m.connect()
    yield m
    m.close()


def _append(es: SyncEventSourcingManager, stream: str, event_type: str, n: int) -> None:
    es.append_events_batch(stream_id=stream, events=[eventsource.EventData(event_type, {"n": n})])


def test_follow_catches_up_then_prints_live_events_and_ctrl_c_exits_130(
    tmp_path: Path, url: str, es: SyncEventSourcingManager
) -> None:
    _append(es, "orders-1", "Placed", 1)
    _append(es, "users-1", "Joined", 2)
    f = Follower(tmp_path, "--store", url, "follow", "--json")
    first = [json.loads(line) for line in f.lines(2)]
    assert [(e["stream_id"], e["position"], e["data"]) for e in first] == [
        ("orders-1", 1, {"n": 1}), ("users-1", 2, {"n": 2}),
    ]  # fmt: skip
    _append(es, "orders-1", "Shipped", 3)  # appended while it waits: printed live
    live = json.loads(f.lines(1)[0])
    assert (live["event_type"], live["position"], live["version"]) == ("Shipped", 3, 2)
    code, err = f.finish(interrupt=True)
    assert code == EXIT_INTERRUPTED, err
    assert json.loads(err)["error"]["type"] == "interrupted" and "Traceback" not in err  # (--json: the JSON line)


def test_ctrl_c_with_json_is_the_json_error_line(tmp_path: Path, url: str, es: SyncEventSourcingManager) -> None:
    """With ``--json`` a Ctrl-C printed the bare word "interrupted": the one stderr line a script could not parse
    as the JSON error line every other failure prints."""
    _append(es, "orders-1", "Placed", 1)
    f = Follower(tmp_path, "--store", url, "--json", "follow")
    f.lines(1)
    code, err = f.finish(interrupt=True)
    assert code == EXIT_INTERRUPTED, err
    (line,) = err.splitlines()
    body = json.loads(line)["error"]
    assert body == {
        "type": "interrupted", "code": 499, "message": "interrupted", "exit_code": EXIT_INTERRUPTED, "details": {},
    }  # fmt: skip


def test_follow_filters_by_prefix_type_and_start_and_exits_0_after_limit(
    tmp_path: Path, url: str, es: SyncEventSourcingManager
) -> None:
    for i, (stream, kind) in enumerate([("orders-1", "Placed"), ("users-1", "Placed"), ("orders-2", "Paid")] * 2):
        _append(es, stream, kind, i)
    done = cli(tmp_path, "--store", url, "follow", "--prefix", "orders-", "--type", "Placed", "--limit", "2")
    assert done.returncode == EXIT_OK, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert [(r[0], r[3], r[4]) for r in rows] == [("1", "orders-1@1", "Placed"), ("4", "orders-1@2", "Placed")]
    done = cli(tmp_path, "--store", url, "--json", "follow", "orders-2", "--from", "2", "--limit", "1")
    assert done.returncode == EXIT_OK, done.stderr
    assert [json.loads(line)["version"] for line in done.stdout.splitlines()] == [2]
    f = Follower(tmp_path, "--store", url, "follow", "--from", "end", "--limit", "1")
    assert f.lines(1, stderr=True) == ["following every stream from position 7 (Ctrl-C to stop)"]
    _append(es, "users-9", "Late", 99)  # no event of the backlog comes out first: the first line is this one
    assert f.lines(1)[0].split()[3] == "users-9@1"
    code, err = f.finish(interrupt=False)
    assert code == EXIT_OK and err.strip() == "1 event followed", err
    bad = cli(tmp_path, "--store", url, "follow", "--from", "soon")
    assert bad.returncode == EXIT_USAGE and "'end'" in bad.stderr


def test_follow_stops_on_an_undecodable_event_naming_it_or_skips_it_when_told(
    tmp_path: Path, url: str, es: SyncEventSourcingManager
) -> None:
    _append(es, "s", "Ok", 1)
    bad_id = "bad-event-0001"

    async def write() -> None:
        p = SqliteProvider(url)
        await p.connect()
        bad = NewEvent(event_id=bad_id, event_type="Ok", data=b"?", metadata=b"", encoding="x-gone", timestamp=utcnow())
        await p.append("s", [bad], ANY)
        await p.close()

    import asyncio

    asyncio.run(write())
    _append(es, "s", "Ok", 3)
    done = cli(tmp_path, "--store", url, "follow", "--limit", "3")
    assert done.returncode == EXIT_ERROR
    assert bad_id in done.stderr and "position 2" in done.stderr and "Traceback" not in done.stderr
    # the way out is the command's flag, not the Python API's argument (it said on_decode_error="skip"; review)
    assert "--skip-undecodable" in done.stderr and "on_decode_error" not in done.stderr
    assert len(done.stdout.splitlines()) == 1
    done = cli(tmp_path, "--store", url, "follow", "--skip-undecodable", "--limit", "2")
    assert done.returncode == EXIT_OK, done.stderr
    assert [line.split()[3] for line in done.stdout.splitlines()] == ["s@1", "s@3"]
    assert f"skipped undecodable event at position 2 (id {bad_id}" in done.stderr


def test_projections_lists_each_checkpoint_with_its_lag(tmp_path: Path, url: str, es: SyncEventSourcingManager) -> None:
    for i in range(5):
        _append(es, f"o-{i % 2}", "Placed", i)
    with es.subscribe(checkpoint=url, name="orders-view") as sub:
        for _, _ev in zip(range(3), sub, strict=False):
            pass
        source = sub.commit().source
    asyncio_put(url, Checkpoint("elsewhere", "another-store", "all", 7))
    done = cli(tmp_path, "--store", url, "--json", "projections")
    assert done.returncode == EXIT_OK, done.stderr
    rows = {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {"orders-view", "elsewhere"}
    view = rows["orders-view"]
    assert (view["position"], view["head"], view["positions"]) == (3, 5, 2)
    assert (view["events"], view["events_capped"]) == (2, False)
    assert rows["orders-view"]["source"] == source and rows["orders-view"]["seconds"] >= 0
    assert rows["elsewhere"]["positions"] is None and rows["elsewhere"]["provider"] is None
    human = cli(tmp_path, "--store", url, "projections")
    assert human.returncode == EXIT_OK, human.stderr
    line = next(x for x in human.stdout.splitlines() if x.startswith("orders-view"))
    assert line.split()[1:5] == ["all", "3", "5", "2"]
    assert "'another-store' is not a configured store" in human.stdout
    none = cli(tmp_path, "--store", "memory://", "projections")
    assert none.returncode == EXIT_USAGE and "--checkpoints URL" in none.stderr
    empty = cli(tmp_path, "--store", "memory://", "projections", "--checkpoints", f"sqlite:///{tmp_path}/none.db")
    assert empty.returncode == EXIT_OK and "no checkpoints in" in empty.stderr
    # a mistyped path is told apart from an empty store, and no empty database is made there (review)
    assert f"no file {str(tmp_path / 'none.db')!r}" in empty.stderr
    assert not (tmp_path / "none.db").exists()


def asyncio_put(url: str, cp: Checkpoint) -> None:
    import asyncio

    async def put() -> None:
        store = SqliteCheckpointStore(url)
        await store.connect()
        await store.put(cp)
        await store.close()

    asyncio.run(put())


def test_follow_stopped_by_a_key_configuration_error_does_not_tell_to_skip(tmp_path: Path, url: str) -> None:
    """Review: follow stopped by an event it can never skip (its data key is wrapped by a master key the
    configuration no longer holds: a ConfigurationError) said 'pass --skip-undecodable', even when passed."""
    import base64

    k1, k2 = (base64.b64encode(bytes([b]) * 32).decode() for b in (1, 2))
    keys = str(tmp_path / "keys.jsonl")
    common = {"encryption": True, "encryption_scope": "stream", "encryption_key_store": keys}
    m = SyncEventSourcingManager({"providers": {"s": {"url": url}}, "encryption_keys": {"k1": k1}, **common})
    m.connect()
    _append(m, "s", "Ok", 1)
    m.close()
    config = tmp_path / "later.json"  # k1 retired before rewrap() ran
    config.write_text(json.dumps({"encryption_keys": {"k2": k2}, **common}))
    for flags in ((), ("--skip-undecodable",)):
        done = cli(tmp_path, "--config", str(config), "--store", url, "follow", *flags, "--limit", "1")
        assert done.returncode == EXIT_ERROR, done.stderr
        assert "ConfigurationError" in done.stderr and "'k1'" in done.stderr, done.stderr
        assert "pass --skip-undecodable" not in done.stderr and "never skipped" in done.stderr, done.stderr

"""``eventsource follow`` and ``eventsource projections`` as the installed console script on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import eventsource
import psycopg
import pytest
from eventsource.cli.exitcodes import EXIT_INTERRUPTED, EXIT_OK
from eventsource.sync import SyncEventSourcingManager

WAIT = 60.0
_DEFAULT_SIGINT_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def _script() -> tuple[str, dict[str, str]]:
    script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
    assert script is not None, "the eventsource console script is not installed next to this interpreter"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTHON"))}
    return script, env


@pytest.fixture
def config(tmp_path: Path, url: str) -> Any:
    schema = f"es_{uuid.uuid4().hex[:16]}"
    cfg = {"providers": {"pg": {"url": url, "settings": {"schema": schema}}}, "checkpoint_store": url}
    path = tmp_path / "es.json"
    path.write_text(json.dumps(cfg))
    es = SyncEventSourcingManager(cfg)
    es.connect()
    yield path, es
    es.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _append(es: SyncEventSourcingManager, stream: str, n: int) -> None:
    es.append_events_batch(stream_id=stream, events=[eventsource.EventData("Placed", {"n": n})])


def _lines(pipe: Any, n: int) -> list[str]:
    out: list[str] = []

    def read() -> None:
        while len(out) < n and (line := pipe.readline()):
            out.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(WAIT)
    assert len(out) == n, f"follow printed {len(out)} of {n} lines: {out}"
    return out


def test_follow_catches_up_then_goes_live_and_ctrl_c_exits_130(tmp_path: Path, config: Any) -> None:
    path, es = config
    _append(es, "orders-1", 1)
    script, env = _script()
    proc = subprocess.Popen(
        [sys.executable, "-c", _DEFAULT_SIGINT_THEN_EXEC, script, "--config", str(path), "--json", "follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env, text=True,
    )  # fmt: skip
    try:
        assert json.loads(_lines(proc.stdout, 1)[0])["data"] == {"n": 1}
        _append(es, "orders-2", 2)
        live = json.loads(_lines(proc.stdout, 1)[0])
        assert (live["stream_id"], live["data"]) == ("orders-2", {"n": 2})
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == EXIT_INTERRUPTED, err
        (line,) = err.splitlines()  # with --json, the Ctrl-C is the one JSON error line, as every error
        assert json.loads(line)["error"]["type"] == "interrupted", err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_projections_shows_a_checkpoints_lag(tmp_path: Path, url: str, config: Any) -> None:
    path, es = config
    for i in range(6):
        _append(es, f"o-{i % 3}", i)
    name = f"view-{uuid.uuid4().hex[:8]}"
    with es.subscribe(checkpoint=url, name=name) as sub:
        for _, _ev in zip(range(2), sub, strict=False):
            pass
        position = sub.commit().position
    script, env = _script()
    done = subprocess.run(
        [script, "--config", str(path), "--json", "projections"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    row = next(r for r in map(json.loads, done.stdout.splitlines()) if r["name"] == name)
    assert row["position"] == position and row["provider"] == "pg"
    assert row["positions"] == row["head"] - position and row["seconds"] >= 0
    assert (row["events"], row["events_capped"]) == (4, False), "positions are sparse on PostgreSQL: events count"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('DELETE FROM "eventsource"."checkpoints" WHERE name = %s', (name,))


def test_follow_from_end_prints_an_append_whose_transaction_was_open_when_it_started(
    tmp_path: Path, url: str, config: Any
) -> None:
    """Two real connections: one holds an insert open while follow takes the end, a later commit in between."""
    from eventsource.model import ANY, NewEvent, utcnow

    path, es = config
    p: Any = es.get_provider()
    script, env = _script()
    with psycopg.connect(url) as held:  # autocommit off: the transaction stays open
        late = NewEvent(str(uuid.uuid4()), "Late", b'{"n": -1}', b"", "json", utcnow())
        held.execute(*p._appender.statement("late-1", [late], ANY, None))
        _append(es, "between-1", 0)  # commits above the open transaction's position: the head is past it now
        proc = subprocess.Popen(
            [script, "--config", str(path), "follow", "--from", "end", "--limit", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env, text=True,
        )  # fmt: skip
        try:
            started = _lines(proc.stderr, 1)[0]  # "following every stream from position N": the end is taken
            assert started.startswith("following every stream from position"), started
            held.commit()
            _append(es, "after-1", 1)
            lines = _lines(proc.stdout, 3)
            proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    # the end is the safe horizon: "between" committed before follow started, while the older one still ran
    assert [line.split()[3] for line in lines] == ["late-1@1", "between-1@1", "after-1@1"], lines
    assert proc.returncode == EXIT_OK

"""The private primary/standby harness: a port taken meanwhile is retried, and a failed start leaves nothing."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psycopg
from pair import Pair


def _servers_of(data: Path) -> list[int]:
    """Pids of the servers running on ``data`` (read from /proc: the pid file may be gone)."""
    out = subprocess.run(["pgrep", "-f", f"-D {data}"], check=False, capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_port_taken_before_the_standby_starts_is_retried_and_the_failed_attempt_cleaned_up() -> None:
    pair = Pair(synchronous=False)
    first_root, first_primary = pair.root, pair.primary_dir
    try:
        with socket.socket() as taken:  # free when picked, taken since (another test, another engineer)
            taken.bind(("127.0.0.1", pair.standby_port))
            taken.listen()
            pair.start()
            assert pair.root != first_root
        assert _servers_of(first_primary) == [], "the first attempt's primary was left running"
        assert not first_root.exists(), "the first attempt's directories were left behind"
        with psycopg.connect(pair.dsn(pair.standby_port), autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        pair.stop()
    assert _servers_of(pair.primary_dir) == []
    assert not pair.root.exists()

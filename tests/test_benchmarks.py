"""The benchmark harness still runs: every workload of SQLite and memory reported, JSON written.

A smoke run (``--quick``, one repetition): nothing here looks at a time or a ratio's size, because
benchmarks are not tests. A missed target sets exit status 1, which is a result, not a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"

EVERY = {"append_p50", "append_p95", "batch_100", "read_1000", "writers_8", "big_store_read_100"}
OFF_LOOP = {"append_p50_offloop", "append_p50_hop"}  # backends whose raw driver blocks the loop


def test_the_harness_reports_every_workload_for_sqlite_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--backend", "sqlite", "--backend", "memory", "--quick", "--repetitions", "1", "--big-n", "2000"]
    proc = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(RUN), *args, "--workdir", str(tmp_path), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    sqlite = report["backends"]["sqlite"]["workloads"]
    memory = report["backends"]["memory"]["workloads"]
    assert set(sqlite) == EVERY | OFF_LOOP
    assert set(memory) == EVERY
    for name, rows in (("sqlite", sqlite), ("memory", memory)):
        for key, row in rows.items():
            assert row["lib"] > 0, (name, key)
            assert row["ratio"] > 0, (name, key)
    # the table on stdout names what missed its target, the status says whether anything did
    missed = [k for k, row in sqlite.items() if row["passed"] is False]
    assert (proc.returncode == 1) == bool(missed), proc.stdout
    for key in missed:
        assert f"sqlite:{key}" in proc.stdout
    assert not list(tmp_path.glob("eventsource-bench-*")), "the run directory is removed"

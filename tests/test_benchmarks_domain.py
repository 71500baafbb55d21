"""The domain benchmark still runs (a smoke run, one round): both rows reported, JSON written, no time asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "domain.py"


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_domain_benchmark_smoke_run(store: str, tmp_path: Path) -> None:
    out = tmp_path / "domain.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--store", store, "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    load, up = report["aggregate_load_snapshot"], report["read_1000_upcast"]
    assert len(load["big_s"]) == len(load["small_s"]) == 1
    assert len(up["upcast_s"]) == len(up["plain_s"]) == 1
    assert load["ratio"] > 0 and up["ratio"] > 0

"""The benchmark harness's NATS contestants store alike: the raw JetStream stream has the library's durability.

A smoke run of two rows (one round, ``--quick``) on the test server: no time or ratio is looked at, only the
storage, replicas and duplicate window of each side's JetStream stream, as the server describes them after
the row. A raw stream in memory, or the library's on more replicas, would make the ratio compare unlike
writes: the verdict needs both sides' settings to see that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_each_side_reports_its_streams_durability_and_they_agree(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--backend", "nats", "--quick", "--repetitions", "1", "--no-peers"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), *args, "--only", "append_p50", "--only", "batch_100",
         "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: a target missed, a result
    rows = json.loads(out.read_text(encoding="utf-8"))["backends"]["nats"]["workloads"]
    for key in ("append_p50", "batch_100"):
        settings = rows[key]["durability"]
        assert set(settings) == {"lib", "raw"}, (key, settings, "each side reports its own stream")
        assert settings["lib"] == settings["raw"], (key, settings)
        assert settings["lib"]["storage"] == "file", (key, settings)

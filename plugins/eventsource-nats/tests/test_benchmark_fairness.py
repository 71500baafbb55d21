"""The benchmark harness's NATS contestants store alike: the raw JetStream stream has the library's durability.

A smoke run of two rows (one round, ``--quick``) on the test server: no time or ratio is looked at, only the
storage, replicas and duplicate window of each side's JetStream stream, as the server describes them after
the row. A raw stream in memory, or the library's on more replicas, would make the ratio compare unlike
writes: the verdict needs both sides' settings to see that.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fairness import quick_rows  # noqa: E402 - the harness's folder, put on the path above


def test_each_side_reports_its_streams_durability_and_they_agree(tmp_path: Path) -> None:
    rows = quick_rows("nats", ["append_p50", "batch_100"], tmp_path / "bench.json")
    for key in ("append_p50", "batch_100"):
        settings = rows[key]["durability"]
        assert set(settings) == {"lib", "raw"}, (key, settings, "each side reports its own stream")
        assert settings["lib"] == settings["raw"], (key, settings)
        assert settings["lib"]["storage"] == "file", (key, settings)

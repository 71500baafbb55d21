"""The benchmark harness's Kafka contestants commit alike: the raw producer waits for the same acks as the library.

A smoke run of one row (one round, ``--quick``) on the test broker: no time or ratio is looked at, only what
each side's producer reports after the row. kafka-python's default is ``acks=1`` (the leader alone); the
library produces with ``acks=all``, so a raw side left at the default is faster on any cluster with replicas
for doing less, and the library's ratio would be judged against it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_raw_side_produces_with_the_librarys_acks(kafka_url: str, tmp_path: Path) -> None:
    assert kafka_url.startswith("kafka://")  # the fixture's broker, handed on through EVENTSOURCE_TEST_KAFKA_BOOTSTRAP
    out = tmp_path / "bench.json"
    args = ["--backend", "kafka", "--quick", "--repetitions", "1", "--no-peers", "--only", "append_p50"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: a target missed, a result
    row = json.loads(out.read_text(encoding="utf-8"))["backends"]["kafka"]["workloads"]["append_p50"]
    settings = row["durability"]
    assert set(settings) == {"lib", "raw"}, (settings, "each side reports its producer's acks")
    assert settings["lib"] == settings["raw"], settings
    assert settings["lib"]["acks"] in ("-1", "all"), settings

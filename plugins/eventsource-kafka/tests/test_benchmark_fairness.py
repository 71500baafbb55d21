"""The benchmark harness's Kafka contestants commit alike: the raw producer waits for the same acks as the library.

A smoke run of one row (one round, ``--quick``) on the test broker: no time or ratio is looked at, only what
each side's producer reports after the row. kafka-python's default is ``acks=1`` (the leader alone); the
library produces with ``acks=all``, so a raw side left at the default is faster on any cluster with replicas
for doing less, and the library's ratio would be judged against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fairness import quick_rows  # noqa: E402 - the harness's folder, put on the path above


def test_the_raw_side_produces_with_the_librarys_acks(kafka_url: str, tmp_path: Path) -> None:
    assert kafka_url.startswith("kafka://")  # the fixture's broker, handed on through EVENTSOURCE_TEST_KAFKA_BOOTSTRAP
    row = quick_rows("kafka", ["append_p50"], tmp_path / "bench.json")["append_p50"]
    settings = row["durability"]
    assert set(settings) == {"lib", "raw"}, (settings, "each side reports its producer's acks")
    assert settings["lib"] == settings["raw"], settings
    assert settings["lib"]["acks"] in ("-1", "all"), settings

"""The benchmark harness's PostgreSQL contestants commit alike, as each one's own connection reports it.

A smoke run of two rows (one round, ``--quick``) on the test server: no time or ratio is looked at, only the
durability settings (``fsync``, ``synchronous_commit``, ``full_page_writes``) each side's connection reports.
The library's pool and the raw psycopg connection log in as the same role to the same database, but a
setting given to one of them only (connection options, ``SET``) would make the ratio compare unlike commits:
the verdict needs both sides' settings to see that.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fairness import quick_rows  # noqa: E402 - the harness's folder, put on the path above


def test_each_side_reports_its_connections_durability_and_they_agree(tmp_path: Path) -> None:
    rows = quick_rows("postgres", ["append_p50", "writers_8"], tmp_path / "bench.json")
    for key in ("append_p50", "writers_8"):
        settings = rows[key]["durability"]
        assert set(settings) == {"lib", "raw"}, (key, settings, "each side reports its own connection")
        assert settings["lib"] == settings["raw"], (key, settings)
        assert set(settings["lib"]) == {"fsync", "synchronous_commit", "full_page_writes"}, (key, settings)

"""What the plugins' benchmark-fairness tests share: one quick round of some rows, and each row's recorded result.

``plugins/eventsource-*/tests/test_benchmark_fairness.py`` run the harness as a user does (``run.py``, one round,
``--quick``, no peers) on their test server and look only at what each side reported (its durability settings),
never at a time or a ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def quick_rows(backend: str, rows: list[str], out: Path) -> dict[str, Any]:
    """Run ``rows`` of ``backend`` once (``--quick``, no peers), writing ``out``; each row's recorded result."""
    only = [arg for row in rows for arg in ("--only", row)]
    args = ["--backend", backend, "--quick", "--repetitions", "1", "--no-peers", *only, "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(HERE / "run.py"), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: a target missed, a result
    workloads: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))["backends"][backend]["workloads"]
    return workloads

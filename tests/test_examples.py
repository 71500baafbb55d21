"""The runnable examples under docs/examples/ run, as a user would run them, and do what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def run(name: str, tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path}/example.db"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), url], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())


def test_ecommerce_order_example(tmp_path: Path) -> None:
    out = run("ecommerce_order.py", tmp_path)
    assert out["loaded_total_cents"] == "9999"  # the stored v1 float total, upcast
    assert out["stale_save_conflicted"] == "True"
    assert out["rejected_field"] == "items"
    assert out["events"] == "['OrderCreated', 'OrderPaid']"
    assert out["paid"] == "True"


def test_user_management_example(tmp_path: Path) -> None:
    out = run("user_management.py", tmp_path)
    assert out["rejected_field"] == "email"
    assert out["bad_user_stored"] == "False"
    assert (out["name"], out["updates"], out["version"], out["snapshot_version"]) == ("Jane Smith-Jones", "3", "4", "3")
    assert out["types"] == "['UserRegistered', 'ProfileUpdated', 'ProfileUpdated', 'ProfileUpdated']"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_run_by_a_test(name: str) -> None:
    assert f'"{name}"' in Path(__file__).read_text(encoding="utf-8")

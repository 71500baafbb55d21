"""The runnable examples under docs/examples/ run, as a user would run them, and do what they claim."""

from __future__ import annotations

import re
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


def test_the_readme_domain_example_runs(tmp_path: Path) -> None:
    readme = (EXAMPLES.parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    [code] = [b for b in blocks if "class Cart(Aggregate)" in b]
    script = tmp_path / "readme_domain.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'A': 2, 'B': 2}"


def test_the_readme_projection_example_runs(tmp_path: Path) -> None:
    readme = (EXAMPLES.parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    [code] = [b for b in blocks if "ProjectionRunner(" in b]
    script = tmp_path / "readme_projection.py"
    script.write_text(code, encoding="utf-8")
    for _ in range(2):  # the second run appends two more deposits and applies only those
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('acc-1', 84)]"


def test_the_readme_quick_start_runs(tmp_path: Path) -> None:
    """The first code a newcomer copies: on the default store (``eventsource.db`` in the working directory)."""
    readme = (EXAMPLES.parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    [code] = [b for b in blocks if "async with EventSourcingManager() as es:" in b]
    script = tmp_path / "readme_quick_start.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "1 OrderCreated {'total': 99.99}",
        "2 ItemAdded {'sku': 'A'}",
        "3 ItemAdded {'sku': 'B'}",
        "someone else wrote first: 1 3",
    ]
    assert (tmp_path / "eventsource.db").is_file()

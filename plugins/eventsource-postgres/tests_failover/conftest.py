"""Fixtures for the failover tests: a fresh private primary/standby pair per test, and the figures table."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pair import Pair

RESULTS: list[dict[str, Any]] = []
"""One row per failover run: mode, acknowledged, lost, duplicated, in-flight found, seconds without a writer."""


@pytest.fixture
def results() -> list[dict[str, Any]]:
    return RESULTS


@pytest.fixture(params=[True, False], ids=["sync", "async"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    p = Pair(synchronous=request.param).start()
    try:
        yield p
    finally:
        p.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("PostgreSQL failover: acknowledged events after SIGKILL of the primary + promote")
    header = f"{'run':<40} {'acked':>7} {'lost':>6} {'doubled':>8} {'unacked found':>14} {'no writer (s)':>14}"
    terminalreporter.write_line(header)
    for r in RESULTS:
        terminalreporter.write_line(
            f"{r['run']:<40} {r['acked']:>7} {r['lost']:>6} {r['doubled']:>8} {r['unacked_found']:>14} "
            f"{r['outage']:>14.2f}"
        )


def asynchronous_pair() -> Iterator[Pair]:
    """A primary and an asynchronous standby, stopped when the caller is done."""
    p = Pair(synchronous=False).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def standby_pair() -> Iterator[Pair]:
    """A primary with an asynchronous standby (the read-replica tests' pair)."""
    yield from asynchronous_pair()

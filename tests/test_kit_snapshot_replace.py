"""The kit's snapshot test fails a store that keeps two snapshots at one version.

A snapshot saved at a version that already has one replaces it (``Provider.save_snapshot``): retention and
``delete_snapshot(version=...)`` count one snapshot per version. A provider that appended a second one passed
``test_snapshots_latest_at_or_below_and_delete``, which never saved two at one version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

pytest_plugins = ["pytester"]

STORES = '''
import uuid

import pytest
from eventsource.memory import MemoryProvider
from eventsource.testing.snapshots import SnapshotSuite


class KeepsBoth(MemoryProvider):
    """Saves a snapshot beside one at the same version instead of replacing it."""

    async def save_snapshot(self, snapshot):
        kept = list(self._snapshots.get(snapshot.stream_id, []))
        await super().save_snapshot(snapshot)
        self._snapshots[snapshot.stream_id] = sorted([*kept, snapshot], key=lambda s: s.version)


def _on(store):
    @pytest.fixture
    async def provider(self):
        p = store(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()

    return provider


class TestHonest(SnapshotSuite):
    provider = _on(MemoryProvider)


class TestKeepsBoth(SnapshotSuite):
    provider = _on(KeepsBoth)
'''


def test_a_store_keeping_two_snapshots_at_one_version_fails_the_snapshot_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_snapshot_stores=STORES)
    run = pytester.inline_run(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        "-k", "test_snapshots_latest_at_or_below_and_delete",
    )  # fmt: skip
    outcome = {
        r.nodeid.split("::")[1]: r.outcome for r in run.getreports("pytest_runtest_logreport") if r.when == "call"
    }
    assert outcome == {"TestHonest": "passed", "TestKeepsBoth": "failed"}

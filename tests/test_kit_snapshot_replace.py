"""The kit's snapshot test fails a store that keeps two snapshots at one version.

A snapshot saved at a version that already has one replaces it (``Provider.save_snapshot``): retention and
``delete_snapshot(version=...)`` count one snapshot per version. A provider that appended a second one passed
``test_snapshots_latest_at_or_below_and_delete``, which never saved two at one version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conftest import kit_outcomes

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


{ON_MEMORY}


class TestHonest(SnapshotSuite):
    provider = _on(MemoryProvider)


class TestKeepsBoth(SnapshotSuite):
    provider = _on(KeepsBoth)
'''


def test_a_store_keeping_two_snapshots_at_one_version_fails_the_snapshot_test(pytester: pytest.Pytester) -> None:
    outcome = kit_outcomes(pytester, STORES, "-k", "test_snapshots_latest_at_or_below_and_delete")
    assert outcome == {"TestHonest": "passed", "TestKeepsBoth": "failed"}

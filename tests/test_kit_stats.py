"""The kit's stats test fails a store that reports no storage while it holds events.

``ProviderStats.storage_size`` is the bytes the store holds, or ``None`` when it cannot say (Kafka's bounded
stats). A placeholder ``0`` on a store holding events passed ``test_stats_are_exact``: a figure reported for work
the provider did not do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conftest import kit_outcomes

if TYPE_CHECKING:
    import pytest

pytest_plugins = ["pytester"]

STORES = """
import dataclasses
import uuid

import pytest
from eventsource.memory import MemoryProvider
from eventsource.testing.stats import StatsSuite


class ZeroBytes(MemoryProvider):
    async def stats(self, *, top_streams=None):
        return dataclasses.replace(await super().stats(top_streams=top_streams), storage_size=0)


class Unknown(MemoryProvider):
    async def stats(self, *, top_streams=None):
        return dataclasses.replace(await super().stats(top_streams=top_streams), storage_size=None)


{ON_MEMORY}


class TestHonest(StatsSuite):
    provider = _on(MemoryProvider)


class TestUnknown(StatsSuite):
    provider = _on(Unknown)


class TestZeroBytes(StatsSuite):
    provider = _on(ZeroBytes)
"""


def test_a_store_reporting_zero_bytes_while_holding_events_fails_the_stats_test(pytester: pytest.Pytester) -> None:
    outcome = kit_outcomes(pytester, STORES, "-k", "test_stats_are_exact")
    assert outcome == {"TestHonest": "passed", "TestUnknown": "passed", "TestZeroBytes": "failed"}

"""The kit's stats test fails a store that reports no storage while it holds events.

``ProviderStats.storage_size`` is the bytes the store holds, or ``None`` when it cannot say (Kafka's bounded
stats). A placeholder ``0`` on a store holding events passed ``test_stats_are_exact``: a figure reported for work
the provider did not do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def _on(store):
    @pytest.fixture
    async def provider(self):
        p = store(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()

    return provider


class TestHonest(StatsSuite):
    provider = _on(MemoryProvider)


class TestUnknown(StatsSuite):
    provider = _on(Unknown)


class TestZeroBytes(StatsSuite):
    provider = _on(ZeroBytes)
"""


def test_a_store_reporting_zero_bytes_while_holding_events_fails_the_stats_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stats_stores=STORES)
    run = pytester.inline_run(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        "-k", "test_stats_are_exact",
    )  # fmt: skip
    outcome = {
        r.nodeid.split("::")[1]: r.outcome for r in run.getreports("pytest_runtest_logreport") if r.when == "call"
    }
    assert outcome == {"TestHonest": "passed", "TestUnknown": "passed", "TestZeroBytes": "failed"}

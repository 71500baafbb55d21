"""The kit's ``create_store`` tests cannot pass on a blind ``absent_store`` fixture.

``StoreSetupSuite`` checks that a refused ``connect()`` created nothing by asking the fixture's ``leftovers``.
A ``leftovers`` that sees nothing (the ``AbsentStore`` default, or the guide's example copied as it stood:
``return []``) made that check pass for a store that creates its namespace before refusing. The kit must fail
such a fixture, naming ``leftovers``, and still pass an honest one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from _pytest.reports import TestReport

pytest_plugins = ["pytester"]

STORES = '''
import uuid

import pytest
import eventsource.memory
from eventsource.memory import MemoryProvider
from eventsource.testing import AbsentStore
from eventsource.testing.store_setup import StoreSetupSuite


MADE: set[str] = set()
"""Half-made stores (as a directory made before the check finds no database in it): still refused, left behind."""


class CreatesBeforeRefusing(MemoryProvider):
    """With create_store off, makes part of the store, then refuses: the defect the kit is there to catch."""

    async def connect(self):
        if not self._create:
            MADE.add(self._store_name)
        await super().connect()


def _suite(store, *, blind):
    class Suite(StoreSetupSuite):
        @pytest.fixture
        async def provider(self):
            p = store(f"memory://kit-{uuid.uuid4().hex}")
            await p.connect()
            yield p
            await p.close()

        @pytest.fixture
        def absent_store(self):
            name = f"absent-{uuid.uuid4().hex}"

            async def leftovers():
                return [name] if name in eventsource.memory._NAMED or name in MADE else []

            args = {"url": f"memory://{name}"}
            yield AbsentStore(args) if blind else AbsentStore(args, leftovers)
            eventsource.memory._NAMED.pop(name, None)
            MADE.discard(name)

    return Suite


TestHonest = _suite(MemoryProvider, blind=False)
TestCaught = _suite(CreatesBeforeRefusing, blind=False)
TestBlind = _suite(CreatesBeforeRefusing, blind=True)
'''


def test_a_blind_leftovers_fails_the_kit_and_an_honest_one_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_absent_fixtures=STORES)
    run = pytester.inline_run(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
    )  # fmt: skip
    reports = [r for r in run.getreports("pytest_runtest_logreport") if r.when == "call" or r.failed]

    def of(cls: str) -> list[TestReport]:
        return [r for r in reports if f"::{cls}::" in r.nodeid]

    honest = of("TestHonest")
    assert honest and all(r.passed for r in honest), [(r.nodeid, r.outcome) for r in honest]
    assert any(r.failed for r in of("TestCaught")), "an honest leftovers sees what the refused connect() made"
    failed = [r for r in of("TestBlind") if r.failed]
    assert failed, "the kit passed a store that creates part of itself before refusing, through a blind leftovers"
    said = [r.longrepr.reprcrash.message for r in failed]  # type: ignore[union-attr]
    assert any("leftovers" in message for message in said), said

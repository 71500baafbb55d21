"""The kit's stream-info test fails a store whose ``updated_at`` stays where the stream was created.

``StreamInfo.updated_at`` is the timestamp of the stream's last event (every store here keeps it so). A provider
that never moved it passed ``test_get_stream_info_is_exact``, which only checked ``created_at <= updated_at``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

pytest_plugins = ["pytester"]

STORES = '''
import dataclasses
import uuid

import pytest
from eventsource.memory import MemoryProvider
from eventsource.testing.streams import StreamSuite


class Stale(MemoryProvider):
    """Reports the stream's info as it was when the stream was created, timestamps and all."""

    async def get_stream_info(self, stream_id):
        info = await super().get_stream_info(stream_id)
        return None if info is None else dataclasses.replace(info, updated_at=info.created_at)


def _on(store):
    @pytest.fixture
    async def provider(self):
        p = store(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()

    return provider


class TestHonest(StreamSuite):
    provider = _on(MemoryProvider)


class TestStale(StreamSuite):
    provider = _on(Stale)
'''


def test_a_store_whose_updated_at_never_moves_fails_the_stream_info_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_info_stores=STORES)
    run = pytester.inline_run(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        "-k", "test_get_stream_info_is_exact",
    )  # fmt: skip
    outcome = {
        r.nodeid.split("::")[1]: r.outcome for r in run.getreports("pytest_runtest_logreport") if r.when == "call"
    }
    assert outcome == {"TestHonest": "passed", "TestStale": "failed"}

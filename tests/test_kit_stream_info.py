"""The kit's stream-info test fails a store whose ``updated_at`` stays where the stream was created.

``StreamInfo.updated_at`` is the timestamp of the stream's last event (every store here keeps it so). A provider
that never moved it passed ``test_get_stream_info_is_exact``, which only checked ``created_at <= updated_at``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conftest import kit_outcomes

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


{ON_MEMORY}


class TestHonest(StreamSuite):
    provider = _on(MemoryProvider)


class TestStale(StreamSuite):
    provider = _on(Stale)
'''


def test_a_store_whose_updated_at_never_moves_fails_the_stream_info_test(pytester: pytest.Pytester) -> None:
    outcome = kit_outcomes(pytester, STORES, "-k", "test_get_stream_info_is_exact")
    assert outcome == {"TestHonest": "passed", "TestStale": "failed"}

"""The conformance kit on the in-memory provider."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from eventsource.memory import MemoryProvider
from eventsource.testing import ProviderSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryProvider(ProviderSuite):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = MemoryProvider(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()

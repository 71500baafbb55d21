"""The conformance kit on the in-memory provider."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.memory import MemoryProvider
from eventsource.provider import Capabilities
from eventsource.testing import ProviderSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime


class TestMemoryProvider(ProviderSuite):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = MemoryProvider(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()


class NoRetentionPrimitivesProvider(MemoryProvider):
    """A store that declares it cannot delete events (and raises if asked anyway)."""

    kind = "memory-noretention"
    capabilities = Capabilities(
        global_order="total",
        concurrency="in_process",
        unsupported=frozenset({"truncate_stream", "delete_events_before"}),
    )

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        raise self.unsupported("truncate_stream")

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        raise self.unsupported("delete_events_before")


class TestMemoryProviderDeclaringUnsupportedOperations(ProviderSuite):
    """The kit's unsupported-operation branches run too: they assert the error, they do not skip."""

    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = NoRetentionPrimitivesProvider(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()

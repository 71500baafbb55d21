"""The SQLite provider: the conformance kit on a fresh file per test, plus SQLite-specific checks."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.sqlite import SqliteProvider
from eventsource.testing import ProviderSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class TestSqliteProvider(ProviderSuite):
    @pytest.fixture
    async def provider(self, tmp_path: Path) -> AsyncIterator[SqliteProvider]:
        p = SqliteProvider(f"sqlite:///{tmp_path}/kit-{uuid.uuid4().hex}.db")
        await p.connect()
        yield p
        await p.close()

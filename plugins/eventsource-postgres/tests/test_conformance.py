"""The conformance kit against the real server (cross-process races included)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.testing import AbsentStore, DomainSuite, ProviderSuite, RetentionSuite, RewriteSuite

if TYPE_CHECKING:
    from eventsource_postgres import PostgresProvider


class TestPostgresProvider(ProviderSuite):
    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider()

    @pytest.fixture
    def absent_store(self, absent_at: Callable[..., AbsentStore]) -> AbsentStore:
        """A schema that does not exist."""
        return absent_at()


class TestPostgresProviderWithPrefix(ProviderSuite):
    """Two stores in one schema, apart by table prefix: the kit runs on the second while the first holds data."""

    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        first = await make_provider(table_prefix="app1_")
        from eventsource.model import ANY, NewEvent, utcnow

        await first.append("noise", [NewEvent("noise-1", "N", b"{}", b"", "json", utcnow())], ANY)
        yield await make_provider(schema=first.names.schema, table_prefix="app2_")

    @pytest.fixture
    def absent_store(self, provider: PostgresProvider, absent_at: Callable[..., AbsentStore]) -> AbsentStore:
        """A table prefix nothing has used, in the schema the store under test is in (which exists)."""
        return absent_at(schema=provider.names.schema, table_prefix="app3_")


class TestPostgresRetention(RetentionSuite):
    """Retention policies through the store's own truncate / delete-before primitives."""

    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider()


class TestPostgresDomain(DomainSuite):
    """Event classes, upcasting chains and repositories on PostgreSQL."""

    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider()


class TestPostgresRewrite(RewriteSuite):
    """The offline upcast rewrite on PostgreSQL (payloads swapped in place)."""

    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider()

"""The conformance kit (and the retention suite) on both servers.

The machine's (2.9.10: envelopes) and a current one (atomic batches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.testing import AbsentStore, DomainSuite, ProviderSuite, RetentionSuite, RewriteSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventsource_nats.provider import NatsProvider
    from servers import Servers


class TestNatsProviderMachineServer(ProviderSuite):
    """The kit against EVENTSOURCE_TEST_NATS_URL (nats-server 2.9.10 on this project's machines)."""

    @pytest.fixture
    async def provider(self, machine_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        yield machine_provider

    @pytest.fixture
    def absent_store(self, machine_nats_url: str, absent_on: Callable[[str], AbsentStore]) -> AbsentStore:
        return absent_on(machine_nats_url)


class TestNatsProviderCurrentServer(ProviderSuite):
    """The kit against a current nats-server started on a free port (atomic batch publish)."""

    @pytest.fixture
    async def provider(self, current_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        assert current_provider.uses_atomic_batches
        yield current_provider

    @pytest.fixture
    def absent_store(self, current_server: Servers, absent_on: Callable[[str], AbsentStore]) -> AbsentStore:
        return absent_on(current_server.url)


class TestNatsRetentionMachineServer(RetentionSuite):
    """Retention policies against EVENTSOURCE_TEST_NATS_URL."""

    provider = TestNatsProviderMachineServer.provider


class TestNatsRetentionCurrentServer(RetentionSuite):
    """Retention policies against a current nats-server (atomic batch publish)."""

    provider = TestNatsProviderCurrentServer.provider


class TestNatsDomain(DomainSuite):
    """Event classes, upcasting chains and repositories against EVENTSOURCE_TEST_NATS_URL."""

    provider = TestNatsProviderMachineServer.provider


class TestNatsRewrite(RewriteSuite):
    """JetStream cannot change a stored message: the offline rewrite refuses, declared."""

    provider = TestNatsProviderMachineServer.provider

"""The conformance kit (and the retention suite) on both servers.

The machine's (2.9.10: envelopes) and a current one (atomic batches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.testing import DomainSuite, ProviderSuite, RetentionSuite, RewriteSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource_nats.provider import NatsProvider


class TestNatsProviderMachineServer(ProviderSuite):
    """The kit against EVENTSOURCE_TEST_NATS_URL (nats-server 2.9.10 on this project's machines)."""

    @pytest.fixture
    async def provider(self, machine_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        yield machine_provider


class TestNatsProviderCurrentServer(ProviderSuite):
    """The kit against a current nats-server started on a free port (atomic batch publish)."""

    @pytest.fixture
    async def provider(self, current_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        assert current_provider.uses_atomic_batches
        yield current_provider


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

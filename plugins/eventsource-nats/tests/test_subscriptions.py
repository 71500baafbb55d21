"""The kit's SubscriptionSuite on both servers. NATS has no wake-up yet: subscriptions poll ``read_all`` (the
default ``Provider.wait_for_change``), so every test here also proves the polling fallback alone delivers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from conftest import dispose, open_provider
from eventsource.testing.subscriptions import SubscriptionSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource_nats.provider import NatsProvider
    from servers import Servers


class TestNatsSubscriptionsMachineServer(SubscriptionSuite):
    @pytest.fixture
    async def provider(self, machine_nats_url: str) -> AsyncIterator[NatsProvider]:
        p = await open_provider(machine_nats_url)
        yield p
        await dispose(p)


class TestNatsSubscriptionsCurrentServer(SubscriptionSuite):
    @pytest.fixture
    async def provider(self, current_server: Servers) -> AsyncIterator[NatsProvider]:
        p = await open_provider(current_server.url)
        yield p
        await dispose(p)

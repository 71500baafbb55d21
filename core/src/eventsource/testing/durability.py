"""The durability audit: a store's health names a setting that can lose acknowledged writes, read from the store.

A plugin subclasses :class:`DurabilitySuite`, overriding ``provider`` (a store in its safe, default setup)
and ``unsafe`` (a provider on which the test created an unsafe setting, with that setting's name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventsource.manager import EventSourcingManager
from eventsource.testing.base import ProviderSuiteBase, _host

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.model import HealthStatus
    from eventsource.provider import Provider


class DurabilitySuite(ProviderSuiteBase):
    """Safe: healthy with no durability risk. Unsafe: still healthy (it answers) but ``degraded``, naming it."""

    @pytest.fixture
    async def unsafe(self) -> AsyncIterator[tuple[Provider, str]]:
        """Override: yield a connected provider with an unsafe setting the test created, and that setting's name."""
        msg = "override the `unsafe` fixture in your DurabilitySuite subclass"
        pytest.fail(msg)
        yield  # pragma: no cover

    @staticmethod
    async def health_of(provider: Provider) -> HealthStatus:
        """The provider's health through a manager (the path ``eventsource health`` takes)."""
        m = EventSourcingManager({"providers": {}, "default_provider": None}, host=_host())
        await m.register_provider(provider, name="audited", default=True)
        return (await m.health_check())["audited"]

    async def test_safe_store_is_healthy_without_durability_risks(self, provider: Provider) -> None:
        h = await self.health_of(provider)
        assert h.healthy, h.message
        assert h.details["durability_risks"] == [], h.message
        assert h.details["status"] == "healthy", h.message

    async def test_unsafe_setting_makes_the_store_degraded(self, unsafe: tuple[Provider, str]) -> None:
        provider, setting = unsafe
        h = await self.health_of(provider)
        assert h.healthy, h.message  # it answers: degraded, not down
        assert h.details["status"] == "degraded", h.message
        named = [r["setting"] for r in h.details["durability_risks"]]
        assert setting in named, h.details
        assert all(r["value"] and r["scope"] and r["risk"] for r in h.details["durability_risks"])
        assert setting in h.message

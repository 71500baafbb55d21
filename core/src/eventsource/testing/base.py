"""What every part of the conformance kit shares: fixtures, one plugin host, and small helpers.

The ``provider`` fixture is the one a plugin overrides; ``manager`` and ``second`` are built on it. Every
part of the kit subclasses :class:`ProviderSuiteBase`, so each also runs on its own, and
:class:`~eventsource.testing.ProviderSuite` composes them all. A test that needs an operation the store
declares unsupported (to set up or check its own rule: ``create_stream``, ``query``...) is skipped naming it.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import ProviderNotFoundError, UnsupportedOperationError
from eventsource.manager import EventSourcingManager
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource.provider import Provider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

_HOST: PluginHost | None = None


def _host() -> PluginHost:
    global _HOST  # noqa: PLW0603 - one host for the whole test session is enough
    if _HOST is None:
        _HOST = PluginHost(load_entrypoints=False)
    return _HOST


def ev(event_type: str = "Happened", data: Any = None, **kw: Any) -> EventData:
    """Shorthand for an :class:`EventData`."""
    return EventData(event_type=event_type, data={"n": 0} if data is None else data, **kw)


def sid(prefix: str = "s") -> str:
    """A unique stream id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _declared(fixtures: dict[str, Any]) -> frozenset[str]:
    """The operations the store under test declares unsupported (its provider, or a manager's default)."""
    for value in fixtures.values():
        if isinstance(value, Provider):
            return value.capabilities.unsupported
        if isinstance(value, EventSourcingManager):
            try:
                return value.get_default_provider().capabilities.unsupported
            except ProviderNotFoundError:
                continue
    return frozenset()


def _skips_what_is_declared(test: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """``test``, skipped naming the operation if it raises :class:`UnsupportedOperationError` for a declared one.

    It cannot apply to that store, and a failure would say the store broke a rule it keeps. An operation the store
    does not declare still fails the test.
    """

    @functools.wraps(test)
    async def run(self: Any, *args: Any, **fixtures: Any) -> Any:
        try:
            return await test(self, *args, **fixtures)
        except UnsupportedOperationError as e:
            op = e.details.get("operation")
            declared = _declared(fixtures)
            if op in declared:
                pytest.skip(f"capability: the store declares {op!r} unsupported (this test needs it)")
            raise

    run.__kit_skips__ = True  # type: ignore[attr-defined]
    return run


def skip_what_is_declared(cls: type) -> None:
    """Wrap each async test defined on ``cls`` in :func:`_skips_what_is_declared` (once)."""
    for name, test in list(vars(cls).items()):
        if name.startswith("test") and inspect.iscoroutinefunction(test) and not hasattr(test, "__kit_skips__"):
            setattr(cls, name, _skips_what_is_declared(test))


class ProviderSuiteBase:
    """Fixtures and helpers of the kit; its parts add the tests. Subclass and override :meth:`provider`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make each async test of ``cls`` skip, naming it, on an operation the store declares unsupported."""
        super().__init_subclass__(**kwargs)
        skip_what_is_declared(cls)

    max_batch_size = 1000
    """The manager's batch limit for the kit (lower it for stores with small atomic batches)."""

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    async def provider(self) -> AsyncIterator[Provider]:
        """Override: yield a connected provider on a fresh, empty namespace."""
        msg = "override the `provider` fixture in your ProviderSuite subclass"
        pytest.fail(msg)  # a subclass that forgot the fixture fails loudly, never skips
        yield  # pragma: no cover

    @pytest.fixture
    async def manager(self, provider: Provider) -> AsyncIterator[EventSourcingManager]:
        """A manager whose only (default) provider is the one under test."""
        m = EventSourcingManager(
            {"providers": {}, "default_provider": None, "max_batch_size": self.max_batch_size, "retry_attempts": 3},
            host=_host(),
        )
        await m.register_provider(provider, name="under-test", default=True)
        yield m
        # the provider fixture owns closing the provider

    @pytest.fixture
    async def second(self, provider: Provider) -> AsyncIterator[Provider]:
        """A second instance on the same store, as another writer in this process would have."""
        other = type(provider)(**provider.spawn_args())
        await other.connect()
        yield other
        await other.close()

    def supports(self, provider: Provider, op: str) -> bool:
        """Whether the provider declares ``op`` as supported."""
        return provider.capabilities.supports(op)

    @staticmethod
    async def versions(m: EventSourcingManager, stream_id: str) -> list[int]:
        """Versions of a stream as read_stream yields them."""
        return [e.version async for e in m.read_stream(stream_id)]

    @staticmethod
    async def total_events(m: EventSourcingManager) -> int:
        """Events visible through read_all."""
        return len([e async for e in m.read_all()])

"""Provider selection: the registered providers by name, the default, and lookup by name or URL."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from eventsource.errors import ConfigurationError, ProviderNotFoundError, ValidationError
from eventsource.model import ProviderInfo
from eventsource.provider import Provider

if TYPE_CHECKING:
    from eventsource.manager.policy import CallPolicy
    from eventsource.plugins import PluginHost

log = logging.getLogger("eventsource")


class Providers:
    """The providers one manager has registered."""

    __slots__ = ("by_name", "default", "lane")

    def __init__(self) -> None:
        self.by_name: dict[str, Provider] = {}
        self.default: str | None = None
        self.lane = False
        """Whether a registered provider appends in the caller's thread (:meth:`Provider.append_now`)."""

    def add(self, name: str, provider: Provider, *, default: bool = False) -> None:
        """Register a connected provider as ``name`` (the first one, or ``default=True``, is the default)."""
        self.by_name[name] = provider
        if default or self.default is None:
            self.default = name
        self.lane = self.lane or _takes_lane(provider)

    async def connect(
        self, provider: Provider, name: str | None, policy: CallPolicy, *, default: bool = False
    ) -> Provider:
        """Name ``provider`` (``name``, else its own name or kind), connect it under ``policy``, and :meth:`add` it."""
        name = name or provider.name or provider.kind
        self.check_free(name)
        provider.name = name
        await policy.run(provider, "connect", provider.connect, retry=True)
        self.add(name, provider, default=default)
        return provider

    def check_free(self, name: str) -> None:
        """:class:`ConfigurationError` if ``name`` is taken."""
        if name in self.by_name:
            msg = f"a provider named {name!r} is already registered"
            raise ConfigurationError(msg, field="name")

    def clear(self) -> None:
        """Forget every provider."""
        self.by_name.clear()
        self.default = None
        self.lane = False

    async def close(self, policy: CallPolicy) -> BaseException | None:
        """Close every provider under ``policy`` and forget them all; the first error (each one is logged)."""
        first: BaseException | None = None
        for name, provider in list(self.by_name.items()):
            try:
                await policy.run(provider, "close", provider.close, retry=False)
            except Exception as e:  # noqa: BLE001 - close the rest, then report
                log.warning("closing provider %s failed: %s", name, type(e).__name__)
                first = first or e
        self.clear()
        return first

    def get(self, name: str | None = None) -> Provider:
        """The provider registered as ``name``, or the default.

        A URL selects the provider registered with exactly that URL, else the only provider of its
        scheme; with several of that scheme and none at that URL it is ambiguous (an error, never a guess).
        """
        if name is None:
            return self.get_default()
        if not isinstance(name, str):
            msg = f"provider must be a provider name or URL (str), got {type(name).__name__}"
            raise ValidationError(msg, field="provider")
        by_name = self.by_name
        if name in by_name:
            return by_name[name]
        if "://" in name:
            exact = [p for p in by_name.values() if p.url == name]
            if len(exact) == 1:
                return exact[0]
            scheme = name.split("://", 1)[0]
            same = [n for n, p in by_name.items() if p.url and p.url.split("://", 1)[0] == scheme]
            if len(same) == 1:
                return by_name[same[0]]
            if same:
                several = ", ".join(sorted(same))
                msg = (
                    f"{name!r} is registered under no name, and several {scheme}:// providers are ({several}): name one"
                )
                raise ProviderNotFoundError(msg, name=name)
        known = ", ".join(sorted(by_name)) or "none (call connect() or register_provider())"
        msg = f"no provider named {name!r} is registered (registered: {known})"
        raise ProviderNotFoundError(msg, name=name)

    def get_default(self) -> Provider:
        """The default provider."""
        if self.default is None:
            msg = "no provider is registered; call connect() or register_provider() first"
            raise ProviderNotFoundError(msg)
        return self.by_name[self.default]

    def info(self, host: PluginHost) -> list[ProviderInfo]:
        """Kind, masked URL, distribution, version and capabilities of each provider."""
        out = []
        for name, p in self.by_name.items():
            reg = host.providers.registration(p.kind) if p.kind in host.providers else None
            out.append(
                ProviderInfo(
                    name=name,
                    kind=p.kind,
                    url=p.display_url,
                    distribution=reg.distribution if reg else None,
                    version=reg.version if reg else None,
                    capabilities=p.capabilities.as_dict(),
                    is_default=name == self.default,
                )
            )
        return out


def _takes_lane(provider: Provider) -> bool:
    """Whether ``provider`` overrides :meth:`Provider.append_now` (else the sync API's lane has nothing to do)."""
    return type(provider).append_now is not Provider.append_now


def create_configured(host: PluginHost, name: str, url: str, settings: dict[str, object]) -> Provider:
    """Build the provider configured as ``name``; a URL scheme no installed plugin handles is a configuration error."""
    try:
        return host.create_provider(url, **settings)
    except ProviderNotFoundError as e:
        if "scheme" not in e.details:
            raise
        msg = f"provider {name!r}: {e.message}"
        raise ConfigurationError(msg, field=f"providers.{name}.url", scheme=e.details["scheme"]) from None

"""Typed registries the registration hooks fill. Each refuses duplicate names."""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventsource.errors import ConfigurationError, PluginLoadError, ProviderNotFoundError

if TYPE_CHECKING:
    from eventsource.codecs import Cipher, Compressor, Serializer
    from eventsource.provider import Provider

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Registration(Generic[T]):
    """One registered item and where it came from."""

    name: str
    item: T
    distribution: str | None
    version: str | None


@functools.lru_cache(maxsize=8)
def _distributions(path: tuple[str, ...]) -> dict[str, list[str]]:
    """Top-level package -> distributions for one ``sys.path`` (the scan reads every installed one)."""
    from importlib import metadata

    del path  # the cache key: a changed sys.path can bring other distributions
    return dict(metadata.packages_distributions())


def _origin(obj: object) -> tuple[str | None, str | None]:
    """The installed distribution (and version) that ships ``obj``'s top-level package."""
    from importlib import metadata

    module = getattr(obj, "__module__", None) or type(obj).__module__
    top = module.split(".")[0]
    dists = _distributions(tuple(sys.path)).get(top)
    if not dists:
        return None, None
    name = dists[0]
    try:
        return name, metadata.version(name)
    except metadata.PackageNotFoundError:
        return name, None


def _scheme(url: str, what: str) -> str:
    """The scheme of ``url``; :class:`ConfigurationError` (the URL masked) when it has no ``scheme://``."""
    if "://" not in url:
        from eventsource.config import mask_url

        msg = f"not a {what} URL: {mask_url(url)!r} (expected scheme://..., e.g. sqlite:///checkpoints.db)"
        raise ConfigurationError(msg, field="url")
    return url.split("://", 1)[0].lower()


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
"""A URL scheme as RFC 3986 spells it (compared in lower case, as URLs are)."""


def _schemes(schemes: object, what: str) -> tuple[str, ...]:
    """``schemes`` checked and in lower case; :class:`PluginLoadError` for one no URL can carry.

    A string is refused rather than iterated (``schemes=("acme")`` is the string ``"acme"``, whose letters would
    each become a scheme), and so is a scheme no ``scheme://`` URL can select (``"my store"``, ``"a://b"``, ``""``).
    """
    if isinstance(schemes, str) or not isinstance(schemes, (tuple, list, frozenset, set)):
        msg = f"{what} schemes must be a tuple of strings, got {schemes!r} (a one-scheme tuple is ('{schemes}',))"
        raise PluginLoadError(msg, schemes=repr(schemes))
    out = []
    for scheme in schemes:
        low = scheme.lower() if isinstance(scheme, str) else scheme
        if not isinstance(low, str) or not low.isascii() or not _SCHEME.fullmatch(low):
            msg = (
                f"{scheme!r} is not a valid URL scheme for a {what} (a letter, then letters, digits, '+', '-' or '.': "
                "what comes before '://' in a URL)"
            )
            raise PluginLoadError(msg, scheme=repr(scheme))
        out.append(low)
    return tuple(out)


class _Registry(Generic[T]):
    what = "item"

    def __init__(self) -> None:
        self._items: dict[str, Registration[T]] = {}

    def _add(self, name: str, item: T) -> Registration[T]:
        if not name or not isinstance(name, str):
            msg = f"a {self.what} must have a non-empty string name, got {name!r}"
            raise PluginLoadError(msg)
        if name in self._items:
            prev = self._items[name]
            msg = (
                f"{self.what} {name!r} is registered twice: by {prev.distribution or prev.item!r} "
                f"and by {_origin(item)[0] or item!r}"
            )
            raise PluginLoadError(msg, name=name)
        dist, version = _origin(item)
        reg = Registration(name, item, dist, version)
        self._items[name] = reg
        return reg

    def get(self, name: str) -> T:
        """The item registered as ``name``; :class:`ProviderNotFoundError` (a ``KeyError``) if none."""
        try:
            return self._items[name].item
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            msg = f"no {self.what} named {name!r} (registered: {known})"
            raise ProviderNotFoundError(msg, name=name) from None

    def registration(self, name: str) -> Registration[T]:
        """The full registration record of ``name``."""
        self.get(name)
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Any:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class ProviderRegistry(_Registry["type[Provider]"]):
    """Provider classes by kind, and the URL schemes each one answers."""

    what = "provider"

    def __init__(self) -> None:
        super().__init__()
        self._schemes: dict[str, str] = {}

    def add(self, provider_class: type[Provider], *, schemes: tuple[str, ...] = ()) -> None:
        """Register ``provider_class`` under its ``kind`` and URL ``schemes``."""
        from marshmallow import Schema

        from eventsource.provider import Capabilities, Provider

        if not (isinstance(provider_class, type) and issubclass(provider_class, Provider)):
            msg = f"{provider_class!r} is not a subclass of eventsource.provider.Provider"
            raise PluginLoadError(msg)
        if not isinstance(provider_class.capabilities, Capabilities):
            got = type(provider_class.capabilities).__name__
            msg = f"provider {provider_class.kind!r}: capabilities must be an eventsource.provider.Capabilities"
            msg += f", not a {got}"
            raise PluginLoadError(msg, name=provider_class.kind)
        schema = provider_class.settings_schema
        if schema is not None and not (isinstance(schema, type) and issubclass(schema, Schema)):
            msg = f"provider {provider_class.kind!r}: settings_schema must be a marshmallow Schema class or None"
            raise PluginLoadError(msg + f", not {schema!r}", name=provider_class.kind)
        schemes = _schemes(schemes, "provider")
        for scheme in schemes:
            if scheme in self._schemes:
                first = self._items[self._schemes[scheme]]
                by = f" from {first.distribution!r}" if first.distribution else ""
                new = _origin(provider_class)[0]
                msg = (
                    f"URL scheme {scheme!r} is registered twice: by provider {first.name!r}{by} "
                    f"and by provider {provider_class.kind!r}" + (f" from {new!r}" if new else "")
                )
                raise PluginLoadError(msg, scheme=scheme)
        self._add(provider_class.kind, provider_class)
        for scheme in schemes:
            self._schemes[scheme] = provider_class.kind

    def kind_for_scheme(self, scheme: str) -> str:
        """The provider kind registered for a URL scheme."""
        if scheme in self._schemes:
            return self._schemes[scheme]
        if scheme in self._items:
            return scheme
        known = ", ".join(sorted(self._schemes)) or "none"
        msg = f"no provider handles URL scheme {scheme!r} (known schemes: {known}); is its plugin installed?"
        raise ProviderNotFoundError(msg, scheme=scheme)

    def schemes(self) -> dict[str, str]:
        """URL scheme -> provider kind."""
        return dict(self._schemes)


class CodecRegistry:
    """Serializers, compressors and ciphers by name (names appear in stored encoding descriptors)."""

    def __init__(self) -> None:
        self.serializers: _Registry[Serializer] = _Registry()
        self.serializers.what = "serializer"
        self.compressors: _Registry[Compressor] = _Registry()
        self.compressors.what = "compressor"
        self.ciphers: _Registry[Cipher] = _Registry()
        self.ciphers.what = "cipher"

    def _claim(self, name: object, kind: str, own: _Registry[Any]) -> None:
        """Refuse a name another codec kind holds, or one with ``+``: all three kinds share one namespace.

        A descriptor like ``json+zlib+aes256gcm`` names each part without its kind, so a compressor
        named like a cipher would be handed the ciphertext.
        """
        if isinstance(name, str) and "+" in name:
            msg = f"{kind} name {name!r} contains '+', which separates the parts of an encoding descriptor"
            raise PluginLoadError(msg, name=name)
        for other in (self.serializers, self.compressors, self.ciphers):
            if other is not own and isinstance(name, str) and name in other:
                prev = other.registration(name)
                msg = (
                    f"{kind} {name!r} clashes with the {other.what} of that name "
                    f"(registered by {prev.distribution or prev.item!r}): codec names are shared by all kinds"
                )
                raise PluginLoadError(msg, name=name)

    def add_serializer(self, serializer: Serializer) -> None:
        """Register a serializer under ``serializer.name``."""
        self._claim(serializer.name, "serializer", self.serializers)
        self.serializers._add(serializer.name, serializer)  # noqa: SLF001

    def add_compressor(self, compressor: Compressor) -> None:
        """Register a compressor under ``compressor.name``."""
        self._claim(compressor.name, "compressor", self.compressors)
        self.compressors._add(compressor.name, compressor)  # noqa: SLF001

    def add_cipher(self, cipher: Cipher) -> None:
        """Register a cipher under ``cipher.name``; it must subclass :class:`~eventsource.codecs.Cipher`.

        The manager calls the hooks that class declares (``bind``, ``forget``) on every cipher, so an
        object that only looks like one is refused here, at start-up, not when keys are first bound.
        """
        from eventsource.codecs import Cipher

        self._claim(cipher.name, "cipher", self.ciphers)
        if not isinstance(cipher, Cipher):
            msg = f"cipher {cipher.name!r} is a {type(cipher).__name__}, not a subclass of eventsource.codecs.Cipher"
            raise PluginLoadError(msg, name=cipher.name)
        self.ciphers._add(cipher.name, cipher)  # noqa: SLF001


class RetentionRegistry(_Registry[type]):
    """Retention policy classes by ``name``."""

    what = "retention policy"

    def add(self, policy_class: type) -> None:
        """Register ``policy_class`` under its ``name`` attribute."""
        self._add(getattr(policy_class, "name", ""), policy_class)


class LeaseRegistry(_Registry[type]):
    """Lease classes by ``kind``, and the URL schemes each one answers."""

    what = "lease"

    def __init__(self) -> None:
        super().__init__()
        self._schemes: dict[str, str] = {}

    def add(self, lease_class: type, *, schemes: tuple[str, ...] = ()) -> None:
        """Register ``lease_class`` under its ``kind`` and URL ``schemes``."""
        schemes = _schemes(schemes, "lease")
        for scheme in schemes:
            if scheme in self._schemes:
                msg = f"lease URL scheme {scheme!r} is registered twice"
                raise PluginLoadError(msg, scheme=scheme)
        kind = getattr(lease_class, "kind", "")
        self._add(kind, lease_class)
        for scheme in schemes:
            self._schemes[scheme] = kind

    def for_url(self, url: str) -> type:
        """The lease class whose scheme matches ``url``."""
        scheme = _scheme(url, "lease")
        if scheme not in self._schemes:
            known = ", ".join(sorted(self._schemes)) or "none"
            msg = f"no lease handles URL scheme {scheme!r} (known: {known}); is its plugin installed?"
            raise ProviderNotFoundError(msg, scheme=scheme)
        return self.get(self._schemes[scheme])


class CheckpointRegistry(_Registry[type]):
    """Checkpoint store classes by ``kind``, and the URL schemes each one answers."""

    what = "checkpoint store"

    def __init__(self) -> None:
        super().__init__()
        self._schemes: dict[str, str] = {}

    def add(self, store_class: type, *, schemes: tuple[str, ...] = ()) -> None:
        """Register ``store_class`` (a :class:`~eventsource.checkpoints.CheckpointStore`) under its ``kind``."""
        from eventsource.checkpoints.base import CheckpointStore

        if not (isinstance(store_class, type) and issubclass(store_class, CheckpointStore)):
            msg = f"{store_class!r} is not a subclass of eventsource.checkpoints.CheckpointStore"
            raise PluginLoadError(msg)
        schemes = _schemes(schemes, "checkpoint store")
        for scheme in schemes:
            if scheme in self._schemes:
                msg = f"checkpoint store URL scheme {scheme!r} is registered twice"
                raise PluginLoadError(msg, scheme=scheme)
        self._add(store_class.kind, store_class)
        for scheme in schemes:
            self._schemes[scheme] = store_class.kind

    def for_url(self, url: str) -> type:
        """The checkpoint store class whose scheme matches ``url``."""
        scheme = _scheme(url, "checkpoint store")
        if scheme not in self._schemes:
            known = ", ".join(sorted(self._schemes)) or "none"
            msg = f"no checkpoint store handles URL scheme {scheme!r} (known: {known}); is its plugin installed?"
            raise ProviderNotFoundError(msg, scheme=scheme)
        return self.get(self._schemes[scheme])

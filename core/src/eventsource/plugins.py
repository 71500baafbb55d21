"""The plugin host: one pluggy ``PluginManager`` per instance, and the only code that calls hooks.

Start-up order: hook specs; plugins blocked by ``EVENTSOURCE_DISABLED_PLUGINS`` (comma-separated
entry-point names, ``builtin`` included); entry points of the ``eventsource`` group; the built-in
plugin (memory and sqlite providers, codecs, retention policies); ``check_pending()``; then the
registration hooks fill the typed registries. ``EVENTSOURCE_TRACE_PLUGINS=1`` logs every hook call.
Nothing loads at import time; tests build ``PluginHost(load_entrypoints=False)``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from eventsource import hookspecs
from eventsource.config import mask_url
from eventsource.domain.upcasting import Upcasters
from eventsource.errors import ConfigurationError, EventSourceError, PluginLoadError
from eventsource.hookspecs import NAME
from eventsource.registry import CheckpointRegistry, CodecRegistry, LeaseRegistry, ProviderRegistry, RetentionRegistry

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventsource.checkpoints.base import CheckpointStore
    from eventsource.codecs.keys import KeyProvider
    from eventsource.config import ManagerConfig
    from eventsource.provider import Provider

log = logging.getLogger("eventsource.plugins")

DISABLED_ENV = "EVENTSOURCE_DISABLED_PLUGINS"
TRACE_ENV = "EVENTSOURCE_TRACE_PLUGINS"


def _meant(error: str) -> str:
    """`` (did you mean '<spec>'?)`` for the unknown hook pluggy names in ``error``, if a spec's name is close."""
    unknown = re.search(r"unknown hook '(\w+)'", error)
    specs = [n for n in vars(hookspecs) if n.startswith(f"{NAME}_") and hasattr(getattr(hookspecs, n), f"{NAME}_spec")]
    close = difflib.get_close_matches(unknown.group(1), specs, n=1) if unknown else []
    return f" (did you mean {close[0]!r}?)" if close else ""


class PluginHost:
    """Discovers plugins and holds what they registered.

    :param load_entrypoints: load the ``eventsource`` entry-point group (off in unit tests).
    :param blocked: plugin names to block, in addition to ``EVENTSOURCE_DISABLED_PLUGINS``.
    :param plugins: extra plugin objects (modules or instances with hookimpls) to register.
    """

    def __init__(
        self,
        *,
        load_entrypoints: bool = True,
        blocked: Iterable[str] = (),
        plugins: Iterable[tuple[str, object]] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(NAME)
        self.pm.add_hookspecs(hookspecs)
        self.distributions: dict[str, tuple[str, str]] = {}
        env_blocked = [n.strip() for n in os.environ.get(DISABLED_ENV, "").split(",") if n.strip()]
        for name in [*env_blocked, *blocked]:
            self.pm.set_blocked(name)
        if os.environ.get(TRACE_ENV, "").lower() not in ("", "0", "false", "no"):
            self.pm.trace.root.setwriter(log.info)
            self.pm.enable_tracing()
        if load_entrypoints:
            self._load_entrypoints()
        if not self.pm.is_blocked("builtin"):
            from eventsource import builtin

            self.pm.register(builtin, name="builtin")
        for name, plugin in plugins:
            self.register(plugin, name)
        self._check_pending()
        self.providers = ProviderRegistry()
        self.codecs = CodecRegistry()
        self.retention_policies = RetentionRegistry()
        self.leases = LeaseRegistry()
        self.upcasters = Upcasters()
        self.checkpoint_stores = CheckpointRegistry()
        self._call_historic("eventsource_register_providers", self.providers)
        self._call_historic("eventsource_register_codecs", self.codecs)
        self._call_historic("eventsource_register_retention_policies", self.retention_policies)
        self._call_historic("eventsource_register_leases", self.leases)
        self._call_historic("eventsource_register_upcasters", self.upcasters)
        self._call_historic("eventsource_register_checkpoint_stores", self.checkpoint_stores)

    def _load_entrypoints(self) -> None:
        for ep in metadata.entry_points(group=NAME):
            if self.pm.is_blocked(ep.name):
                continue
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            version = ep.dist.version if ep.dist is not None else "?"
            if ep.name == "builtin":
                msg = f"distribution {dist!r} declares an {NAME!r} entry point named 'builtin', which is the core's own"
                raise PluginLoadError(msg, plugin=ep.name, distribution=dist)
            if self.pm.has_plugin(ep.name):
                first = self.distributions.get(ep.name, ("another distribution", ""))[0]
                if first == dist:
                    continue  # the same distribution found twice on the path
                msg = (
                    f"entry point {ep.name!r} of group {NAME!r} is declared by both {first!r} and {dist!r}; "
                    f"uninstall one ({DISABLED_ENV}={ep.name} blocks both)"
                )
                raise PluginLoadError(msg, plugin=ep.name, distribution=dist)
            try:
                plugin = ep.load()
            except Exception as e:
                msg = f"plugin {ep.name!r} from distribution {dist!r} failed to import: {type(e).__name__}: {e}"
                raise PluginLoadError(msg, plugin=ep.name, distribution=dist) from e
            try:
                self.pm.register(plugin, name=ep.name)
            except (ValueError, pluggy.PluginValidationError) as e:
                msg = f"plugin {ep.name!r} from distribution {dist!r} is invalid: {e}"
                raise PluginLoadError(msg, plugin=ep.name, distribution=dist) from e
            self.distributions[ep.name] = (dist, version)

    def _call_historic(self, hook_name: str, registry: object) -> None:
        hook = getattr(self.pm.hook, hook_name)
        try:
            hook.call_historic(kwargs={"registry": registry})
        except Exception as e:
            name = _raised_in(hook, e)
            details = e.details if isinstance(e, PluginLoadError) else None  # a registry's refusal: its words
            if name is None or (details is not None and details.get("plugin")):
                if details is not None:
                    raise
                msg = f"a plugin failed in {hook_name}: {type(e).__name__}: {e}"
                raise PluginLoadError(msg, hook=hook_name) from e
            dist = self.distributions.get(name, (None, None))[0]
            where = f"plugin {name!r}" + (f" from distribution {dist!r}" if dist else "")
            msg = f"{where} failed in {hook_name}: " + (str(e) if details is not None else f"{type(e).__name__}: {e}")
            details = details or {}
            raise PluginLoadError(msg, **{**details, "hook": hook_name, "plugin": name, "distribution": dist}) from e

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object after start-up; historic hooks run for it at once.

        A plugin that fails (invalid, or raising in a hook) is unregistered again and reported as a
        :class:`PluginLoadError`.
        """
        try:
            self.pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as e:
            msg = f"plugin {name or plugin!r} is invalid: {e}"
            raise PluginLoadError(msg, plugin=name) from e
        except Exception as e:  # a historic hook of the plugin raised
            with contextlib.suppress(Exception):
                self.pm.unregister(plugin)
            if isinstance(e, PluginLoadError):
                raise
            msg = f"plugin {name or plugin!r} failed in a hook: {type(e).__name__}: {e}"
            raise PluginLoadError(msg, plugin=name) from e
        try:
            self._check_pending()
        except PluginLoadError:
            with contextlib.suppress(Exception):
                self.pm.unregister(plugin)
            raise

    def _check_pending(self) -> None:
        """Refuse hook implementations that match no spec (a misspelled hook name), naming the plugin."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            name = self.pm.get_name(e.plugin) or repr(e.plugin)
            dist = self.distributions.get(name, (None, None))[0]
            where = f"plugin {name!r}" + (f" from distribution {dist!r}" if dist else "")
            msg = f"{where} implements a hook that no spec defines: {e}{_meant(str(e))}"
            raise PluginLoadError(msg, plugin=name, distribution=dist) from e

    def plugin_names(self) -> list[str]:
        """Names of registered plugins (entry-point names, ``builtin``...)."""
        return sorted(n for n, p in self.pm.list_name_plugin() if p is not None)

    def describe(self) -> list[dict[str, Any]]:
        """Discovered plugins with distribution and version, and what each registered."""
        schemes = self.providers.schemes()
        rows = [
            {
                "type": "provider",
                "name": reg.name,
                "distribution": reg.distribution,
                "version": reg.version,
                "schemes": sorted(s for s, k in schemes.items() if k == reg.name),
            }
            for reg in self.providers
        ]
        for kind, registry in (
            ("serializer", self.codecs.serializers),
            ("compressor", self.codecs.compressors),
            ("cipher", self.codecs.ciphers),
            ("retention", self.retention_policies),
            ("lease", self.leases),
        ):
            rows.extend(
                {
                    "type": kind,
                    "name": reg.name,
                    "distribution": reg.distribution,
                    "version": reg.version,
                    "schemes": [],
                }
                for reg in registry
            )
        return rows

    def create_provider(self, url: str, **settings: Any) -> Provider:
        """Build a provider from a URL (its scheme selects the provider kind) and settings.

        A constructor that raises something other than an eventsource error (its URL parser's own) is reported as
        :class:`ConfigurationError` naming the provider kind and the (masked) URL, the error as its cause.
        """
        cls = self.provider_class(url)
        try:
            return cls(url, **settings)
        except EventSourceError:
            raise
        except Exception as e:
            msg = f"{type(e).__name__}: {e} (building provider {cls.kind!r} for {mask_url(url)!r})"
            raise ConfigurationError(msg, field="url", kind=cls.kind) from e

    def provider_class(self, url: str) -> type[Provider]:
        """The provider class a URL's scheme selects."""
        if "://" not in url:
            msg = f"not a store URL: {mask_url(url)!r} (expected scheme://..., e.g. sqlite:///events.db)"
            raise ConfigurationError(msg, field="url")
        scheme = url.split("://", 1)[0].lower()  # not urlsplit, which raises on a host like "[::1": the provider says
        return self.providers.get(self.providers.kind_for_scheme(scheme))

    def key_provider(self, config: ManagerConfig) -> KeyProvider | None:
        """The key provider a plugin supplies for ``config`` (``eventsource_key_provider``), or ``None``."""
        from eventsource.codecs.keys import KeyProvider

        try:
            provider = self.pm.hook.eventsource_key_provider(config=config)
        except EventSourceError:
            raise
        except Exception as e:
            msg = f"a plugin failed in eventsource_key_provider: {type(e).__name__}"
            raise PluginLoadError(msg, hook="eventsource_key_provider") from e
        if provider is not None and not isinstance(provider, KeyProvider):
            msg = f"eventsource_key_provider returned a {type(provider).__name__}, not a KeyProvider"  # never its repr
            raise PluginLoadError(msg, hook="eventsource_key_provider")
        return provider

    def create_lease(self, url: str, **settings: Any) -> Any:
        """Build a lease from a URL (its scheme selects the lease kind)."""
        return self.leases.for_url(url)(url, **settings)

    def create_checkpoint_store(self, url: str, **options: Any) -> CheckpointStore:
        """Build a checkpoint store from a URL (its scheme selects the kind); call ``connect()`` before use.

        ``options`` are the store class's keywords (``create_store=False``, a PostgreSQL ``schema``, a NATS
        ``bucket``...), passed as they are.
        """
        return self.checkpoint_stores.for_url(url)(url, **options)  # type: ignore[no-any-return]


def _raised_in(hook: Any, error: BaseException) -> str | None:
    """The name of the plugin whose implementation of ``hook`` raised ``error`` (its frame in the traceback)."""
    codes = {getattr(impl.function, "__code__", None): impl.plugin_name for impl in hook.get_hookimpls()}
    tb = error.__traceback__
    while tb is not None:
        name = codes.get(tb.tb_frame.f_code)
        if name is not None:
            return str(name)
        tb = tb.tb_next
    return None

"""The plugin host and its typed registries, without entry points (``PluginHost(load_entrypoints=False)``)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import eventsource
import pytest
from conftest import FakeEntryPoint
from eventsource.codecs import Serializer
from eventsource.errors import ConfigurationError, PluginLoadError, ProviderNotFoundError
from eventsource.lease import Lease
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.plugins import TRACE_ENV, PluginHost
from eventsource.registry import CodecRegistry, LeaseRegistry, ProviderRegistry, RetentionRegistry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class ShopProvider(MemoryProvider):
    kind = "shop"


class OtherShopProvider(MemoryProvider):
    kind = "othershop"


class UpperJson(Serializer):
    """A serializer registered by a plugin (its name goes into every payload's descriptor)."""

    name = "upperjson"

    def dumps(self, value: Any) -> bytes:
        import json

        return json.dumps(value).encode()

    def loads(self, raw: bytes) -> Any:
        import json

        return json.loads(raw)


class KeepNothing:
    """A retention policy class (policies are registered by ``name``)."""

    name = "keep_nothing"


class LocalLease(Lease):
    """A process-local lease, enough to see the hook and ``create_lease`` work."""

    kind = "local"

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    def hold(self, key: str, *, timeout: float) -> Any:
        @asynccontextmanager
        async def held() -> AsyncIterator[None]:
            yield

        return held()


class EveryHook:
    """A plugin implementing every registration hook."""

    @eventsource.hookimpl
    def eventsource_register_providers(self, registry: ProviderRegistry) -> None:
        registry.add(ShopProvider, schemes=("shop",))

    @eventsource.hookimpl
    def eventsource_register_codecs(self, registry: CodecRegistry) -> None:
        registry.add_serializer(UpperJson())

    @eventsource.hookimpl
    def eventsource_register_retention_policies(self, registry: RetentionRegistry) -> None:
        registry.add(KeepNothing)

    @eventsource.hookimpl
    def eventsource_register_leases(self, registry: LeaseRegistry) -> None:
        registry.add(LocalLease, schemes=("local",))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTSOURCE_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv(TRACE_ENV, raising=False)


def test_without_entry_points_only_the_builtin_plugin_loads() -> None:
    host = PluginHost(load_entrypoints=False)
    assert host.plugin_names() == ["builtin"]
    assert host.distributions == {}
    assert "memory" in host.providers
    assert host.providers.kind_for_scheme("memory") == "memory"
    assert {"json"} <= set(host.codecs.serializers.names())
    assert {"zlib", "brotli"} <= set(host.codecs.compressors.names())
    assert isinstance(host.create_provider("memory://"), MemoryProvider)


def test_the_builtin_plugin_can_be_blocked() -> None:
    host = PluginHost(load_entrypoints=False, blocked=["builtin"])
    assert len(host.providers) == 0
    with pytest.raises(ProviderNotFoundError, match="known schemes: none"):
        host.create_provider("memory://")


def test_every_registration_hook_fills_its_registry() -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("every", EveryHook())])
    assert host.providers.get("shop") is ShopProvider
    assert host.providers.schemes()["shop"] == "shop"
    assert isinstance(host.codecs.serializers.get("upperjson"), UpperJson)
    assert host.retention_policies.get("keep_nothing") is KeepNothing
    lease = host.create_lease("local://anywhere", ttl=5)
    assert isinstance(lease, LocalLease) and lease.settings == {"ttl": 5}
    kinds = {(r["type"], r["name"]) for r in host.describe()}
    assert {
        ("provider", "shop"),
        ("serializer", "upperjson"),
        ("retention", "keep_nothing"),
        ("lease", "local"),
    } <= kinds


def test_late_registration_runs_the_historic_hooks() -> None:
    host = PluginHost(load_entrypoints=False)
    assert "shop" not in host.providers
    host.register(EveryHook(), "late")
    assert "shop" in host.providers and "late" in host.plugin_names()
    assert host.leases.for_url("local://x") is LocalLease


async def test_a_registered_provider_serves_a_manager() -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("every", EveryHook())])
    async with EventSourcingManager({"providers": {"s": "shop://"}}, host=host) as m:
        await m.append_event(stream_id="x", event_type="E", data={"a": 1})
        assert [e.data async for e in m.read_all()] == [{"a": 1}]
        assert m.get_provider_info()[0].kind == "shop"


# --------------------------------------------------------------------------- registries refuse duplicates


def test_provider_registry_refuses_duplicates_and_non_providers() -> None:
    reg = ProviderRegistry()
    reg.add(ShopProvider, schemes=("shop",))
    with pytest.raises(PluginLoadError, match="provider 'shop' is registered twice"):
        reg.add(ShopProvider)
    with pytest.raises(PluginLoadError, match="URL scheme 'shop' is registered twice"):
        reg.add(OtherShopProvider, schemes=("shop",))
    assert "othershop" not in reg  # a refused registration leaves nothing behind
    with pytest.raises(PluginLoadError, match="not a subclass"):
        reg.add(dict)  # type: ignore[arg-type]

    class Nameless(MemoryProvider):
        kind = ""

    with pytest.raises(PluginLoadError, match="non-empty string name"):
        reg.add(Nameless)
    with pytest.raises(ProviderNotFoundError) as info:
        reg.get("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, LookupError)
    assert str(info.value) == "no provider named 'nope' (registered: shop)"
    with pytest.raises(ProviderNotFoundError, match="is its plugin installed"):
        reg.kind_for_scheme("nope")
    assert reg.kind_for_scheme("shop") == "shop" and reg.names() == ["shop"] and len(reg) == 1


def test_codec_retention_and_lease_registries_refuse_duplicates() -> None:
    codecs = CodecRegistry()
    codecs.add_serializer(UpperJson())
    with pytest.raises(PluginLoadError, match="serializer 'upperjson' is registered twice"):
        codecs.add_serializer(UpperJson())

    class Shadow:  # a compressor named like the built-in cipher would be handed every ciphertext
        name = "aes256gcm"

    codecs.add_compressor(Shadow())  # type: ignore[arg-type]
    with pytest.raises(PluginLoadError, match="codec names are shared by all kinds"):
        codecs.add_cipher(Shadow())  # type: ignore[arg-type]
    with pytest.raises(PluginLoadError, match="codec names are shared by all kinds"):
        codecs.add_serializer(Shadow())  # type: ignore[arg-type]

    class Plus:
        name = "zlib+x"

    with pytest.raises(PluginLoadError, match="contains '\\+'"):
        codecs.add_compressor(Plus())  # type: ignore[arg-type]
    retention = RetentionRegistry()
    retention.add(KeepNothing)
    with pytest.raises(PluginLoadError, match="retention policy 'keep_nothing' is registered twice"):
        retention.add(KeepNothing)
    leases = LeaseRegistry()
    leases.add(LocalLease, schemes=("local",))
    with pytest.raises(PluginLoadError, match="lease 'local' is registered twice"):
        leases.add(LocalLease)
    with pytest.raises(PluginLoadError, match="lease URL scheme 'local' is registered twice"):
        leases.add(LocalLease, schemes=("local",))
    with pytest.raises(ProviderNotFoundError, match="no lease handles URL scheme 'zk'"):
        leases.for_url("zk://x")


def test_a_plugin_registering_a_taken_name_fails_the_host() -> None:
    class Again:
        @eventsource.hookimpl
        def eventsource_register_providers(self, registry: ProviderRegistry) -> None:
            registry.add(MemoryProvider, schemes=("mem2",))

    with pytest.raises(PluginLoadError, match="provider 'memory' is registered twice"):
        PluginHost(load_entrypoints=False, plugins=[("again", Again())])


# --------------------------------------------------------------------------- validation at start-up


def test_a_misspelled_hook_fails_at_start_up_with_plugin_load_error() -> None:
    class Misspelled:
        @eventsource.hookimpl
        def eventsource_register_provider(self, registry: ProviderRegistry) -> None:  # missing "s"
            registry.add(ShopProvider)

    with pytest.raises(PluginLoadError, match="eventsource_register_provider"):
        PluginHost(load_entrypoints=False, plugins=[("misspelled", Misspelled())])
    host = PluginHost(load_entrypoints=False)
    with pytest.raises(PluginLoadError, match="eventsource_register_provider"):
        host.register(Misspelled(), "late-misspelled")


def test_a_misspelled_hook_is_reported_with_the_spec_it_was_meant_to_be() -> None:
    """The author learns what to rename it to, not only that the name is unknown."""

    class Misspelled:
        @eventsource.hookimpl
        def eventsource_register_provider(self, registry: ProviderRegistry) -> None:  # missing "s"
            registry.add(ShopProvider)

    with pytest.raises(PluginLoadError, match="did you mean 'eventsource_register_providers'"):
        PluginHost(load_entrypoints=False, plugins=[("misspelled", Misspelled())])


def test_a_hook_with_a_wrong_argument_name_is_refused() -> None:
    class WrongArgument:
        @eventsource.hookimpl
        def eventsource_register_providers(self, registy: ProviderRegistry) -> None:
            registy.add(ShopProvider)

    with pytest.raises(PluginLoadError, match="registy"):
        PluginHost(load_entrypoints=False, plugins=[("wrong", WrongArgument())])


def test_a_hook_that_raises_is_reported_with_the_hook_name() -> None:
    class Raises:
        @eventsource.hookimpl
        def eventsource_register_codecs(self, registry: CodecRegistry) -> None:
            msg = "codec library missing"
            raise RuntimeError(msg)

    with pytest.raises(PluginLoadError, match=r"eventsource_register_codecs.*codec library missing"):
        PluginHost(load_entrypoints=False, plugins=[("raises", Raises())])


def test_create_provider_validates_the_url_and_settings() -> None:
    host = PluginHost(load_entrypoints=False)
    with pytest.raises(ConfigurationError, match="not a store URL") as info:
        host.create_provider("events.db")
    assert info.value.details["field"] == "url"
    with pytest.raises(ProviderNotFoundError, match=r"'nosuch'.*known schemes: memory"):
        host.create_provider("nosuch://x")
    with pytest.raises(ConfigurationError, match=r"invalid settings for provider 'memory'.*pool_size") as info:
        host.create_provider("memory://", pool_size=3)  # (its one setting is create_store)
    assert info.value.details["field"] == "pool_size"
    assert host.create_provider("MEMORY://").kind == "memory"


# --------------------------------------------------------------------------- tracing


def test_trace_env_logs_every_hook_call(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(TRACE_ENV, "1")
    with caplog.at_level(logging.INFO, logger="eventsource.plugins"):
        PluginHost(load_entrypoints=False, plugins=[("every", EveryHook())])
    traced = "\n".join(r.getMessage() for r in caplog.records if r.name == "eventsource.plugins")
    for hook in (
        "eventsource_register_providers",
        "eventsource_register_codecs",
        "eventsource_register_retention_policies",
        "eventsource_register_leases",
    ):
        assert hook in traced


def test_no_trace_by_default_or_when_off(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for value in (None, "0", "false"):
        if value is None:
            monkeypatch.delenv(TRACE_ENV, raising=False)
        else:
            monkeypatch.setenv(TRACE_ENV, value)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="eventsource.plugins"):
            PluginHost(load_entrypoints=False)
        assert not [r for r in caplog.records if r.name == "eventsource.plugins"], value


# --------------------------------------------------------------------------- the key-provider hook


class NoKeys:
    """Answers ``None``: leaves the decision to the next plugin."""

    @eventsource.hookimpl
    def eventsource_key_provider(self, config: Any) -> Any:
        return None


class VaultKeys:
    """Supplies the manager's keys (as a KMS/Vault plugin would)."""

    def __init__(self) -> None:
        from eventsource.codecs.keys import StaticKeyRing

        self.ring = StaticKeyRing({"vault-1": bytes(range(32))})
        self.asked: list[Any] = []

    @eventsource.hookimpl
    def eventsource_key_provider(self, config: Any) -> Any:
        self.asked.append(config)
        return self.ring


def test_no_key_provider_plugin_means_none() -> None:
    from eventsource.config import ManagerConfig

    assert PluginHost(load_entrypoints=False, plugins=[("none", NoKeys())]).key_provider(ManagerConfig()) is None


async def test_the_first_non_none_key_provider_serves_the_manager() -> None:
    vault = VaultKeys()
    host = PluginHost(load_entrypoints=False, plugins=[("vault", vault), ("none", NoKeys())])
    cfg = {"providers": {"m": "memory://"}, "encryption": True}
    async with EventSourcingManager(cfg, host=host) as m:
        assert m.keys is vault.ring
        assert len(vault.asked) == 1  # once, at start-up; never per event
        await m.append_event(stream_id="s", event_type="Secret", data={"card": "4111-1111"})
        await m.append_event(stream_id="s", event_type="Secret", data={"card": "5500-0000"})
        assert [e.data["card"] async for e in m.read_stream("s")] == ["4111-1111", "5500-0000"]
        stored = [r async for r in m.get_provider().read_stream("s")]
        assert all(b"4111" not in r.data and "aes256gcm" in r.encoding for r in stored)
        assert len(vault.asked) == 1


# ---------------------------------------------------------------------- found by a review (session 3)


def test_an_entry_point_named_builtin_or_declared_twice_is_refused_naming_the_distributions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    from eventsource import plugins

    empty = types.ModuleType("empty_plugin")
    monkeypatch.setattr(
        plugins.metadata, "entry_points", lambda group: [FakeEntryPoint("builtin", "evil-builtin", empty)]
    )
    with pytest.raises(PluginLoadError, match=r"'evil-builtin'.*'builtin'"):
        PluginHost()
    twice = [
        FakeEntryPoint("postgres", "shady-postgres", empty),
        FakeEntryPoint("postgres", "eventsource-postgres", types.ModuleType("pg")),
    ]
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: twice)
    with pytest.raises(PluginLoadError, match="both 'shady-postgres' and 'eventsource-postgres'"):
        PluginHost()


def test_a_plugin_failing_in_a_hook_is_a_typed_error_and_is_not_left_registered() -> None:
    class Raises:
        @eventsource.hookimpl
        def eventsource_register_retention_policies(self, registry: RetentionRegistry) -> None:
            raise RuntimeError("boom")

    host = PluginHost(load_entrypoints=False)
    plugin = Raises()
    with pytest.raises(PluginLoadError, match="failed in a hook: RuntimeError"):
        host.register(plugin, "raises")
    assert not host.pm.is_registered(plugin)


def test_a_key_provider_plugin_returning_the_wrong_type_fails_at_start_up() -> None:
    class WrongType:
        @eventsource.hookimpl
        def eventsource_key_provider(self, config: object) -> object:
            return {"k1": "not a key provider"}

    host = PluginHost(load_entrypoints=False, plugins=[("wrong", WrongType())])
    with pytest.raises(PluginLoadError, match="returned a dict, not a KeyProvider"):
        EventSourcingManager({"providers": {}, "default_provider": None}, host=host)

"""A third-party provider plugin as a newcomer (or an attacker) writes it, found by a review of the guide.

docs/writing-a-provider.md followed literally: registration mistakes a plugin can make are refused at start-up
naming the plugin and its distribution, and a provider that breaks the contract at run time (an unmapped
exception, an append result that does not match what was appended) gets a typed error naming it, never a raw
builtin a caller would take for something else.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import eventsource
import pytest
from conftest import FakeEntryPoint
from eventsource import EventData, EventSourcingManager, SyncEventSourcingManager
from eventsource.errors import PluginLoadError, ProviderError, StreamNotFoundError
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from eventsource.model import AppendResult, NewEvent, NewStream, StreamInfo
    from eventsource.registry import ProviderRegistry

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTSOURCE_DISABLED_PLUGINS", raising=False)


class AcmeProvider(MemoryProvider):
    kind = "acme"


def _plugin(schemes: Any, cls: type = AcmeProvider) -> object:
    """A plugin registering ``cls`` with ``schemes`` exactly as given."""

    class Plugin:
        @eventsource.hookimpl
        def eventsource_register_providers(self, registry: ProviderRegistry) -> None:
            registry.add(cls, schemes=schemes)

    return Plugin()


# --------------------------------------------------------------------------- URL schemes


def test_schemes_given_as_one_string_are_refused() -> None:
    # schemes=("acme") is the string "acme": iterated, it registered the schemes 'a', 'c', 'm' and 'e'
    with pytest.raises(PluginLoadError, match=r"schemes.*tuple") as info:
        PluginHost(load_entrypoints=False, plugins=[("acme", _plugin("acme"))])
    assert info.value.details["plugin"] == "acme"


@pytest.mark.parametrize("scheme", ["", "acme://x", "my store", "1acme", "ac_me", "acme:", "ac/me", "é"])
def test_a_scheme_no_url_can_carry_is_refused_naming_the_plugin(scheme: str) -> None:
    with pytest.raises(PluginLoadError, match="not a valid URL scheme") as info:
        PluginHost(load_entrypoints=False, plugins=[("acme", _plugin((scheme, "acme")))])
    assert info.value.details["plugin"] == "acme"
    assert "acme" not in PluginHost(load_entrypoints=False).providers


def test_a_scheme_registered_in_capitals_is_found_whatever_the_case_of_the_url() -> None:
    class Kinded(MemoryProvider):
        kind = "acme-store"

    host = PluginHost(load_entrypoints=False, plugins=[("acme", _plugin(("Acme+TLS",), cls=Kinded))])
    assert host.provider_class("acme+tls://h/x") is Kinded
    assert host.provider_class("ACME+tls://h/x") is Kinded
    assert host.providers.schemes()["acme+tls"] == "acme-store"


# --------------------------------------------------------------------------- clashes name the plugin


def test_a_registry_refusal_in_a_plugins_hook_names_the_plugin_and_both_distributions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eventsource import plugins

    module = types.ModuleType("eventsource_clashy.plugin")
    module.eventsource_register_providers = _plugin(("sqlite",)).eventsource_register_providers  # type: ignore[attr-defined]
    monkeypatch.setattr(
        plugins.metadata, "entry_points", lambda group: [FakeEntryPoint("clashy", "eventsource-clashy", module)]
    )
    with pytest.raises(PluginLoadError) as info:
        PluginHost()
    message = str(info.value)
    assert "URL scheme 'sqlite' is registered twice" in message
    assert "'clashy'" in message and "eventsource-clashy" in message  # which plugin to uninstall or block
    assert "'eventsource'" in message  # and who holds the scheme
    assert info.value.details["plugin"] == "clashy"  # the CLI's EVENTSOURCE_DISABLED_PLUGINS hint needs it
    assert info.value.details["distribution"] == "eventsource-clashy"


def test_a_provider_kind_clash_in_a_hook_names_the_plugin() -> None:
    class Sqlite2(MemoryProvider):
        kind = "sqlite"

    with pytest.raises(PluginLoadError, match="provider 'sqlite' is registered twice") as info:
        PluginHost(load_entrypoints=False, plugins=[("shadow", _plugin(("sqlite2",), cls=Sqlite2))])
    assert "'shadow'" in str(info.value) and info.value.details["plugin"] == "shadow"


@pytest.fixture
def acme_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """One entry-point name, ``acme``, installed by two distributions."""
    from eventsource import plugins

    twice = [
        FakeEntryPoint("acme", "eventsource-acme", types.ModuleType("a")),
        FakeEntryPoint("acme", "acme-fork", types.ModuleType("b")),
    ]
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: twice)


@pytest.mark.usefixtures("acme_twice")
def test_one_entry_point_name_in_two_distributions_does_not_suggest_blocking_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(PluginLoadError, match="both 'eventsource-acme' and 'acme-fork'") as info:
        PluginHost()
    # blocking the name blocks both distributions' entry points: it cannot keep one
    assert "block one" not in str(info.value)
    assert "blocks both" in str(info.value)
    monkeypatch.setenv("EVENTSOURCE_DISABLED_PLUGINS", "acme")
    host = PluginHost()
    assert "acme" not in host.distributions


@pytest.mark.usefixtures("acme_twice")
def test_the_cli_hint_is_not_added_to_a_message_that_already_says_what_blocking_does() -> None:
    from eventsource.cli.errors import describe_error

    with pytest.raises(PluginLoadError) as info:
        PluginHost()
    assert describe_error(info.value)[1].count("EVENTSOURCE_DISABLED_PLUGINS") == 1


# --------------------------------------------------------------------------- a provider breaking the contract


class LeakyProvider(MemoryProvider):
    """A provider that lets its driver's errors out unmapped (the guide says: map them in one function)."""

    kind = "leaky"

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        raise KeyError(stream_id)  # a LookupError: a caller catching StreamNotFoundError's builtin took it for "absent"

    async def read_stream_pages(self, stream_id: str, **kwargs: Any) -> AsyncIterator[Sequence[Any]]:
        async for page in super().read_stream_pages(stream_id, **{**kwargs, "page_size": 1}):
            yield page
            raise RuntimeError("cursor lost")  # after the first page

    def append_now(self, *args: Any, timeout: float | None) -> AppendResult | None:
        raise ConnectionResetError("reset by peer")


async def _leaky() -> EventSourcingManager:
    es = EventSourcingManager({"providers": {}, "default_provider": None, "retry_delay": 0.001})
    await es.register_provider(LeakyProvider("memory://"), name="leaky")
    return es


async def test_an_unmapped_exception_from_a_provider_is_a_provider_error_naming_it() -> None:
    es = await _leaky()
    try:
        for call in (lambda: es.get_stream_info("s"), lambda: es.stream_exists("s")):
            with pytest.raises(ProviderError) as info:
                await call()
            err = info.value
            assert not isinstance(err, LookupError)  # never mistaken for StreamNotFoundError's LookupError
            assert not isinstance(err, StreamNotFoundError)
            assert str(err).startswith("KeyError: 's' (raised by get_stream_info on provider 'leaky'")
            assert isinstance(err.__cause__, KeyError)
            assert err.details["provider"] == "leaky" and err.details["operation"] == "get_stream_info"
        assert es.get_stats  # the manager still serves
        await es.append_events_batch(stream_id="s", events=[EventData("A", {}), EventData("B", {})])
        seen = []
        lost = r"RuntimeError: cursor lost \(raised by read_stream on provider 'leaky'"
        with pytest.raises(ProviderError, match=lost) as info:
            async for ev in es.read_stream("s"):
                seen.append(ev.version)  # noqa: PERF401 - the events before the error, kept as they come
        assert seen == [1] and isinstance(info.value.__cause__, RuntimeError)
    finally:
        await es.close()


def test_an_unmapped_exception_on_the_sync_lane_is_a_provider_error() -> None:
    with SyncEventSourcingManager({"providers": {}, "default_provider": None}) as es:
        es.register_provider(LeakyProvider("memory://"), name="leaky")
        reset = r"ConnectionResetError: reset by peer \(raised by append on provider 'leaky'"
        with pytest.raises(ProviderError, match=reset) as info:
            es.append_event(stream_id="s", event_type="A", data={})
        assert isinstance(info.value.__cause__, ConnectionResetError)


class ShortAppends(MemoryProvider):
    """A provider whose append writes only the first event of a batch, and reports success."""

    kind = "short"

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Any, stream: NewStream | None = None
    ) -> AppendResult:
        return await super().append(stream_id, events[:1], expected, stream)


class NoResult(MemoryProvider):
    kind = "noresult"

    async def append(self, *args: Any, **kwargs: Any) -> AppendResult:
        await super().append(*args, **kwargs)
        return None  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("cls", "said"), [(ShortAppends, r"2 events.*1 event id"), (NoResult, r"NoneType, not an AppendResult")]
)
async def test_an_append_answered_with_a_result_that_does_not_match_is_refused(cls: type, said: str) -> None:
    es = EventSourcingManager({"providers": {}, "default_provider": None})
    await es.register_provider(cls("memory://"), name="p")
    try:
        with pytest.raises(ProviderError, match=said) as info:
            await es.append_events_batch(stream_id="s", events=[EventData("A", {}), EventData("B", {})])
        assert info.value.details["operation"] == "append" and info.value.details["provider"] == "p"
    finally:
        await es.close()


# --------------------------------------------------------------------------- the kit on a store declaring little

FEW = '''
import uuid

import pytest
from conftest import FakeEntryPoint
from eventsource.memory import MemoryProvider
from eventsource.provider import Capabilities
from eventsource.testing import ProviderSuite
from eventsource.testing.retention import RetentionSuite
from eventsource.testing.store_setup import StoreSetupSuite

GONE = frozenset({"create_stream", "list_streams", "query", "get_event", "save_snapshot", "get_snapshot", "stats"})


class Few(MemoryProvider):
    """A store that declares these operations unsupported, and raises if asked anyway."""

    capabilities = Capabilities(global_order="total", concurrency="in_process", unsupported=GONE)


def _refuse(op):
    async def refused(self, *args, **kwargs):
        raise self.unsupported(op)

    return refused


for _op in GONE:
    setattr(Few, _op, _refuse(_op))


class TestFew(*(c for c in ProviderSuite.__bases__ if c is not StoreSetupSuite)):
    provider = _on(Few)


class TestFewRetention(RetentionSuite):
    provider = _on(Few)
'''


def test_a_kit_test_needing_an_operation_the_store_declares_unsupported_is_skipped_naming_it(
    pytester: pytest.Pytester,
) -> None:
    # these kit tests used create_stream, list_streams, query... to set up or check their own rule: on a store
    # declaring one unsupported they failed with UnsupportedOperationError, where the guide says they are skipped
    from conftest import ON_MEMORY

    pytester.makepyfile(test_few=FEW.replace("\nclass Few", ON_MEMORY + "\n\nclass Few"))
    run = pytester.inline_run(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
    )  # fmt: skip
    reports = [r for r in run.getreports("pytest_runtest_logreport") if r.when == "call" or not r.passed]
    failed = [r.nodeid.split("::")[-1] for r in reports if r.failed]
    assert failed == []
    needed = [str(r.longrepr[2]) for r in reports if r.skipped and "this test needs it" in str(r.longrepr)]  # type: ignore[index]
    assert needed, "no test was skipped for an operation it needs"
    gone = {"create_stream", "list_streams", "query", "get_event", "save_snapshot", "get_snapshot", "stats"}
    for reason in needed:
        assert reason.removeprefix("Skipped: ").startswith("capability: the store declares '"), reason
        assert any(f"'{op}'" in reason for op in gone), reason
    passed = {r.nodeid.split("::")[-1] for r in reports if r.passed}
    assert "test_declared_unsupported_operations_raise_and_no_other_does" in passed  # the refusals are still checked
    assert len(passed) > 50  # and every rule the store can show is


LIAR = '''
import uuid

import pytest
from conftest import FakeEntryPoint
from eventsource.memory import MemoryProvider
from eventsource.testing.streams import StreamSuite


class Liar(MemoryProvider):
    """A store that refuses create_stream without declaring it."""

    async def create_stream(self, stream):
        raise self.unsupported("create_stream")

{ON_MEMORY}

class TestLiar(StreamSuite):
    provider = _on(Liar)
'''


def test_a_kit_test_meeting_an_operation_the_store_does_not_declare_unsupported_still_fails(
    pytester: pytest.Pytester,
) -> None:
    from conftest import ON_MEMORY, kit_outcomes

    outcomes = kit_outcomes(pytester, LIAR.replace("{ON_MEMORY}", ON_MEMORY), "-k", "test_create_stream_round_trips")
    assert outcomes == {"TestLiar": "failed"}


# --------------------------------------------------------------------------- declarations a typo would weaken


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("global_order", "Total"),  # read as not total: a resumable read_all silently was not
        ("concurrency", "cross-process"),  # the kit's two-process race skipped, "concurrency=cross-process"
        ("deleted_stream_ids", "refuse"),
        ("max_event_size", "1MB"),
        ("max_event_size", 0),
        ("max_batch_bytes", True),
        ("head_position", "yes"),
        ("live_wakeup", 1),
        ("late_commits", None),
        ("cross_process_reads", "false"),
    ],
)
def test_a_misspelled_or_mistyped_capability_is_refused_naming_the_field(field: str, value: object) -> None:
    from eventsource.provider import Capabilities

    with pytest.raises(ValueError, match=rf"Capabilities\.{field}"):
        Capabilities(**{field: value})  # type: ignore[arg-type]


def test_a_provider_class_whose_capabilities_are_no_declaration_is_refused_at_registration() -> None:
    class Dicty(MemoryProvider):
        kind = "dicty"
        capabilities = {"global_order": "total"}  # type: ignore[assignment]  # noqa: RUF012 - the mistake under test

    with pytest.raises(PluginLoadError, match="capabilities") as info:
        PluginHost(load_entrypoints=False, plugins=[("dicty", _plugin(("dicty",), cls=Dicty))])
    assert info.value.details["plugin"] == "dicty"


def test_unsupported_given_as_a_set_is_kept_as_a_frozenset() -> None:
    from eventsource.provider import Capabilities

    caps = Capabilities(unsupported={"truncate_stream"})  # type: ignore[arg-type]
    assert caps.unsupported == frozenset({"truncate_stream"}) and isinstance(caps.unsupported, frozenset)


# --------------------------------------------------------------------------- building a provider


def test_a_settings_schema_that_is_no_marshmallow_schema_is_refused_at_registration() -> None:
    class Dicty(MemoryProvider):
        kind = "dicty"
        settings_schema = {"pool_size": int}  # type: ignore[assignment]  # noqa: RUF012 - the mistake under test

    with pytest.raises(PluginLoadError, match="settings_schema") as info:
        PluginHost(load_entrypoints=False, plugins=[("dicty", _plugin(("dicty",), cls=Dicty))])
    assert info.value.details["plugin"] == "dicty"


async def test_a_provider_constructor_raising_an_unmapped_error_is_a_configuration_error_naming_it() -> None:
    from eventsource.errors import ConfigurationError

    class Picky(MemoryProvider):
        kind = "picky"

        def __init__(self, url: str | None = None, **settings: Any) -> None:
            super().__init__(url, **settings)
            raise OSError("no such port")  # its URL parser's own error

    host = PluginHost(load_entrypoints=False, plugins=[("picky", _plugin(("picky",), cls=Picky))])
    with pytest.raises(ConfigurationError, match=r"OSError: no such port.*'picky'") as info:
        await EventSourcingManager({"providers": {"main": "picky://x"}}, host=host).connect()
    assert isinstance(info.value.__cause__, OSError)
    es = EventSourcingManager({"providers": {}, "default_provider": None}, host=host)
    try:
        with pytest.raises(ConfigurationError, match="OSError: no such port"):
            await es.register_provider("picky://x")
    finally:
        await es.close()


# --------------------------------------------------------------------------- answers of the wrong shape


class WrongAnswers(MemoryProvider):
    """A provider answering each call with something other than its contract's type (or another event)."""

    kind = "wrong"

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        return {"version": 3}  # type: ignore[return-value]

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        return [], 0, 1  # type: ignore[return-value]

    async def get_event(self, event_id: str, stream_id: str | None = None) -> Any:
        return next(iter(self._by_id.values()), None)  # whatever event it holds, not the one asked for

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> Any:
        return "snapshot"

    async def stats(self, *, top_streams: int | None = None) -> Any:
        return {"total_events": 1}

    async def health(self) -> Any:
        return None


async def test_an_answer_of_the_wrong_type_or_for_another_event_is_a_provider_error_naming_it() -> None:
    es = EventSourcingManager({"providers": {}, "default_provider": None})
    await es.register_provider(WrongAnswers("memory://"), name="p")
    try:
        await es.append_event(stream_id="a", event_type="A", data={})
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get_stream_info": lambda: es.get_stream_info("a"),
            "list_streams": es.list_streams,
            "get_snapshot": lambda: es.get_snapshot("a"),
            "stats": es.get_stats,
        }
        for op, call in calls.items():
            with pytest.raises(ProviderError, match=rf"{op} on provider 'p' \(wrong\) was answered with") as info:
                await call()
            assert info.value.details == {"provider": "p", "operation": op}
        other = "00000000-0000-7000-8000-000000000000"
        with pytest.raises(ProviderError, match=r"get_event on provider 'p' \(wrong\).*another event") as info:
            await es.get_event_by_id(other)  # never another event handed out as this one
        (status,) = (await es.health_check()).values()
        assert not status.healthy and "HealthStatus" in status.message  # health never raises
    finally:
        await es.close()


class DsnQuotingProvider(MemoryProvider):
    """A provider whose driver error quotes its connection string, password included (as libpq's messages may)."""

    kind = "dsnquoting"

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        raise RuntimeError("could not connect to postgresql://app:hunter2@db:5432/es?sslpassword=s3cret")


async def test_an_unmapped_provider_error_quoting_a_url_is_passed_on_with_its_passwords_masked() -> None:
    """The ProviderError wrapping an unmapped driver error kept its text as it was: a DSN in it showed its password
    to every caller, log and CLI that printed the error, where every other URL the library shows is masked."""
    es = EventSourcingManager({"providers": {}, "default_provider": None})
    await es.register_provider(DsnQuotingProvider("memory://"), name="dsn")
    try:
        with pytest.raises(ProviderError) as info:
            await es.get_stream_info("s")
        assert "hunter2" not in str(info.value) and "s3cret" not in str(info.value)
        assert "postgresql://app:***@db:5432/es" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)  # the original, for the traceback
    finally:
        await es.close()

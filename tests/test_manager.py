"""Manager behaviour that is not store-specific: provider selection, registration, upcasters."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from eventsource import ConfigurationError, Event, EventData, ValidationError
from eventsource.errors import ProviderNotFoundError
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost

HOST = PluginHost(load_entrypoints=False)


async def test_providers_from_config_by_name_and_url_scheme() -> None:
    m = EventSourcingManager(
        {"providers": {"a": "memory://one", "b": "memory://two"}, "default_provider": "b"}, host=HOST
    )
    async with m:
        assert m.list_providers() == ["a", "b"]
        assert m.get_default_provider().name == "b"
        await m.append_event(stream_id="s", event_type="E", data=1, provider="a")
        assert await m.stream_exists("s", provider="a")
        assert not await m.stream_exists("s")
        # a URL picks the provider at exactly that URL; with two of the scheme, another URL is ambiguous
        assert m.get_provider("memory://one").name == "a"
        assert m.get_provider("memory://two").name == "b"
        await m.append_event(stream_id="by-url", event_type="E", data=1, provider="memory://one")
        assert await m.stream_exists("by-url", provider="a")
        assert not await m.stream_exists("by-url", provider="b")
        with pytest.raises(ProviderNotFoundError, match="several memory:// providers"):
            m.get_provider("memory://anything")
        with pytest.raises(ProviderNotFoundError):
            m.get_provider("nope")
        with pytest.raises(ValidationError, match="provider must be"):
            m.get_provider(5)  # type: ignore[arg-type]
        info = {i.name: i for i in m.get_provider_info()}
        assert info["b"].is_default
        assert info["a"].distribution == "eventsource"
        assert info["a"].capabilities["global_order"] == "total"


async def test_a_url_of_the_only_provider_of_its_scheme_selects_it() -> None:
    m = EventSourcingManager({"providers": {"a": "memory://one"}}, host=HOST)
    async with m:
        assert m.get_provider("memory://other").name == "a"
        with pytest.raises(ProviderNotFoundError):
            m.get_provider("sqlite:///x.db")


async def test_register_provider_instance_or_url() -> None:
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=HOST)
    with pytest.raises(ProviderNotFoundError):
        m.get_default_provider()
    await m.register_provider(MemoryProvider(), name="x")
    await m.register_provider("memory://y", name="y", default=True)
    assert m.get_default_provider().name == "y"
    with pytest.raises(ConfigurationError):
        await m.register_provider(MemoryProvider(), name="x")
    with pytest.raises(ProviderNotFoundError):
        await m.register_provider("nosuchscheme://h", name="z")
    with pytest.raises(ConfigurationError):
        await m.register_provider("not a url", name="z")
    await m.close()


async def test_upcasters_transform_old_events_on_read() -> None:
    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as m:
        await m.append_event(stream_id="s", event_type="NameSet", data={"name": "Ada Lovelace"})

        def split(e: Event) -> Event:
            first, last = e.data["name"].split(" ", 1)
            return dataclasses.replace(e, event_type="NameSetV2", data={"first": first, "last": last})

        m.register_upcaster("NameSet", split)
        [e] = [e async for e in m.read_stream("s")]
        assert (e.event_type, e.data) == ("NameSetV2", {"first": "Ada", "last": "Lovelace"})


async def test_request_objects_and_keywords_are_equivalent_and_exclusive() -> None:
    from eventsource import AppendEventRequest

    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as m:
        r1 = await m.append_event(AppendEventRequest(stream_id="s", event_type="E", data=1))
        r2 = await m.append_event(stream_id="s", event_type="E", data=2)
        assert (r1.version, r2.version) == (1, 2)
        with pytest.raises(ValidationError):
            await m.append_event(AppendEventRequest(stream_id="s", event_type="E", data=1), stream_id="s")
        with pytest.raises(ValidationError):
            await m.append_event(stream_id="s", event_type="E", data=1, bogus=True)
        with pytest.raises(ValidationError):
            await m.append_events_batch(stream_id="s", events=[EventData("E", 1), 42])


async def test_compression_descriptor_keeps_old_events_readable() -> None:
    store = f"memory://compress-{uuid.uuid4().hex}"
    async with EventSourcingManager({"providers": {"m": store}}, host=HOST) as plain:
        await plain.append_event(stream_id="s", event_type="E", data={"x": "a" * 5000})
    cfg = {"providers": {"m": store}, "compression": "brotli", "compression_threshold": 100}
    async with EventSourcingManager(cfg, host=HOST) as compressed:
        await compressed.append_event(stream_id="s", event_type="E", data={"x": "b" * 5000}, metadata={"m": "c" * 500})
        raw = [r async for r in compressed.get_default_provider().read_stream("s")]
        assert [r.encoding for r in raw] == ["json", "json+brotli"]
        assert len(raw[1].data) < 500
        got = [e async for e in compressed.read_stream("s")]
        assert [e.data["x"][0] for e in got] == ["a", "b"]
        assert got[1].metadata == {"m": "c" * 500}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m: m.append_event(stream_id="s", event_type="E", data={}, timestamp="2020-01-01"), "timestamp"),
        (lambda m: m.append_event(stream_id="s", event_type="E", data={}, expected_version=2**63), "expected_version"),
        (lambda m: m.append_event(stream_id="s", event_type="E", data={}, provider=5), "provider"),
        (lambda m: m.get_events(from_timestamp="2020-01-01"), "from_timestamp"),
        (lambda m: m.get_events(to_timestamp=__import__("datetime").datetime(2020, 1, 1)), "to_timestamp"),
        (lambda m: m.get_events(from_version="2"), "from_version"),
        (lambda m: m.get_events(to_version=2**64), "to_version"),
        (lambda m: m.get_events(event_types=[1]), "event_types"),
        (lambda m: m.get_events(event_types=5), "event_types"),
        (lambda m: m.get_events(tenant_id=7), "tenant_id"),
        (lambda m: m.get_snapshot("s", max_version="5"), "max_version"),
        (lambda m: m.delete_snapshot("s", version="2"), "version"),
        (lambda m: m.delete_snapshot("s", version=-1), "version"),
    ],
)
async def test_wrongly_typed_arguments_are_validation_errors_and_change_nothing(call: Any, field: str) -> None:
    m = EventSourcingManager({"providers": {"a": "memory://"}}, host=HOST)
    async with m:
        await m.append_event(stream_id="s", event_type="E", data={"n": 1})
        await m.create_snapshot(stream_id="s", data={"n": 1})
        with pytest.raises(ValidationError) as e:
            await call(m)
        assert e.value.details.get("field") == field
        assert [ev.data async for ev in m.read_stream("s")] == [{"n": 1}]
        assert (await m.get_snapshot("s")).version == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"from_version": "2"}, "from_version"),
        ({"to_version": 2.0}, "to_version"),
        ({"from_version": -1}, "from_version"),
    ],
)
async def test_read_stream_and_read_all_check_their_bounds(kwargs: dict[str, Any], field: str) -> None:
    m = EventSourcingManager({"providers": {"a": "memory://"}}, host=HOST)
    async with m:
        with pytest.raises(ValidationError) as e:
            m.read_stream("s", **kwargs)
        assert e.value.details.get("field") == field
        with pytest.raises(ValidationError) as e:
            m.read_all(from_position="1")  # type: ignore[arg-type]
        assert e.value.details.get("field") == "from_position"


async def test_event_types_given_as_one_string_filters_on_that_type() -> None:
    m = EventSourcingManager({"providers": {"a": "memory://"}}, host=HOST)
    async with m:
        for t in ("OrderCreated", "O", "r", "OrderCreated"):
            await m.append_event(stream_id="s", event_type=t, data={})
        page = await m.get_events(event_types="OrderCreated")
        assert [e.event_type for e in page.events] == ["OrderCreated", "OrderCreated"]
        assert page.total_count == 2


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
async def test_stream_metadata_is_plain_json_the_same_on_every_store(store: str, tmp_path: Any) -> None:
    import datetime as dt
    import decimal
    import math

    url = f"sqlite:///{tmp_path}/m.db" if store == "sqlite" else store
    m = EventSourcingManager({"providers": {"a": url}}, host=HOST)
    async with m:
        bad_values = ({"at": dt.datetime.now(dt.UTC)}, {"d": decimal.Decimal("1.5")}, {"n": math.nan}, {"t": (1, 2)})
        for bad in bad_values:  # a tuple would come back a list: refused, as in event data
            with pytest.raises(ValidationError) as e:
                await m.create_stream(stream_id="s", metadata=bad)
            assert e.value.details.get("field") == "metadata"
            assert not await m.stream_exists("s")
        info = await m.create_stream(stream_id="s", metadata={"t": [1, 2], "n": {"k": None}})
        assert info.metadata == {"t": [1, 2], "n": {"k": None}}
        assert (await m.get_stream_info("s")).metadata == {"t": [1, 2], "n": {"k": None}}

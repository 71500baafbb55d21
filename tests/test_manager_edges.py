"""Edges of the manager split (issue #10): codec ownership, typed cipher hooks, input checks before the store."""

from __future__ import annotations

import base64
import importlib.resources
from datetime import UTC
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import ConfigurationError, EventData, ValidationError
from eventsource.codecs import Cipher
from eventsource.codecs.builtin import JsonSerializer
from eventsource.errors import NotFoundError, SnapshotNotFoundError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)
KEY = base64.b64encode(bytes(range(32))).decode()


def manager_sources() -> dict[str, str]:
    root = importlib.resources.files("eventsource.manager")
    return {f.name: f.read_text() for f in root.iterdir() if f.name.endswith(".py")}


# ---------------------------------------------------------------------- who owns bytes and names


def test_only_the_event_codec_builds_associated_data() -> None:
    sources = manager_sources()
    codec = {"codec.py", "sealing.py"}  # the event codec and its associated-data forms
    assert codec <= sources.keys()
    for name, text in sources.items():
        if name not in codec:
            assert "aad" not in text.lower(), name
            assert "\\x00d" not in text, name


def test_no_cipher_name_is_hard_coded_in_the_manager() -> None:
    for name, text in manager_sources().items():
        assert "aes256gcm" not in text, name


def test_the_upcaster_alias_is_gone() -> None:
    import eventsource.manager

    assert not hasattr(eventsource.manager, "Upcaster")


def test_cipher_base_declares_every_hook_the_codec_calls() -> None:
    class Rot(Cipher):
        name = "rot"

        def encrypt(self, plain: bytes, *, aad: bytes, scope: str | None) -> bytes:
            return plain

        def decrypt(self, blob: bytes, *, aad: bytes, scope: str | None) -> bytes:
            return blob

    rot = Rot()
    assert rot.bind(object()) is None  # type: ignore[arg-type] # a keyless cipher is never bound
    rot.forget()  # nothing cached, nothing to do


def test_decryption_errors_are_importable_from_the_package() -> None:
    import eventsource
    from eventsource import DecryptionError, KeyShreddedError, UnknownKeyError, errors

    assert (DecryptionError, KeyShreddedError, UnknownKeyError) == (
        errors.DecryptionError,
        errors.KeyShreddedError,
        errors.UnknownKeyError,
    )
    assert {"DecryptionError", "KeyShreddedError", "UnknownKeyError"} <= set(eventsource.__all__)


# ---------------------------------------------------------------------- configuration


async def test_an_unknown_url_scheme_in_the_configuration_is_a_configuration_error() -> None:
    m = EventSourcingManager({"providers": {"main": "nosuchstore://h/db"}}, host=HOST)
    with pytest.raises(ConfigurationError, match="nosuchstore") as info:
        await m.connect()
    assert not isinstance(info.value, NotFoundError)
    assert info.value.details["field"] == "providers.main.url"
    await m.close()


# ---------------------------------------------------------------------- snapshots


async def test_create_snapshot_reports_an_invalid_version_before_a_missing_stream() -> None:
    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as m:
        for bad in (-1, 0, True, "1"):
            with pytest.raises(ValidationError, match="snapshot version") as info:
                await m.create_snapshot(stream_id="missing", data={}, version=bad)
            assert info.value.details["field"] == "version"
        with pytest.raises(ValidationError, match="metadata"):
            await m.create_snapshot(stream_id="missing", data={}, metadata=[1])
        await m.create_stream(stream_id="empty")
        with pytest.raises(ValidationError, match="snapshot version"):
            await m.create_snapshot(stream_id="empty", data={})  # version 0: nothing to snapshot


@pytest.mark.parametrize("encryption", [False, True])
async def test_snapshots_over_max_snapshot_size_are_refused_and_nothing_is_stored(encryption: bool) -> None:
    cfg: dict[str, Any] = {"providers": {"m": "memory://"}, "max_snapshot_size": 100}
    if encryption:
        cfg |= {"encryption": True, "encryption_keys": {"k1": KEY}}
    async with EventSourcingManager(cfg, host=HOST) as m:
        await m.append_event(stream_id="s", event_type="E", data={})
        await m.create_snapshot(stream_id="s", data={"x": "a" * 50})
        with pytest.raises(ValidationError, match="max_snapshot_size") as info:
            await m.create_snapshot(stream_id="s", data={"x": "a" * 60}, metadata={"m": "b" * 40})
        assert (info.value.details["limit"], info.value.details["size"] > 100) == (100, True)
        assert (await m.get_snapshot("s")).data == {"x": "a" * 50}  # the earlier one is still the latest
        await m.delete_snapshot("s")
        with pytest.raises(ValidationError, match="max_snapshot_size"):
            await m.create_snapshot(stream_id="s", data=["a" * 200])
        with pytest.raises(SnapshotNotFoundError):
            await m.get_snapshot("s")


def test_max_snapshot_size_is_a_validated_setting() -> None:
    from eventsource.config import ManagerConfig

    assert ManagerConfig.load({"max_snapshot_size": 5}).max_snapshot_size == 5
    assert ManagerConfig.load(None).max_snapshot_size == 16 * 1024 * 1024
    with pytest.raises(ConfigurationError):
        ManagerConfig.load({"max_snapshot_size": 0})


# ---------------------------------------------------------------------- JSON never changes data silently


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1: "a"}, "$[1]"),
        ({"a": {None: 1}}, "$['a'][None]"),
        ({"a": [1, (2, 3)]}, "$['a'][1]"),
        ((1, 2), "$"),
        ([{"k": frozenset({1})}], "$[0]['k']"),
        ({"s": {(1, 2)}}, "$['s']{...}"),
        ({"a": {"b": [{True: 1}]}}, "$['a']['b'][0][True]"),
    ],
)
def test_json_refuses_what_it_would_not_give_back_naming_the_path(value: Any, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        JsonSerializer().dumps(value)
    assert info.value.details["path"] == path
    assert path in str(info.value)


def test_json_still_round_trips_lists_sets_and_string_keys() -> None:
    s = JsonSerializer()
    value = {"a": [1, [2, {"b": {3, "x"}}]], "$es": "kept", "n": None}
    assert s.loads(s.dumps(value)) == value
    deep: list[Any] = []
    deep.append(deep)
    with pytest.raises(ValidationError):
        s.dumps(deep)  # circular: refused as before, never a RecursionError


async def test_an_event_or_snapshot_with_a_tuple_is_refused_and_the_store_is_unchanged() -> None:
    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as m:
        with pytest.raises(ValidationError, match=r"\$\['point'\]"):
            await m.append_event(stream_id="s", event_type="E", data={"point": (1, 2)})
        with pytest.raises(ValidationError, match=r"\$\[7\]"):
            await m.append_events_batch(
                stream_id="s", events=[EventData("E", {}), EventData("E", {}, metadata={7: "x"})]
            )
        assert not await m.stream_exists("s")
        await m.append_event(stream_id="s", event_type="E", data={"point": [1, 2]})
        with pytest.raises(ValidationError, match="tuple"):
            await m.create_snapshot(stream_id="s", data={"state": (1,)})
        with pytest.raises(SnapshotNotFoundError):
            await m.get_snapshot("s")


def nested(depth: int, leaf: Any = None) -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    return value


async def deeper(frames: int, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``fn()`` from ``frames`` frames further down the stack (as a web framework or projection would)."""
    return await (deeper(frames - 1, fn) if frames else fn())


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_a_payload_too_deep_to_read_back_anywhere_is_refused_whatever_the_stack(url: str, tmp_path: Path) -> None:
    from eventsource.codecs.builtin import MAX_NESTING

    store = f"sqlite:///{tmp_path / 'deep.db'}" if url == "sqlite" else url
    async with EventSourcingManager({"providers": {"m": store}}, host=HOST) as m:
        # accepted or not used to depend on how deep the caller's stack was; once stored, a reader a few
        # dozen frames deeper got a raw RecursionError (and read_all stopped at that event for everyone)
        for frames in (0, 200):
            for data, meta in ((nested(MAX_NESTING + 1), None), ({}, {"m": nested(MAX_NESTING)})):

                def append(d: Any = data, md: Any = meta) -> Awaitable[Any]:
                    return m.append_event(stream_id="s", event_type="E", data=d, metadata=md)

                with pytest.raises(ValidationError, match="nested") as info:
                    await deeper(frames, append)
                assert info.value.details["limit"] == MAX_NESTING
            with pytest.raises(ValidationError, match="nested"):
                await deeper(frames, lambda: m.create_stream(stream_id="t", metadata={"m": nested(MAX_NESTING)}))
        assert not await m.stream_exists("s")
        assert not await m.stream_exists("t")
        deepest = nested(MAX_NESTING, 1)
        await m.append_event(stream_id="s", event_type="E", data=deepest, metadata={"m": nested(MAX_NESTING - 1)})
        await m.create_stream(stream_id="t", metadata={"m": nested(MAX_NESTING - 1)})
        await m.create_snapshot(stream_id="s", data={"state": nested(MAX_NESTING - 1)})
        with pytest.raises(ValidationError, match="nested"):
            await m.create_snapshot(stream_id="s", data={"state": nested(MAX_NESTING)})

        async def read_everything() -> None:
            assert [e.data async for e in m.read_all()] == [deepest]
            assert (await m.get_snapshot("s")).data == {"state": nested(MAX_NESTING - 1)}
            assert (await m.get_stream_info("t")).metadata == {"m": nested(MAX_NESTING - 1)}

        await deeper(400, read_everything)  # what was accepted reads back from a deep stack too


def test_a_stored_payload_too_deep_for_this_stack_is_a_codec_error() -> None:
    from eventsource.errors import CodecError

    with pytest.raises(CodecError, match="nest"):
        JsonSerializer().loads(b"[" * 100_000 + b"]" * 100_000)


async def test_stream_metadata_over_max_event_size_is_refused_and_nothing_is_stored() -> None:
    # it was stored whatever its size: a 50 MB blob per stream, returned by every list_streams page
    async with EventSourcingManager({"providers": {"m": "memory://"}, "max_event_size": 1000}, host=HOST) as m:
        with pytest.raises(ValidationError, match="max_event_size") as info:
            await m.create_stream(stream_id="s", metadata={"blob": "x" * 1000})
        assert (info.value.details["field"], info.value.details["limit"]) == ("metadata", 1000)
        assert not await m.stream_exists("s")
        await m.create_stream(stream_id="s", metadata={"blob": "x" * 900})


@pytest.mark.parametrize("metadata", [{"k": "a\x00b"}, {"a\x00": 1}, {"k": ["\udc80"]}, {"\udc80": 1}])
async def test_stream_metadata_every_store_cannot_hold_is_refused_before_the_store(metadata: Any) -> None:
    # SQLite and memory kept these; PostgreSQL's jsonb refused them (a lone surrogate as a ProviderError)
    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as m:
        with pytest.raises(ValidationError, match="stream metadata") as info:
            await m.create_stream(stream_id="s", metadata=metadata)
        assert info.value.details["field"] == "metadata"
        assert not await m.stream_exists("s")
        await m.create_stream(stream_id="s", metadata={"k": "a\\u0000b ü 😀"})  # a backslash is fine


@pytest.mark.parametrize(
    ("metadata", "where"),
    [({1: "a"}, "$[1]"), ({"t": (1, 2)}, "$['t']"), ({"n": [{None: 1}]}, "$['n'][0][None]"), ({True: 1}, "$[True]")],
)
async def test_stream_metadata_json_would_change_is_refused_naming_where(metadata: Any, where: str) -> None:
    # it was stored changed: an int key came back as "1", a tuple as a list (as event data and metadata never do)
    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as m:
        with pytest.raises(ValidationError, match="stream metadata") as info:
            await m.create_stream(stream_id="s", metadata=metadata)
        assert (info.value.details["field"], info.value.details["path"]) == ("metadata", where)
        assert not await m.stream_exists("s")


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_a_timestamp_whose_utc_instant_no_store_can_hold_is_refused(url: str, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    # year 9999 at UTC-23 is year 10000 in UTC: SQLite raised a raw OverflowError; PostgreSQL stored it,
    # then every read of the stream, and read_all, failed on it
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-23)))
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23)))
    store = f"sqlite:///{tmp_path / 'ts.db'}" if url == "sqlite" else url
    async with EventSourcingManager({"providers": {"m": store}}, host=HOST) as m:
        for ts in (late, early):
            with pytest.raises(ValidationError, match="timestamp") as info:
                await m.append_event(stream_id="s", event_type="E", data={}, timestamp=ts)
            assert info.value.details["field"] == "timestamp"
            with pytest.raises(ValidationError, match="from_timestamp"):
                await m.get_events(from_timestamp=ts)
            with pytest.raises(ValidationError, match="now"):
                await m.apply_retention([{"policy": "max_age", "max_age": 3600}], now=ts)
        assert not await m.stream_exists("s")
        edge = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        await m.append_event(stream_id="s", event_type="E", data={}, timestamp=edge)
        assert [e.timestamp async for e in m.read_all()] == [edge]


def test_a_cipher_that_only_looks_like_one_is_refused_at_registration() -> None:
    from eventsource.errors import PluginLoadError
    from eventsource.registry import CodecRegistry

    class Lookalike:  # no bind/forget: the codec would fail on it only once keys are configured
        name = "lookalike"

        def encrypt(self, plain: bytes, *, aad: bytes, scope: str | None) -> bytes:
            return plain

        def decrypt(self, blob: bytes, *, aad: bytes, scope: str | None) -> bytes:
            return blob

    with pytest.raises(PluginLoadError, match="not a subclass"):
        CodecRegistry().add_cipher(Lookalike())  # type: ignore[arg-type]


async def test_event_types_takes_any_sequence_or_set_of_names_and_refuses_bytes() -> None:
    """Typed ``Sequence[str]``: every sequence mypy accepts works at run time; a str is one name."""
    import collections

    async with EventSourcingManager("memory://") as m:
        await m.append_events_batch(stream_id="s", events=[EventData("A", {}), EventData("B", {})])
        for names in (["A"], ("A",), collections.UserList(["A"]), {"A"}, frozenset({"A"}), "A"):
            page = await m.get_events(event_types=names)  # type: ignore[arg-type]  # (a set and a str: run time only)
            assert [e.event_type for e in page.events] == ["A"], names
        with pytest.raises(ValidationError, match="event_types"):
            await m.get_events(event_types=b"A")  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", [1, 0, "no", None])
async def test_backwards_and_as_classes_take_a_bool_and_nothing_else(flag: object) -> None:
    """``backwards=1`` read backwards and ``as_classes="no"`` gave typed events: truthiness, not the value asked for."""
    async with EventSourcingManager("memory://") as m:
        await m.append_events_batch(stream_id="s", events=[EventData("A", {}), EventData("B", {})])
        with pytest.raises(ValidationError, match="backwards") as info:
            [e async for e in m.read_stream("s", backwards=flag)]  # type: ignore[arg-type]
        assert info.value.details["field"] == "backwards"
        with pytest.raises(ValidationError, match="as_classes"):
            [e async for e in m.read_stream("s", as_classes=flag)]  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="as_classes"):
            [e async for e in m.read_all(as_classes=flag)]  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="as_classes"):
            await m.get_event_by_id("x", as_classes=flag)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="as_classes"):
            await m.get_events(as_classes=flag)  # type: ignore[arg-type]
        assert [e.event_type async for e in m.read_stream("s", backwards=True)] == ["B", "A"]

"""Codec pipeline: lossless JSON, compressors above a threshold, the cipher, descriptors that keep old
payloads readable after the configuration changes. Property tests round-trip arbitrary JSON-able
payloads through every codec combination."""

from __future__ import annotations

import base64
import itertools
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.codecs import CodecPipeline
from eventsource.codecs.aesgcm import AesGcmCipher
from eventsource.codecs.builtin import JsonSerializer
from eventsource.codecs.keys import StaticKeyRing
from eventsource.errors import CodecError, DecryptionError, ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)
KEY = base64.b64encode(b"k" * 32).decode()
RING = StaticKeyRing({"k1": KEY})

COMPRESSORS = (None, "zlib", "brotli")
THRESHOLDS = (0, 64)
CIPHERS = (False, True)
COMBINATIONS = list(itertools.product(COMPRESSORS, THRESHOLDS, CIPHERS))


def pipeline(compressor: str | None, threshold: int, encrypt: bool) -> CodecPipeline:
    cipher = AesGcmCipher(RING) if encrypt else None
    return CodecPipeline(HOST.codecs, compressor=compressor, compression_threshold=threshold, cipher=cipher)


PIPELINES = {combo: pipeline(*combo) for combo in COMBINATIONS}

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
offsets = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    finite_floats,
    st.text(),
    st.datetimes(),
    st.datetimes(timezones=offsets),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.binary(max_size=64),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["$es", "v", "$es:x", "data"]))
payloads = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(keys, inner, max_size=6),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=8)), max_size=5).map(set),
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equality that also checks types (1 == 1.0 == True would hide a lossy codec) and tz offsets."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, float) and a == 0:
        return str(a) == str(b)  # -0.0 stays -0.0
    return bool(a == b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=payloads, combo=st.sampled_from(COMBINATIONS), aad=st.binary(max_size=40))
def test_every_codec_combination_round_trips_arbitrary_payloads(value: Any, combo: tuple[Any, ...], aad: bytes) -> None:
    p = PIPELINES[combo]
    raw, descriptor = p.encode(value, aad=aad)
    assert isinstance(raw, bytes)
    assert same(p.decode(raw, descriptor, aad=aad), value)
    # any other pipeline (any current configuration) reads it too, by its descriptor
    reader = PipelinesWithKeys.reader
    assert same(reader.decode(raw, descriptor, aad=aad), value)
    meta = p.encode_as({"m": value}, descriptor, aad=aad + b"m")
    assert same(p.decode(meta, descriptor, aad=aad + b"m"), {"m": value})


class PipelinesWithKeys:
    reader = CodecPipeline(HOST.codecs, ciphers={"aes256gcm": AesGcmCipher(RING)})


@pytest.mark.parametrize(("compressor", "threshold", "encrypt"), COMBINATIONS)
def test_descriptors_name_exactly_the_steps_applied(compressor: str | None, threshold: int, encrypt: bool) -> None:
    p = PIPELINES[(compressor, threshold, encrypt)]
    small, big = {"a": 1}, {"text": "abc" * 400}
    _, d_small = p.encode(small)
    _, d_big = p.encode(big)
    suffix = "+aes256gcm" if encrypt else ""
    assert d_big == ("json" + (f"+{compressor}" if compressor else "") + suffix)
    compressed_small = compressor is not None and threshold == 0
    assert d_small in ("json" + suffix, f"json+{compressor}{suffix}")
    if not compressed_small:
        assert d_small == "json" + suffix
    assert p.descriptors[0] == "json" + suffix


def test_compression_is_kept_only_when_it_shrinks() -> None:
    p = pipeline("brotli", 0, encrypt=False)
    raw, descriptor = p.encode({"a": 1})  # brotli output would be longer than these 7 bytes
    assert descriptor == "json"
    assert raw == b'{"a":1}'


def test_json_is_lossless_for_the_types_events_carry() -> None:
    value = {
        "at": datetime(2024, 2, 29, 12, 30, 1, 123456, tzinfo=UTC),
        "naive": datetime(2024, 1, 1, 8, 0),  # noqa: DTZ001 - naive datetimes round-trip too
        "day": date(2024, 2, 29),
        "clock": time(23, 59, 59, 999999),
        "span": timedelta(days=-1, seconds=5, microseconds=7),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "money": Decimal("12345678901234567890.000000000001"),
        "neg_zero_money": Decimal("-0.00"),
        "blob": b"\x00\xff",
        "tags": {"a", "b"},
        "$es": "user key that looks like a tag",
        "nested": [{"$es": "datetime", "v": "not really"}],
        "unicode": "ünï 名前 \U0001f389",
        "big": 2**80,
    }
    s = JsonSerializer()
    back = s.loads(s.dumps(value))
    assert same(back, value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object(), {1j: 1}, {"x": {"y": lambda: 0}}])
def test_unserializable_data_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError):
        JsonSerializer().dumps(bad)


def test_lone_surrogates_and_odd_whitespace_round_trip() -> None:
    s = JsonSerializer()
    for value in ("\ud800", {"k\udfff": ["\ud83d"]}, "tab\tnew\nline"):
        assert s.loads(s.dumps(value)) == value
    assert s.loads(b' {"a": 1}\n') == {"a": 1}
    for junk in (b"", b"{", b'{"a":1}x', b"\xff"):
        with pytest.raises(CodecError):
            s.loads(junk)


def test_circular_data_is_a_validation_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValidationError):
        JsonSerializer().dumps(loop)


def test_unknown_or_unkeyed_codecs_in_a_descriptor_are_typed_errors() -> None:
    p = pipeline(None, 0, encrypt=False)
    raw, _ = pipeline("zlib", 0, encrypt=False).encode({"a": "b" * 100})
    with pytest.raises(CodecError, match="not registered"):
        p.decode(raw, "json+lz4")
    with pytest.raises(CodecError, match="serializer"):
        p.decode(raw, "msgpack+zlib")
    with pytest.raises(CodecError, match="no keys"):
        p.decode(raw, "json+aes256gcm")
    with pytest.raises(CodecError, match="decompressed"):
        p.decode(b"not zlib", "json+zlib")
    with pytest.raises(CodecError, match="brotli"):
        p.decode(b"not brotli", "json+brotli")
    with pytest.raises(CodecError, match="JSON"):
        p.decode(b"{nope", "json")


def test_a_changed_descriptor_fails_authentication() -> None:
    p = pipeline("zlib", 0, encrypt=True)
    raw, descriptor = p.encode({"a": "b" * 100}, aad=b"ctx")
    assert descriptor == "json+zlib+aes256gcm"
    with pytest.raises(DecryptionError):
        p.decode(raw, "json+aes256gcm", aad=b"ctx")
    with pytest.raises(DecryptionError):
        p.decode(raw, "json+brotli+aes256gcm", aad=b"ctx")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_old_payloads_stay_readable_after_every_configuration_change(kind: str, tmp_path: Path) -> None:
    """Write under each configuration in turn on one store; every manager reads all of it."""
    store = f"memory://codecs-{uuid.uuid4().hex}" if kind == "memory" else f"sqlite:///{tmp_path}/codecs.db"
    configs: list[dict[str, Any]] = [
        {},
        {"compression": "zlib", "compression_threshold": 0},
        {"compression": "brotli", "compression_threshold": 0},
        {"compression": "brotli", "compression_threshold": 0, "encryption": True, "encryption_keys": {"k1": KEY}},
        {"compression": False, "encryption": True, "encryption_keys": {"k1": KEY}},
        {"encryption": False, "encryption_keys": {"k1": KEY}},  # encryption off, key kept for old events
    ]
    body = {"text": "event " * 50, "at": datetime(2024, 1, 1, tzinfo=UTC), "n": Decimal("1.10")}
    written = []
    for i, cfg in enumerate(configs):
        async with EventSourcingManager({"providers": {"m": store}, **cfg}, host=HOST) as m:
            r = await m.append_event(stream_id="s", event_type="E", data={**body, "i": i}, metadata={"cfg": i})
            await m.create_snapshot(stream_id="s", data={"upto": i})
            rec = await m.get_provider().get_event(r.event_id)
            written.append(rec.encoding)
    assert written == ["json", "json+zlib", "json+brotli", "json+brotli+aes256gcm", "json+aes256gcm", "json"]
    async with EventSourcingManager({"providers": {"m": store}, "encryption_keys": {"k1": KEY}}, host=HOST) as m:
        events = [e async for e in m.read_stream("s")]
        assert [e.data["i"] for e in events] == list(range(len(configs)))
        assert all(same(e.data, {**body, "i": e.data["i"]}) for e in events)
        assert [e.metadata for e in events] == [{"cfg": i} for i in range(len(configs))]
        for v in range(1, len(configs) + 1):
            assert (await m.get_snapshot("s", max_version=v)).data == {"upto": v - 1}
    async with EventSourcingManager({"providers": {"m": store}}, host=HOST) as m:  # no key at all
        with pytest.raises(CodecError, match="no keys"):
            [e async for e in m.read_stream("s")]


async def test_snapshots_go_through_the_same_pipeline() -> None:
    cfg = {
        "providers": {"m": "memory://"},
        "compression": "brotli",
        "compression_threshold": 0,
        "encryption": True,
        "encryption_keys": {"k1": KEY},
    }
    async with EventSourcingManager(cfg, host=HOST) as m:
        await m.append_event(stream_id="s", event_type="E", data={})
        state = {"balance": Decimal("10.50"), "seen": {uuid.UUID(int=1)}, "blob": "x" * 500}
        created = await m.create_snapshot(stream_id="s", data=state, metadata={"by": "test"})
        raw = await m.get_provider().get_snapshot("s")
        assert raw.encoding == "json+brotli+aes256gcm"
        assert b"balance" not in raw.data
        assert b"test" not in raw.metadata
        snap = await m.get_snapshot("s")
        assert snap.snapshot_id == created.snapshot_id
        assert same(snap.data, state)
        assert snap.metadata == {"by": "test"}


async def test_plaintext_is_never_stored_when_encryption_is_on() -> None:
    cfg = {"providers": {"m": "memory://"}, "encryption": True, "encryption_keys": {"k1": KEY}}
    async with EventSourcingManager(cfg, host=HOST) as m:
        r = await m.append_event(stream_id="s", event_type="E", data={"secret": "hunter2"}, metadata={"ip": "10.0.0.1"})
        rec = await m.get_provider().get_event(r.event_id)
        assert b"hunter2" not in rec.data
        assert b"10.0.0.1" not in rec.metadata
        assert rec.encoding == "json+aes256gcm"
        assert (await m.get_event_by_id(r.event_id)).data == {"secret": "hunter2"}


def test_memory_provider_is_importable_for_codec_tests() -> None:
    assert MemoryProvider.kind == "memory"


class _Dict(dict):  # type: ignore[type-arg]
    pass


class _List(list):  # type: ignore[type-arg]
    pass


class _Int(int):
    pass


_odd_leaves = st.one_of(
    scalars,
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=3),
    st.integers().map(_Int),
)
_any_keys = st.one_of(keys, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
_odd_payloads = st.recursive(
    _odd_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=3).map(_List),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_any_keys, inner, max_size=5),
        st.dictionaries(keys, inner, max_size=3).map(_Dict),
        st.frozensets(st.one_of(st.integers(), st.tuples(st.integers())), max_size=3).map(set),
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_odd_payloads)
def test_the_fast_exactness_check_never_passes_what_the_full_walk_refuses(value: Any) -> None:
    """``_exact`` (the quick pre-check of every JSON payload) says "fine" only where ``_inexact`` finds nothing."""
    from eventsource.codecs.builtin import _exact, _inexact

    container = value if type(value) in (dict, list) else [value]
    if _exact(container, 1):
        assert _inexact(container) is None, container
    if _inexact(container) is not None:
        with pytest.raises(ValidationError):
            JsonSerializer().dumps(container)


def test_the_fast_exactness_check_stops_at_the_nesting_limit() -> None:
    from eventsource.codecs.builtin import MAX_NESTING, _exact, _inexact

    deep: Any = 1
    for _ in range(MAX_NESTING + 1):
        deep = [deep]
    assert not _exact(deep, 1)
    assert _inexact(deep) is not None
    ok: Any = {"a": 1}
    for _ in range(MAX_NESTING - 2):
        ok = [ok]
    assert _exact(ok, 1)


@pytest.mark.parametrize("encrypted", [False, True])
async def test_a_refused_metadata_value_is_named_as_metadata_not_data(encrypted: bool) -> None:
    """The JSON codec's refusal names the path; through the event codec it must also say which part it is in."""
    import base64

    from eventsource import EventData
    from eventsource.manager import EventSourcingManager

    config: dict[str, Any] = {"providers": {"mem": "memory://"}}
    if encrypted:
        config["encryption"] = True
        config["encryption_keys"] = {"k1": base64.b64encode(b"k" * 32).decode()}
    async with EventSourcingManager(config) as m:
        for bad, where in (({1: "x"}, "$[1]"), ({"k": (1, 2)}, "$['k']")):
            with pytest.raises(ValidationError) as info:
                await m.append_events_batch(stream_id="s", events=[EventData("E", {"ok": 1}, metadata=bad)])
            assert info.value.message.startswith(f"metadata at {where}"), info.value.message
            assert info.value.details["field"] == "metadata"
        with pytest.raises(ValidationError, match=r"^data at \$\['k'\]"):
            await m.append_events_batch(stream_id="s", events=[EventData("E", {"k": (1, 2)})])
        assert not await m.stream_exists("s")


def test_subclasses_of_json_types_read_back_equal_as_their_base_type() -> None:
    """Decided (docs/manager.md): an enum member or a dict subclass is stored as its JSON value, not refused."""
    import collections
    import enum

    class Colour(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    codec = JsonSerializer()
    ordered, default = collections.OrderedDict(b=1, a=2), collections.defaultdict(int)
    value = {"c": Colour.RED, "l": Level.HIGH, "o": ordered, "d": default}
    back = codec.loads(codec.dumps(value))
    assert back == value
    assert [type(back[k]) for k in "clod"] == [str, int, dict, dict]
    assert list(back["o"]) == ["b", "a"]  # order kept


def test_a_sealing_error_on_metadata_keeps_its_own_message_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the serializer's refusals are renamed as metadata; an error of another step passes as it was raised."""
    from eventsource.config import ManagerConfig
    from eventsource.errors import ConfigurationError
    from eventsource.manager.codec import EventCodec
    from eventsource.plugins import PluginHost

    codec = EventCodec(ManagerConfig(), PluginHost(load_entrypoints=False), None)

    def sealing_fails(*_a: Any, **_k: Any) -> Any:
        msg = "no active key"
        raise ConfigurationError(msg, field="active_key_id")

    monkeypatch.setattr(codec.pipeline, "encode_as_sized", sealing_fails)
    with pytest.raises(ConfigurationError) as info:
        codec.encode_event("s", "e1", None, {"ok": 1}, {"k": 1}, version=1, event_type="T")
    assert (info.value.message, info.value.details["field"]) == ("no active key", "active_key_id")

"""Attacks on the codec pipeline and event upcasting: a hostile or corrupt store, odd values, misbehaving plugins.

Each test writes through the real SQLite (or memory) store; hostile payloads are put in the store with the
provider's own ``append``, as another writer (or an imported transfer file) would. Every read of a payload the
library cannot decode must fail with a typed error naming the event, never allocate without bound, and never
hand back a changed value.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import tracemalloc
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import time, timedelta, timezone
from typing import TYPE_CHECKING, Any

import brotli
import eventsource
import pytest
from eventsource import EventSourcingManager
from eventsource.codecs import Cipher, Compressor
from eventsource.domain import Aggregate, DomainEvent, Repository, applies
from eventsource.errors import CodecError, DecryptionError, KeyProviderError, UpcastError
from eventsource.model import Event, ExpectedVersion, NewEvent, NewSnapshot, NewStream, utcnow
from eventsource.plugins import PluginHost
from eventsource.subscriptions import EventDecodeError

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.codecs.keys import KeyProvider
    from eventsource.registry import CodecRegistry

KEY = base64.b64encode(b"k" * 32).decode()


def sqlite_cfg(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"providers": {"s": f"sqlite:///{tmp_path / 'events.db'}"}, "default_provider": "s", **extra}


async def put_raw(es: EventSourcingManager, sid: str, data: bytes, encoding: str, meta: bytes = b"") -> str:
    """Store one event's payload bytes as they are (what another writer or an imported file could leave)."""
    eid = str(uuid.uuid4())
    rec = NewEvent(eid, "T", data, meta, encoding, utcnow())
    await es.get_provider().append(sid, [rec], ExpectedVersion.ANY, NewStream(stream_id=sid))
    return eid


# ---------------------------------------------------------------------------------------- decompression bombs


BOMB_SIZE = 256 * 1024 * 1024
"""What the hostile payloads below decompress to: far over any size this configuration writes (16 MiB)."""


def _bomb(kind: str) -> bytes:
    text = b'"' + b"a" * (BOMB_SIZE - 2) + b'"'
    return zlib.compress(text, 9) if kind == "zlib" else brotli.compress(text, quality=5)


@pytest.mark.parametrize("kind", ["zlib", "brotli"])
async def test_a_stored_decompression_bomb_is_refused_without_allocating_it(tmp_path: Path, kind: str) -> None:
    """A few hundred KB in the store must not make a read allocate hundreds of MB (it did: 300 KB -> 940 MB RSS)."""
    bomb = _bomb(kind)
    assert len(bomb) < 1024 * 1024
    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        eid = await put_raw(es, "bombed", bomb, f"json+{kind}")
        tracemalloc.start()
        try:
            with pytest.raises(CodecError, match="max_snapshot_size") as err:
                [e async for e in es.read_stream("bombed")]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert err.value.details["event_id"] == eid
        assert peak < 64 * 1024 * 1024, f"the refused read allocated {peak} bytes"


async def test_a_descriptor_stacking_compression_steps_is_refused_unread(tmp_path: Path) -> None:
    """The library writes at most one compression step: ``json+zlib+zlib+...`` from a hostile store cost a bounded
    decompression per step (memory bounded, CPU not); refused naming the descriptor, before any is run."""
    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        once = zlib.compress(b'{"a": 1}')
        await put_raw(es, "stacked", zlib.compress(once), "json+zlib+zlib")
        await put_raw(es, "mixed", brotli.compress(once), "json+zlib+brotli")
        for sid in ("stacked", "mixed"):
            with pytest.raises(CodecError, match="more than one compression"):
                [e async for e in es.read_stream(sid)]
        await put_raw(es, "single", once, "json+zlib")
        assert [e.data async for e in es.read_stream("single")] == [{"a": 1}]


async def test_a_snapshot_decompression_bomb_is_refused(tmp_path: Path) -> None:
    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        await es.append_event(stream_id="snap", event_type="T", data={})
        p = es.get_provider()
        snap = NewSnapshot(
            snapshot_id=str(uuid.uuid4()),
            stream_id="snap",
            version=1,
            data=_bomb("zlib"),
            metadata=b"",
            encoding="json+zlib",
            created_at=utcnow(),
        )
        await p.save_snapshot(snap)
        with pytest.raises(CodecError, match="max_snapshot_size"):
            await es.get_snapshot(stream_id="snap")


async def test_payloads_as_large_as_the_configuration_writes_still_read(tmp_path: Path) -> None:
    """The bound is the larger size limit: what this configuration writes (compressed) always reads back."""
    cfg = sqlite_cfg(tmp_path, compression="zlib", max_event_size=8 * 1024 * 1024, max_snapshot_size=1024)
    async with EventSourcingManager(cfg) as es:
        big = "b" * (8 * 1024 * 1024 - 64)
        await es.append_event(stream_id="big", event_type="T", data=big)
        assert [e.data async for e in es.read_stream("big")] == [big]
        stored = [r async for r in es.get_provider().read_stream("big")]
        assert stored[0].encoding == "json+zlib"


# ---------------------------------------------------------------------------------------- scope changes


async def test_switching_encryption_scope_back_to_global_keeps_scoped_events_readable(tmp_path: Path) -> None:
    """Tenant-scoped events stay readable after ``encryption_scope`` goes back to global with the key store kept.

    The key store was ignored under "global", so every event sealed with a tenant's data key raised
    UnknownKeyError, although its key was right there in the configured file.
    """
    keys = str(tmp_path / "keys.jsonl")
    base = sqlite_cfg(tmp_path, encryption=True, encryption_keys={"k1": KEY}, encryption_key_store=keys)
    async with EventSourcingManager({**base, "encryption_scope": "tenant"}) as es:
        await es.append_event(stream_id="acct", event_type="T", data={"n": 1}, tenant_id="t1")
        await es.append_event(stream_id="acct", event_type="T", data={"n": 2})
    async with EventSourcingManager({**base, "encryption_scope": "global"}) as es:
        await es.append_event(stream_id="acct", event_type="T", data={"n": 3}, tenant_id="t1")
        assert [e.data async for e in es.read_stream("acct")] == [{"n": 1}, {"n": 2}, {"n": 3}]
        stored = [r async for r in es.get_provider().read_stream("acct")]
        assert b"dk-" not in stored[2].data[:8]  # new events: the master ring, as "global" says


# ---------------------------------------------------------------------------------------- register_upcaster


@pytest.mark.parametrize("returns", ["none", "data"])
async def test_a_register_upcaster_that_returns_no_event_is_an_upcast_error(returns: str) -> None:
    """An ``Event -> Event`` upcaster returning None (an in-place edit) or the data was handed out as the event."""
    async with EventSourcingManager({"providers": {"m": f"memory://{uuid.uuid4().hex}"}}) as es:
        r = await es.append_event(stream_id="u", event_type="T", data={"x": 1})
        es.register_upcaster("T", (lambda ev: None) if returns == "none" else (lambda ev: ev.data))
        with pytest.raises(UpcastError, match=r.event_id):
            [e async for e in es.read_stream("u")]
        with pytest.raises(UpcastError, match=r.event_id):
            await es.get_events(stream_id="u")


async def test_a_register_upcaster_that_raises_is_an_upcast_error_naming_the_event() -> None:
    async with EventSourcingManager({"providers": {"m": f"memory://{uuid.uuid4().hex}"}}) as es:
        r = await es.append_event(stream_id="u", event_type="T", data={"x": 1})

        def broken(ev: Event) -> Event:
            return ev.data["missing"]  # type: ignore[no-any-return]

        es.register_upcaster("T", broken)
        with pytest.raises(UpcastError, match=r.event_id) as err:
            [e async for e in es.read_stream("u")]
        assert isinstance(err.value.__cause__, KeyError)


# ---------------------------------------------------------------------------------------- values


async def test_a_time_with_a_sub_second_utc_offset_reads_back_unchanged(tmp_path: Path) -> None:
    """``time.fromisoformat`` drops microseconds of an offset: the time came back at UTC, another instant."""
    t = time(1, 2, 3, tzinfo=timezone(timedelta(microseconds=7)))
    s = time(4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-3, seconds=1, microseconds=999)))
    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        await es.append_event(stream_id="t", event_type="T", data={"t": t, "s": [s]}, metadata={"t": t})
        (ev,) = [e async for e in es.read_stream("t")]
        for got, want in ((ev.data["t"], t), (ev.data["s"][0], s), (ev.metadata["t"], t)):
            assert got == want
            assert got.utcoffset() == want.utcoffset()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"$es":"decimal","v":"abc"}',
        b'{"$es":"decimal","v":[1,[2],3]}',
        b'{"$es":"uuid","v":123}',
        b'{"$es":"timedelta","v":[1000000000,0,0]}',
        b'{"$es":"bytes","v":"!!"}',
    ],
)
async def test_a_corrupt_tagged_value_is_a_codec_error_naming_the_event(tmp_path: Path, payload: bytes) -> None:
    """A damaged tag raised InvalidOperation / AttributeError / OverflowError, or decoded to other bytes."""
    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        eid = await put_raw(es, "c", payload, "json")
        with pytest.raises(CodecError, match=eid):
            [e async for e in es.read_stream("c")]
        with pytest.raises(CodecError, match=eid):
            await es.get_event_by_id(eid)


# ---------------------------------------------------------------------------------------- codec plugins


class _Misbehaving(Compressor):
    name = "oddz"

    def __init__(self, how: str) -> None:
        self.how = how

    def compress(self, raw: bytes) -> bytes:
        return zlib.compress(raw)

    def decompress(self, raw: bytes) -> bytes:
        if self.how == "raise":
            raise RuntimeError
        return zlib.decompress(raw).decode()  # type: ignore[return-value]


class _OddPlugin:
    def __init__(self, how: str) -> None:
        self.how = how

    @eventsource.hookimpl
    def eventsource_register_codecs(self, registry: CodecRegistry) -> None:
        registry.add_compressor(_Misbehaving(self.how))


@pytest.mark.parametrize("how", ["str", "raise"])
async def test_a_plugin_compressor_that_misbehaves_is_a_codec_error(tmp_path: Path, how: str) -> None:
    """A third-party compressor returning str (or raising) reached the caller as a bare AttributeError."""
    host = PluginHost(load_entrypoints=False, plugins=[("odd", _OddPlugin(how))])
    async with EventSourcingManager(sqlite_cfg(tmp_path), host=host) as es:
        eid = await put_raw(es, "p", zlib.compress(b'{"a":1}'), "json+oddz")
        with pytest.raises(CodecError, match="oddz") as err:
            [e async for e in es.read_stream("p")]
        assert err.value.details.get("event_id") == eid


# ---------------------------------------------------------------------------------------- sealed payloads


async def _sealed_store(tmp_path: Path, **extra: Any) -> tuple[dict[str, Any], Path]:
    db = tmp_path / "sealed.db"
    cfg = {
        "providers": {"s": f"sqlite:///{db}"},
        "default_provider": "s",
        "encryption": True,
        "encryption_keys": {"k1": KEY},
        **extra,
    }
    return cfg, db


def _sql(db: Path, statement: str) -> None:
    con = sqlite3.connect(db)
    try:
        con.execute(statement)
        con.commit()
    finally:
        con.close()


async def test_stripping_a_sealed_events_metadata_is_a_decryption_error(tmp_path: Path) -> None:
    """Emptying the metadata column read back as ``metadata={}``: the schema version (and so the upcasting
    chain), trace context and every caller field silently gone, although the payload is authenticated."""
    cfg, db = await _sealed_store(tmp_path)
    async with EventSourcingManager(cfg) as es:
        es.add_upcaster("Moved", 1, lambda d: {"to": d["where"]})
        r = await es.append_event(
            stream_id="m", event_type="Moved", data={"to": "b"}, metadata={"eventsource.schema": 2, "audit": "x"}
        )
        await es.create_snapshot(stream_id="m", data={"s": 1}, metadata={"audit": "y"})
    _sql(db, "UPDATE es_events SET metadata = x'' WHERE stream_id = 'm'")
    _sql(db, "UPDATE es_snapshots SET metadata = x'' WHERE stream_id = 'm'")
    async with EventSourcingManager(cfg) as es:
        es.add_upcaster("Moved", 1, lambda d: {"to": d["where"]})
        with pytest.raises(DecryptionError, match=r.event_id):
            [e async for e in es.read_stream("m")]
        with pytest.raises(DecryptionError):
            await es.get_snapshot(stream_id="m")


async def test_sealed_events_with_metadata_written_before_the_metadata_binding_still_read(tmp_path: Path) -> None:
    """Payloads sealed under the earlier associated data (metadata not bound) stay readable."""
    cfg, _ = await _sealed_store(tmp_path)
    async with EventSourcingManager(cfg) as es:
        codec = es._codec
        p = es.get_provider()
        for n, meta in enumerate(({"a": 1}, {})):
            eid = str(uuid.uuid4())
            prefix = f"e\x00old\x00{eid}\x00{n + 1}\x00".encode()
            data, enc = codec.pipeline.encode({"n": n}, aad=prefix + b"d")
            metab = codec.pipeline.encode_as(meta, enc, aad=prefix + b"m") if meta else b""
            rec = NewEvent(eid, "T", data, metab, enc, utcnow())
            await p.append("old", [rec], n, NewStream(stream_id="old"))
        got = [(e.data, e.metadata) async for e in es.read_stream("old")]
        assert got == [({"n": 0}, {"a": 1}), ({"n": 1}, {})]


@pytest.mark.parametrize("metadata", [{}, {"audit": "x"}], ids=["data", "data+metadata"])
async def test_relabelling_a_sealed_events_type_in_the_store_is_a_decryption_error(
    tmp_path: Path, metadata: dict[str, Any]
) -> None:
    """A ``Deposited`` renamed ``Withdrawn`` in the store read back as a withdrawal with the deposit's
    authenticated payload: the type was the one envelope field that gives a payload its meaning and was
    not bound. Sealed payloads (data and metadata) are now bound to their event's type."""
    cfg, db = await _sealed_store(tmp_path)
    async with EventSourcingManager(cfg) as es:
        await es.append_event(stream_id="acct", event_type="Deposited", data={"amount": 100}, metadata=metadata)
        _sql(db, "UPDATE es_events SET event_type = 'Withdrawn' WHERE stream_id = 'acct'")
        with pytest.raises(DecryptionError):
            [e async for e in es.read_stream("acct")]
        _sql(db, "UPDATE es_events SET event_type = 'Deposited' WHERE stream_id = 'acct'")
        assert [(e.event_type, e.data) async for e in es.read_stream("acct")] == [("Deposited", {"amount": 100})]


async def test_sealed_events_written_before_the_type_binding_still_read(tmp_path: Path) -> None:
    """Payloads sealed under the associated data without the type (metadata bound, or not) stay readable."""
    cfg, _ = await _sealed_store(tmp_path)
    async with EventSourcingManager(cfg) as es:
        codec = es._codec
        p = es.get_provider()
        for n, (meta, part) in enumerate((({"a": 1}, b"d+m"), ({}, b"d"))):
            eid = str(uuid.uuid4())
            prefix = f"e\x00old\x00{eid}\x00{n + 1}\x00".encode()
            data, enc = codec.pipeline.encode({"n": n}, aad=prefix + part)
            metab = codec.pipeline.encode_as(meta, enc, aad=prefix + b"m") if meta else b""
            await p.append("old", [NewEvent(eid, "T", data, metab, enc, utcnow())], n, NewStream(stream_id="old"))
        got = [(e.data, e.metadata) async for e in es.read_stream("old")]
        assert got == [({"n": 0}, {"a": 1}), ({"n": 1}, {})]


async def test_relabelling_a_tenants_sealed_event_to_no_tenant_is_a_decryption_error(tmp_path: Path) -> None:
    """t1's event relabelled tenant_id=NULL in the store reads as a tenant-less event (out of t1's filters)."""
    cfg, db = await _sealed_store(tmp_path, encryption_scope="tenant", encryption_key_store="memory")
    async with EventSourcingManager(cfg) as es:
        await es.append_event(stream_id="t", event_type="T", data={"secret": 1}, tenant_id="t1")
        _sql(db, "UPDATE es_events SET tenant_id = NULL WHERE stream_id = 't'")
        with pytest.raises(DecryptionError):
            [e async for e in es.read_stream("t")]


# ---------------------------------------------------------------------------------------- aggregate snapshots


@dataclass(frozen=True)
class Tagged(DomainEvent, type_name="AttackTagged"):
    tag: str


class Post(Aggregate):
    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.by_tag: defaultdict[str, int] = defaultdict(int)
        self.seen: Counter[str] = Counter()

    def tag(self, t: str) -> None:
        self.record(Tagged(t))

    @applies(Tagged)
    def _tagged(self, e: Tagged) -> None:
        self.by_tag[e.tag] += 1
        self.seen[e.tag] += 1


async def test_an_aggregate_whose_state_json_would_change_is_not_snapshotted_into_another_type(tmp_path: Path) -> None:
    """A defaultdict (Counter) in an aggregate's state came back from its snapshot as a dict: the next command
    raised KeyError, although the same aggregate replayed from its events worked."""
    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        posts = Repository(es, Post, snapshot_threshold=1)
        p = posts.new("p1")
        p.tag("a")
        await posts.save(p)
        p = await posts.get("p1")
        p.tag("b")  # KeyError: 'b' when loaded from the snapshot
        await posts.save(p)
        p = await posts.get("p1")
        assert dict(p.by_tag) == {"a": 1, "b": 1}
        assert p.seen["never"] == 0


# ---------------------------------------------------------------------------------------- cipher plugins


class _KmsCipher(Cipher):
    """A plugin cipher whose key service times out (what a KMS-backed cipher does on a bad minute)."""

    name = "kmsgcm"

    def bind(self, keys: KeyProvider) -> Cipher:
        return _KmsCipher()

    def encrypt(self, plain: bytes, *, aad: bytes, scope: str | None) -> bytes:
        return plain

    def decrypt(self, blob: bytes, *, aad: bytes, scope: str | None) -> bytes:
        raise TimeoutError


class _KmsPlugin:
    @eventsource.hookimpl
    def eventsource_register_codecs(self, registry: CodecRegistry) -> None:
        registry.add_cipher(_KmsCipher())


async def test_a_plugin_cipher_failing_is_never_skipped_by_a_subscription(tmp_path: Path) -> None:
    """A plugin cipher's own exception (a KMS timeout) reached a skip-mode subscription as an undecodable event,
    which passed over it for good; a key provider's failure never is (KeyProviderError stops the subscription)."""
    host = PluginHost(load_entrypoints=False, plugins=[("kms", _KmsPlugin())])
    cfg = sqlite_cfg(tmp_path, encryption_keys={"k1": KEY})
    async with EventSourcingManager(cfg, host=host) as es:
        eid = await put_raw(es, "k", b'{"a":1}', "json+kmsgcm")
        await es.append_event(stream_id="k", event_type="T", data={"a": 2})
        with pytest.raises(KeyProviderError, match="kmsgcm"):
            await es.get_event_by_id(eid)
        async with es.subscribe(stream_id="k", on_decode_error="skip") as sub:
            with pytest.raises(EventDecodeError, match=eid):
                await asyncio.wait_for(anext(sub), 10)
            assert sub.skipped == 0

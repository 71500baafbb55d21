"""Encryption and keys, found by an attacker-review: shreds seen by writers in other processes, key
providers that return bad keys or raise, and ciphertexts relabelled to another tenant in the store."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from conftest import OPENED
from eventsource.codecs.keys import KeyProvider, ScopedKeyStore, StaticKeyRing
from eventsource.errors import (
    CodecError,
    ConfigurationError,
    DecryptionError,
    KeyShreddedError,
    StreamNotFoundError,
)
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)
K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(100, 132))).decode()

pytestmark = pytest.mark.usefixtures("close_opened")


async def manager(store: str, key_provider: KeyProvider | None = None, **kw: Any) -> EventSourcingManager:
    cfg = {"providers": {}, "default_provider": None, "encryption": True, **kw}
    if key_provider is None:
        cfg.setdefault("encryption_keys", {"k1": K1})
    m = EventSourcingManager(cfg, host=HOST, key_provider=key_provider)
    await m.register_provider(store, name="m")
    OPENED.append(m)
    return m


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/enc-{uuid.uuid4().hex}.db"


# ---------------------------------------------------------------------- a shred seen by other processes


async def test_an_append_after_another_process_shredded_the_scope_gets_a_fresh_key(tmp_path: Path) -> None:
    """Two managers on one key file stand for two processes. ``b`` had the tenant's key cached; after ``a``
    shredded the tenant, ``b`` sealed its next event with the shredded key (it re-read the file at most once
    a second), so an acknowledged event was unreadable from the moment it was written."""
    store, key_store = sqlite_url(tmp_path), str(tmp_path / "keys.jsonl")
    a = await manager(store, encryption_scope="tenant", encryption_key_store=key_store)
    b = await manager(store, encryption_scope="tenant", encryption_key_store=key_store)
    old = await b.append_event(stream_id="s", event_type="E", data={"n": 0}, tenant_id="t")
    assert await a.shred(tenant_id="t") == 1
    new = await b.append_event(stream_id="s2", event_type="E", data={"n": 1}, tenant_id="t")
    assert (await a.get_event_by_id(new.event_id)).data == {"n": 1}
    assert (await b.get_event_by_id(new.event_id)).data == {"n": 1}
    with pytest.raises(KeyShreddedError):
        await a.get_event_by_id(old.event_id)
    # a rotation by another process is picked up by a writer's next key change at the latest; both keys read
    b_kid = b.keys.encryption_key("tenant:t")[0]  # type: ignore[union-attr]
    a.rotate_key(tenant_id="t")
    r = await b.append_event(stream_id="s2", event_type="E", data={"n": 2}, tenant_id="t")
    assert (await a.get_event_by_id(r.event_id)).data == {"n": 2}
    assert await a.shred(tenant_id="t") == 2  # every generation of the scope's key
    saved = [json.loads(line) for line in (tmp_path / "keys.jsonl").read_text().splitlines()]
    assert [r for r in saved if "key" in r] == []  # no wrapped key of the scope is left in the live file
    assert b_kid in [k for r in saved if "shred" in r for k in r["keys"]]  # only tombstones name them
    with pytest.raises(KeyShreddedError):
        await a.get_event_by_id(r.event_id)


# ---------------------------------------------------------------------- key providers that misbehave


class Flaky(KeyProvider):
    """A key service (think: a KMS) whose answers a test controls: a key to return, or an error to raise."""

    def __init__(self) -> None:
        self.key: Any = bytes(range(32))
        self.key_id: Any = "kms-1"
        self.error: Exception | None = None

    def encryption_key(self, scope: str | None) -> tuple[str, bytes]:
        if self.error is not None:
            raise self.error
        return self.key_id, self.key  # type: ignore[no-any-return]

    def decryption_key(self, key_id: str, scope: str | None) -> bytes:
        if self.error is not None:
            raise self.error
        return self.key  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "bad",
    [bytes(16), bytes(24), bytes(20), "k" * 32, None, bytearray(16)],
    ids=["aes128", "aes192", "20-bytes", "text", "none", "bytearray"],
)
async def test_a_key_provider_returning_anything_but_a_32_byte_key_is_refused(tmp_path: Path, bad: Any) -> None:
    """A 16- or 24-byte key was used as given (AES-128/192 where the library promises AES-256); other
    values raised a raw ValueError or TypeError from ``cryptography``."""
    from eventsource.errors import KeyProviderError

    kms = Flaky()
    m = await manager(sqlite_url(tmp_path), key_provider=kms)
    r = await m.append_event(stream_id="kept", event_type="E", data={"n": 1})
    kms.key = bad
    with pytest.raises(KeyProviderError) as info:
        await m.append_event(stream_id="s", event_type="E", data={"n": 1})
    assert info.value.details["key_id"] == "kms-1"
    with pytest.raises(StreamNotFoundError):  # nothing was written
        await m.get_stream_info("s")
    with pytest.raises(KeyProviderError):
        await m.get_event_by_id(r.event_id)


@pytest.mark.parametrize("error", [ConnectionError("kms unreachable"), RuntimeError("bug"), KeyError("x")])
async def test_a_key_provider_that_raises_gives_a_typed_error_and_writes_nothing(
    tmp_path: Path, error: Exception
) -> None:
    from eventsource.errors import KeyProviderError

    kms = Flaky()
    m = await manager(sqlite_url(tmp_path), key_provider=kms)
    r = await m.append_event(stream_id="kept", event_type="E", data={"n": 1})
    await m.create_snapshot(stream_id="kept", data={"n": 1})
    kms.error = error
    with pytest.raises(KeyProviderError) as info:
        await m.append_event(stream_id="s", event_type="E", data={"n": 1})
    assert isinstance(info.value, CodecError)
    causes, cause = [], info.value.__cause__
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__
    assert error in causes
    with pytest.raises(StreamNotFoundError):
        await m.get_stream_info("s")
    with pytest.raises(KeyProviderError):
        await m.get_event_by_id(r.event_id)
    with pytest.raises(KeyProviderError):
        [e async for e in m.read_stream("kept")]
    with pytest.raises(KeyProviderError):
        await m.get_snapshot("kept")
    kms.error = None  # the service is back: everything reads
    assert (await m.get_event_by_id(r.event_id)).data == {"n": 1}


async def test_a_skipping_subscription_stops_rather_than_skip_events_while_the_key_service_is_down(
    tmp_path: Path,
) -> None:
    """``on_decode_error="skip"`` is for events that can never be decoded; a key service that failed for a
    moment made it pass over (and check-point past) every event it read meanwhile."""
    from eventsource.subscriptions import EventDecodeError

    kms = Flaky()
    m = await manager(sqlite_url(tmp_path), key_provider=kms)
    for i in range(3):
        await m.append_event(stream_id="s", event_type="E", data={"n": i})
    kms.error = ConnectionError("kms unreachable")
    async with m.subscribe(stream_id="s", on_decode_error="skip") as sub:
        with pytest.raises(EventDecodeError):  # (it skipped all three and waited for a fourth)
            await asyncio.wait_for(sub.next_batch(10), 30)
        assert sub.skipped == 0
        kms.error = None
        assert [e.data["n"] for e in await sub.next_batch(10)] == [0, 1, 2]
    kms.key = bytes(16)  # a provider handing out a wrong key is not the event's fault either
    async with m.subscribe(stream_id="s", on_decode_error="skip") as sub:
        with pytest.raises(EventDecodeError):
            await asyncio.wait_for(sub.next_batch(10), 30)
        assert sub.skipped == 0


# ---------------------------------------------------------------------- a ciphertext relabelled to another tenant


async def test_an_event_relabelled_to_another_tenant_in_the_store_fails_and_stays_shreddable(tmp_path: Path) -> None:
    """The associated data binds stream, event id, version and part, not the tenant: an event whose
    ``tenant_id`` was changed in the database decrypted under its old tenant's key, as the new tenant's
    event, and still read after the new tenant was shredded."""
    db = tmp_path / "events.db"
    key_store = str(tmp_path / "keys.jsonl")
    m = await manager(f"sqlite:///{db}", encryption_scope="tenant", encryption_key_store=key_store)
    a = await m.append_event(stream_id="s", event_type="E", data={"who": "alice"}, tenant_id="ta")
    b = await m.append_event(stream_id="s", event_type="E", data={"who": "bob"}, tenant_id="tb")
    with sqlite3.connect(db) as con:
        con.execute("UPDATE es_events SET tenant_id = 'tb' WHERE event_id = ?", (a.event_id,))
    con.close()
    with pytest.raises(DecryptionError) as info:
        await m.get_event_by_id(a.event_id)
    assert "tenant:ta" in str(info.value)
    assert "alice" not in str(info.value)
    assert (await m.get_event_by_id(b.event_id)).data == {"who": "bob"}
    assert await m.shred(tenant_id="tb") == 1
    with pytest.raises(DecryptionError):
        await m.get_event_by_id(a.event_id)
    # keys of another kind than the configured scope are events written before encryption_scope changed
    with sqlite3.connect(db) as con:
        con.execute("UPDATE es_events SET tenant_id = 'ta' WHERE event_id = ?", (a.event_id,))
    con.close()
    by_stream = await manager(f"sqlite:///{db}", encryption_scope="stream", encryption_key_store=key_store)
    assert (await by_stream.get_event_by_id(a.event_id)).data == {"who": "alice"}


# ---------------------------------------------------------------------- shredded data never sealed again


async def test_a_shred_by_another_process_is_seen_before_its_data_is_read_and_sealed_again(tmp_path: Path) -> None:
    """``r`` had the stream's key cached when ``s`` shredded it. ``r`` still opened the events for up to a
    second; an upcast rewrite (or a snapshot built from them) then sealed that plaintext under a fresh
    key: the shredded events became readable again for everyone."""
    from eventsource.domain.rewrite import rewrite_stream

    store, key_store = sqlite_url(tmp_path), str(tmp_path / "keys.jsonl")
    r = await manager(store, encryption_scope="stream", encryption_key_store=key_store)
    s = await manager(store, encryption_scope="stream", encryption_key_store=key_store)
    r.add_upcaster("E", 1, lambda d: {"item": d["name"]})
    w = await r.append_event(stream_id="gone", event_type="E", data={"name": "pen"})
    assert (await r.get_event_by_id(w.event_id)).data == {"item": "pen"}  # r holds the key
    assert await s.shred(stream_id="gone") == 1
    with pytest.raises(KeyShreddedError):
        await r.get_event_by_id(w.event_id)
    report = await rewrite_stream(r, "gone")
    assert (report.read, report.shredded, report.rewritten) == (1, 1, 0)
    with pytest.raises(KeyShreddedError):
        await s.get_event_by_id(w.event_id)


async def test_a_rewrite_never_seals_again_what_was_shredded_while_it_ran(tmp_path: Path) -> None:
    """The shred lands between the rewrite opening an event and sealing its upcast data (here: from the
    upcaster, through another process's key store); the new seal got a fresh key and undid the shred."""
    from eventsource.domain.rewrite import rewrite_stream

    store, key_store = sqlite_url(tmp_path), str(tmp_path / "keys.jsonl")
    r = await manager(store, encryption_scope="stream", encryption_key_store=key_store)
    s = await manager(store, encryption_scope="stream", encryption_key_store=key_store)
    w = await r.append_event(stream_id="gone", event_type="E", data={"name": "pen"})
    kept = await r.append_event(stream_id="kept", event_type="E", data={"name": "ink"})

    def upcast(d: dict[str, Any]) -> dict[str, Any]:
        s.keys.shred("stream:gone")  # type: ignore[union-attr]
        return {"item": d["name"]}

    r.add_upcaster("E", 1, upcast)
    report = await rewrite_stream(r, "gone")
    assert (report.read, report.shredded, report.rewritten) == (1, 1, 0)
    with pytest.raises(KeyShreddedError):
        await s.get_event_by_id(w.event_id)
    report = await rewrite_stream(r, "kept")
    assert (report.read, report.shredded, report.rewritten) == (1, 0, 1)
    assert (await s.get_event_by_id(kept.event_id)).data == {"item": "ink"}  # stored at the newest version


async def test_redact_mode_reads_past_shredded_events_whatever_upcaster_functions_are_registered(
    tmp_path: Path,
) -> None:
    """The upcasting chains skip a redacted event (it has no data), but ``register_upcaster`` functions got
    it with ``data=None``: an ordinary one raised a raw TypeError and ``read_all`` stopped at the shred."""
    import dataclasses

    from eventsource.manager import SHREDDED_KEY

    m = await manager(
        sqlite_url(tmp_path), encryption_scope="stream", encryption_key_store="memory", shredded_events="redact"
    )
    gone = await m.append_event(stream_id="gone", event_type="E", data={"a": 1})
    await m.append_event(stream_id="kept", event_type="E", data={"a": 2})
    m.register_upcaster("E", lambda ev: dataclasses.replace(ev, data={**ev.data, "b": 0}))
    assert await m.shred(stream_id="gone") == 1
    got = [(e.stream_id, e.data, e.metadata) async for e in m.read_all()]
    assert got == [("gone", None, {SHREDDED_KEY: "stream:gone"}), ("kept", {"a": 2, "b": 0}, {})]
    assert (await m.get_event_by_id(gone.event_id)).data is None


# ---------------------------------------------------------------------- a shred or rewrap the disk refused


@pytest.fixture
def small_file_limit() -> Iterator[Callable[[], contextlib.AbstractContextManager[None]]]:
    """``with limit():`` files of this process cannot grow past 1,000 bytes (a full disk, without one)."""
    import resource
    import signal

    @contextlib.contextmanager
    def limit() -> Iterator[None]:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old)

    yield limit


def test_a_shred_the_disk_refused_is_done_in_full_when_retried(
    tmp_path: Path, small_file_limit: Callable[[], contextlib.AbstractContextManager[None]]
) -> None:
    """The failed rewrite left the store believing the keys gone: the retry removed nothing and returned 0,
    while the key file (so every other process, and this one after a restart) still held them."""
    path = tmp_path / "keys.jsonl"
    ring = StaticKeyRing({"m1": K1})
    store = ScopedKeyStore(ring, path)
    for i in range(30):
        store.encryption_key(f"tenant:{i}")
    kid, _ = store.encryption_key("tenant:0")
    with small_file_limit(), pytest.raises(OSError, match="too large"):
        store.shred("tenant:0")
    assert ScopedKeyStore(ring, path).scopes() == store.scopes()  # as the file holds it
    assert store.shred("tenant:0") == 1
    with pytest.raises(KeyShreddedError):
        ScopedKeyStore(ring, path).decryption_key(kid, "tenant:0")


def test_a_rewrap_the_disk_refused_is_done_in_full_when_retried(
    tmp_path: Path, small_file_limit: Callable[[], contextlib.AbstractContextManager[None]]
) -> None:
    """The retry said there was nothing left to rewrap while the file held every key wrapped by the old
    master key: retiring that key, as the rewrap is for, then made every scope unreadable."""
    path = tmp_path / "keys.jsonl"
    ring = StaticKeyRing({"m1": K1})
    store = ScopedKeyStore(ring, path)
    keys = {i: store.encryption_key(f"tenant:{i}") for i in range(30)}
    ring.add_key("m2", K2)
    with small_file_limit(), pytest.raises(OSError, match="too large"):
        store.rewrap()
    assert store.rewrap() == 30
    ring.remove_key("m1")
    fresh = ScopedKeyStore(ring, path)
    assert all(fresh.decryption_key(kid, f"tenant:{i}") == key for i, (kid, key) in keys.items())


# ---------------------------------------------------------------------- bad input mints no key


@pytest.mark.parametrize(
    "bad",
    [
        {"data": {"x": "y" * 5000}},  # over max_event_size
        {"data": {"x": "y" * 600}, "metadata": {"m": "z" * 600}},  # data and metadata together over it
        {"data": {"x": 1}, "metadata": {"m": object()}},  # metadata the serializer refuses
        {"data": {"x": 1}, "correlation_id": ""},
        {"data": {"x": 1}, "user_id": "\x00"},
        {"data": {"x": 1}, "timestamp": "yesterday"},
    ],
    ids=["oversized", "oversized-with-metadata", "bad-metadata", "empty-correlation", "nul-user", "bad-timestamp"],
)
async def test_a_refused_append_mints_no_data_key(tmp_path: Path, bad: dict[str, Any]) -> None:
    """The event was sealed (its tenant's first key created, fsynced and written to the key file, with the
    tenant id in clear) before its size and envelope fields were checked: bad input changed the key store."""
    from eventsource.errors import ValidationError

    key_store = tmp_path / "keys.jsonl"
    m = await manager(
        sqlite_url(tmp_path), encryption_scope="tenant", encryption_key_store=str(key_store), max_event_size=1000
    )
    with pytest.raises(ValidationError):
        await m.append_event(stream_id="s", event_type="E", tenant_id="refused-tenant", **bad)
    assert m.keys.scopes() == []  # type: ignore[union-attr]
    assert not key_store.exists() or "refused-tenant" not in key_store.read_text()
    r = await m.append_event(stream_id="s", event_type="E", data={"x": 1}, metadata={"m": 1}, tenant_id="t")
    assert (await m.get_event_by_id(r.event_id)).metadata == {"m": 1}
    assert m.keys.scopes() == ["tenant:t"]  # type: ignore[union-attr]


async def test_rotating_a_scope_the_configuration_does_not_key_by_is_refused_like_a_shred(tmp_path: Path) -> None:
    """``rotate_key(stream_id=...)`` under ``encryption_scope="tenant"`` said the global scope rotates through
    the key ring (``UnsupportedOperationError``), as if the stream had been asked for nothing."""
    from eventsource.errors import ValidationError

    m = await manager(sqlite_url(tmp_path), encryption_scope="tenant", encryption_key_store="memory")
    for call in (lambda: m.rotate_key(stream_id="s"), lambda: m.shred(stream_id="s")):
        with pytest.raises(ValidationError) as info:
            result = call()
            if asyncio.iscoroutine(result):
                await result
        assert info.value.details["field"] == "stream_id"
    assert m.keys.scopes() == []  # type: ignore[union-attr]
    assert m.rotate_key(tenant_id="t").startswith("dk-")


async def test_redacted_events_read_as_classes_and_an_aggregate_of_them_is_a_shredded_error(tmp_path: Path) -> None:
    """With ``shredded_events="redact"``, ``as_classes=True`` refused a redacted event as invalid data
    (``ValidationError``; ``UpcastError`` for a class above version 1, its stored version being gone), and
    so did ``Repository.get``: neither the documented ``data=None`` nor a ``KeyShreddedError``."""
    from eventsource.domain import Repository
    from eventsource.manager import SHREDDED_KEY
    from eventsource.testing.domain import Cart, ItemAdded, Opened

    m = await manager(
        sqlite_url(tmp_path), encryption_scope="stream", encryption_key_store="memory", shredded_events="redact"
    )
    repo = Repository(m, Cart)
    for cid in ("gone", "kept"):
        cart = repo.new(cid)
        cart.record(Opened("ada"))
        cart.record(ItemAdded("pen", 1))  # a class at schema version 3
        await repo.save(cart)
    gone = repo.new("gone").stream_id
    assert await m.shred(stream_id=gone) == 1
    got = [(e.stream_id, e.data) async for e in m.read_all(as_classes=True)]
    assert got[:2] == [(gone, None), (gone, None)]
    assert [type(d).__name__ for _, d in got[2:]] == ["Opened", "ItemAdded"]
    second = (await m.get_events(stream_id=gone)).events[1].event_id
    assert (await m.get_event_by_id(second, as_classes=True)).data is None
    with pytest.raises(KeyShreddedError) as info:
        await repo.get("gone")
    assert info.value.scope == f"stream:{gone}"
    assert (await repo.get("kept")).items == {"pen": 1}
    assert (await m.get_events(stream_id=gone)).events[0].metadata == {SHREDDED_KEY: f"stream:{gone}"}


# ---------------------------------------------------------------------- key-file changes that survive a crash


def test_creating_the_key_file_and_a_shred_are_durable_in_the_directory_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file's name, and a rename over a file, are durable once the directory is fsynced; only the file
    was. A power cut after the first key could lose the key file (every event sealed so far unreadable), and
    one after a shred could bring the shredded keys back. The real calls are recorded as they pass."""
    import os
    from pathlib import Path

    folder = tmp_path / "keys"
    key_file = folder / "keys.jsonl"
    dir_fds: set[int] = set()
    events: list[str] = []
    real_open, real_fsync, real_close, real_replace = os.open, os.fsync, os.close, os.replace

    def spy_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        existed = Path(path).exists()
        fd = real_open(path, flags, *args, **kwargs)
        if Path(path) == folder:
            dir_fds.add(fd)
        elif Path(path) == key_file and flags & os.O_CREAT and not existed:
            events.append("create")
        return fd

    def spy_fsync(fd: Any) -> None:
        real_fsync(fd)
        if fd in dir_fds:
            events.append("dir-fsync")

    def spy_close(fd: int) -> None:
        dir_fds.discard(fd)
        real_close(fd)

    def spy_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        real_replace(src, dst, **kwargs)
        if Path(dst) == key_file:
            events.append("rename")

    for name, spy in (("open", spy_open), ("fsync", spy_fsync), ("close", spy_close), ("replace", spy_replace)):
        monkeypatch.setattr(os, name, spy)
    store = ScopedKeyStore(StaticKeyRing({"m1": K1}), str(key_file))
    store.encryption_key("tenant:a")
    store.shred("tenant:a")
    monkeypatch.undo()
    assert "create" in events
    assert "rename" in events
    assert events.index("dir-fsync", events.index("create")) < events.index("rename")
    assert "dir-fsync" in events[events.index("rename") :]


async def test_a_master_key_retired_before_the_rewrap_is_a_configuration_error_never_skipped(tmp_path: Path) -> None:
    """Data keys wrapped by a master key no longer configured raised ``UnknownKeyError`` naming the master key
    as the payload's key; a skip-mode subscription took that as the event's fault and passed over every
    event of every scope (checkpointing past them) until the key was configured again."""
    from eventsource.subscriptions import EventDecodeError

    store, key_store = sqlite_url(tmp_path), str(tmp_path / "keys.jsonl")
    old = await manager(store, encryption_scope="tenant", encryption_key_store=key_store)
    for i in range(3):
        await old.append_event(stream_id="s", event_type="E", data={"n": i}, tenant_id="t")
    k2 = base64.b64encode(bytes(range(50, 82))).decode()
    new = await manager(store, encryption_scope="tenant", encryption_key_store=key_store, encryption_keys={"k2": k2})
    with pytest.raises(ConfigurationError) as info:
        [e async for e in new.read_stream("s")]
    assert "k1" in str(info.value)
    assert info.value.details["field"] == "encryption_keys"
    async with new.subscribe(stream_id="s", on_decode_error="skip") as sub:
        with pytest.raises(EventDecodeError):
            await asyncio.wait_for(sub.next_batch(10), 30)
        assert sub.skipped == 0


@pytest.mark.parametrize("key_id", ["", "k" * 256, "\udc80", 7, None])
async def test_a_key_provider_giving_a_key_id_the_header_cannot_hold_is_refused(tmp_path: Path, key_id: Any) -> None:
    from eventsource.errors import KeyProviderError

    kms = Flaky()
    kms.key_id = key_id
    m = await manager(sqlite_url(tmp_path), key_provider=kms)
    with pytest.raises(KeyProviderError):
        await m.append_event(stream_id="s", event_type="E", data={"n": 1})
    with pytest.raises(StreamNotFoundError):
        await m.get_stream_info("s")


async def test_a_shred_elsewhere_is_seen_by_every_read_and_append_that_begins_after_it(tmp_path: Path) -> None:
    """The key file is checked once per call or page (not per payload): every kind of read that begins after
    another process's shred refuses the scope, and an append made between two events of a page being read
    (nothing held between them) gets a fresh key."""
    store, key_store = sqlite_url(tmp_path), str(tmp_path / "keys.jsonl")
    r = await manager(store, encryption_scope="stream", encryption_key_store=key_store)
    s = await manager(store, encryption_scope="stream", encryption_key_store=key_store)
    for sid in ("gone", "kept"):
        await r.append_events_batch(stream_id=sid, events=[{"event_type": "E", "data": {"n": n}} for n in range(3)])
    assert len([e async for e in r.read_all()]) == 6  # r holds both keys
    assert await s.shred(stream_id="gone") == 1
    with pytest.raises(KeyShreddedError):
        [e async for e in r.read_stream("gone")]
    with pytest.raises(KeyShreddedError):
        await r.get_events(stream_id="gone")
    with pytest.raises(KeyShreddedError):
        [e async for e in r.read_all()]
    seen = []
    with pytest.raises(KeyShreddedError):  # the append saw the shred: so does the rest of the page
        async for e in r.read_stream("kept", page_size=10):
            seen.append(e.data["n"])
            if len(seen) == 1:  # mid-page: another shred, then an append of this process to that scope
                assert await s.shred(stream_id="kept") == 1
                new = await r.append_event(stream_id="kept", event_type="E", data={"n": 9})
    assert seen == [0]
    assert (await s.get_event_by_id(new.event_id)).data == {"n": 9}  # sealed under a fresh key, not the shredded one


async def test_a_skipping_subscription_stopped_by_the_key_service_does_not_tell_to_skip(tmp_path: Path) -> None:
    """Review: a skip-mode subscription stopped by a key provider's failure said 'or subscribe with
    on_decode_error="skip"' (and ``eventsource follow --skip-undecodable`` said 'pass --skip-undecodable'): the
    way out it named was the one already taken, and does not pass such an event."""
    from eventsource.subscriptions import EventDecodeError

    kms = Flaky()
    m = await manager(sqlite_url(tmp_path), key_provider=kms)
    await m.append_event(stream_id="s", event_type="E", data={"n": 0})
    kms.error = ConnectionError("kms unreachable")
    for mode in ("skip", "raise"):
        async with m.subscribe(stream_id="s", on_decode_error=mode) as sub:  # type: ignore[arg-type]
            with pytest.raises(EventDecodeError) as info:
                await asyncio.wait_for(sub.next_batch(10), 30)
        assert 'on_decode_error="skip"' not in str(info.value), str(info.value)
        assert "KeyProviderError" in str(info.value) and "never skipped" in str(info.value)

"""Encryption and keys, an attacker's review: what a store edited by hand, an odd key id or a shred does to reads."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from conftest import OPENED
from eventsource.codecs.keys import StaticKeyRing
from eventsource.config import ManagerConfig
from eventsource.errors import ConfigurationError, DecryptionError
from eventsource.manager import SHREDDED_KEY, EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)
K1 = base64.b64encode(bytes(range(32))).decode()

pytestmark = pytest.mark.usefixtures("close_opened")


async def manager(db: Path, **kw: Any) -> EventSourcingManager:
    cfg = {"providers": {}, "default_provider": None, "encryption": True, "encryption_keys": {"k1": K1}, **kw}
    m = EventSourcingManager(cfg, host=HOST)
    await m.register_provider(f"sqlite:///{db}", name="m")
    OPENED.append(m)
    return m


def header_swapped(db: Path, victim: str, donor: str) -> None:
    """Give ``victim``'s stored data the key-id header of ``donor``'s (the ciphertext stays the victim's)."""
    with sqlite3.connect(db) as con:
        (mine,) = con.execute("SELECT data FROM es_events WHERE event_id = ?", (victim,)).fetchone()
        (theirs,) = con.execute("SELECT data FROM es_events WHERE event_id = ?", (donor,)).fetchone()
        forged = theirs[: 2 + theirs[1]] + mine[2 + mine[1] :]
        con.execute("UPDATE es_events SET data = ? WHERE event_id = ?", (forged, victim))
    con.close()


# ---------------------------------------------------------------------- a live event passed off as shredded


@pytest.mark.parametrize("mode", ["raise", "redact"])
@pytest.mark.parametrize(
    ("scope", "victim", "donor"),
    [("stream", ("s", None), ("t", None)), ("tenant", ("s", "ta"), ("t", "tb")), ("tenant", ("s", None), ("t", "tb"))],
)
async def test_a_live_event_naming_another_scopes_shredded_key_is_tampering_not_a_shred(
    tmp_path: Path, mode: str, scope: str, victim: tuple[str, str | None], donor: tuple[str, str | None]
) -> None:
    """A key id is read from the payload's header before anything is authenticated. An event whose header was
    edited in the store to name another stream's (tenant's) shredded key read as shredded: ``KeyShreddedError``
    naming the other scope, or with ``shredded_events="redact"`` ``data=None``, so a live event could be hidden
    from every reader and skipped by every subscription without a trace of tampering."""
    db = tmp_path / "events.db"
    m = await manager(
        db, encryption_scope=scope, encryption_key_store=str(tmp_path / "keys.jsonl"), shredded_events=mode
    )
    v = await m.append_event(stream_id=victim[0], event_type="E", data={"amount": 100}, tenant_id=victim[1])
    d = await m.append_event(stream_id=donor[0], event_type="E", data={"x": 1}, tenant_id=donor[1])
    shredded = f"stream:{donor[0]}" if scope == "stream" else f"tenant:{donor[1]}"
    assert await m.shred(scope=shredded) == 1
    header_swapped(db, v.event_id, d.event_id)
    with pytest.raises(DecryptionError) as info:
        await m.get_event_by_id(v.event_id)
    assert "100" not in str(info.value)
    with pytest.raises(DecryptionError):
        [e async for e in m.read_stream(victim[0])]
    if mode == "redact":  # the donor itself reads as shredded, as before
        assert (await m.get_event_by_id(d.event_id)).metadata == {SHREDDED_KEY: shredded}
    cfg = dataclasses.replace(m.config, providers={"m": {"url": f"sqlite:///{db}"}}, default_provider="m")
    with SyncEventSourcingManager(cfg, host=HOST) as sync, pytest.raises(DecryptionError):  # the sync API too
        sync.get_event_by_id(v.event_id)


# ---------------------------------------------------------------------- key ids that are not UTF-8 text


def test_a_key_id_with_a_lone_surrogate_is_a_configuration_error() -> None:
    """A key id is written into every ciphertext as UTF-8. One holding a lone surrogate (an environment variable
    name with a byte that is not UTF-8 reads as one: ``EVENTSOURCE_ENCRYPTION_KEYS__\\udcff``) escaped the checks
    as a bare ``UnicodeEncodeError`` from the ring, the configuration and ``add_key``, not a typed error."""
    bad = "k\udcff"
    with pytest.raises(ConfigurationError) as info:
        StaticKeyRing({bad: K1})
    with pytest.raises(ConfigurationError):
        ManagerConfig.from_env({"EVENTSOURCE_ENCRYPTION": "true", f"EVENTSOURCE_ENCRYPTION_KEYS__{bad}": K1})
    with pytest.raises(ConfigurationError):
        EventSourcingManager({"encryption": True, "encryption_keys": {bad: K1}}, host=HOST)
    ring = StaticKeyRing({"k1": K1})
    with pytest.raises(ConfigurationError):
        ring.add_key(bad, K1)
    assert ring.key_ids == ["k1"]
    for text in (str(info.value), repr(ring)):
        assert K1 not in text


# ---------------------------------------------------------------------- retention by a snapshot nobody can read


async def test_before_snapshot_retention_never_cuts_by_a_snapshot_that_cannot_be_read(tmp_path: Path) -> None:
    """``before_snapshot`` truncated a stream up to its latest snapshot without asking whether that snapshot could
    be read. A snapshot sealed with a tenant's key that was then shredded (the stream also held another tenant's
    events), or one whose bytes were damaged, made retention delete events that still read and that no readable
    snapshot covered: data lost for good."""
    db = tmp_path / "events.db"
    m = await manager(db, encryption_scope="tenant", encryption_key_store=str(tmp_path / "keys.jsonl"))
    await m.append_event(stream_id="s", event_type="E", data={"who": "b"}, tenant_id="tb")
    await m.append_event(stream_id="s", event_type="E", data={"who": "a"}, tenant_id="ta")
    await m.create_snapshot(stream_id="s", data={"state": "both"})  # sealed with ta's key (the event at version 2)
    await m.shred(tenant_id="ta")
    report = await m.apply_retention(["before_snapshot"])
    assert report.deleted() == 0
    assert (await m.get_event_by_id((await m.get_events_by_stream("s", limit=1)).events[0].event_id)).data == {
        "who": "b"
    }
    # a damaged snapshot (a flipped byte) covers nothing either
    await m.append_event(stream_id="t", event_type="E", data={"n": 1}, tenant_id="tb")
    await m.create_snapshot(stream_id="t", data={"n": 1})
    with sqlite3.connect(db) as con:
        (blob,) = con.execute("SELECT data FROM es_snapshots WHERE stream_id = 't'").fetchone()
        con.execute("UPDATE es_snapshots SET data = ? WHERE stream_id = 't'", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    con.close()
    assert (await m.apply_retention(["before_snapshot"])).deleted() == 0
    assert [e.data async for e in m.read_stream("t")] == [{"n": 1}]
    # a snapshot that reads still cuts as before
    await m.create_snapshot(stream_id="t", data={"n": 1})
    assert (await m.apply_retention(["before_snapshot"])).deleted() == 1


# ---------------------------------------------------------------------- a reader without the keys skips nothing


K2 = base64.b64encode(bytes(range(40, 72))).decode()


@pytest.mark.parametrize(
    "reader",
    [
        pytest.param({"encryption": False}, id="no-keys-configured"),
        pytest.param({"encryption_keys": {"k2": K2}}, id="ring-without-the-key"),
    ],
)
async def test_a_skipping_subscription_without_the_key_stops_rather_than_skip_every_event(
    tmp_path: Path, reader: dict[str, Any]
) -> None:
    """A projection worker deployed without the key (no keys at all, or a ring missing a rotated one) is the
    reader's configuration, not the events' fault: ``on_decode_error="skip"`` passed over every encrypted event
    and let its checkpoint move past them, so the projection silently lost them. Now it stops, saying why."""
    from eventsource.subscriptions import EventDecodeError

    db = tmp_path / "enc.db"
    writer = await manager(db)
    for i in range(3):
        await writer.append_event(stream_id="s", event_type="E", data={"n": i})
    cfg = {"providers": {}, "default_provider": None, "encryption": True, **reader}
    m = EventSourcingManager(cfg, host=HOST)
    await m.register_provider(f"sqlite:///{db}", name="m")
    OPENED.append(m)
    async with m.subscribe(stream_id="s", on_decode_error="skip") as sub:
        with pytest.raises(EventDecodeError) as info:
            await asyncio.wait_for(sub.next_batch(10), 30)
        assert sub.skipped == 0
        assert "never skipped" in str(info.value)
    async with m.subscribe(on_decode_error="skip") as sub:  # read_all alike
        with pytest.raises(EventDecodeError):
            await asyncio.wait_for(sub.next_batch(10), 30)
        assert sub.skipped == 0


@pytest.mark.parametrize("scope", ["global", "tenant", "stream"])
async def test_rows_moved_inside_the_sqlite_file_fail_authentication_and_the_rest_reads(
    scope: str, tmp_path: Path
) -> None:
    """An event row moved to another stream and a snapshot served as another stream's, by SQL on the file itself.

    The associated data binds the stream the reader asked for, not the one the row names: stream A's snapshot
    relabelled as stream B's (B's own deleted) fails, and so does A's event put at B's version 2.
    """
    db = tmp_path / "events.db"
    keyed = {} if scope == "global" else {"encryption_scope": scope, "encryption_key_store": str(tmp_path / "k")}
    m = await manager(db, compression="zlib", compression_threshold=0, **keyed)
    for sid in ("A", "B"):
        for i in range(2):
            await m.append_event(stream_id=sid, event_type="T", data={"i": i}, metadata={"m": i}, tenant_id=f"t{sid}")
        await m.create_snapshot(stream_id=sid, data={"of": sid})
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM es_snapshots WHERE stream_id = 'B'")
        con.execute("UPDATE es_snapshots SET stream_id = 'B' WHERE stream_id = 'A'")
        con.execute("DELETE FROM es_events WHERE stream_id = 'B' AND version = 2")
        con.execute("UPDATE es_events SET stream_id = 'B' WHERE stream_id = 'A' AND version = 2")
    with pytest.raises(DecryptionError):
        await m.get_snapshot("B")
    with pytest.raises(DecryptionError):
        [e async for e in m.read_stream("B")]
    assert [e.data async for e in m.read_stream("A")] == [{"i": 0}]

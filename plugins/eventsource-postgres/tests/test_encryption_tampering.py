"""Encryption on PostgreSQL: rows tampered with in the database fail with a typed error, never decrypt as
another event's or tenant's; a shred makes a tenant's events and snapshots unreadable, in a second
manager on the same key file too, while the rest of the store reads."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import DecryptionError, KeyShreddedError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import psycopg

HOST = PluginHost(load_entrypoints=False)
K1 = base64.b64encode(bytes(range(32))).decode()


async def tenant_manager(provider: Any, key_store: Path) -> EventSourcingManager:
    cfg = {
        "providers": {},
        "default_provider": None,
        "encryption": True,
        "encryption_keys": {"k1": K1},
        "encryption_scope": "tenant",
        "encryption_key_store": str(key_store),
        "compression": "zlib",
        "compression_threshold": 0,
    }
    m = EventSourcingManager(cfg, host=HOST)
    await m.register_provider(provider, name="pg")
    return m


async def test_tampered_rows_fail_and_a_shred_reaches_every_copy_the_store_keeps(
    make_provider: Callable[..., Any], admin: psycopg.AsyncConnection[Any], tmp_path: Path
) -> None:
    p = await make_provider()
    m = await tenant_manager(p, tmp_path / "keys.jsonl")
    other = await tenant_manager(await make_provider(schema=p.names.schema), tmp_path / "keys.jsonl")
    try:
        text = "x" * 200  # compressed before it is sealed
        a = await m.append_event(stream_id="a", event_type="E", data={"t": text}, metadata={"m": 1}, tenant_id="ta")
        b = await m.append_event(stream_id="b", event_type="E", data={"t": "b"}, metadata={"m": 2}, tenant_id="tb")
        await m.create_snapshot(stream_id="a", data={"snap": "a"})
        assert (await other.get_event_by_id(a.event_id)).data == {"t": text}  # other has ta's key now
        events, snapshots = p.names.events, p.names.snapshots

        async def tamper(sql: str, *args: Any) -> None:
            await admin.execute(sql, args)

        async def refused(event_id: str) -> None:
            with pytest.raises(DecryptionError):
                await m.get_event_by_id(event_id)

        async def payload(event_id: str) -> bytes:
            cur = await admin.execute(f"SELECT data FROM {events} WHERE event_id = %s", (event_id,))
            row = await cur.fetchone()
            assert row is not None
            return bytes(row[0])

        set_data = f"UPDATE {events} SET data = %s WHERE event_id = %s"
        a_data, b_data = await payload(a.event_id), await payload(b.event_id)
        await tamper(set_data, b_data, a.event_id)  # b's payload in a's row (and a's in b's)
        await tamper(set_data, a_data, b.event_id)
        await refused(a.event_id)
        await refused(b.event_id)
        await tamper(set_data, a_data, a.event_id)
        await tamper(set_data, b_data, b.event_id)
        flip = f"UPDATE {events} SET data = metadata, metadata = data WHERE event_id = %s"
        await tamper(flip, b.event_id)  # data and metadata of one event swapped
        await refused(b.event_id)
        await tamper(flip, b.event_id)
        await tamper(f"UPDATE {events} SET tenant_id = 'tb' WHERE event_id = %s", a.event_id)  # relabelled
        await refused(a.event_id)
        await tamper(f"UPDATE {events} SET tenant_id = 'ta' WHERE event_id = %s", a.event_id)
        snap = f"UPDATE {events} SET data = (SELECT data FROM {snapshots} WHERE stream_id = 'a') WHERE event_id = %s"
        await tamper(snap, a.event_id)  # a snapshot's payload as an event's
        await refused(a.event_id)
        await tamper(set_data, a_data, a.event_id)
        assert (await m.get_event_by_id(a.event_id)).data == {"t": text}
        assert (await m.get_event_by_id(b.event_id)).data == {"t": "b"}

        assert await m.shred(tenant_id="ta") == 1
        for manager in (m, other):  # other had the key cached
            with pytest.raises(KeyShreddedError):
                await manager.get_snapshot("a")
            with pytest.raises(KeyShreddedError):
                [e async for e in manager.read_stream("a")]
        assert sorted(s.stream_id for s in (await m.list_streams()).streams) == ["a", "b"]
        c = await other.append_event(stream_id="c", event_type="E", data={"t": "c"}, tenant_id="ta")
        assert (await m.get_event_by_id(c.event_id)).data == {"t": "c"}  # a fresh key, readable everywhere
    finally:
        await m.close()
        await other.close()

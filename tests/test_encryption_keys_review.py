"""Encryption and keys, found by an attacker-review: shreds seen by writers in other processes, key
providers that return bad keys or raise, and ciphertexts relabelled to another tenant in the store."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.codecs.keys import KeyProvider
from eventsource.errors import CodecError, ConfigurationError, DecryptionError, KeyShreddedError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)
K1 = base64.b64encode(bytes(range(32))).decode()

_OPEN: list[EventSourcingManager] = []


@pytest.fixture(autouse=True)
async def _close_managers() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


async def manager(store: str, key_provider: KeyProvider | None = None, **kw: Any) -> EventSourcingManager:
    cfg = {"providers": {}, "default_provider": None, "encryption": True, **kw}
    if key_provider is None:
        cfg.setdefault("encryption_keys", {"k1": K1})
    m = EventSourcingManager(cfg, host=HOST, key_provider=key_provider)
    await m.register_provider(store, name="m")
    _OPEN.append(m)
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

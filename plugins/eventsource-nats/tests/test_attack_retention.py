"""Attacks on what deletes data on NATS: a ``delete_stream`` that fails midway, then the id used again.

The failure is real: a server whose permissions refuse one of the delete's requests (the snapshot bucket's
purge) to the user the deleting provider connects as, as a lost connection or a kill would stop it there.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import dispose, new_event, open_provider, unique_store
from eventsource.errors import EventSourceError
from eventsource.model import ANY, NewSnapshot, utcnow
from eventsource.retention import BeforeSnapshotPolicy, RetentionContext
from eventsource_nats import records
from eventsource_nats.naming import Names, stream_token
from eventsource_nats.provider import NatsProvider
from servers import Node, Servers, free_port, nats_server_binary

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator


def _snapshot(sid: str, version: int) -> NewSnapshot:
    return NewSnapshot(str(uuid.uuid4()), sid, version, b'{"s": 1}', b"", "json", utcnow(), None, None, None)


@pytest.fixture
def store() -> dict[str, str]:
    return unique_store()


@pytest.fixture
def restricted(store: dict[str, str]) -> Iterator[Servers]:
    """A server with an ``admin`` user and a ``limited`` one that may not purge the store's snapshot bucket."""
    tmp = tempfile.TemporaryDirectory(prefix="es-nats-perm-")
    port = free_port()
    conf = Path(tmp.name) / "server.conf"
    conf.write_text(
        f"""listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{Path(tmp.name) / "js"}" }}
authorization {{
  users: [
    {{ user: admin, password: admin }}
    {{ user: limited, password: limited, permissions: {{
        publish: {{ allow: ">", deny: "$JS.API.STREAM.PURGE.KV_{store["stream"]}_snap" }}
        subscribe: ">" }} }}
  ]
}}
"""
    )
    node = Node("perm", port, [nats_server_binary(), "-c", str(conf)], Path(tmp.name) / "server.log")
    node.start()
    servers = Servers([node], tmp)
    try:
        yield servers
    finally:
        servers.stop()


def _url(servers: Servers, user: str) -> str:
    return f"nats://{user}:{user}@127.0.0.1:{servers.nodes[0].port}"


async def _call(_op: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()


async def test_a_delete_that_failed_midway_leaves_no_snapshot_to_a_stream_started_again(
    restricted: Servers, store: dict[str, str]
) -> None:
    admin = NatsProvider(_url(restricted, "admin"), **store)
    await admin.connect()
    limited = NatsProvider(_url(restricted, "limited"), **store, request_timeout=0.5)
    await limited.connect()
    try:
        sid = "acct-1"
        for _ in range(10):
            await admin.append(sid, [new_event()], ANY)
        await admin.save_snapshot(_snapshot(sid, 8))
        with pytest.raises(EventSourceError):
            await limited.delete_stream(sid)
        # the failed delete is not retried (or not yet); the id is written again
        await admin.append(sid, [new_event()], ANY)
        await admin.append(sid, [new_event()], ANY)
        info = await admin.get_stream_info(sid)
        assert info is not None
        snap = await admin.get_snapshot(sid)
        assert snap is None or snap.version <= info.version, (snap.version, info.version)
        versions = [e.version async for e in admin.read_stream(sid)]
        await BeforeSnapshotPolicy().apply(RetentionContext(admin, utcnow(), _call))
        after = [e.version async for e in admin.read_stream(sid)]
        assert after[-2:] == versions[-2:], "retention truncated the events written after the failed delete"
    finally:
        await limited.close()
        await admin.drop_store()
        await admin.close()


async def _stale_snapshot_put(p: NatsProvider, snap: NewSnapshot) -> None:
    """The put of a save that passed its check before a delete and re-create of the stream, landing after both.

    (JetStream has no transaction over the check and the put: the README names this window.)
    """
    conn = p._conn
    key = Names.snapshot_key(stream_token(snap.stream_id), snap.version)
    await conn.kv[conn.names.snapshot_bucket].put(key, records.encode_snapshot(snap))


@pytest.mark.parametrize("new_events", [2, 12])
async def test_before_snapshot_ignores_a_snapshot_of_an_earlier_incarnation(
    machine_nats_url: str, new_events: int
) -> None:
    p = await open_provider(machine_nats_url)
    try:
        sid = "acct-2"
        for _ in range(10):
            await p.append(sid, [new_event()], ANY)
        (at8,) = [e async for e in p.read_stream(sid, from_version=8, to_version=8)]
        old = NewSnapshot(str(uuid.uuid4()), sid, 8, b"{}", b"", "json", utcnow(), None, None, at8.position)
        await p.save_snapshot(old)
        await p.delete_stream(sid)
        for _ in range(new_events):
            await p.append(sid, [new_event()], ANY)
        await _stale_snapshot_put(p, old)
        await BeforeSnapshotPolicy().apply(RetentionContext(p, utcnow(), _call))
        versions = [e.version async for e in p.read_stream(sid)]
        assert versions == list(range(1, new_events + 1)), "no snapshot of this stream covers the events deleted"
    finally:
        await dispose(p)

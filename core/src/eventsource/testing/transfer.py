"""Helpers for transfer tests on any store: fill a store the way applications do, and read it back decoded.

:func:`populate` writes interleaved, encrypted and compressed events with every envelope field, snapshots,
stream attributes, an empty stream and a truncated one through a manager; :func:`decoded` reads a store
back through a manager with the same keys, so a test can show that copied ciphertext still decrypts.
"""

from __future__ import annotations

import base64
import textwrap
from typing import TYPE_CHECKING, Any

from eventsource.model import EventData

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider

KEY = base64.b64encode(bytes(range(32))).decode()

KILLED_COPY = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from eventsource.plugins import PluginHost
    from eventsource.transfer import copy_store

    src_url, dst_url, dst_settings, mapfile, mode, n = sys.argv[1:7]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    async def run():
        host = PluginHost()
        src, dst = host.create_provider(src_url), host.create_provider(dst_url, **json.loads(dst_settings))
        await src.connect(); await dst.connect()
        appends = 0
        append = dst.append
        async def counted(*args, **kwargs):
            nonlocal appends
            result = await append(*args, **kwargs)
            appends += 1
            if mode == "append" and appends >= int(n):
                die()  # after an append, before the window's positions reach the map
            return result
        dst.append = counted
        def progress(p):
            if mode == "progress" and p.events >= int(n):
                die()  # after a window and its positions are committed
        await copy_store(src, dst, position_map=mapfile, progress=progress, page_size=50, window=100)

    asyncio.run(run())
    """
)
"""A copy run as ``python -c KILLED_COPY SRC DST DST_SETTINGS_JSON MAP MODE N`` that SIGKILLs itself half-way.

``MODE`` ``progress``: once ``N`` events are written and mapped; ``append``: after the target's ``N``-th append,
while the window it belongs to is not yet in the position map.
"""


def manager_config(**kw: Any) -> dict[str, Any]:
    """A manager configuration with AES-GCM encryption and zlib compression of every payload."""
    return {
        "providers": {},
        "default_provider": None,
        "encryption": True,
        "encryption_keys": {"k1": KEY},
        "compression": "zlib",
        "compression_threshold": 0,
        **kw,
    }


async def manager_on(provider: Provider) -> EventSourcingManager:
    """A connected manager (encryption and compression on) over ``provider``."""
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    m = EventSourcingManager(manager_config(), host=PluginHost(load_entrypoints=False))
    await m.register_provider(provider, name="store", default=True)
    return m


async def populate(m: EventSourcingManager, *, streams: int = 50, events: int = 2000, prefix: str = "s") -> None:
    """Write ``events`` events over ``streams`` streams, interleaved in batches of 1..4, plus snapshots.

    Stream 0 is truncated below version 3 after the writes; one more stream (``<prefix>-empty``) holds no event.
    """
    ids = [f"{prefix}-{i:04d}" for i in range(streams)]
    for i, sid in enumerate(ids):
        if i % 2 == 0:
            await m.create_stream(
                stream_id=sid, name=f"name {i}", aggregate_id=f"agg-{i}", aggregate_type="Order", metadata={"i": i}
            )
    await m.create_stream(stream_id=f"{prefix}-empty", metadata={"empty": True})
    written = 0
    turn = 0
    while written < events:
        sid = ids[turn % streams]
        n = min(1 + turn % 4, events - written)
        batch = [
            EventData(
                event_type=f"T{(written + k) % 3}",
                data={"n": written + k, "text": "x" * ((written + k) % 50)},
                metadata={"who": "test", "k": k} if k % 2 == 0 else None,
                correlation_id=f"c-{turn}",
                causation_id=f"cause-{written + k}" if k else None,
                user_id="u1" if turn % 5 == 0 else None,
                tenant_id=f"t{turn % 3}",
                aggregate_id=f"agg-{turn % streams}",
                aggregate_type="Order",
            )
            for k in range(n)
        ]
        await m.append_events_batch(stream_id=sid, events=batch)
        written += n
        turn += 1
    for i, sid in enumerate(ids[: max(1, streams // 5)]):
        info = await m.get_stream_info(sid)
        if info.version >= 2:
            await m.create_snapshot(stream_id=sid, data={"snap": 1, "i": i}, version=1)
            await m.create_snapshot(stream_id=sid, data={"snap": 2, "i": i}, version=info.version)
    first = await m.get_stream_info(ids[0])
    if first.version >= 4:
        await m.get_default_provider().truncate_stream(ids[0], 3)


async def decoded(m: EventSourcingManager) -> list[tuple[Any, ...]]:
    """Every event of the store behind ``m``, decoded, as comparable tuples in (stream, version) order."""
    out: list[tuple[Any, ...]] = []
    p = m.get_default_provider()
    after: str | None = None
    while True:
        page, _ = await p.list_streams(limit=500, offset=0, after=after)
        for info in page:
            async for ev in m.read_stream(info.stream_id):
                out.append((ev.stream_id, ev.version, ev.event_id, ev.event_type, ev.data, ev.metadata, ev.timestamp))
            try:
                snap = await m.get_snapshot(info.stream_id)
            except LookupError:
                continue
            out.append((info.stream_id, "snapshot", snap.version, snap.data))
        if len(page) < 500:
            return out
        after = page[-1].stream_id

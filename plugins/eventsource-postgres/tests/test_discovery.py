"""The installed distribution is found through the eventsource entry-point group."""

from __future__ import annotations

import uuid
from importlib import metadata

import psycopg
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource_postgres import PostgresProvider


def test_plugin_is_discovered() -> None:
    eps = {ep.name: ep for ep in metadata.entry_points(group="eventsource")}
    assert eps["postgres"].value == "eventsource_postgres.plugin"
    host = PluginHost()
    assert host.providers.get("postgres") is PostgresProvider
    assert host.providers.kind_for_scheme("postgresql") == "postgres"
    assert host.providers.kind_for_scheme("postgres") == "postgres"
    [row] = [d for d in host.describe() if d["type"] == "provider" and d["name"] == "postgres"]
    assert row["distribution"] == "eventsource-postgres"
    assert row["schemes"] == ["postgres", "postgresql"]
    assert host.leases.for_url("postgresql://x/y").kind == "postgres"


async def test_a_manager_configured_by_url_uses_the_plugin(url: str) -> None:
    schema = f"es_{uuid.uuid4().hex[:12]}"
    m = EventSourcingManager({"providers": {"pg": {"url": url, "settings": {"schema": schema, "pool_max_size": 2}}}})
    try:
        await m.connect()
        res = await m.append_event(stream_id="order-1", event_type="Placed", data={"total": 5})
        got = [e async for e in m.read_stream("order-1")]
        assert [(e.event_id, e.data) for e in got] == [(res.event_id, {"total": 5})]
        [info] = m.get_provider_info()
        assert (info.kind, info.distribution) == ("postgres", "eventsource-postgres")
        assert info.capabilities["global_order"] == "total"
        assert info.capabilities["concurrency"] == "cross_process"
    finally:
        await m.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

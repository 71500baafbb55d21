"""Checkpoints and lag of PostgreSQL stores that share a database: each schema (or table prefix) is its own source."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from eventsource import EventData, EventSourcingManager
from eventsource.checkpoints.base import CheckpointNotFoundError
from eventsource.plugins import PluginHost
from eventsource.testing.identity import check_own_checkpoints
from eventsource_postgres.checkpoints import PostgresCheckpointStore


@pytest.fixture
def store(checkpoint_store: PostgresCheckpointStore) -> PostgresCheckpointStore:
    return checkpoint_store


@pytest.mark.parametrize("setting", ["schema", "table_prefix"])
async def test_two_stores_in_one_database_keep_their_own_checkpoints(
    make_provider: Callable[..., Any], store: PostgresCheckpointStore, setting: str
) -> None:
    if setting == "schema":
        a, b = await make_provider(), await make_provider()
    else:  # one schema, two table prefixes
        shared = (await make_provider()).names.schema
        a = await make_provider(schema=shared, table_prefix="a_")
        b = await make_provider(schema=shared, table_prefix="b_")
    await check_own_checkpoints(a, b, store, name="proj")
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(a, name="a", default=True)  # make_provider closes both
    await m.register_provider(b, name="b")
    # b has no checkpoint "proj" (it started from the beginning and saw its own event): it has no lag either
    with pytest.raises(CheckpointNotFoundError):
        await m.subscription_lag("proj", store, provider="b")
    assert (await m.subscription_lag("proj", store, provider="a")).events == 0


def test_the_default_schema_keeps_the_plain_url_as_its_source(url: str) -> None:
    from eventsource_postgres import PostgresProvider

    p = PostgresProvider(url)  # never connected: the identity is the settings'
    assert p.checkpoint_source == p.display_url  # checkpoints stored before schemas were told apart still resume
    assert PostgresProvider(url, schema="x").checkpoint_source == f"{p.display_url}#schema=x"


async def test_health_does_not_wait_on_a_running_transaction_to_measure_lag(
    url: str, make_provider: Callable[..., Any], tmp_path: Any
) -> None:
    from eventsource.checkpoints import Checkpoint, SqliteCheckpointStore

    schema = (await make_provider()).names.schema
    cps = f"sqlite:///{tmp_path}/cps.db"
    # read_all waits up to visibility_wait for a running transaction below the rows it found
    settings = {"schema": schema, "visibility_wait": 3600}
    m = EventSourcingManager({"providers": {"pg": {"url": url, "settings": settings}}, "checkpoint_store": cps})
    await m.connect()
    blocker = await psycopg.AsyncConnection.connect(url)  # autocommit off: the transaction stays open
    try:
        await blocker.execute("SELECT txid_current()")  # holds pg_snapshot_xmin below what is appended next
        await m.append_events_batch(stream_id="held-1", events=[EventData("Placed", {"n": 1})])
        store = SqliteCheckpointStore(cps)
        await store.put(Checkpoint("proj", m.get_provider().checkpoint_source, "all", 0))
        await store.close()
        health = (await asyncio.wait_for(m.health_check(), 60))["pg"]  # before: an hour, the visibility_wait
        lag = health.details["subscriptions"]["proj"]
        assert health.healthy and lag["seconds"] is None and lag["events"] is None, lag  # not measured, said so
        assert "running transaction" in lag["note"]
        stats = (await asyncio.wait_for(m.get_stats(), 60))["pg"]
        assert stats.extra["subscriptions"]["proj"]["events"] is None
    finally:
        await blocker.close()
        await m.close()


async def test_an_unreachable_checkpoint_store_says_why_without_the_password() -> None:
    from eventsource.errors import ProviderUnavailableError

    store = PostgresCheckpointStore("postgresql://postgres:s3cretpw@127.0.0.1:1/test")  # nothing listens on port 1
    with pytest.raises(ProviderUnavailableError) as err:
        await store.connect()
    text = str(err.value)
    assert "refused" in text.lower() and "s3cretpw" not in text, text  # said only "OperationalError" before


async def test_health_does_not_hang_on_a_checkpoint_store_that_never_answers(tmp_path: Any) -> None:
    """A server that accepts the connection and never says a word (a stalled proxy, a black-holed route)."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent_url = f"postgresql://postgres@127.0.0.1:{port}/test"
    cfg = {"providers": {"s": {"url": f"sqlite:///{tmp_path}/h.db"}}, "checkpoint_store": silent_url}
    m = EventSourcingManager(cfg)
    await m.connect()
    try:
        health = (await asyncio.wait_for(m.health_check(), 60))["s"]  # before: forever (libpq has no default timeout)
        assert health.healthy and "did not answer" in health.details["subscriptions_error"]
        stats = (await asyncio.wait_for(m.get_stats(), 60))["s"]
        assert "did not answer" in stats.extra["subscriptions_error"]
    finally:
        await m.close()
        for w in held:
            w.close()
        server.close()


def test_projections_does_not_wait_on_a_running_transaction(url: str, tmp_path: Any) -> None:
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from eventsource.checkpoints import Checkpoint, SqliteCheckpointStore
    from eventsource.sync import SyncEventSourcingManager

    schema = f"es_{uuid.uuid4().hex[:16]}"
    cps = f"sqlite:///{tmp_path}/cps.db"
    cfg = {"providers": {"pg": {"url": url, "settings": {"schema": schema, "visibility_wait": 3600}}},
           "checkpoint_store": cps}  # fmt: skip
    path = Path(tmp_path) / "es.json"
    path.write_text(json.dumps(cfg))
    es = SyncEventSourcingManager(cfg)
    es.connect()
    blocker = psycopg.connect(url)  # autocommit off: the transaction stays open
    try:
        blocker.execute("SELECT txid_current()")  # holds pg_snapshot_xmin below what is appended next
        es.append_events_batch(stream_id="held-1", events=[EventData("Placed", {"n": 1})])
        source = es.get_provider().checkpoint_source

        async def put() -> None:
            store = SqliteCheckpointStore(cps)
            await store.put(Checkpoint("proj", source, "all", 0))
            await store.close()

        asyncio.run(put())
        script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
        assert script is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTHON"))}
        done = subprocess.run(  # before: an hour (visibility_wait) per checkpoint
            [script, "--config", str(path), "--json", "projections"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        row = json.loads(done.stdout.splitlines()[0])
        assert row["name"] == "proj" and row["events"] is None and "running transaction" in row["note"], row
    finally:
        blocker.close()
        es.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("postgresql://app:s3cret@db.example:5432/shop", "postgresql://app:***@db.example:5432/shop"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        (
            "postgresql://app:pw@h1:5432,h2:5433/shop?target_session_attrs=read-write",
            "postgresql://app:***@h1:5432,h2:5433/shop?target_session_attrs=read-write",
        ),
    ],
)
def test_the_source_is_pinned_literally(url: str, source: str) -> None:
    # literal, not "== display_url": a change to the masking would change the source, and every checkpoint
    # stored under the old one would be orphaned (subscriptions restart from the beginning)
    from eventsource_postgres import PostgresProvider

    assert PostgresProvider(url).checkpoint_source == source
    assert PostgresProvider(url, schema="x").checkpoint_source == f"{source}#schema=x"


async def test_a_checkpoint_put_that_waits_out_a_lock_is_a_timeout_not_an_outage(url: str) -> None:
    """The store maps driver errors with the provider's one table: a lock timeout was "unavailable" before."""
    from eventsource.checkpoints import Checkpoint
    from eventsource.errors import ProviderTimeoutError

    schema = f"cp_{uuid.uuid4().hex[:16]}"
    sep = "&" if "?" in url else "?"
    store = PostgresCheckpointStore(f"{url}{sep}options=-c%20lock_timeout%3D200", schema=schema)
    holder = await psycopg.AsyncConnection.connect(url)  # autocommit off: the row lock is held until rollback
    try:
        await store.put(Checkpoint("proj", "src", "all", 1))
        await holder.execute(f'SELECT 1 FROM "{schema}".checkpoints WHERE name = %s FOR UPDATE', ("proj",))
        with pytest.raises(ProviderTimeoutError) as err:
            await store.put(Checkpoint("proj", "src", "all", 2))
        assert err.value.details["operation"] == "checkpoint"
        assert "lock" in str(err.value), err.value
    finally:
        await holder.rollback()
        await holder.close()
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize("target", ["postgresql://app:S3cr3t@db/events", "host=db password=S3cr3t dbname=events"])
def test_a_checkpoint_sink_shows_a_postgres_store_masked(target: str) -> None:
    from eventsource.projections import CheckpointStoreSink

    store = PostgresCheckpointStore(target)
    assert "S3cr3t" not in repr(CheckpointStoreSink(store)) + store.display_url
    assert store.display_url in repr(CheckpointStoreSink(store))

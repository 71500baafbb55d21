"""``create_store`` on PostgreSQL checkpoints, and ``eventsource projections`` creating no schema or table.

``PostgresCheckpointStore.connect()`` created its schema and table (and added ``anchor`` to an older table),
so ``eventsource projections`` on a database without checkpoints left a schema ``eventsource`` with an empty
``checkpoints`` table behind. With ``create_store`` off it creates and alters nothing and refuses a missing
schema or table with :class:`StoreNotFoundError`; the command then says there are no checkpoints.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from eventsource.cli import EXIT_OK, main
from eventsource.plugins import PluginHost
from eventsource.testing import AbsentCheckpoints, CheckpointStoreSetupSuite
from eventsource.testing.checkpoint_setup import old_checkpoints_read_as_they_are
from eventsource_postgres import PostgresProvider
from eventsource_postgres.checkpoints import PostgresCheckpointStore

HOST = PluginHost()


async def what_exists(url: str, schema: str) -> list[str]:
    """The schema and the tables in it, looked up in the catalogs."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        rows = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])).fetchall()
        tables = await (
            await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [schema])
        ).fetchall()
    return [f"schema {schema}"] * len(rows) + [f"table {t[0]}" for t in tables]


async def columns(url: str, schema: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = "
            "'checkpoints' ORDER BY ordinal_position",
            [schema],
        )
        return [r[0] for r in await cur.fetchall()]


async def admin(url: str, sql: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql.encode())


@pytest.fixture
async def cp_schema(url: str) -> AsyncIterator[str]:
    schema = f"cp_cs_{uuid.uuid4().hex[:12]}"
    yield schema
    await admin(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class TestPostgresMissingSchema(CheckpointStoreSetupSuite):
    @pytest.fixture
    async def absent_checkpoints(self, url: str, cp_schema: str) -> AsyncIterator[AbsentCheckpoints]:
        yield AbsentCheckpoints(
            lambda on: PostgresCheckpointStore(url, schema=cp_schema, create_store=on),
            lambda: what_exists(url, cp_schema),
        )


class TestPostgresSchemaWithoutTheTable(CheckpointStoreSetupSuite):
    """The schema is there (a provider's, say), the checkpoints table is not."""

    @pytest.fixture
    async def absent_checkpoints(self, url: str, cp_schema: str) -> AsyncIterator[AbsentCheckpoints]:
        await admin(url, f'CREATE SCHEMA "{cp_schema}"')

        async def leftovers() -> list[str]:
            return [x for x in await what_exists(url, cp_schema) if not x.startswith("schema")]

        yield AbsentCheckpoints(lambda on: PostgresCheckpointStore(url, schema=cp_schema, create_store=on), leftovers)


async def test_create_store_off_reads_an_old_table_as_it_is_and_refuses_to_write_it(url: str, cp_schema: str) -> None:
    await admin(url, f'CREATE SCHEMA "{cp_schema}"')
    await admin(
        url,
        f'CREATE TABLE "{cp_schema}".checkpoints (name text NOT NULL, source text NOT NULL, scope text NOT NULL, '
        "position bigint NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (name, source))",
    )
    await admin(url, f"INSERT INTO \"{cp_schema}\".checkpoints VALUES ('view', 'src', 'all', 4, now())")

    async def anchor_column() -> bool:
        return "anchor" in await columns(url, cp_schema)

    await old_checkpoints_read_as_they_are(
        lambda on: PostgresCheckpointStore(url, schema=cp_schema, create_store=on), anchor_column
    )


def test_host_passes_create_store_through(url: str) -> None:
    store = HOST.create_checkpoint_store(url, create_store=False, schema="cp_x")
    assert isinstance(store, PostgresCheckpointStore) and not store.create_store and store.schema == "cp_x"


@pytest.fixture
def scratch_db(url: str) -> Iterator[str]:
    """A database of this test alone: the CLI's checkpoints live in the default schema ``eventsource``."""
    name = f"es_cpro_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def test_projections_on_a_database_without_checkpoints_creates_no_schema(
    scratch_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    async def make_store() -> None:
        p = PostgresProvider(scratch_db, schema="es_store")
        await p.connect()
        await p.close()

    asyncio.run(make_store())
    before = asyncio.run(what_exists(scratch_db, "eventsource"))
    assert before == []
    cfg = tmp_path / "es.json"
    cfg.write_text(json.dumps({"providers": {"pg": {"url": scratch_db, "settings": {"schema": "es_store"}}}}))
    monkeypatch.chdir(tmp_path)
    for argv in (["projections"], ["--json", "projections"], ["projections", "--checkpoints", scratch_db]):
        assert main(["--config", str(cfg), *argv], host=HOST) == EXIT_OK
        out = capsys.readouterr()
        assert "no checkpoints in" in out.err and "does not exist" in out.err, out
        assert out.out == ""
        assert asyncio.run(what_exists(scratch_db, "eventsource")) == []
    for command in ("stats", "health"):  # a configured checkpoint_store: their lag report creates nothing either
        cfg.write_text(json.dumps({"providers": {"pg": {"url": scratch_db, "settings": {"schema": "es_store"}}},
                                   "checkpoint_store": scratch_db}))  # fmt: skip
        assert main(["--config", str(cfg), "--json", command], host=HOST) == EXIT_OK
        capsys.readouterr()
        assert asyncio.run(what_exists(scratch_db, "eventsource")) == []

"""``create_store``: a command that only reads never creates, migrates or completes a store on PostgreSQL.

``eventsource stats`` with a mistyped ``schema`` setting created a whole new schema with its tables in the
database (and reported an empty store); on an older schema it ran the migrations. With ``create_store`` off
(what every read-only command passes) the store is checked, never changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsource.cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main
from eventsource.errors import StoreNotFoundError
from eventsource.plugins import PluginHost
from eventsource_postgres import PostgresProvider
from eventsource_postgres.schema import LATEST, MIGRATIONS, Names

HOST = PluginHost()


@pytest.fixture
def schema(url: str) -> Iterator[str]:
    name = f"es_cs_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def db(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A raw autocommit connection (the CLI tests are not async: the command runs its own event loop)."""
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def schema_exists(db: psycopg.Connection[Any], schema: str) -> bool:
    return bool(db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()[0])  # type: ignore[index]


def older_store(db: psycopg.Connection[Any], n: Names, upto: int) -> None:
    """A store as a release that knew migrations 1..``upto`` made it (what ``migrate`` did then)."""
    db.execute(f"CREATE SCHEMA {n.quoted_schema}")
    db.execute(
        f"CREATE TABLE {n.migrations} (version integer PRIMARY KEY, description text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, description, build in MIGRATIONS[:upto]:
        db.execute(build(n).encode())
        db.execute(f"INSERT INTO {n.migrations} (version, description) VALUES (%s, %s)", [version, description])


def applied(db: psycopg.Connection[Any], n: Names) -> list[int]:
    return [r[0] for r in db.execute(f"SELECT version FROM {n.migrations} ORDER BY version").fetchall()]


def config(tmp_path: Path, url: str, **settings: Any) -> str:
    path = tmp_path / "es.json"
    path.write_text(json.dumps({"providers": {"pg": {"url": url, "settings": settings}}}), encoding="utf-8")
    return str(path)


READ_ONLY = {
    "stats": (["stats"], EXIT_NOT_FOUND),
    "read": (["read", "s"], EXIT_NOT_FOUND),
    "streams": (["streams"], EXIT_NOT_FOUND),
    "info": (["info", "s"], EXIT_NOT_FOUND),
    "snapshot --get": (["snapshot", "s", "--get"], EXIT_NOT_FOUND),
    "health": (["health"], EXIT_UNAVAILABLE),
    "export --from": (["export", "--from", "pg", "-o", "out.jsonl"], EXIT_USAGE),
    "retention": (["retention", "--policy", "max_count=1", "--yes"], EXIT_NOT_FOUND),
}


@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_read_only_command_on_a_mistyped_schema_creates_no_schema(  # noqa: PLR0917 - fixtures
    command: str,
    url: str,
    schema: str,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv, code = READ_ONLY[command]
    assert main(["--config", config(tmp_path, url, schema=schema), *argv], host=HOST) == code
    out = capsys.readouterr()
    assert f"schema {schema!r} does not exist" in out.out + out.err, out
    assert not schema_exists(db, schema)
    assert not (tmp_path / "out.jsonl").exists()


def test_follow_on_a_mistyped_schema_says_so_instead_of_waiting_on_a_new_store(
    url: str, schema: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """``follow`` created the schema and waited on the empty store for ever (a subprocess: it could hang)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_") or k.startswith("EVENTSOURCE_TEST_")}
    argv = [sys.executable, "-m", "eventsource.cli", "--config", config(tmp_path, url, schema=schema), "follow"]
    try:
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("follow waited on a store it had just created")
    assert done.returncode == EXIT_NOT_FOUND, done.stderr
    assert f"schema {schema!r} does not exist" in done.stderr
    assert not schema_exists(db, schema)


def test_a_read_only_command_does_not_migrate_an_older_store_and_a_write_does(
    url: str, schema: str, db: psycopg.Connection[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = Names(schema, "")
    older_store(db, n, LATEST - 1)
    cfg = config(tmp_path, url, schema=schema)
    assert main(["--config", cfg, "stats"], host=HOST) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "needs a migration" in err and f"at migration {LATEST - 1}" in err, err
    assert applied(db, n) == list(range(1, LATEST))
    assert main(["--config", cfg, "append", "s", "E", "{}"], host=HOST) == EXIT_OK  # a write migrates
    assert applied(db, n) == list(range(1, LATEST + 1))
    capsys.readouterr()
    assert main(["--config", cfg, "stats"], host=HOST) == EXIT_OK


async def test_create_store_off_refuses_an_older_store_naming_the_migrations_left(
    url: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    n = Names(schema, "")
    older_store(db, n, 2)
    p = PostgresProvider(url, schema=schema, create_store=False)
    with pytest.raises(StoreNotFoundError) as refused:
        await p.connect()
    await p.close()
    assert refused.value.details["outdated"] is True
    assert "migration 3" in refused.value.details["missing"], refused.value.details
    assert applied(db, n) == [1, 2]


async def test_create_store_off_with_live_notify_needs_the_trigger_and_installs_none(
    url: str, schema: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    created = PostgresProvider(url, schema=schema)
    await created.connect()
    await created.close()
    trigger = "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s)"
    p = PostgresProvider(url, schema=schema, create_store=False, live_notify=True)
    with pytest.raises(StoreNotFoundError, match="notify trigger"):
        await p.connect()
    await p.close()
    cur = await admin.execute(trigger, [Names(schema, "").events])
    assert (await cur.fetchone())[0] == 0  # type: ignore[index]
    installer = PostgresProvider(url, schema=schema, live_notify=True)
    await installer.connect()
    await installer.close()
    reader = PostgresProvider(url, schema=schema, create_store=False, live_notify=True)
    await reader.connect()  # the trigger is there now
    await reader.close()


async def test_a_schema_without_the_stores_tables_is_refused_naming_them(
    url: str, schema: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.execute(f'CREATE TABLE "{schema}".users (id int)')
    p = PostgresProvider(url, schema=schema, table_prefix="app_", create_store=False)
    with pytest.raises(StoreNotFoundError, match="holds no eventsource tables with table prefix 'app_'"):
        await p.connect()
    await p.close()
    cur = await admin.execute("SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace", [schema])
    assert [r[0] for r in await cur.fetchall()] == ["users"]

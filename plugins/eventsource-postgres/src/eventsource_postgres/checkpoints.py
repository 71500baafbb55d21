"""``postgresql://`` checkpoints: a table ``checkpoints`` in a schema (``eventsource`` unless told otherwise).

One dedicated autocommit connection per store, opened on first use and reopened after a drop; ``put``
checks and writes in one transaction under a row lock (``SELECT ... FOR UPDATE``, or the insert's unique
key), so two runners committing the same checkpoint never move it backwards. With ``create_store`` off the
store creates and alters nothing: a missing schema or table is refused
(:class:`~eventsource.errors.StoreNotFoundError`), and a table an older release made is read as it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eventsource.checkpoints import Checkpoint, CheckpointStore
from eventsource.checkpoints.base import check_name, event_id_of
from eventsource.create_store import store_not_found
from eventsource.errors import EventSourceError, StoreNotFoundError

from eventsource_postgres.errors import map_error
from eventsource_postgres.schema import locked_schema
from eventsource_postgres.settings import IDENTIFIER, check_target, mask_target, target_secrets

MAX_SCHEMA_LENGTH = 40


class PostgresCheckpointStore(CheckpointStore):
    """Checkpoints in ``"<schema>"."checkpoints"``; ``schema`` must match ``[a-z_][a-z0-9_]*``.

    ``create_store`` (default ``True``): whether ``connect()`` may create the schema and table (and add the
    ``anchor`` column to a table an older release made); off, it refuses a missing one instead.
    """

    kind = "postgres"

    def __init__(self, url: str, *, schema: str = "eventsource", create_store: bool = True) -> None:
        import re

        from eventsource.errors import ConfigurationError

        super().__init__(check_target(url, "checkpoint store"), create_store=create_store)
        if not re.match(IDENTIFIER, schema) or len(schema) > MAX_SCHEMA_LENGTH:
            msg = "checkpoint schema must be lower-case letters, digits and '_' (no digit first), at most 40 long"
            raise ConfigurationError(msg, field="schema")
        self.table = f'"{schema}"."checkpoints"'
        self.schema = schema
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._anchor = "anchor"
        """What reads select as the anchor: ``NULL`` on an older table read as it is (``create_store`` off)."""

    @property
    def display_url(self) -> str:
        """The URL or DSN with any password masked (safe to print or log)."""
        return mask_target(self.url)

    async def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            try:
                await (self._create(conn) if self.create_store else self._check(conn))
            except BaseException:
                await conn.close()  # kept only once the table is there: the next call tries again
                raise
            self._conn = conn
        return self._conn

    async def _check(self, conn: Any) -> None:
        """``create_store`` off: the table must be there; an older one (no ``anchor``) is read as it is."""
        cur = await conn.execute(
            "SELECT n.oid IS NOT NULL, c.oid IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute a WHERE "
            "a.attrelid = c.oid AND a.attname = 'anchor' AND NOT a.attisdropped) FROM (SELECT 1) one "
            "LEFT JOIN pg_namespace n ON n.nspname = %s LEFT JOIN pg_class c ON c.relnamespace = n.oid "
            "AND c.relname = 'checkpoints' AND c.relkind IN ('r', 'p')",
            [self.schema],
        )
        has_schema, has_table, has_anchor = await cur.fetchone()
        if not has_table:
            why = f"schema {self.schema!r} " + ("has no table checkpoints" if has_schema else "does not exist")
            missing = [f"table {self.table}"] if has_schema else [f"schema {self.schema}", f"table {self.table}"]
            raise self._missing(why, missing)
        self._anchor = "anchor" if has_anchor else "NULL"

    def _missing(self, why: str, missing: list[str], *, outdated: bool = False) -> StoreNotFoundError:
        return store_not_found(f"{self.display_url} (checkpoints)", why, missing=missing, outdated=outdated)

    async def _create(self, conn: Any) -> None:
        """Create the schema and table if missing; add ``anchor`` to a table an older release made."""
        # under the schema's lock (a provider's migration takes it too): "IF NOT EXISTS" races otherwise
        async with locked_schema(conn, self.schema):
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (name text NOT NULL, source text NOT NULL, "
                "scope text NOT NULL, position bigint NOT NULL, updated_at timestamptz NOT NULL, "
                "anchor text, PRIMARY KEY (name, source))"
            )
            # a table made before checkpoints carried their event's id (NULL: resumed unchecked); looked
            # up first: the ALTER would take the table's exclusive lock on every connect
            has = "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'anchor'"
            if await (await conn.execute(has, [self.table])).fetchone() is None:
                await conn.execute(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS anchor text")

    async def _run(self, fn: Any) -> Any:
        async with self._lock:
            try:
                return await fn(await self._connection())
            except EventSourceError:
                raise
            except Exception as e:
                # the provider's one table: the driver's first line says why (refused, unknown host, bad
                # password, lock timeout), secrets scrubbed; a lock or statement timeout is a timeout
                secrets = target_secrets(self.url)
                raise map_error(e, operation="checkpoint", where=self.display_url, secrets=secrets) from e

    async def connect(self) -> None:
        """Open the connection and create the table if it is missing."""
        await self._run(lambda _c: asyncio.sleep(0))

    async def close(self) -> None:
        """Close the connection. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def get(self, name: str, source: str) -> Checkpoint | None:
        """The stored checkpoint, or ``None``."""
        key = (check_name("name", name), check_name("source", source))

        async def run(c: Any) -> Checkpoint | None:
            cur = await c.execute(
                f"SELECT scope, position, updated_at, {self._anchor} FROM {self.table} "  # noqa: S608
                "WHERE name = %s AND source = %s",
                key,
            )
            row = await cur.fetchone()
            if row is None:
                return None
            return Checkpoint(name, source, row[0], int(row[1]), row[2], event_id_of(row[3], int(row[1])))

        result: Checkpoint | None = await self._run(run)
        return result

    async def put(self, checkpoint: Checkpoint, *, force: bool = False) -> Checkpoint:
        """Check and write in one transaction, holding the row's lock."""
        cp = self.checked(checkpoint)

        select = f"SELECT scope, position FROM {self.table} WHERE name = %s AND source = %s FOR UPDATE"  # noqa: S608
        key = (cp.name, cp.source)

        async def locked(c: Any) -> Checkpoint | None:
            row = await (await c.execute(select, key)).fetchone()
            return None if row is None else Checkpoint(cp.name, cp.source, row[0], int(row[1]))

        async def run(c: Any) -> Checkpoint:
            if self._anchor != "anchor":  # an older table, read as it is: the anchor has no column to go to
                why = f"{self.table} is as an older release made it, without its anchor column"
                raise self._missing(why, [f"column {self.table}.anchor"], outdated=True)
            async with c.transaction():
                old = await locked(c)
                self.check_move(old, cp, force=force)
                if old is None:
                    # FOR UPDATE locked nothing: a racing first put may insert meanwhile. Insert only if it
                    # did not; if it did, its row is committed now: lock it and check the move against it
                    cur = await c.execute(
                        f"INSERT INTO {self.table} (name, source, scope, position, updated_at, anchor) "  # noqa: S608
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name, source) DO NOTHING",
                        (*key, cp.scope, cp.position, cp.updated_at, cp.anchor),
                    )
                    if cur.rowcount == 1:
                        return cp
                    self.check_move(await locked(c), cp, force=force)
                await c.execute(
                    f"UPDATE {self.table} SET scope = %s, position = %s, updated_at = %s, anchor = %s "  # noqa: S608
                    "WHERE name = %s AND source = %s",
                    (cp.scope, cp.position, cp.updated_at, cp.anchor, *key),
                )
            return cp

        result: Checkpoint = await self._run(run)
        return result

    async def delete(self, name: str, source: str) -> bool:
        """Remove it; whether there was one."""
        key = (check_name("name", name), check_name("source", source))

        async def run(c: Any) -> bool:
            cur = await c.execute(f"DELETE FROM {self.table} WHERE name = %s AND source = %s", key)  # noqa: S608
            return bool(cur.rowcount)

        result: bool = await self._run(run)
        return result

    async def list(self, source: str | None = None) -> list[Checkpoint]:
        """Every checkpoint (of ``source`` only, when given), by name then source in code-point order.

        ``COLLATE "C"``, as the other stores (and stream ids here) order, whatever the database's collation.
        """
        where, args = ("WHERE source = %s", (check_name("source", source),)) if source is not None else ("", ())

        async def run(c: Any) -> list[Checkpoint]:
            cur = await c.execute(
                f"SELECT name, source, scope, position, updated_at, {self._anchor} FROM {self.table} {where} "  # noqa: S608
                'ORDER BY name COLLATE "C", source COLLATE "C"',
                args,
            )
            rows = await cur.fetchall()
            return [Checkpoint(r[0], r[1], r[2], int(r[3]), r[4], event_id_of(r[5], int(r[3]))) for r in rows]

        result: list[Checkpoint] = await self._run(run)
        return result

"""Tables, indexes and versioned migrations.

Every object lives in one PostgreSQL schema and carries the table prefix, so several applications
(or several stores of one application) can share a database. Migrations are numbered; the applied
ones are recorded in ``<prefix>migrations``. :func:`migrate` is idempotent and safe when several
processes start at once: it takes a transaction-level advisory lock keyed on the schema name, then
applies, in the same transaction, every migration newer than the recorded version. With ``create_store``
off, :func:`check_current` only reads: a store that is missing or behind is refused.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsource.create_store import store_not_found
from eventsource.errors import ConfigurationError

from eventsource_postgres.settings import lock_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from psycopg import AsyncConnection

POSITION_SHIFT = 20
"""A position is ``(transaction id << POSITION_SHIFT) + index of the event in its transaction``."""
MAX_EVENTS_PER_APPEND = 1 << POSITION_SHIFT


@dataclass(frozen=True, slots=True)
class Names:
    """Quoted, schema-qualified names of one store's objects.

    ``schema`` and ``prefix`` are validated by the settings schema (``[a-z_][a-z0-9_]*``) and quoted
    here as well, so they can never inject SQL.
    """

    schema: str
    prefix: str

    def _q(self, name: str) -> str:
        return f'"{self.schema}"."{self.prefix}{name}"'

    @property
    def quoted_schema(self) -> str:
        """The quoted schema name."""
        return f'"{self.schema}"'

    @property
    def events(self) -> str:
        """Events table."""
        return self._q("events")

    @property
    def streams(self) -> str:
        """Streams table."""
        return self._q("streams")

    @property
    def snapshots(self) -> str:
        """Snapshots table."""
        return self._q("snapshots")

    @property
    def migrations(self) -> str:
        """Applied-migrations table."""
        return self._q("migrations")

    def at(self, where: str) -> str:
        """The store as a message names it: ``where`` (the masked URL), then the schema and table prefix."""
        return f"{where} (schema {self.schema!r}" + (f", table prefix {self.prefix!r})" if self.prefix else ")")

    def index(self, name: str) -> str:
        """An unqualified, quoted index or constraint name."""
        return f'"{self.prefix}{name}"'


def _tables(n: Names) -> str:
    return f"""
CREATE TABLE {n.streams} (
    stream_id      text COLLATE "C" PRIMARY KEY,
    version        bigint NOT NULL,
    event_count    bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    name           text,
    aggregate_id   text,
    aggregate_type text,
    metadata       jsonb NOT NULL DEFAULT '{{}}',
    last_event_id  text,
    first_version  bigint
);
CREATE TABLE {n.events} (
    event_id       text COLLATE "C" NOT NULL,
    stream_id      text COLLATE "C" NOT NULL,
    event_type     text NOT NULL,
    version        bigint NOT NULL,
    position       bigint NOT NULL,
    data           bytea NOT NULL,
    metadata       bytea NOT NULL,
    encoding       text NOT NULL,
    ts             timestamptz NOT NULL,
    correlation_id text,
    causation_id   text,
    user_id        text,
    tenant_id      text,
    aggregate_id   text,
    aggregate_type text,
    CONSTRAINT {n.index("events_pkey")} PRIMARY KEY (position),
    CONSTRAINT {n.index("events_stream_version")} UNIQUE (stream_id, version),
    CONSTRAINT {n.index("events_event_id")} UNIQUE (event_id)
);
CREATE TABLE {n.snapshots} (
    snapshot_id    text NOT NULL,
    stream_id      text COLLATE "C" NOT NULL REFERENCES {n.streams} (stream_id) ON DELETE CASCADE,
    version        bigint NOT NULL,
    data           bytea NOT NULL,
    metadata       bytea NOT NULL,
    encoding       text NOT NULL,
    created_at     timestamptz NOT NULL,
    aggregate_id   text,
    aggregate_type text,
    position       bigint,
    PRIMARY KEY (stream_id, version)
);
"""


def _query_indexes(n: Names) -> str:
    return f"""
CREATE INDEX {n.index("events_ts")} ON {n.events} (ts);
CREATE INDEX {n.index("events_tenant")} ON {n.events} (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX {n.index("events_correlation")} ON {n.events} (correlation_id, position) WHERE correlation_id IS NOT NULL;
"""


def _scale_indexes(n: Names) -> str:
    # issue #17: every filter of a query finds its page by an index (type, aggregate id and type join the
    # time, tenant and correlation ones); partial indexes cost an append nothing when the field is NULL
    return f"""
CREATE INDEX {n.index("events_type")} ON {n.events} (event_type, position);
CREATE INDEX {n.index("events_aggregate")} ON {n.events} (aggregate_id, position) WHERE aggregate_id IS NOT NULL;
CREATE INDEX {n.index("events_aggregate_type")} ON {n.events} (aggregate_type, position)
    WHERE aggregate_type IS NOT NULL;
"""


def _exact_metadata(n: Names) -> str:
    # jsonb changes what it stores (1e20 comes back as the int 100000000000000000000, -0.0 as 0.0, keys sorted):
    # the metadata's JSON text goes beside it, as given, and is what is read. The jsonb column stays written, so a
    # process on an older release still reads (and writes) what it always did; a row it wrote has no text: its
    # jsonb is read.
    # jsonb is read.
    return f"ALTER TABLE {n.streams} ADD COLUMN IF NOT EXISTS metadata_text text;"


MIGRATIONS: tuple[tuple[int, str, Callable[[Names], str]], ...] = (
    (1, "streams, events and snapshots tables", _tables),
    (2, "indexes for time-range, tenant and correlation filters", _query_indexes),
    (3, "indexes for type and aggregate filters", _scale_indexes),
    (4, "stream metadata kept as its exact JSON text", _exact_metadata),
)
LATEST = MIGRATIONS[-1][0]


async def applied_version(conn: AsyncConnection[Any], n: Names) -> int | None:
    """The latest applied migration, or ``None`` when the store has never been created."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [n.migrations])
    row = await cur.fetchone()
    if not row or not row[0]:
        return None
    cur = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {n.migrations}")  # noqa: S608 - quoted identifiers
    row = await cur.fetchone()
    return int(row[0]) if row else 0


MIGRATE_LOCK = "eventsource-migrate"
"""The name of a schema's advisory lock (``lock_key(MIGRATE_LOCK, schema)``; core's ``PostgresSink`` computes the
same key, as it cannot import this plugin)."""


@asynccontextmanager
async def locked_schema(conn: AsyncConnection[Any], schema: str) -> AsyncIterator[None]:
    """A transaction holding ``schema``'s advisory lock, with the schema created if it was missing.

    Whatever creates objects in a schema does it in one (:func:`migrate`, the checkpoint table): two
    ``CREATE ... IF NOT EXISTS`` at once fail on the catalog's unique indexes. ``schema`` is a checked identifier.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(MIGRATE_LOCK, schema)])
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        yield


async def migrate(conn: AsyncConnection[Any], n: Names) -> list[int]:
    """Create or upgrade the store's objects; returns the migrations applied by this call.

    Safe to run from many processes at once: the work happens under an advisory lock per schema, and
    a process that waited on the lock re-reads the version and finds nothing left to do.
    """
    current = await applied_version(conn, n)
    if current is not None and current >= LATEST:
        _refuse_newer(current, n)
        return []
    applied: list[int] = []
    async with locked_schema(conn, n.schema):
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {n.migrations} ("
            "version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {n.migrations}")  # noqa: S608
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        _refuse_newer(current, n)
        for version, description, build in MIGRATIONS:
            if version <= current:
                continue
            await conn.execute(build(n).encode())
            await conn.execute(
                f"INSERT INTO {n.migrations} (version, description) VALUES (%s, %s)",  # noqa: S608
                [version, description],
            )
            applied.append(version)
    return applied


async def check_current(conn: AsyncConnection[Any], n: Names, where: str) -> None:
    """With ``create_store`` off: refuse a store that is missing or not at :data:`LATEST`; nothing is changed.

    ``where`` names the store (the masked URL) in the refusal.
    """
    current = await applied_version(conn, n)
    prefix = f" with table prefix {n.prefix!r}" if n.prefix else ""
    store = n.at(where)
    if current is None:
        cur = await conn.execute(
            "SELECT current_database(), EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", [n.schema]
        )
        row = await cur.fetchone()
        database, has_schema = (str(row[0]), bool(row[1])) if row else ("?", False)
        if not has_schema:
            why, missing = f"schema {n.schema!r} does not exist in database {database!r}", [f"schema {n.schema}"]
        else:
            why = f"schema {n.schema!r} of database {database!r} holds no eventsource tables{prefix}"
            missing = [f"{n.schema}.{n.prefix}{t}" for t in ("migrations", "streams", "events", "snapshots")]
        raise store_not_found(store, why, missing=missing)
    _refuse_newer(current, n)
    if current < LATEST:
        why = f"schema {n.schema!r}{prefix} is at migration {current}, this eventsource-postgres uses {LATEST}"
        later = [f"migration {v}: {d}" for v, d, _ in MIGRATIONS if v > current]
        raise store_not_found(store, why, missing=later, outdated=True)


def _refuse_newer(current: int, n: Names) -> None:
    if current > LATEST:
        msg = (
            f"schema {n.schema!r} (prefix {n.prefix!r}) is at migration {current}, newer than this "
            f"eventsource-postgres knows ({LATEST}); upgrade the package"
        )
        raise ConfigurationError(msg, field="schema")

"""``PostgresSink``: exactly-once projections into PostgreSQL through psycopg (installed with the postgres plugin).

A projection of coroutine handlers gets a ``psycopg.AsyncConnection``, one of plain handlers a
``psycopg.Connection`` (driven on a worker thread); either way each batch is one transaction that locks
the projection's row in ``"<schema>"."checkpoints"`` (the table of the postgres plugin's checkpoint store,
so ``PostgresCheckpointStore(url, schema=...)`` reads it), checks it, runs the handlers and writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
from typing import TYPE_CHECKING, Any

from eventsource.checkpoints.base import Checkpoint, event_id_of, now
from eventsource.errors import ConfigurationError
from eventsource.projections.projection import Projection, ProjectionError, SinkUnavailableError
from eventsource.projections.sinks import Sink, check_expected

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from eventsource.model import Event

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,39}\Z"  # (not "$": it matches before a final newline too)
XID = "SELECT txid_current()"
"""The batch transaction's id, when the checkpoint row's lock did not give it (see ``PostgresSink._upsert``)."""


def _checked_target(url: object) -> str:
    """``url`` if libpq takes it (a ``postgresql://`` URL or a DSN), else :class:`ConfigurationError` naming it.

    Checked when the sink is built: an empty one would connect wherever libpq's environment says, libpq's refusal
    surfaced at ``open()`` as a bare ``psycopg.ProgrammingError``, and a NUL ended the string libpq read, silently
    dropping what followed it (``sslmode=require``).
    """
    from eventsource.config import mask_url

    text = url if isinstance(url, str) else ""
    dsn = "://" not in text and "=" in text
    if not text.strip() or (not dsn and text.split("://", 1)[0].lower() not in ("postgresql", "postgres")):
        shown = mask_url(text)
        msg = f"the PostgreSQL sink's url must be a postgresql:// URL or a libpq DSN (host=... dbname=...): {shown!r}"
        raise ConfigurationError(msg, field="url")
    if "\x00" in text:
        msg = f"the PostgreSQL sink's url {mask_url(text)!r} holds a NUL character"
        raise ConfigurationError(msg, field="url")
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, timeout_from_conninfo

    try:
        timeout_from_conninfo(conninfo_to_dict(text))  # (what psycopg reads before connecting: connect_timeout)
    except ProgrammingError as e:
        raise _refused(text, e) from e
    return text


def _refused(text: str, error: Exception) -> ConfigurationError:
    """The error for the sink's url ``text`` that libpq (or psycopg) refused: the reason, secrets masked."""
    from eventsource.config import mask_url, url_secrets

    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    for secret in url_secrets(text):
        detail = detail.replace(secret, "***")
    msg = f"the PostgreSQL sink's url {mask_url(text)!r} is not one libpq accepts: {detail}"
    return ConfigurationError(msg, field="url")


def _bad_setting(error: Exception) -> bool:
    """Whether libpq refused a setting's value at connect (``sslmode=bogus``): the sink's url is wrong, never down."""
    from eventsource.config import libpq_refused_setting

    return not getattr(error, "sqlstate", None) and libpq_refused_setting(str(error)) is not None


class PostgresSink(Sink[Any]):
    """Exactly-once projections into the database at ``url`` (a libpq URL or conninfo string).

    :param schema: where the checkpoint table lives (the postgres checkpoint store's default: ``eventsource``).
    """

    exactly_once = True

    def __init__(self, url: str, *, schema: str = "eventsource") -> None:
        self.url = _checked_target(url)
        if not re.match(IDENTIFIER, schema):
            msg = f"schema must match {IDENTIFIER}"
            raise ConfigurationError(msg, field="schema")
        self.schema = schema
        self.table = f'"{schema}"."checkpoints"'
        self._async: Any = None
        self._sync: Any = None
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()  # the sync connection: held by the worker thread, even if cancelled

    def __repr__(self) -> str:
        return f"PostgresSink(schema={self.schema!r})"

    def _ddl(self) -> str:
        """The checkpoint table's DDL: one implicit transaction under the schema's advisory lock.

        The postgres plugin's migration and checkpoint store take it (``lock_key("eventsource-migrate", schema)``):
        ``IF NOT EXISTS`` races otherwise. Each step runs only when what it makes is missing: ``CREATE ... IF NOT
        EXISTS`` checks the right to create first, so a role with no such right could not use a table a DBA made.
        """
        key = f"eventsource-migrate\x00{self.schema}".encode()
        lock = int.from_bytes(hashlib.blake2b(key, digest_size=8, person=b"eventsrc").digest(), "big", signed=True)
        return (
            f"SELECT pg_advisory_xact_lock({lock}); DO $$ BEGIN "  # noqa: S608 - quoted, checked names
            f"IF to_regnamespace('{self.schema}') IS NULL THEN CREATE SCHEMA \"{self.schema}\"; END IF; "
            f"IF to_regclass('{self.table}') IS NULL THEN CREATE TABLE {self.table} ("
            "name text NOT NULL, source text NOT NULL, scope text NOT NULL, position bigint NOT NULL, "
            "updated_at timestamptz NOT NULL, anchor text, PRIMARY KEY (name, source)); END IF; "
            # a table an older release made gets the column (looked up first: the ALTER's lock is exclusive)
            "IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
            f"'{self.table}'::regclass AND attname = 'anchor') THEN "
            f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS anchor text; END IF; END $$"
        )

    async def _aconn(self) -> Any:
        import psycopg

        if self._async is None or self._async.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            except psycopg.OperationalError as e:
                if _bad_setting(e):
                    raise _refused(self.url, e) from None
                msg = f"cannot reach the PostgreSQL sink: {type(e).__name__}"
                raise SinkUnavailableError(msg, operation="projection") from e
            except psycopg.ProgrammingError as e:  # (the environment's PGCONNECT_TIMEOUT, say): nothing to wait out
                raise _refused(self.url, e) from None
            try:
                with _own():
                    await conn.execute(self._ddl())
            except BaseException:
                await conn.close()  # kept only once the table is there: the next call tries again
                raise
            self._async = conn
        return self._async

    def _sconn(self) -> Any:
        import psycopg

        if self._sync is None or self._sync.closed:
            try:
                conn = psycopg.Connection.connect(self.url, autocommit=True)
            except psycopg.OperationalError as e:
                if _bad_setting(e):
                    raise _refused(self.url, e) from None
                msg = f"cannot reach the PostgreSQL sink: {type(e).__name__}"
                raise SinkUnavailableError(msg, operation="projection") from e
            except psycopg.ProgrammingError as e:
                raise _refused(self.url, e) from None
            try:
                with _own():
                    conn.execute(self._ddl())
            except BaseException:
                conn.close()
                raise
            self._sync = conn
        return self._sync

    async def open(self) -> None:
        """Connect and create the checkpoint table if missing."""
        async with self._lock:
            await self._aconn()

    async def close(self) -> None:
        """Close both connections. Idempotent."""
        a, self._async = self._async, None
        s, self._sync = self._sync, None
        if a is not None:
            await a.close()
        if s is not None:
            await asyncio.to_thread(self._in_thread, s.close)

    def _in_thread(self, fn: Any) -> None:
        with self._thread_lock:
            fn()

    def _select(self) -> str:
        """The checkpoint row, locked, and the transaction's id (the checkpoint is written only in that one)."""
        return (
            f"SELECT scope, position, anchor, txid_current() FROM {self.table} "  # noqa: S608
            "WHERE name = %s AND source = %s FOR UPDATE"
        )

    def _placeholder(self) -> str:
        """A first batch's row, so ``FOR UPDATE`` has something to lock (rolled back with a failed batch)."""
        return f"INSERT INTO {self.table} VALUES (%s, %s, %s, -1, now()) ON CONFLICT DO NOTHING"  # noqa: S608

    def _upsert(self) -> str:
        """Write the checkpoint, only in the transaction :meth:`_select` ran in (its id is the last parameter).

        A handler that ended the batch's transaction and began another (``COMMIT; BEGIN``) writes nothing.
        """
        return (
            f"INSERT INTO {self.table} (name, source, scope, position, updated_at, anchor) "
            "SELECT %s::text, %s::text, %s::text, %s::bigint, %s::timestamptz, %s::text WHERE txid_current() = %s "
            "ON CONFLICT (name, source) DO UPDATE SET scope = excluded.scope, "
            "position = excluded.position, updated_at = excluded.updated_at, anchor = excluded.anchor"
        )

    async def position(self, name: str, source: str) -> Checkpoint | None:
        """The stored checkpoint."""
        async with self._lock:
            conn = await self._aconn()
            with _own():
                cur = await conn.execute(
                    f"SELECT scope, position, anchor FROM {self.table} WHERE name = %s AND source = %s",  # noqa: S608
                    (name, source),
                )
                row = await cur.fetchone()
        return _cp(Checkpoint(name, source, "all", 0), row)

    async def apply(
        self, projection: Projection[Any], events: Sequence[Event], checkpoint: Checkpoint, expected: int | None
    ) -> None:
        """One transaction: lock and check the checkpoint row, run the handlers, write the row, commit."""
        cp = checkpoint
        key = (cp.name, cp.source)
        values = (cp.name, cp.source, cp.scope, cp.position, now(), cp.anchor)
        if projection.is_sync:

            def run() -> None:
                conn = self._sconn()
                with _outage(conn), conn.transaction():
                    with _own():
                        if expected is None:
                            conn.execute(self._placeholder(), (*key, cp.scope))
                        row = conn.execute(self._select(), key).fetchone()
                        xid = row[3] if row else conn.execute(XID).fetchone()[0]  # (a reset deleted the row)
                    check_expected(_cp(cp, row), cp, expected)
                    try:
                        with _inside(conn, cp):
                            for event in events:
                                projection.handle_sync(event, conn)
                    except Exception as e:
                        if _usable(conn, e) and conn.execute(XID).fetchone()[0] != xid:
                            raise _ended(cp) from e  # it began a transaction of its own: not a retry
                        raise
                    with _own():
                        written = conn.execute(self._upsert(), (*values, xid)).rowcount
                    if written != 1:
                        raise _ended(cp)

            await asyncio.to_thread(self._in_thread, run)
            return
        async with self._lock:
            conn = await self._aconn()
            with _outage(conn):
                await self._apply_async(conn, projection, events, cp, expected)

    async def _apply_async(
        self, conn: Any, projection: Projection[Any], events: Sequence[Event], cp: Checkpoint, expected: int | None
    ) -> None:
        key = (cp.name, cp.source)
        values = (cp.name, cp.source, cp.scope, cp.position, now(), cp.anchor)
        async with conn.transaction():
            with _own():
                if expected is None:
                    await conn.execute(self._placeholder(), (*key, cp.scope))
                row = await (await conn.execute(self._select(), key)).fetchone()
                xid = row[3] if row else (await (await conn.execute(XID)).fetchone())[0]  # (a reset deleted the row)
            check_expected(_cp(cp, row), cp, expected)
            try:
                with _inside(conn, cp):
                    for event in events:
                        await projection.handle(event, conn)
            except Exception as e:
                if _usable(conn, e) and (await (await conn.execute(XID)).fetchone())[0] != xid:
                    raise _ended(cp) from e  # it began a transaction of its own: not a retry
                raise
            with _own():
                written = (await conn.execute(self._upsert(), (*values, xid))).rowcount
            if written != 1:
                raise _ended(cp)

    async def reset(self, projection: Projection[Any], name: str, source: str) -> None:
        """The reset hook and the checkpoint's deletion in one transaction.

        It first locks the checkpoint row as a batch does, so it waits for a batch in flight to commit
        and the hook's statements see (and remove) what that batch wrote.
        """
        delete = f"DELETE FROM {self.table} WHERE name = %s AND source = %s"  # noqa: S608
        key = (name, source)
        if projection.is_sync:

            def run() -> None:
                conn = self._sconn()
                with _outage(conn), conn.transaction():  # (a lost session: the sink's outage, as for a batch)
                    with _own():
                        conn.execute(self._placeholder(), (*key, "all"))  # waits for a first batch's row
                        conn.execute(self._select(), key)
                    projection.reset_sync(conn)
                    with _own():
                        conn.execute(delete, key)

            await asyncio.to_thread(self._in_thread, run)
            return
        async with self._lock:
            conn = await self._aconn()
            with _outage(conn):
                async with conn.transaction():
                    with _own():
                        await conn.execute(self._placeholder(), (*key, "all"))
                        await conn.execute(self._select(), key)
                    await projection.reset(conn)
                    with _own():
                        await conn.execute(delete, key)


@contextlib.contextmanager
def _inside(conn: Any, cp: Checkpoint) -> Iterator[None]:
    """The handlers' block: they must leave the sink's transaction open (a SQL ``COMMIT`` ends it unseen)."""
    from psycopg.pq import TransactionStatus

    try:
        yield
    except Exception as e:
        if conn.closed or conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            raise
        raise _ended(cp) from e
    if conn.info.transaction_status not in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        raise _ended(cp)  # (aborted: a handler caught a failed statement; the checkpoint's write fails as its error)


def _usable(conn: Any, error: Exception) -> bool:
    """Whether a handler's ``error`` left a transaction that can still run a statement (to ask which one it is)."""
    from psycopg.pq import TransactionStatus

    ok = not conn.closed and conn.info.transaction_status == TransactionStatus.INTRANS
    return ok and not isinstance(error, ProjectionError)


def _ended(cp: Checkpoint) -> ProjectionError:
    msg = "a projection handler committed or rolled back the sink's transaction itself; it must not"
    return ProjectionError(msg, name=cp.name)


@contextlib.contextmanager
def _own() -> Iterator[None]:
    """The sink's own statements: an operational error there is the sink's outage, not a handler's.

    A lock or statement timeout, a deadlock, a lost connection: never charged to the event (retried, parked).
    """
    import psycopg

    try:
        yield
    except psycopg.OperationalError as e:
        msg = f"the PostgreSQL sink's checkpoint statement failed: {type(e).__name__}: {e}"
        raise SinkUnavailableError(msg, operation="projection") from e


@contextlib.contextmanager
def _outage(conn: Any) -> Iterator[None]:
    """An error that leaves the connection closed (the session died, the server went away) is the sink's."""
    try:
        yield
    except Exception as e:
        if not conn.closed or isinstance(e, SinkUnavailableError):
            raise
        msg = f"the PostgreSQL sink's connection was lost: {type(e).__name__}: {e}"
        raise SinkUnavailableError(msg, operation="projection") from e


def _cp(cp: Checkpoint, row: Any) -> Checkpoint | None:
    """The row as a checkpoint; the placeholder row (-1) a first batch inserts counts as none.

    It is committed only when a handler ends the transaction itself.
    """
    if row is None or int(row[1]) < 0:
        return None
    return Checkpoint(cp.name, cp.source, row[0], int(row[1]), event_id=event_id_of(row[2], int(row[1])))

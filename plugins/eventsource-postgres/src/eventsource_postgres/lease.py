"""``PostgresAdvisoryLease``: a distributed per-key lease on PostgreSQL session advisory locks.

Each ``hold(key)`` takes a connection of its own from a small pool and, on it, the session-level
``pg_advisory_lock`` of a stable 64-bit BLAKE2b hash of ``(namespace, key)``, held as long as that
session: every process that uses the same server and namespace excludes the others. Running out of
time raises :class:`~eventsource.errors.ProviderTimeoutError`. While held, the session's socket is
watched: when the session ends the block is cancelled, and leaving it raises
:class:`~eventsource.errors.ProviderUnavailableError`. With ``ttl`` the server ends a held session that
goes silent (``idle_session_timeout``; a keepalive every ``ttl / 3``). The plugin README has the details.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    ConfigurationError,
    EventSourceError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from eventsource.lease import Lease

from eventsource_postgres.errors import map_error
from eventsource_postgres.settings import (
    PostgresLeaseSettingsSchema,
    check_target,
    lock_key,
    mask_target,
    pool_args,
    target_secrets,
    with_url_timeout,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool


class PostgresAdvisoryLease(Lease):
    """Exclusive leases on ``postgresql://`` servers.

    Settings: the provider's connection settings plus ``namespace`` and ``ttl``.
    """

    kind = "postgres"

    def __init__(self, url: str, **settings: Any) -> None:
        from marshmallow import ValidationError as MarshmallowValidationError

        check_target(url, "lease")
        try:
            loaded = dict(PostgresLeaseSettingsSchema().load(dict(settings)))
        except MarshmallowValidationError as e:
            fields = e.normalized_messages()  # type: ignore[no-untyped-call]
            first = next(iter(fields)) if isinstance(fields, dict) else "?"
            msg = f"invalid settings for lease 'postgres': {fields}"
            raise ConfigurationError(msg, field=first) from e
        super().__init__(url, **with_url_timeout(url, settings, loaded))
        self._ttl_asked = settings.get("ttl") is not None
        self.ttl: float | None = loaded["ttl"]
        """The held sessions' ``idle_session_timeout`` (``None``: none; also on a server without it)."""
        self._secrets = target_secrets(url)
        self._pool: AsyncConnectionPool[Any] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresAdvisoryLease({self.display_url!r}, namespace={self.settings['namespace']!r})"

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return mask_target(self.url)

    @property
    def capacity(self) -> int:
        """``pool_max_size``: each held lease keeps a connection of the pool for as long as it is held."""
        return int(self.settings["pool_max_size"])

    def key(self, key: str) -> int:
        """The advisory-lock key of ``key`` (stable across processes, machines and Python versions)."""
        return lock_key("lease", self.settings["namespace"], key)

    def _error(self, exc: BaseException, operation: str) -> EventSourceError:
        return map_error(exc, operation=operation, where=self.display_url, secrets=self._secrets)

    async def connect(self) -> None:
        """Open the pool of lease connections. Idempotent."""
        async with self._lock:
            if self._pool is not None:
                return
            from psycopg_pool import AsyncConnectionPool

            s = self.settings
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self.url, **pool_args(s, prepare_threshold=None), name="eventsource-postgres lease", open=False
            )
            try:
                await pool.open(wait=True, timeout=s["connect_timeout"])
                async with pool.connection(timeout=s["connect_timeout"]) as conn:
                    cur = await conn.execute("SELECT current_setting('idle_session_timeout', true)")
                    row = await cur.fetchone()
            except Exception as e:
                await pool.close()
                err = await self._connect_failure(e)
                if isinstance(err, ConfigurationError):  # a setting libpq refuses (sslmode=bogus): never retried
                    raise err from e
                raise ProviderUnavailableError(err.message, operation="lease connect") from e
            if self.ttl is not None and (row is None or row[0] is None):  # PostgreSQL 13
                if self._ttl_asked:
                    await pool.close()
                    msg = "the lease's ttl needs idle_session_timeout (PostgreSQL 14 or newer)"
                    raise ConfigurationError(msg, field="ttl")
                self.ttl = None
            self._pool = pool

    async def _connect_failure(self, exc: Exception) -> EventSourceError:
        """The pool only says it timed out; one direct attempt tells why (a setting libpq refuses, auth...)."""
        import psycopg
        import psycopg_pool

        if isinstance(exc, psycopg_pool.PoolTimeout):
            kwargs = pool_args(self.settings, prepare_threshold=None)["kwargs"]
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, **kwargs)
            except Exception as direct:  # noqa: BLE001 - any reason is reported
                exc = direct
            else:
                await conn.close()
        return self._error(exc, "lease connect")

    async def close(self) -> None:
        """Close every connection (the server drops any advisory lock they held). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def hold(self, key: str, *, timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109 - the Lease contract
        """Hold the lease on ``key`` for the ``async with`` block (acquiring and releasing: the plugin README)."""
        pool = self._pool
        if pool is None:
            msg = f"lease on {self.display_url} is not connected (call connect() first)"
            raise ProviderUnavailableError(msg)
        k = self.key(key)
        conn = await self._acquire(pool, key, k, timeout)
        owner = asyncio.current_task()
        lost: list[BaseException] = []
        watcher = asyncio.ensure_future(self._watch(conn, self.ttl, owner, lost))
        try:
            yield
        except asyncio.CancelledError:
            await asyncio.shield(self._end(pool, conn, k, watcher, lost))
            if lost and owner is not None and owner.uncancel() == 0:
                raise self._lost(key) from lost[0]
            raise
        except Exception as body_error:
            if await self._end(pool, conn, k, watcher, lost):
                raise self._lost(key) from body_error
            raise
        except BaseException:
            await asyncio.shield(self._end(pool, conn, k, watcher, lost))
            raise
        if await self._end(pool, conn, k, watcher, lost):
            raise self._lost(key)

    @staticmethod
    async def _watch(
        conn: AsyncConnection[Any], ttl: float | None, owner: asyncio.Task[Any] | None, lost: list[BaseException]
    ) -> None:
        """Wait on the held session's socket until cancelled; if the session ends, record it and cancel ``owner``.

        The server dropped the lock with the session: another process may hold it now. With ``ttl``, a query
        every ``ttl / 3`` keeps the session from idling out (shielded: a cancel never interrupts one); one not
        answered ``ttl - ttl / 6`` after the last answered one was sent counts as lost (the server may end the
        session at ``ttl``).
        """
        last = monotonic()  # (the lock was granted a moment ago)
        try:
            while True:
                wait = None if ttl is None else max(last + ttl / 3 - monotonic(), 0)
                async for _ in conn.notifies(timeout=wait):
                    pass
                sent = monotonic()
                ping = asyncio.ensure_future(conn.execute("SELECT 1"))
                ping.add_done_callback(lambda f: f.cancelled() or f.exception())
                assert ttl is not None  # (without it notifies() returns only by raising)
                async with asyncio.timeout(max(last + ttl - ttl / 6 - sent, 0)):
                    await asyncio.shield(ping)
                last = sent
        except asyncio.CancelledError:
            return
        except Exception as e:  # noqa: BLE001 - the session is gone, whatever the error
            lost.append(e)
            if owner is not None:
                owner.cancel()

    async def _end(
        self,
        pool: AsyncConnectionPool[Any],
        conn: AsyncConnection[Any],
        k: int,
        watcher: asyncio.Future[None],
        lost: list[BaseException],
    ) -> bool:
        """Stop watching, then release; whether the lock turned out to be lost.

        A session the watcher found lost is closed unasked (a statement on it could wait for as long as TCP does).
        """
        watcher.cancel()
        await asyncio.wait([watcher])  # (not awaited itself: a cancel of this task must not be taken for its own)
        if lost:
            await self._discard(pool, conn)
            return True
        return await self._release(pool, conn, k)

    def _lost(self, key: str) -> ProviderUnavailableError:
        msg = (
            f"the lease on {key!r} was lost while held (its connection to {self.display_url} dropped); "
            "another process may have held it at the same time"
        )
        return ProviderUnavailableError(msg, key=key, operation="lease")

    async def _acquire(self, pool: AsyncConnectionPool[Any], key: str, k: int, timeout: float) -> AsyncConnection[Any]:  # noqa: ASYNC109
        import psycopg_pool
        from psycopg.errors import LockNotAvailable

        from eventsource_postgres.connection import _stale

        deadline = monotonic() + timeout
        conn: AsyncConnection[Any] | None = None
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.getconn(timeout=max(timeout, 0.001))
                if _stale(conn):
                    await self._discard(pool, conn)
                    conn = None
                    await pool.check()
                    conn = await pool.getconn(timeout=max(deadline - monotonic(), 0.001))
                idle = f"{round(self.ttl * 1000)}" if self.ttl is not None else "0"
                cur = await conn.execute(  # (l is NULL on a standby: nothing is tried there)
                    "SELECT l, CASE WHEN l THEN set_config('idle_session_timeout', %s, false) END "
                    "FROM (SELECT CASE WHEN NOT pg_is_in_recovery() THEN pg_try_advisory_lock(%s) END) AS t (l)",
                    [idle, k],
                )
                row = await cur.fetchone()
                self._not_on_standby(key, row)
                if not (row and row[0]):
                    # the server gives up a little before the client does: a refused lock leaves the session
                    # as it was, so the connection goes back to the pool (cancelling it would close it)
                    left = deadline - monotonic()
                    left_ms = max(1, int((left - min(left / 4, 0.5)) * 1000))
                    await conn.execute(f"SET lock_timeout = {left_ms}")
                    await conn.execute("SELECT pg_advisory_lock(%s)", [k])
                    await conn.execute(
                        "SELECT set_config('lock_timeout', '0', false), set_config('idle_session_timeout', %s, false)",
                        [idle],
                    )
        except LockNotAvailable as e:  # not granted: the connection is reusable (each wait sets its lock_timeout)
            assert conn is not None
            await pool.putconn(conn)
            msg = f"could not acquire the lease on {key!r} within {timeout}s"
            raise ProviderTimeoutError(msg, key=key, operation="lease") from e
        except (TimeoutError, psycopg_pool.PoolTimeout) as e:
            msg = f"could not acquire the lease on {key!r} within {timeout}s"
            if conn is not None:
                await self._discard(pool, conn)
            else:  # never got to the lock: every connection was taken (each held lease keeps one)
                msg += (
                    f": none of the lease's {self.capacity} pool connections came free (each held lease keeps "
                    "one; pool_max_size bounds how many this lease object holds at once)"
                )
            raise ProviderTimeoutError(msg, key=key, operation="lease") from e
        except BaseException as e:
            if conn is not None:
                await asyncio.shield(self._discard(pool, conn))
            if isinstance(e, Exception):
                raise self._error(e, "lease") from e
            raise
        return conn

    def _not_on_standby(self, key: str, row: tuple[Any, ...] | None) -> None:
        """Refuse a hold whose first statement ran on a standby (``row[0]`` NULL).

        A standby's advisory locks are its own (never WAL-logged): they exclude nobody on the primary.
        """
        if row is not None and row[0] is None:
            msg = (
                f"could not acquire the lease on {key!r}: {self.display_url} reached a standby (in recovery), whose "
                "advisory locks exclude no process holding it on the primary; the lease's url must reach the "
                "primary (a multi-host url needs target_session_attrs=read-write)"
            )
            raise ProviderUnavailableError(msg, key=key, operation="lease")

    async def _discard(self, pool: AsyncConnectionPool[Any], conn: AsyncConnection[Any]) -> None:
        """Close ``conn`` (dropping any lock its session holds) and hand it back for replacement."""
        try:
            await conn.close()
        finally:
            await pool.putconn(conn)

    async def _release(self, pool: AsyncConnectionPool[Any], conn: AsyncConnection[Any], k: int) -> bool:
        """Unlock; returns ``True`` when the lock turned out to be lost (the connection had died)."""
        try:
            cur = await conn.execute(  # a pooled session idles out as the server's settings say, not after ttl
                "SELECT pg_advisory_unlock(%s), set_config('idle_session_timeout', "
                "(SELECT reset_val FROM pg_settings WHERE name = 'idle_session_timeout'), false)",
                [k],
            )
            row = await cur.fetchone()
            held = bool(row and row[0])
        except Exception:  # noqa: BLE001 - any failure here means the session (and its lock) is gone
            held = False
        if held:
            await pool.putconn(conn)
        else:
            await self._discard(pool, conn)
        return not held

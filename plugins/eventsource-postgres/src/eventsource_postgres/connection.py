"""The connection pool of one store and the call policy every operation runs under.

:class:`Connection` opens the psycopg ``AsyncConnectionPool`` (one direct attempt first, so a refused
or unauthorised server is reported with its reason), creates or migrates the schema, and runs each
operation on a pooled connection: a connection the server dropped while idle is swept before use, one
that dies under a read or an append is replaced and the call repeated, and every driver error becomes
a typed error through :func:`~eventsource_postgres.errors.map_error`.
"""

from __future__ import annotations

import asyncio
import logging
import select
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import ConfigurationError, EventSourceError, ProviderUnavailableError, ValidationError
from eventsource.inline import INTERRUPTS, SYNC_CALLER, SYNC_TIMEOUT, inline_io_allowed

from eventsource_postgres.errors import connection_lost, foreign_store, map_error, read_only, recovery_conflict
from eventsource_postgres.repair import broken, discard
from eventsource_postgres.schema import check_current, migrate
from eventsource_postgres.settings import lock_key, mask_target, pool_args, target_secrets

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from eventsource_postgres.inline import InlineConnection
    from eventsource_postgres.schema import Names

T = TypeVar("T")
log = logging.getLogger("eventsource.postgres")

LOCK_KEYS_KEPT = 4096
"""Stream lock keys remembered per store (the hash is recomputed for a stream past that many)."""

LOCK_KEY_ID_CHARS = 256
"""Longest stream id whose lock key is remembered (a longer one is hashed on each use: kept, 4096 ids of
up to 65,536 characters could hold a gigabyte)."""

RACE_ATTEMPTS = 3
"""Times a write that lost a race (an append, a deleting transaction the server aborted) is run in all."""

IDLE = 0
"""``psycopg.pq.TransactionStatus.IDLE`` (psycopg is imported on connect, not with the plugin): no transaction."""

KEEP_IDLE = 1.0
"""Seconds the connection an inline sync call used stays out of the pool, unused, for the next inline call."""

KEEP_AT_MOST = 30.0
"""Seconds a connection stays kept in all before it goes back through the pool (its checks, its lifetime)."""

IDENTITY = "SELECT system_identifier::text, current_database() FROM pg_control_system()"
"""Which cluster (kept by its standbys, also once promoted) and which database a connection reaches."""


def _stale(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection is known dead (or unusable) without a round trip.

    An idle connection has nothing to read unless the server said goodbye (terminated backend,
    restart, crash). One ``select`` with a zero timeout finds out. Its lock (psycopg's, taken by every
    statement) is free unless a Ctrl-C landed as a statement released it: held, every call would wait for it
    until its timeout, so the connection is dropped as a dead one is. So is one that is not idle on the server
    (a statement still running, a transaction open: a second Ctrl-C may cut short what puts either right).
    """
    if conn.closed or conn.broken or conn.lock.locked() or conn.pgconn.transaction_status != IDLE:
        return True
    try:
        fd = conn.fileno()
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


async def _in_task() -> None:
    """Go on as a task when run in a sync call's inline first step, which has none (``SyncLoop.call``).

    The pool's waits (a connection, its opening) use ``asyncio.wait_for``, which from Python 3.12 needs a
    task ("Timeout should be used inside a task"): one yield hands the rest of the call to its task.
    """
    if asyncio.current_task() is None:
        await asyncio.sleep(0)


def _inline_deadline() -> float | None:
    """For an inline sync caller: when the call must end (the manager's ``timeout`` from now), else ``None``.

    Its statements block the thread (``inline.py``), where the manager's own deadline cannot fire between
    them: each waits only for what is left of this one.
    """
    if not inline_io_allowed():
        return None
    limit = SYNC_TIMEOUT.get()
    return None if limit is None else monotonic() + limit


def _to_end(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in one step: its statements wait in this thread (``inline.py``), it never yields."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()  # (unreachable while the context is an inline caller's: its waits block)
    msg = "a statement of the sync API's lane waited for the event loop"
    raise RuntimeError(msg)


class Connection:
    """One store's pool, how every call runs on it, and the stream lock key (``url``: checked, never empty)."""

    def __init__(
        self, url: str, settings: dict[str, Any], names: Names, name: Callable[[], str], *, migrate: bool = True
    ) -> None:
        self.url = url
        self.migrate = migrate
        """Whether connecting creates or migrates the schema (or, with ``create_store`` off, checks it); not on a
        read pool, ``read_url``: there a conflict with recovery that cancels a read is retried, as a lost
        connection is."""
        self.settings = settings
        self.names = names
        self._name = name
        self._secrets = target_secrets(url)
        self.pool: AsyncConnectionPool[InlineConnection] | None = None
        self._connect_lock = asyncio.Lock()
        self._lock_keys: dict[str, int] = {}
        self.prepare: bool | None = None if settings["prepare_threshold"] is None else True
        """``True`` prepares each statement on first use; ``None`` when prepared statements are off."""
        self._interrupts = INTERRUPTS[0]
        """The sync API's count of interrupted inline calls when this store last checked its pool (``repair.py``)."""
        self._kept: InlineConnection | None = None
        """The connection the last inline sync call used, kept out of the pool for the next one (:meth:`_keep`)."""
        self._kept_pool: AsyncConnectionPool[InlineConnection] | None = None
        self._kept_at = 0.0
        self._spent: float | bool = False
        """Whether :meth:`now` lost its connection and declined: the :meth:`call` going on makes an attempt less,
        within the lane's deadline (when it had one: then this is that deadline)."""
        self.identity: tuple[str, str] | None = None
        """The cluster and database every connection must reach (a standby pool: the primary's), else ``None``.

        Checked once per connection, before its first call: a pool reconnects (after a standby went away, a
        DNS change, ``max_lifetime``) down a host list that may reach another cluster, whose rows it must not serve.
        """
        self.current_identity: Callable[[], Awaitable[tuple[str, str]]] | None = None
        """Reads :attr:`identity` again before a connection is refused (the primary itself may have moved)."""

    def _error(self, exc: BaseException, operation: str) -> EventSourceError:
        return map_error(exc, operation=operation, where=self.display_url, secrets=self._secrets)

    @property
    def display_url(self) -> str:
        """The URL or DSN with any password masked (safe to print or log)."""
        return mask_target(self.url)

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        await conn.execute("SET TimeZone TO 'UTC'")
        if self.settings["jit"] == "off":  # "server": leave the server's (or role's, database's) choice
            await conn.execute("SET jit = off")
        if self.settings["statement_timeout"] is not None:
            await conn.execute(f"SET statement_timeout = {int(self.settings['statement_timeout'] * 1000)}")

    async def connect(self) -> None:
        """Open the pool (waiting for ``pool_min_size`` connections) and create or migrate the schema.

        With ``create_store`` off the schema is only checked: a missing or older store is refused.
        """
        async with self._connect_lock:
            if self.pool is not None:
                return
            import psycopg

            s = self.settings
            kwargs = self._kwargs()
            # One direct attempt first: a refused, unresolvable or unauthorised server fails at once with
            # the real reason, instead of after the pool's whole open timeout.
            try:
                probe = await psycopg.AsyncConnection.connect(self.url, **kwargs)
            except Exception as e:
                raise await self._connect_failure(e, kwargs) from e
            await probe.close()
            pool = self._new_pool()
            self._interrupts = INTERRUPTS[0]
            try:
                await self._open(pool, s["connect_timeout"])
                if self.migrate:
                    async with pool.connection(timeout=s["connect_timeout"]) as conn:
                        if s["create_store"]:
                            await migrate(conn, self.names)
                        else:  # (only reads: a missing or older store is refused, as it is)
                            await check_current(conn, self.names, self.display_url)
            except EventSourceError:
                await pool.close()
                raise
            except Exception as e:
                await pool.close()
                raise await self._connect_failure(e, kwargs) from e
            self.pool = pool

    def _pool_args(self) -> dict[str, Any]:
        """The pool's sizes and timeouts, and what each pooled connection is opened with (``kwargs``)."""
        return pool_args(self.settings, prepare_threshold=self.settings["prepare_threshold"])

    def _kwargs(self) -> dict[str, Any]:
        """What each pooled connection is opened with."""
        kwargs: dict[str, Any] = self._pool_args()["kwargs"]
        return kwargs

    def _new_pool(self) -> AsyncConnectionPool[InlineConnection]:
        """The store's pool, not yet open."""
        from psycopg_pool import AsyncConnectionPool

        from eventsource_postgres.inline import InlineConnection

        return AsyncConnectionPool(
            self.url,
            connection_class=InlineConnection,  # waits in the caller's thread for an inline sync caller
            configure=self._configure,
            name=f"eventsource-postgres {self.names.schema}.{self.names.prefix}",
            open=False,
            **self._pool_args(),
        )

    async def _repair(self, deadline: float | None, operation: str) -> None:
        """After an interrupted inline call (a Ctrl-C, anywhere in it): a new pool if the old one is broken.

        The old one is dropped without waiting on it (``repair.py``). Opening the new one fails as the call
        (``operation``) would (within its deadline); the next call then tries again.
        """
        seen, pool = INTERRUPTS[0], self.pool
        if pool is not None and broken(pool, kept=self._kept if self._kept_pool is pool else None):
            await _in_task()  # (opening the new pool waits for it)
            log.warning("pool %r left broken by an interrupted call: replacing it", pool.name)
            kept = self._unkeep()
            if kept is not None:
                await kept.close()  # (its pool is let go of below: nothing goes back to it)
            new = self._new_pool()
            wait = self.settings["connect_timeout"] if deadline is None else max(0.0, deadline - monotonic())
            try:
                await self._open(new, wait)
            except BaseException as e:
                await discard(new)
                if isinstance(e, Exception) and not isinstance(e, EventSourceError):
                    raise self._error(e, operation) from e
                raise
            self.pool = new
            await discard(pool)
        self._interrupts = seen

    @staticmethod
    async def _open(pool: AsyncConnectionPool[Any], wait: float) -> None:
        """Open ``pool`` (waiting up to ``wait`` seconds), its tasks (workers, scheduler) unmarked as a sync caller's.

        They outlive this call: marked (``SYNC_CALLER``, a thread id) they would block, in ``inline.py``, any
        thread that later has that id (thread ids are reused), such as a loop thread serving subscriptions.
        """
        token = SYNC_CALLER.set(None)
        try:
            await pool.open(wait=True, timeout=wait)
        finally:
            SYNC_CALLER.reset(token)

    async def _connect_failure(self, exc: Exception, kwargs: dict[str, Any]) -> EventSourceError:
        """The pool only says it timed out; one direct attempt tells why (refused, auth, TLS...)."""
        import psycopg
        import psycopg_pool

        if isinstance(exc, psycopg_pool.PoolTimeout):
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, **kwargs)
            except Exception as direct:  # noqa: BLE001 - any reason is reported
                exc = direct
            else:
                await conn.close()
        err = self._error(exc, "connect")
        if isinstance(err, (ProviderUnavailableError, ConfigurationError)):  # (a setting libpq refuses: not retried)
            return err
        return ProviderUnavailableError(err.message, operation="connect")

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        pool, self.pool = self.pool, None
        kept = self._unkeep()
        if kept is not None and (pool is None or self._kept_pool is not pool):
            await self._give_back(kept)  # (to the pool it came from)
            kept = None
        if pool is not None:
            if self._interrupts != INTERRUPTS[0] and broken(pool, kept=kept):
                await discard(pool)  # (close() would wait for its lock or tasks, maybe for ever)
                if kept is not None:
                    await kept.close()
            else:
                if kept is not None:
                    await self._give_back(kept)
                await pool.close()

    def _unkeep(self) -> InlineConnection | None:
        """The kept connection, no longer kept, the lane's marks on it cleared (``None`` if none is kept).

        :meth:`now` clears them on its way out, but an interrupt there may have cut that short: left on, ``here``
        would make a call on the loop's own thread wait blocking, as the lane does, until a stale ``limit``.
        """
        conn, self._kept = self._kept, None
        if conn is not None:
            conn.here, conn.limit, conn.deadline = False, None, None
        return conn

    def _keep(self, pool: AsyncConnectionPool[InlineConnection], conn: InlineConnection) -> bool:
        """Keep ``conn`` out of the pool for the next inline sync call, if it is idle and nothing is kept yet.

        An inline sync caller's calls run one at a time in its thread, and between them nothing else runs on
        the loop: the pool's hand-over (its lock, its queue, its checks) is skipped for the next call. A kept
        connection goes back through the pool after :data:`KEEP_IDLE` unused, :data:`KEEP_AT_MOST` in all,
        before an async caller's call, when found stale, and on close (closed with a pool an interrupt left broken).
        None is kept while a task (of the same inline call: an async snapshot handler's) waits on the pool.
        """
        if self._kept is not None or pool is not self.pool or conn.closed or conn.broken:
            return False
        if pool._waiting:  # noqa: SLF001 - another task of the call waits for a connection: this one is its
            return False
        if conn.pgconn.transaction_status != IDLE:
            return False
        now = monotonic()
        if conn.kept_since is None:
            conn.kept_since = now
        self._kept_pool, self._kept_at, self._kept = pool, now, conn
        return True

    async def _take_kept(
        self, pool: AsyncConnectionPool[InlineConnection], deadline: float | None
    ) -> InlineConnection | None:
        """The kept connection, if it may serve this call (an inline one, within the limits), else ``None``.

        Past the pool's ``max_lifetime`` it goes back, and the pool closes it, as it does any connection past it.

        (Stale or not: a stale one is handled as one taken from the pool, see :meth:`_getconn`.)
        """
        conn = self._unkeep()
        if conn is None:
            return None
        now = monotonic()
        since = conn.kept_since if conn.kept_since is not None else now
        expire = getattr(conn, "_expire_at", None)  # (the pool's max_lifetime: it closes the connection past it)
        fresh = now - self._kept_at < KEEP_IDLE and now - since < KEEP_AT_MOST and (expire is None or now < expire)
        if deadline is not None and fresh and self._kept_pool is pool:
            return conn
        await self._give_back(conn)
        return None

    async def _give_back(self, conn: InlineConnection) -> None:
        """Return the kept ``conn`` to the pool it came from (closed with it, if that one is closed)."""
        conn.kept_since = None
        pool = self._kept_pool
        if pool is not None:
            await pool.putconn(conn)

    async def _check(self, pool: AsyncConnectionPool[Any], deadline: float | None) -> None:
        """Check the pool's idle connections, within an inline sync caller's ``deadline`` (the call's one)."""
        from eventsource_postgres.inline import CHECK_DEADLINE, StatementTimeoutError

        await _in_task()  # (a getconn after it may wait for the connections it replaces)
        token = CHECK_DEADLINE.set(deadline)
        try:
            await pool.check()
        finally:
            CHECK_DEADLINE.reset(token)
        if deadline is not None and monotonic() >= deadline:
            msg = "the call did not finish within the manager's timeout: it ran out checking the pool's connections"
            raise StatementTimeoutError(msg)

    async def _getconn(
        self, deadline: float | None = None
    ) -> tuple[AsyncConnectionPool[InlineConnection], InlineConnection]:
        """A pooled connection (and its pool), known not to have been dropped by the server while idle."""
        pool = self.pool
        if pool is None:
            msg = f"provider {self._name()!r} on {self.display_url} is not connected (call connect() first)"
            raise ProviderUnavailableError(msg)
        conn = await self._take_kept(pool, deadline) if self._kept is not None else None
        if conn is not None and not _stale(conn):
            return pool, conn
        if conn is None:
            if not pool._pool:  # noqa: SLF001 - no idle connection: the pool waits for one
                await _in_task()
            conn = await pool.getconn()
        if _stale(conn):
            # the server dropped it while idle (restart, terminated backend): the others are probably
            # gone too, so sweep the idle ones before taking a fresh connection
            conn.kept_since = None
            await conn.close()
            await pool.putconn(conn)
            await self._check(pool, deadline)
            conn = await pool.getconn()
        return pool, conn

    async def call(self, operation: str, fn: Callable[[InlineConnection], Awaitable[T]], *, retry: bool) -> T:
        """Run ``fn`` on a pooled connection, mapping errors.

        With ``retry`` (reads, and appends, which are idempotent by event id) a connection that dies
        under the call is replaced and the call repeated ``reconnect_retries`` times.
        """
        attempts = 1 + (self.settings["reconnect_retries"] if retry else 0)
        spent, self._spent = self._spent, False
        deadline = _inline_deadline()
        if self._interrupts != INTERRUPTS[0]:  # a sync call was interrupted since the last check
            spent = False  # (the lane's append it followed never got here)
            await self._repair(deadline, operation)
        if spent is not False and operation == "append" and attempts > 1:  # the lane's attempt (now()) lost its
            attempts -= 1  # connection: this call makes the rest, within the call's one deadline (the lane's)
            if isinstance(spent, float) and deadline is not None:
                deadline = min(deadline, spent)
        refused: Exception | None = None  # a read-only server's refusal, the reason a later wait for a connection ends
        for attempt in range(1, attempts + 1):
            try:
                pool, conn = await self._getconn(deadline)
                return await self._on(pool, conn, fn, deadline)
            except EventSourceError:
                raise
            except Exception as e:
                conflict = not self.migrate and recovery_conflict(e)
                refusal = await self._refused(e)
                refused = e if refusal else refused
                if attempt < attempts and (conflict or refusal or connection_lost(e)) and self.pool is not None:
                    try:
                        await self._check(self.pool, deadline)
                    except Exception as late:  # noqa: BLE001 - mapped as every error of the call is
                        raise self._error(late, operation) from e
                    continue
                raise self._failed(e, operation, conflict=conflict, refused=refused) from e
        msg = "unreachable"
        raise AssertionError(msg)

    async def _refused(self, e: Exception) -> bool:
        """Whether ``e`` is a read-only server's refusal of a write: then every pooled session (on it) is replaced.

        New ones walk the URL's hosts (``target_session_attrs=read-write``: to the new primary). (``drain``:
        psycopg-pool 3.3; an older pool replaces each as it fails, :meth:`_on`.)
        """
        if not (self.migrate and read_only(e)):
            return False
        if self.pool is not None and hasattr(self.pool, "drain"):
            await self.pool.drain()
        return True

    def _failed(self, e: Exception, operation: str, *, conflict: bool, refused: Exception | None) -> EventSourceError:
        """What :meth:`call` raises for ``e``, its last attempt's error (``refused``: a read-only server's, earlier)."""
        from psycopg_pool import PoolTimeout

        if conflict:  # retryable (the manager's policy), not a write conflict: nothing was written
            msg = (
                f"{operation} on {self.display_url}: the standby cancelled the read to replay a conflicting "
                "change (conflict with recovery, max_standby_streaming_delay); try again"
            )
            return ProviderUnavailableError(msg, operation=operation, sqlstate=getattr(e, "sqlstate", None))
        if refused is not None and isinstance(e, PoolTimeout):  # no server of the url takes writes:
            return self._error(refused, operation)  # that says more than the wait for a connection that never came
        return self._error(e, operation)

    async def _on(
        self,
        pool: AsyncConnectionPool[InlineConnection],
        conn: InlineConnection,
        fn: Callable[[InlineConnection], Awaitable[T]],
        deadline: float | None,
    ) -> T:
        """``fn(conn)``; then ``conn`` goes back to ``pool``, or is kept for the next inline call (:meth:`_keep`)."""
        kept = False
        try:
            if deadline is not None:
                conn.deadline = deadline
            if self.identity is not None and conn.reaches != self.identity:
                await self._check_identity(conn)
            try:
                result = await fn(conn)
            except Exception as e:
                if self.migrate and read_only(e):  # (the pool replaces it: a new one walks the url's hosts)
                    await conn.close()
                raise
            kept = deadline is not None and self._keep(pool, conn)
        finally:
            if deadline is not None:
                conn.deadline = None
            if not kept and self._kept is not conn:
                conn.kept_since = None
                await pool.putconn(conn)
        return result

    def now(
        self, operation: str, fn: Callable[[InlineConnection], Coroutine[Any, Any, T]], timeout: float | None
    ) -> T | None:
        """``fn`` run to its end right here on the connection kept for inline calls (the sync API's lane), or ``None``.

        ``None`` declines, having written nothing: no connection is kept fresh for this call (:meth:`_take_kept`'s
        limits), it is stale, an interrupted call left the pool to be checked, or the connection was lost under
        ``fn`` (and ``reconnect_retries`` allow another attempt: the call that goes on, :meth:`call`, counts this
        one as its first, makes the rest within this one's deadline, and finds the lost connection stale). ``fn``
        waits in this thread (``inline.py``), the whole call bounded by ``timeout``; its errors are mapped as
        :meth:`call` maps them. A connection that failed otherwise goes back through the pool at the next call.
        """
        self._spent = False
        pool, conn = self.pool, self._kept
        if pool is None or conn is None or self._kept_pool is not pool or self._interrupts != INTERRUPTS[0]:
            return None
        now = monotonic()
        since = conn.kept_since if conn.kept_since is not None else now
        expire = getattr(conn, "_expire_at", None)
        if now - self._kept_at >= KEEP_IDLE or now - since >= KEEP_AT_MOST or (expire is not None and now >= expire):
            return None
        if self.identity is not None or _stale(conn):
            return None
        fresh = False  # whether conn stays fresh for the next call; else that call hands it back to the pool first
        try:
            deadline = None if timeout is None else now + timeout
            conn.here, conn.limit, conn.deadline = True, timeout, deadline
            result = _to_end(fn(conn))
            fresh = conn.pgconn.transaction_status == IDLE
        except EventSourceError:
            raise
        except Exception as e:
            if (connection_lost(e) or (self.migrate and read_only(e))) and self.settings["reconnect_retries"]:
                conn.pgconn.finish()  # (lost: the call that goes on takes it, finds it closed and sweeps the pool)
                self._spent = True if deadline is None else deadline
                fresh = True
                return None
            raise self._error(e, operation) from e
        finally:
            conn.here, conn.deadline = False, None
            self._kept_at = monotonic() if fresh else -KEEP_AT_MOST
        return result

    async def _check_identity(self, conn: InlineConnection) -> None:
        """Refuse (and close) ``conn`` if it reaches another cluster or database than :attr:`identity`."""
        if conn.reaches is None:
            rows = await self.fetchall(conn, IDENTITY, ())
            conn.reaches = (str(rows[0][0]), str(rows[0][1]))
        if conn.reaches != self.identity and self.current_identity is not None:
            self.identity = await self.current_identity()  # (a primary moved to another cluster takes its standbys)
        mine = self.identity
        if mine is not None and conn.reaches != mine:
            theirs = conn.reaches
            await conn.close()  # (the pool discards it, and opens another)
            raise foreign_store(self.display_url, theirs, mine)

    async def fetchall(
        self,
        conn: AsyncConnection[Any],
        query: str,
        params: Sequence[Any],
        *,
        binary: bool = False,
        varied: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run a prepared query; ``binary`` results (event rows) skip parsing bytea and timestamps from text.

        ``varied``: the text holds a caller's value (a literal ``LIMIT``), so it is prepared only once it has
        run ``prepare_threshold`` times: a text run once never takes one of the session's prepared
        statements (psycopg keeps 100 and deallocates the least recently used).
        """
        cur = conn.cursor(binary=binary)
        await cur.execute(query, params, prepare=None if varied else self.prepare)
        return await cur.fetchall()

    def lock(self, stream_id: str) -> int:
        """The key of the stream's advisory lock (every write to the stream takes it, see the README)."""
        keys = self._lock_keys
        key = keys.get(stream_id)
        if key is None:
            try:
                key = lock_key("stream", self.names.schema, self.names.prefix, stream_id)
            except UnicodeEncodeError as e:
                msg = f"stream id {stream_id!r} is not valid Unicode text (lone surrogate)"
                raise ValidationError(msg, field="stream_id") from e
            if len(stream_id) <= LOCK_KEY_ID_CHARS:
                if len(keys) >= LOCK_KEYS_KEPT:
                    keys.clear()  # (a bound, not an LRU: the keys are cheap to recompute)
                keys[stream_id] = key
        return key

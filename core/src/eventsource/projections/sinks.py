"""Sinks: where a projection writes, and how its checkpoint commits with what the handlers wrote.

:class:`SqliteSink` gives each batch's handlers a ``sqlite3.Connection`` inside ``BEGIN IMMEDIATE`` and
writes the checkpoint to the file's ``es_checkpoints`` table (the table of
:class:`~eventsource.checkpoints.SqliteCheckpointStore`) in that same transaction: exactly once.
:class:`CheckpointStoreSink` calls handlers with ``None`` and stores the checkpoint afterwards in any
checkpoint store: at least once (deduplicate on ``event.event_id``).
The PostgreSQL sink is :class:`eventsource.projections.postgres.PostgresSink`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from eventsource.checkpoints.base import Checkpoint, CheckpointBehindError, CheckpointStore, now
from eventsource.checkpoints.sqlite import UPSERT, columns, create_table
from eventsource.checkpoints.sqlite import read as _read
from eventsource.errors import ConfigurationError, ValidationError
from eventsource.projections.projection import (
    CheckpointMovedError,
    Projection,
    ProjectionError,
    SinkUnavailableError,
    seconds,
)
from eventsource.sqlite.settings import path_from_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from eventsource.model import Event

Tx = TypeVar("Tx")
T = TypeVar("T")

BATCH = "eventsource_batch"
"""The savepoint a batch's transaction opens first: a handler that ends the transaction removes it."""
POLL = 0.002
"""Seconds between tries of a coroutine projection to take a sink connection another projection is using."""


class Sink(ABC, Generic[Tx]):
    """Applies batches of events through a projection's handlers and records its checkpoint."""

    exactly_once: ClassVar[bool] = False
    """Whether the checkpoint commits atomically with the handlers' writes."""

    async def open(self) -> None:
        """Connect and create the tracking table. Idempotent."""

    async def close(self) -> None:
        """Release connections. Idempotent."""

    @abstractmethod
    async def position(self, name: str, source: str) -> Checkpoint | None:
        """The stored checkpoint of ``name`` on ``source``, or ``None``."""

    @abstractmethod
    async def apply(
        self, projection: Projection[Tx], events: Sequence[Event], checkpoint: Checkpoint, expected: int | None
    ) -> None:
        """Run the handlers of ``events`` and store ``checkpoint``.

        :param expected: the stored position this runner last saw (``None``: no checkpoint yet); a different
            one raises :class:`CheckpointMovedError` and (exactly-once sinks) nothing is written.
        """

    @abstractmethod
    async def reset(self, projection: Projection[Tx], name: str, source: str) -> None:
        """Run the projection's reset hook and delete its checkpoint (one transaction where the sink has them)."""


class SqliteSink(Sink[sqlite3.Connection]):
    """Exactly-once projections into a SQLite file (``sqlite:///path.db`` or a path).

    Plain handlers run on a worker thread, coroutine handlers on the runner's event loop; either way one
    batch is one ``BEGIN IMMEDIATE`` transaction that ends by writing the checkpoint. A handler must not
    commit or roll back itself (that is detected, and the runner stops).
    """

    exactly_once = True

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        if not isinstance(url, str) or not url or url.endswith(("/", "\\")):  # "": SQLite's private temporary file
            msg = f"a SQLite sink needs a file: a sqlite:/// URL or a path to a file, not {url!r}"
            raise ConfigurationError(msg, field="url")
        self.path = path_from_url(url) if "://" in url or url.lower().startswith("sqlite:") else url
        if self.path == ":memory:":
            msg = "a SQLite sink needs a file (its checkpoint must outlive the process)"
            raise ConfigurationError(msg, field="url")
        self.timeout = seconds("timeout", timeout, zero=True)  # 0: give up at once on a busy file
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteSink({self.path!r})"

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        """Connect, switch to WAL and create the table, waiting out another process doing the same.

        Switching the journal mode takes an exclusive lock for which SQLite does not always call its busy
        handler ("database is locked" at once while another connection opens the same new file): retried
        until ``timeout``.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            db: sqlite3.Connection | None = None
            try:
                db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                create_table(db)
            except sqlite3.Error as e:
                if db is not None:
                    db.close()
                locked = isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
                if locked and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                msg = f"cannot open the SQLite sink {self.path!r}: {e}"
                raise SinkUnavailableError(msg, operation="projection") from e
            return db

    async def open(self) -> None:
        """Open the file and create ``es_checkpoints`` if missing."""
        await asyncio.to_thread(self._locked, self._conn)

    async def close(self) -> None:
        """Close the connection once no batch uses it (a cancelled run's worker thread may). Idempotent."""
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(self._locked, db.close)

    def _locked(self, fn: object) -> object:
        with self._lock:
            return fn()  # type: ignore[operator]

    async def position(self, name: str, source: str) -> Checkpoint | None:
        """The checkpoint row in ``es_checkpoints``."""

        def run() -> Checkpoint | None:
            return _read(self._conn(), name, source)

        out: Checkpoint | None = await asyncio.to_thread(self._locked, run)  # type: ignore[arg-type]
        return out

    async def apply(
        self,
        projection: Projection[sqlite3.Connection],
        events: Sequence[Event],
        checkpoint: Checkpoint,
        expected: int | None,
    ) -> None:
        """One transaction: check the checkpoint, run the handlers, write the checkpoint, commit."""
        if projection.is_sync:
            await asyncio.to_thread(self._locked, lambda: self._apply_sync(projection, events, checkpoint, expected))
            return

        async def body(db: sqlite3.Connection) -> None:  # coroutine handlers: on the loop
            try:
                for event in events:
                    await projection.handle(event, db)
            except BaseException as e:
                _rollback_after(db, checkpoint, e)
                raise
            _finish(db, checkpoint)

        await self._on_loop(body, checkpoint, expected)

    async def _on_loop(
        self,
        body: Callable[[sqlite3.Connection], Awaitable[None]],
        checkpoint: Checkpoint | None = None,
        expected: int | None = None,
    ) -> None:
        """``body`` on the loop, holding the connection, in a transaction begun (and checked) on a worker thread.

        ``BEGIN IMMEDIATE`` waits (up to ``timeout``) while another connection writes the file: on the loop, the
        whole loop would stand still meanwhile. ``body`` ends the transaction.
        """
        await self._acquire()
        release = True
        try:
            db = self._conn()
            begun = asyncio.get_running_loop().run_in_executor(None, _begin, db, checkpoint, expected)
            try:
                await asyncio.shield(begun)
            except asyncio.CancelledError:
                if begun.done():
                    _undo(db, begun)
                else:  # the thread still waits for the lock: undo what it began, then give the connection back
                    release = False
                    begun.add_done_callback(lambda f: self._undo_and_release(db, f))
                raise
            await body(db)
        finally:
            if release:
                self._lock.release()

    def _undo_and_release(self, db: sqlite3.Connection, begun: asyncio.Future[None]) -> None:
        try:
            _undo(db, begun)
        finally:
            self._lock.release()

    async def _acquire(self) -> None:
        """Take the connection's lock without blocking the loop.

        Another projection sharing this sink may hold it across its own handlers' awaits, which need the loop.
        """
        while not self._lock.acquire(blocking=False):  # noqa: ASYNC110 - worker threads release it: no loop event
            await asyncio.sleep(POLL)

    def _apply_sync(
        self,
        projection: Projection[sqlite3.Connection],
        events: Sequence[Event],
        checkpoint: Checkpoint,
        expected: int | None,
    ) -> None:
        db = self._conn()
        _begin(db, checkpoint, expected)
        try:
            for event in events:
                projection.handle_sync(event, db)
        except BaseException as e:
            _rollback_after(db, checkpoint, e)
            raise
        _finish(db, checkpoint)

    async def reset(self, projection: Projection[sqlite3.Connection], name: str, source: str) -> None:
        """The reset hook and the checkpoint's deletion in one transaction."""
        delete = "DELETE FROM es_checkpoints WHERE name = ? AND source = ?"
        if projection.is_sync:

            def run() -> None:
                db = self._conn()
                _begin(db, None, None)
                try:
                    projection.reset_sync(db)
                    db.execute(delete, (name, source))
                    _commit(db)
                except BaseException:
                    _rollback(db)
                    raise

            await asyncio.to_thread(self._locked, run)
            return

        async def body(db: sqlite3.Connection) -> None:
            try:
                await projection.reset(db)
                db.execute(delete, (name, source))
                _commit(db)
            except BaseException:
                _rollback(db)
                raise

        await self._on_loop(body)


def _undo(db: sqlite3.Connection, begun: asyncio.Future[None]) -> None:
    """Roll back a transaction begun for a batch that was cancelled (its error, if any, is the batch's)."""
    if not begun.cancelled():
        begun.exception()  # retrieved: the cancellation is what the caller gets
    _rollback(db)


def _begin(db: sqlite3.Connection, checkpoint: Checkpoint | None, expected: int | None) -> None:
    """``BEGIN IMMEDIATE`` (busy past the timeout: the sink's outage), then check ``checkpoint`` if given."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:  # busy past the timeout, or the file is gone: not the event's fault
        msg = f"the SQLite sink cannot start a transaction: {e}"
        raise SinkUnavailableError(msg, operation="projection") from e
    if checkpoint is None:
        return
    try:
        stored = _read(db, checkpoint.name, checkpoint.source)
        check_expected(stored, checkpoint, expected)
        db.execute(f"SAVEPOINT {BATCH}")  # gone if a handler ends the transaction, even if it begins another
    except BaseException:
        _rollback(db)
        raise


def check_expected(stored: Checkpoint | None, checkpoint: Checkpoint, expected: int | None) -> None:
    """Raise :class:`CheckpointMovedError` unless the stored checkpoint is where the runner left it."""
    at = None if stored is None else stored.position
    if at != expected or (stored is not None and stored.scope != checkpoint.scope):
        msg = (
            f"checkpoint {checkpoint.name!r} on {checkpoint.source!r} is at {at}, not {expected}: "
            "another runner moved it"
        )
        raise CheckpointMovedError(msg, name=checkpoint.name, position=at, expected=expected)


def _ours(db: sqlite3.Connection) -> bool:
    """Whether the batch's own transaction is still open (its savepoint, released here, is there)."""
    if not db.in_transaction:
        return False
    try:
        db.execute(f"RELEASE {BATCH}")
    except sqlite3.OperationalError:  # no such savepoint: a handler ended the batch's transaction, began another
        return False
    return True


def _ended(checkpoint: Checkpoint) -> ProjectionError:
    msg = "a projection handler committed or rolled back the sink's transaction itself; it must not"
    return ProjectionError(msg, name=checkpoint.name)


def _finish(db: sqlite3.Connection, checkpoint: Checkpoint) -> None:
    """Write the checkpoint in the batch's transaction and commit; roll back if that fails."""
    if not _ours(db):
        _rollback(db)
        raise _ended(checkpoint)
    try:
        db.execute(UPSERT, columns(checkpoint, now()))
        _commit(db)
    except BaseException:
        _rollback(db)
        raise


def _commit(db: sqlite3.Connection) -> None:
    try:
        db.execute("COMMIT")
    except sqlite3.OperationalError as e:
        msg = f"the SQLite sink cannot commit: {e}"
        raise SinkUnavailableError(msg, operation="projection") from e


def _rollback_after(db: sqlite3.Connection, checkpoint: Checkpoint, error: BaseException) -> None:
    """Roll a failed batch back; a handler that ended the transaction before failing is a misuse, not a retry."""
    if isinstance(error, Exception) and not isinstance(error, ProjectionError) and not _ours(db):
        _rollback(db)
        raise _ended(checkpoint) from error
    _rollback(db)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


class CheckpointStoreSink(Sink[None]):
    """At-least-once projections into anything: handlers get ``None``; the checkpoint goes to ``store`` after.

    A crash between a handler's write and the checkpoint replays the batch: handlers deduplicate on
    ``event.event_id``.
    """

    exactly_once = False

    def __init__(self, store: CheckpointStore) -> None:
        if not isinstance(store, CheckpointStore):
            msg = f"store must be a CheckpointStore, not {type(store).__name__}"
            raise ConfigurationError(msg, field="store")
        self.store = store

    def __repr__(self) -> str:
        return f"CheckpointStoreSink({self.store.display_url!r})"

    async def open(self) -> None:
        """Connect the checkpoint store."""
        await self.store.connect()

    async def close(self) -> None:
        """Close the checkpoint store."""
        await self.store.close()

    async def position(self, name: str, source: str) -> Checkpoint | None:
        """The store's checkpoint."""
        return await self._store(self.store.get(name, source), name)

    async def apply(
        self, projection: Projection[None], events: Sequence[Event], checkpoint: Checkpoint, expected: int | None
    ) -> None:
        """Handlers, then the checkpoint (refused, not moved back, if another runner got further).

        The store failing is the sink's outage (:class:`SinkUnavailableError`), never the handlers' error.
        """
        stored = await self._store(self.store.get(checkpoint.name, checkpoint.source), checkpoint.name)
        check_expected(stored, checkpoint, expected)
        for event in events:
            await projection.handle(event, None)
        await self._store(self.store.put(checkpoint), checkpoint.name)

    @staticmethod
    async def _store(call: Awaitable[T], name: str) -> T:
        try:
            return await call
        except CheckpointBehindError as e:  # a runner that got further stored it between the check and the put
            raise CheckpointMovedError(str(e), name=name) from e
        except ValidationError as e:  # a checkpoint the store cannot hold: no retry or park would help
            msg = f"the checkpoint store refused the checkpoint: {e}"
            raise ProjectionError(msg, name=name) from e
        except Exception as e:
            msg = f"the checkpoint store failed: {type(e).__name__}: {e}"
            raise SinkUnavailableError(msg, operation="projection") from e

    async def reset(self, projection: Projection[None], name: str, source: str) -> None:
        """The checkpoint's deletion, then the reset hook.

        In that order a crash between them replays what the hook left (handlers deduplicate); the other way
        round it left an emptied read model behind a checkpoint that never replays what it emptied.
        """
        await self.store.delete(name, source)
        await projection.reset(None)

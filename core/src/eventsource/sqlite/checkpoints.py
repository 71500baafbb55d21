"""WAL checkpoints on a thread and a connection of their own, so no append waits while the bulk of the WAL is copied.

SQLite checkpoints in the commit that passes ``wal_autocheckpoint`` pages, holding the write lock while it copies
the WAL into the file and syncs it: the append behind it waits that long (retention's deletes, which dirty pages
all over the indexes, made it happen every few batches). The provider moves that up to a backstop on its writer
connection (:data:`WAL_BACKSTOP_PAGES`) and pokes a :class:`Checkpointer` instead; its thread runs
``PRAGMA wal_checkpoint(PASSIVE)``, which takes no write lock, so writers commit while it copies.
A poke while a checkpoint runs is dropped, so the thread does not hold the checkpoint lock when the writer's
backstop runs. The append after a finished checkpoint copies the rest itself (:func:`finish_then`), so its write
restarts the WAL even under back-to-back commits. A failure is logged and
kept for ``health()`` (degraded until a checkpoint works again); the connection is reopened and a later poke retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import ProviderUnavailableError
from eventsource.model import utcnow
from eventsource.sqlite.connection import open_connection

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T = TypeVar("T")

CHECKPOINT_EVERY = 128
"""One-event commits' worth of appends (:func:`append_weight`), or events deleted by retention, between two
pokes: about 650 WAL pages, under SQLite's 1,000."""


PAYLOAD_BYTES_PER_WEIGHT = 5 * 4096
"""Payload bytes that count as one more unit of :func:`append_weight`: the 5 pages a one-event commit writes."""


def append_weight(n: int, payload_bytes: int = 0) -> int:
    """What a commit of ``n`` appended events counts toward :data:`CHECKPOINT_EVERY` (one-event commits' worth of WAL).

    A one-event commit writes about 5 WAL pages (the table and four index leaves); each further event of the
    same commit adds about 1.4 (a batch of 100 wrote 17-28 pages into a fresh file, about 140 into a file of
    50,000 events). Counted as 100, such a batch poked the checkpointer every commit or two, two syncs each,
    while the WAL held a fraction of the pages the threshold stands for. Payloads add the pages they fill
    (``payload_bytes`` / :data:`PAYLOAD_BYTES_PER_WEIGHT`): counted by events alone, a batch of 50 KB payloads
    wrote thousands of pages before a poke, and the writer's backstop checkpointed inside its commits.
    """
    return 1 + (n - 1) * 2 // 7 + payload_bytes // PAYLOAD_BYTES_PER_WEIGHT


WAL_BACKSTOP_PAGES = 4000
"""The writer's own ``wal_autocheckpoint``: far above where the thread keeps the WAL, so no commit checkpoints while
it works; should it lag, fail or never be poked (a write path that does not), the WAL still stays bounded."""

log = logging.getLogger("eventsource.sqlite")


def _identity(path: str) -> tuple[int, int] | None:
    """The device and inode of the file at ``path`` (``None`` if there is none)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


_CHECKPOINTERS: weakref.WeakSet[Checkpointer] = weakref.WeakSet()


def _forked() -> None:
    """In a forked child: the thread stayed in the parent; its connection is dropped unused (see the worker)."""
    for c in list(_CHECKPOINTERS):
        c.forked = True
        c.db = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Checkpointer:
    """One daemon thread that checkpoints ``path`` when poked; started by the first poke."""

    def __init__(self, path: str, settings: Mapping[str, Any]) -> None:
        self.path = str(Path(path).absolute())  # (a later chdir does not move it)
        self.file = _identity(self.path)  # the file the provider opened (made when it connected)
        self.settings = settings
        self.db: sqlite3.Connection | None = None
        self.forked = False
        self.done = 0  # checkpoints run (for tests and diagnostics)
        self.error: BaseException | None = None  # the failure since the last checkpoint that worked, if any
        self.failures = 0  # checkpoints that failed, in all
        self.failed_at: str | None = None  # when the last one failed (ISO 8601, UTC)
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False  # a checkpoint is in progress: a poke now is dropped (see poke)
        self.copied = False  # a checkpoint finished since the writer last finished one (see finish_then)
        _CHECKPOINTERS.add(self)

    def poke(self) -> None:
        """Ask for a checkpoint soon (returns at once; thread-safe); dropped while one runs (see the module)."""
        if self.forked or self._stopping or self._running:
            return
        if self._thread is None or not self._thread.is_alive():
            with self._lock:  # (a thread that ended without being stopped is started again)
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="eventsource-sqlite-c", daemon=True)
                    self._thread.start()
        self._wake.set()

    def busy(self) -> bool:
        """Whether a checkpoint is asked for or running (the benchmark harness charges it to the commits that asked)."""
        return self._wake.is_set() or self._running

    def stop(self) -> None:
        """End the thread after the checkpoint in progress and close its connection (does not wait). Idempotent."""
        self._stopping = True
        self._wake.set()

    def join(self) -> None:
        """Wait for the thread to end (after :meth:`stop`); at once if it never started."""
        thread = self._thread
        if thread is not None and not self.forked:
            thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._running = True  # before the poke is cleared: busy() is never False while one is on its way
            self._wake.clear()
            if self._stopping:
                self._running = False
                break
            try:
                if self.db is None:
                    self.db = self._connect()
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except Exception as e:  # noqa: BLE001 - a checkpoint that fails is retried on the next poke
                self._failed(e)
            else:
                self.done += 1
                self.copied = True
                if self.error is not None:
                    log.info("sqlite %s: WAL checkpoints work again", self.path)
                    self.error = None
            finally:
                self._running = False
        db, self.db = self.db, None
        if db is not None and not self.forked:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def _connect(self) -> sqlite3.Connection:
        """A connection to the provider's own file: never a new database, nor another file put at its path.

        Opened by path (on the first checkpoint, and after a failure): with the folder or file gone, a plain
        open made a new empty database there and checkpointed that, health said ok, and the writer's WAL, in
        the file it still holds open, was never checkpointed.
        """
        msg = f"sqlite: {self.path} is no longer the database this provider opened (moved, removed or replaced)"
        there = _identity(self.path)  # looked at first: closing a connection to another file put at the path
        if there is not None and there != self.file:  # applied the moved file's WAL, still at the path, to it
            raise ProviderUnavailableError(msg, provider="sqlite")  # (none there: the open says why, making nothing)
        db = open_connection(self.path, self.settings, memory=False, create=False)
        if _identity(self.path) != self.file:
            db.close()
            raise ProviderUnavailableError(msg, provider="sqlite")
        return db

    def _failed(self, e: Exception) -> None:
        """Keep ``e`` for health, log it (once until a checkpoint works again), drop the connection."""
        first = self.error is None
        # logged first: whoever sees the error finds the warning
        (log.warning if first else log.debug)("sqlite %s: WAL checkpoint failed: %s", self.path, e, exc_info=first)
        self.error, self.failures, self.failed_at = e, self.failures + 1, utcnow().isoformat()
        db, self.db = self.db, None  # reopened by the next attempt: the failure may have been the connection's
        if db is not None and not self.forked:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def take_copied(self) -> bool:
        """Whether a checkpoint finished since the last call (the writer then finishes it: :func:`finish_then`)."""
        if not self.copied:
            return False
        self.copied = False
        return True

    def report(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """What health shows: the counts, and the fault while checkpoints fail."""
        error = self.error
        details = {"done": self.done, "failures": self.failures, "last_failure": self.failed_at}
        if error is None:
            return details, []
        fault = {"component": "wal_checkpoints", "error": f"{type(error).__name__}: {error}", "since": self.failed_at}
        return details, [fault]


def finish_then(fn: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
    """Copy what the thread's checkpoint left (on the writer's connection, in no transaction), then ``fn(db)``.

    SQLite restarts the WAL at the start of a write only when every page of it was copied, which the thread's
    passive checkpoint beside back-to-back commits never leaves: the commits made while it copied remain. Here
    the writer copies those few pages before its next write, which then restarts the WAL, so the file stays
    near :data:`CHECKPOINT_EVERY` commits' worth of pages instead of growing to the backstop (a growing file
    costs each commit's sync a metadata update too). Nothing to copy: the pragma returns at once.
    """
    with contextlib.suppress(sqlite3.Error):  # (a failure here is the thread's to report, not the append's)
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return fn(db)

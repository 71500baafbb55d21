"""WAL checkpoints on a thread and a connection of their own, so no commit an append waits for ever copies the WAL.

SQLite checkpoints in the commit that passes ``wal_autocheckpoint`` pages, holding the write lock while it copies
the WAL into the file and syncs it: the append behind it waits that long (retention's deletes, which dirty pages
all over the indexes, made it happen every few batches). The provider moves that up to a backstop on its writer
connection (:data:`WAL_BACKSTOP_PAGES`) and pokes a :class:`Checkpointer` instead; its thread runs
``PRAGMA wal_checkpoint(PASSIVE)``, which takes no write lock, so writers commit while it copies.
A poke while a checkpoint runs is dropped, so the thread does not hold the checkpoint lock when the writer's
backstop runs (under back-to-back commits only that backstop lets SQLite restart the WAL).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from typing import TYPE_CHECKING, Any

from eventsource.sqlite.connection import open_connection

if TYPE_CHECKING:
    from collections.abc import Mapping

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
        self.path = path
        self.settings = settings
        self.db: sqlite3.Connection | None = None
        self.forked = False
        self.done = 0  # checkpoints run (for tests and diagnostics)
        self.error: BaseException | None = None  # the last failure (the next poke tries again)
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False  # a checkpoint is in progress: a poke now is dropped (see poke)
        _CHECKPOINTERS.add(self)

    def poke(self) -> None:
        """Ask for a checkpoint soon (returns at once; thread-safe); dropped while one runs (see the module)."""
        if self.forked or self._stopping or self._running:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="eventsource-sqlite-c", daemon=True)
                    self._thread.start()
        self._wake.set()

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
            self._wake.clear()
            if self._stopping:
                break
            self._running = True
            try:
                if self.db is None:
                    self.db = open_connection(self.path, self.settings, memory=False)
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.done += 1
            except Exception as e:  # noqa: BLE001 - a checkpoint that fails is retried on the next poke
                self.error = e
            finally:
                self._running = False
        db, self.db = self.db, None
        if db is not None and not self.forked:
            with contextlib.suppress(sqlite3.Error):
                db.close()

"""``SqliteFileLease``: a per-key lease on an OS file lock next to a SQLite file (``sqlite:///path.db``).

``hold(key)`` takes an exclusive ``flock`` on ``<path>.lease-<hash of key>`` (``<path>`` with symlinks and the
working directory resolved when the lease is built) and unlocks it on leaving; the kernel releases it when the
holder dies (and every process it forked meanwhile), so another process takes over at once. It excludes
processes on one machine (as SQLite's own locking does) and is not for network filesystems. POSIX only:
elsewhere the class refuses to build with :class:`~eventsource.errors.UnsupportedOperationError`. A database
file with a second hard link is refused (:class:`~eventsource.errors.ConfigurationError`): each name would have
lock files of its own. Lock files must not be removed while a runner may hold them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from contextlib import asynccontextmanager
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    ConfigurationError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    UnsupportedOperationError,
)
from eventsource.lease import Lease
from eventsource.sqlite.settings import path_from_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

POLL = 0.05
"""Seconds between attempts while another process holds the lock."""


class SqliteFileLease(Lease):
    """Exclusive leases among the processes of one machine that use the same SQLite file path."""

    kind = "sqlite"

    def __init__(self, url: str, **settings: Any) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            msg = "the SQLite file lease needs POSIX file locks (fcntl.flock), which this platform lacks"
            raise UnsupportedOperationError(msg, provider="sqlite", operation="lease")
        if settings:
            msg = f"the SQLite file lease takes no settings (got {sorted(settings)})"
            raise ConfigurationError(msg, field=next(iter(settings)))
        super().__init__(url)
        path = path_from_url(url)
        if path == ":memory:":
            msg = "a SQLite file lease needs a file path, not :memory:"
            raise ConfigurationError(msg, field="url")
        # the file's own path: every way of naming it (a symlink, a relative path) shares its lock files
        self.path = os.path.realpath(path)

    def __repr__(self) -> str:
        return f"SqliteFileLease({self.path!r})"

    def lock_path(self, key: str) -> str:
        """The lock file of ``key``."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()
        return f"{self.path}.lease-{digest}"

    async def connect(self) -> None:
        """Check that the lock files can be created (each hold opens its own)."""
        folder = await asyncio.to_thread(lambda: Path(self.path).absolute().parent)
        if not await asyncio.to_thread(folder.is_dir):
            msg = f"the SQLite file lease cannot create its lock files: {str(folder)!r} is not a directory"
            raise ConfigurationError(msg, field="url")

    async def close(self) -> None:
        """Nothing to release (each hold releases its lock on leaving)."""

    @asynccontextmanager
    async def hold(self, key: str, *, timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109 - the Lease contract
        """Hold the lease on ``key`` for the ``async with`` block."""
        assert fcntl is not None
        self._one_name(key)
        path = self.lock_path(key)
        deadline = monotonic() + timeout
        fd = await self._lock(path, key, (deadline, timeout))
        try:
            yield
        finally:  # unlocked first: closing alone leaves it held by a process forked meanwhile (it shares the file)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    async def _lock(self, path: str, key: str, wait: tuple[float, float]) -> int:
        """An open descriptor of the lock file at ``path`` (as it is now), locked; ``wait``: (deadline, timeout).

        A lock file removed (or another put at its path) between the open and the lock would lock a file nobody
        else opens: then it opens the one at the path again.
        """
        assert fcntl is not None
        deadline, timeout = wait
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                msg = f"cannot open the lease file {path!r}: {e.strerror}"
                raise ProviderUnavailableError(msg, key=key, operation="lease") from e
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if monotonic() >= deadline:
                            msg = f"could not acquire the lease on {key!r} within {timeout}s"
                            raise ProviderTimeoutError(msg, key=key, operation="lease") from None
                        await asyncio.sleep(min(POLL, max(deadline - monotonic(), 0)))
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                return fd
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _one_name(self, key: str) -> None:
        """Refuse a database file with a second hard link: each name has its own lock files beside it."""
        try:
            links = Path(self.path).stat().st_nlink
        except OSError:  # no database there (yet): nothing else can name it
            return
        if links > 1:
            msg = (
                f"the SQLite file lease on {self.path!r}: that file has {links} names (hard links), and each name "
                "has lock files of its own, so a runner naming the file by another one would hold the same lease at "
                "the same time. Remove the other links (SQLite too keeps a -wal per name: a durability risk, as the "
                "store's health says) or name the lease after a file with one name"
            )
            raise ConfigurationError(msg, field="url", key=key, links=links)


def _same_file(fd: int, path: str) -> bool:
    """Whether ``fd`` is the file at ``path`` now."""
    try:
        there = Path(path).stat()
    except OSError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

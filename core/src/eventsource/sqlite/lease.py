"""``SqliteFileLease``: a per-key lease on an OS file lock next to a SQLite file (``sqlite:///path.db``).

``hold(key)`` takes an exclusive ``flock`` on ``<path>.lease-<hash of key>`` (``<path>`` with symlinks and the
working directory resolved when the lease is built) and unlocks it on leaving; the kernel releases it when the
holder dies (and every process it forked meanwhile), so another process takes over at once. It excludes
processes on one machine (as SQLite's own locking does) and is not for network filesystems. POSIX only:
elsewhere the class refuses to build with :class:`~eventsource.errors.UnsupportedOperationError`.
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
        path = self.lock_path(key)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            msg = f"cannot open the lease file {path!r}: {e.strerror}"
            raise ProviderUnavailableError(msg, key=key, operation="lease") from e
        held = False
        try:
            deadline = monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                    break
                except BlockingIOError:
                    if monotonic() >= deadline:
                        msg = f"could not acquire the lease on {key!r} within {timeout}s"
                        raise ProviderTimeoutError(msg, key=key, operation="lease") from None
                    await asyncio.sleep(min(POLL, max(deadline - monotonic(), 0)))
            yield
        finally:
            if held:  # closing alone leaves it held by a process forked meanwhile (it shares the open file)
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

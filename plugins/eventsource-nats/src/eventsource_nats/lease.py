"""``NatsKvLease``: a per-key lease on a JetStream key-value entry whose bucket expires entries after ``ttl``.

``hold(key)`` creates the key (a compare-and-set that only succeeds while nobody holds it) and refreshes it
every ``ttl / 3`` seconds with a compare-and-set on its revision. A holder that dies stops refreshing, the
entry expires and another process's ``create`` succeeds: the handover takes at most ``ttl`` plus one retry.
A refresh that fails (the entry was taken over) marks the lease lost, and so does going without a successful
refresh for ``ttl`` less a margin of ``ttl / 6``, counted from when the last one was sent (a refresh stuck on a
silent connection is abandoned then): the server cannot have expired the entry yet. The block is cancelled
and leaving it raises :class:`~eventsource.errors.ProviderUnavailableError`. The client reconnects as the
provider's does (:mod:`~eventsource_nats.client`); one that gave up is replaced by the next ``hold``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import socket
import uuid
from contextlib import asynccontextmanager, suppress
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    ConfigurationError,
    EventSourceError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from eventsource.lease import Lease

from eventsource_nats.client import client_settings, close_client, creating, open_client
from eventsource_nats.connection import cancellable
from eventsource_nats.naming import is_bucket_name
from eventsource_nats.settings import parse_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

POLL = 0.1
"""Seconds between attempts to create a held key."""

LONG_KEY = 1024
"""Encoded keys longer than this are hashed: the KV subject must fit the server's control line (4 KiB)."""


class NatsKvLease(Lease):
    """Exclusive leases in the key-value bucket ``bucket`` (created with ``ttl`` seconds if missing).

    Settings: ``bucket`` (default ``eventsource_leases``) and ``ttl`` (seconds, default 6). An existing
    bucket keeps its own TTL, which the lease then uses. The provider's connection settings, checked and used
    as there: ``connect_timeout``, ``max_reconnect_attempts``, ``credentials_file``, ``nkeys_seed_file`` and
    the ``tls_*`` files.
    """

    kind = "nats"

    def __init__(self, url: str, **settings: Any) -> None:
        bucket = settings.pop("bucket", "eventsource_leases")
        ttl = settings.pop("ttl", 6.0)
        client = client_settings(settings, "lease 'nats'")
        if settings:
            msg = f"unknown settings for lease 'nats': {sorted(settings)}"
            raise ConfigurationError(msg, field=next(iter(settings)))
        if not is_bucket_name(bucket):
            msg = "lease bucket names take ASCII letters, digits, '-' and '_'"
            raise ConfigurationError(msg, field="bucket")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl < 1:
            msg = "ttl must be a number of seconds, at least 1"
            raise ConfigurationError(msg, field="ttl")
        super().__init__(
            url, bucket=bucket, ttl=float(ttl), **{name: value for name, value in client.items() if value is not None}
        )
        self.server = parse_url(url)
        self.client = client
        """The connection settings (``connect_timeout``, TLS files...), as ``client_settings`` checked them."""
        self.bucket = bucket
        self.ttl = float(ttl)
        self._nc: Any = None
        self._kv: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"NatsKvLease({self.server.display!r}, bucket={self.bucket!r}, ttl={self.ttl})"

    async def connect(self) -> None:
        """Connect and open (or create) the bucket. Idempotent; replaces a client that gave up reconnecting."""
        async with self._lock:
            if self._kv is not None and not self._nc.is_closed:
                return
            import nats.errors
            import nats.js.errors

            nc = await open_client(self.server, "leases", self.client)
            js = nc.jetstream()
            try:
                try:
                    kv = await js.key_value(self.bucket)
                except nats.js.errors.BucketNotFoundError:
                    try:
                        kv = await creating(
                            f"the KV bucket {self.bucket!r}",
                            lambda: js.create_key_value(bucket=self.bucket, history=1, ttl=self.ttl),
                        )
                    except nats.js.errors.BadRequestError:
                        kv = await js.key_value(self.bucket)  # created concurrently
                status = await kv.status()
            except Exception as e:
                await close_client(nc, drain=False)
                failed = isinstance(e, (nats.errors.Error, OSError)) and not isinstance(e, nats.js.errors.APIError)
                if failed and not isinstance(e, EventSourceError):
                    msg = f"NATS at {self.server.display} failed while opening the lease bucket: {type(e).__name__}"
                    raise ProviderUnavailableError(msg, operation="lease connect") from e
                raise
            if not status.ttl:
                await close_client(nc, drain=False)
                msg = f"the NATS bucket {self.bucket!r} keeps entries forever: a lease there would never expire"
                raise ConfigurationError(msg, field="bucket")
            self.ttl = float(status.ttl)
            old, self._nc, self._kv = self._nc, nc, kv
            if old is not None:
                await close_client(old, drain=False)

    async def close(self) -> None:
        """Close the connection (held keys expire after ``ttl``). Idempotent."""
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None:
            await close_client(nc, drain=False)

    @staticmethod
    def _key(key: str) -> str:
        """The KV key of ``key``: unpadded URL-safe base64, or past ``LONG_KEY`` characters ``=`` + a digest."""
        raw = key.encode("utf-8")
        encoded = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        if len(encoded) <= LONG_KEY:
            return encoded
        return "=" + hashlib.blake2b(raw, digest_size=24, person=b"es-lease").hexdigest()  # ('=': never base64's)

    @asynccontextmanager
    async def hold(self, key: str, *, timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109 - the Lease contract
        """Hold the lease on ``key`` for the ``async with`` block (see the module docstring)."""
        if self._kv is None:
            msg = f"lease on {self.server.display} is not connected (call connect() first)"
            raise ProviderUnavailableError(msg)
        if self._nc.is_closed:  # it gave up reconnecting (a long outage): nothing else would connect again
            await self.connect()
        kv = self._kv
        k = self._key(key)
        token = json.dumps({"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}).encode()
        revision, sent = await self._acquire(kv, k, key, token, timeout)
        owner = asyncio.current_task()
        lost: list[BaseException] = []
        refresher = asyncio.ensure_future(self._refresh(kv, k, token, (revision, sent), owner=owner, lost=lost))
        try:
            yield
        except asyncio.CancelledError:
            if lost and owner is not None and owner.uncancel() == 0:
                raise self._lost(key) from lost[0]
            raise
        finally:
            refresher.cancel()
            try:  # (not ``await refresher``: it ends normally when cancelled, and would take a cancel of ours)
                await asyncio.wait([refresher])
            finally:
                done = refresher.done() and not refresher.cancelled()
                rev = refresher.result() if done else revision
                if not lost:
                    with suppress(Exception):
                        await asyncio.shield(kv.delete(k, last=rev))
        if lost:
            raise self._lost(key) from lost[0]

    def _lost(self, key: str) -> ProviderUnavailableError:
        msg = f"the lease on {key!r} was lost while held (not refreshed within {self.ttl}s, or taken over)"
        return ProviderUnavailableError(msg, key=key, operation="lease")

    async def _acquire(self, kv: Any, k: str, key: str, token: bytes, timeout: float) -> tuple[int, float]:  # noqa: ASYNC109
        """The entry's revision, and when the create that made it was sent."""
        import nats.errors
        import nats.js.errors

        deadline = monotonic() + timeout
        while True:
            try:
                sent = monotonic()
                return int(await cancellable(kv.create(k, token))), sent
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
                pass  # held by someone else
            except (nats.errors.Error, OSError) as e:
                msg = f"NATS at {self.server.display} failed while taking the lease on {key!r}: {type(e).__name__}"
                raise ProviderUnavailableError(msg, key=key, operation="lease") from e
            if monotonic() >= deadline:
                msg = f"could not acquire the lease on {key!r} within {timeout}s"
                raise ProviderTimeoutError(msg, key=key, operation="lease")
            await asyncio.sleep(min(POLL, max(deadline - monotonic(), 0)))

    async def _refresh(
        self,
        kv: Any,
        k: str,
        token: bytes,
        written: tuple[int, float],
        *,
        owner: asyncio.Task[Any] | None,
        lost: list[BaseException],
    ) -> int:
        """Refresh until cancelled; returns the last revision. On a loss, records it and cancels ``owner``.

        ``written``: the revision and when the write that made it was sent; the server expires the entry
        ``ttl`` after it stored that write, so the lease is given up ``ttl / 6`` before that can happen.
        """
        import nats.js.errors

        revision, sent = written
        deadline = sent + self.ttl - self.ttl / 6
        try:
            while True:
                await asyncio.sleep(max(min(self.ttl / 3, deadline - monotonic()), 0))
                error: BaseException | None = None
                if monotonic() < deadline:
                    attempt = monotonic()
                    try:
                        async with asyncio.timeout(max(deadline - attempt, 0)):  # a silent connection: not for long
                            revision = int(await cancellable(kv.update(k, token, last=revision)))
                        deadline = attempt + self.ttl - self.ttl / 6
                        continue
                    except Exception as e:  # noqa: BLE001 - taken over, or unreachable: decided below
                        error = e
                if isinstance(error, nats.js.errors.KeyWrongLastSequenceError) or monotonic() >= deadline:
                    lost.append(error or TimeoutError(f"no refresh succeeded within {self.ttl}s"))
                    if owner is not None:
                        owner.cancel()
                    return revision
        except asyncio.CancelledError:
            return revision

"""``nats://`` checkpoints: one key per (subscription name, source) in a JetStream key-value bucket.

Keys are the base64url forms of the name and the source, so any name is a valid key. ``put`` is a
compare-and-set on the key's revision (``create`` for a new key, ``update(last=revision)`` otherwise),
retried when another writer got in between, so two runners never move a checkpoint backwards. The client
reconnects as the provider's does (:mod:`~eventsource_nats.client`); one that gave up (an outage
longer than its attempts) is replaced by the next call, and a failure of the server reaches the caller as
:class:`~eventsource.errors.ProviderUnavailableError` or :class:`~eventsource.errors.ProviderTimeoutError`.
With ``create_store`` off a missing bucket is refused (:class:`~eventsource.errors.StoreNotFoundError`), not made.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.checkpoints import Checkpoint, CheckpointStore
from eventsource.checkpoints.base import check_name, event_id_of
from eventsource.create_store import store_not_found
from eventsource.errors import ConfigurationError, ConflictError, EventSourceError, ProviderUnavailableError

from eventsource_nats.client import client_settings, close_client, creating, open_client
from eventsource_nats.connection import cancellable, stream_subjects
from eventsource_nats.errors import map_error
from eventsource_nats.naming import is_bucket_name
from eventsource_nats.settings import parse_url

if TYPE_CHECKING:
    from collections.abc import Awaitable

T = TypeVar("T")

LIST_TIMEOUT = 10.0
"""Seconds one page of :meth:`NatsCheckpointStore.list`'s key listing may take (a ``STREAM.INFO`` request)."""
CAS_ATTEMPTS = 20
"""Compare-and-set attempts of one ``put`` before it gives up (each loses only to another writer)."""


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")


class NatsCheckpointStore(CheckpointStore):
    """Checkpoints in the key-value bucket ``bucket`` (created with history 1 if missing and ``create_store`` on).

    ``create_store`` off: a missing bucket is refused, not created. The provider's connection settings, checked
    and used as there: ``connect_timeout``, ``max_reconnect_attempts``, ``credentials_file``, ``nkeys_seed_file``
    and the ``tls_*`` files.
    """

    kind = "nats"

    def __init__(
        self, url: str, *, bucket: str = "eventsource_checkpoints", create_store: bool = True, **settings: Any
    ) -> None:
        super().__init__(url, create_store=create_store)
        self.server = parse_url(url)
        if not is_bucket_name(bucket):
            msg = "checkpoint bucket names take ASCII letters, digits, '-' and '_'"
            raise ConfigurationError(msg, field="bucket")
        self.client = client_settings(settings, "NATS checkpoints")
        """The connection settings (``connect_timeout``, TLS files...), as ``client_settings`` checked them."""
        if settings:
            msg = f"unknown settings for NATS checkpoints: {sorted(settings)}"
            raise ConfigurationError(msg, field=next(iter(settings)))
        self.bucket = bucket
        self._nc: Any = None
        self._kv: Any = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect and open (or create) the bucket. Idempotent; replaces a client that gave up reconnecting.

        :raises StoreNotFoundError: ``create_store`` is off and the bucket is not there.
        """
        async with self._lock:
            if self._kv is not None and not self._nc.is_closed:
                return
            nc = await open_client(self.server, "checkpoints", self.client)
            try:
                kv = await self._call("opening the checkpoint bucket", self._bucket(nc))
            except BaseException:
                await close_client(nc, drain=False)
                raise
            old, self._nc, self._kv = self._nc, nc, kv
            if old is not None:
                await close_client(old, drain=False)

    async def _bucket(self, nc: Any) -> Any:
        import nats.js.errors

        js = nc.jetstream()
        try:
            return await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            if not self.create_store:
                why = f"the server has no key-value bucket {self.bucket!r}"
                raise store_not_found(
                    f"{self.display_url} (checkpoints, bucket {self.bucket!r})", why, missing=[f"bucket {self.bucket}"]
                ) from None
            try:
                return await creating(
                    f"the KV bucket {self.bucket!r}", lambda: js.create_key_value(bucket=self.bucket, history=1)
                )
            except nats.js.errors.BadRequestError:
                return await js.key_value(self.bucket)  # created concurrently

    @staticmethod
    async def _call(what: str, aw: Awaitable[T]) -> T:
        """Await a nats-py call; its failures as the provider's typed errors (unavailable, timed out).

        The answers a caller handles (a missing key, a lost compare-and-set) pass through as they are.
        """
        import nats.js.errors

        try:
            return await cancellable(aw)
        except (
            EventSourceError,
            nats.js.errors.KeyNotFoundError,
            nats.js.errors.KeyWrongLastSequenceError,
            nats.js.errors.BadRequestError,
        ):
            raise
        except Exception as e:
            raise map_error(e, what) from e

    async def close(self) -> None:
        """Close the connection. Idempotent."""
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None:
            await close_client(nc, drain=False)

    async def _require(self) -> Any:
        """The bucket; a client that gave up reconnecting (a long outage) is replaced first."""
        if self._kv is None:
            msg = "the NATS checkpoint store is not connected (call connect())"
            raise ProviderUnavailableError(msg, operation="checkpoint")
        if self._nc.is_closed:
            await self.connect()
        return self._kv

    async def _entry(self, name: str, source: str) -> tuple[Checkpoint | None, int | None]:
        """The stored checkpoint and its key's revision (``None``, ``None`` when absent)."""
        import nats.js.errors

        kv = await self._require()
        try:
            entry = await self._call("reading a checkpoint", kv.get(f"{_b64(name)}.{_b64(source)}"))
        except nats.js.errors.KeyNotFoundError:  # KeyDeletedError too
            return None, None
        if entry.value is None:
            return None, entry.revision
        d = json.loads(entry.value)
        at = datetime.fromisoformat(d["updated_at"]) if d.get("updated_at") else None
        position = int(d["position"])
        return Checkpoint(
            name, source, d["scope"], position, at, event_id_of(d.get("anchor"), position)
        ), entry.revision

    async def get(self, name: str, source: str) -> Checkpoint | None:
        """The stored checkpoint, or ``None``."""
        cp, _ = await self._entry(check_name("name", name), check_name("source", source))
        return cp

    async def put(self, checkpoint: Checkpoint, *, force: bool = False) -> Checkpoint:
        """Compare-and-set on the key's revision, retried when another writer got in between."""
        import nats.js.errors

        cp = self.checked(checkpoint)
        key = f"{_b64(cp.name)}.{_b64(cp.source)}"
        value = json.dumps(
            {
                "scope": cp.scope,
                "position": cp.position,
                "updated_at": cp.updated_at.isoformat() if cp.updated_at else None,
                "anchor": cp.anchor,
            }
        ).encode()
        for _ in range(CAS_ATTEMPTS):
            old, revision = await self._entry(cp.name, cp.source)
            self.check_move(old, cp, force=force)
            kv = await self._require()
            try:
                if revision is None:
                    await self._call("storing a checkpoint", kv.create(key, value))
                else:
                    await self._call("storing a checkpoint", kv.update(key, value, last=revision))
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
                continue  # another writer got in between: look again
            return cp
        msg = f"checkpoint {cp.name!r} on {cp.source!r} kept changing under {CAS_ATTEMPTS} attempts to store it"
        raise ConflictError(msg, name=cp.name, source=cp.source)

    async def delete(self, name: str, source: str) -> bool:
        """Remove it; whether there was one."""
        old, _ = await self._entry(check_name("name", name), check_name("source", source))
        if old is None:
            return False
        kv = await self._require()
        await self._call("deleting a checkpoint", kv.purge(f"{_b64(name)}.{_b64(source)}"))
        return True

    async def list(self, source: str | None = None) -> list[Checkpoint]:
        """Every checkpoint (of ``source`` only, when given), by name then source (one read per key)."""
        if source is not None:
            check_name("source", source)
        await self._require()
        prefix = f"$KV.{self.bucket}."
        subjects = await self._call(
            "listing checkpoints", stream_subjects(self._nc, f"KV_{self.bucket}", f"{prefix}>", LIST_TIMEOUT)
        )
        out = []
        for key in sorted(s[len(prefix) :] for s in subjects):  # a purged key's marker too: _entry says absent
            name, _, src = key.partition(".")
            name, src = _unb64(name), _unb64(src)
            if source is None or src == source:
                cp, _ = await self._entry(name, src)
                if cp is not None:
                    out.append(cp)
        return sorted(out, key=lambda cp: (cp.name, cp.source))

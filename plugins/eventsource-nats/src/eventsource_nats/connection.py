"""The connection to NATS and the store's set-up on the server, plus the low-level calls every role uses.

:class:`Connection` opens the client (credentials, TLS, a quick TCP probe so an unreachable server fails
at once), reads the server's version and limits, creates the JetStream stream and the four KV buckets
when missing, and decides the server-dependent modes: atomic batch publish (>= 2.12) or envelopes, and
the per-subject or stream-wide expected-sequence check (replicated streams before 2.9.21, nats-server
#4320). It also owns the small calls the other roles share: raw JetStream API requests, message gets,
KV gets, purges, subject listings, the retry loop for calls that may meet a leader election, and the
background tasks that clean up consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from eventsource.create_store import store_not_found
from eventsource.errors import ConfigurationError, EventSourceError, ProviderTimeoutError, ProviderUnavailableError

from eventsource_nats.client import close_client, creating, credentials
from eventsource_nats.errors import map_error, retriable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventsource_nats.naming import Names
    from eventsource_nats.settings import ServerUrl

T = TypeVar("T")

SUBJECTS_OVERLAP = 10065
"""JetStream's err_code for a new stream whose subjects another stream already holds."""

FIXED_REPLICATED_OCC = (2, 9, 21)
"""First server whose expected-subject-sequence check holds on replicated streams (PR #4319)."""
ATOMIC_BATCH_SINCE = (2, 12, 0)


def _nats() -> Any:
    import nats

    return nats


@functools.cache
def _accepts_skip_subject_validation() -> bool:
    import inspect

    return "skip_subject_validation" in inspect.signature(_nats().NATS.connect).parameters


def _version_tuple(v: Any) -> tuple[int, int, int]:
    return (int(v.major), int(v.minor), int(v.patch))


def _covers(pattern: str, subject: str) -> bool:
    """Whether every subject matching ``subject`` (which may hold ``*``) also matches ``pattern``."""
    want = subject.split(".")
    for n, part in enumerate(pattern.split(".")):
        if part == ">":
            return n < len(want)
        if n >= len(want) or part not in ("*", want[n]):
            return False
    return len(pattern.split(".")) == len(want)


async def quiet(aw: Awaitable[Any]) -> None:
    """Await and ignore failures (clean-up of consumers, subscriptions and connections)."""
    with contextlib.suppress(Exception):
        await aw


async def cancellable(aw: Awaitable[T]) -> T:
    """Await a nats-py call; raise :class:`asyncio.CancelledError` when the call swallowed a cancellation.

    nats-py waits for every request reply and fetched message with ``asyncio.wait_for``, which on Python
    3.11 returns the result when the cancel lands after the awaited future completed: the task's cancel is
    lost and a cancelled read (or a subscription's read step) goes on running for good. The task's count
    of pending cancel requests still shows the cancel; a call that returns with that count raised re-raises.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await aw
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result


@dataclass(frozen=True)
class KvEntry:
    """A KV entry read from a replicated bucket's leader: the parts callers use of nats-py's entry."""

    value: bytes
    revision: int


class Connection:
    """One client connection, the server facts read at connect, and the store's KV buckets."""

    def __init__(self, url: ServerUrl, settings: dict[str, Any], names: Names, name: Callable[[], str]) -> None:
        self.url = url
        self.settings = settings
        self.names = names
        self._name = name
        self.nc: Any = None
        self.js: Any = None
        self.kv: dict[str, Any] = {}
        self.server_version: tuple[int, int, int] = (0, 0, 0)
        self.replicas = 1
        self.atomic = False
        """Whether multi-event appends use atomic batch publish (else one envelope message)."""
        self.stream_wide = False
        """Whether appends check the stream-wide sequence (replicated stream on a server before 2.9.21)."""
        self.max_payload = 1024 * 1024
        self.leader_read: set[str] = set()
        """Replicated buckets: read from their leader (a replica behind it answers direct gets with stale data)."""
        self._background: set[asyncio.Task[Any]] = set()
        self._reviving: asyncio.Future[None] | None = None
        self.on_reconnect: list[Callable[[], None]] = []
        """Called after the client reconnected (its subscriptions are back): what was published meanwhile is missed."""

    async def _reconnected(self) -> None:
        for fn in list(self.on_reconnect):
            fn()

    @property
    def provider_name(self) -> str:
        """The provider's current name (the manager renames providers after building them)."""
        return self._name()

    @property
    def occ_mode(self) -> str:
        """``"subject"`` (per-stream expected sequence) or ``"stream_wide"`` (old replicated server)."""
        return "stream_wide" if self.stream_wide else "subject"

    @property
    def display_url(self) -> str:
        """The URL with the password masked (every host of a multi-server URL kept)."""
        return self.url.display

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_open(self) -> bool:
        """Whether a client connection is open (connect() was called and close() not yet)."""
        return self.nc is not None and not self.nc.is_closed

    async def connect(self) -> None:
        """Connect, check the server version, create the stream and buckets if missing.

        With ``create_store`` off, a store with anything missing is refused and the server left as it was.
        """
        if self.is_open:
            return
        nats = _nats()
        s = self.settings
        opts = self._client_options()
        await self._probe_servers(s["connect_timeout"])
        nc = nats.NATS()
        budget = s["connect_timeout"] * 2 * len(self.url.servers) + 1
        try:
            await asyncio.wait_for(nc.connect(**opts), timeout=budget)
        except Exception as e:
            await close_client(nc, drain=False)
            err = map_error(e, f"connecting to {self.display_url}")
            if isinstance(err, ProviderTimeoutError):
                err = ProviderUnavailableError(f"cannot connect to {self.display_url} within {budget:.0f}s")
            raise err from e
        before = self.nc, self.js  # a client that gave up reconnecting stays until this one is ready
        self.nc = nc
        self.js = nc.jetstream(timeout=s["request_timeout"])
        try:
            await self.call("preparing the JetStream store", self._ensure_store())
        except BaseException:
            await close_client(nc, drain=False)
            self.nc, self.js = before
            raise

    def _client_options(self) -> dict[str, Any]:
        """``nats.connect`` keyword arguments: servers, timeouts, credentials and TLS from URL and settings."""
        s = self.settings
        opts: dict[str, Any] = {
            "servers": list(self.url.servers),
            "connect_timeout": s["connect_timeout"],
            "max_reconnect_attempts": s["max_reconnect_attempts"],
            "reconnect_time_wait": 0.25,
            # past 2 MiB of unsent publishes nats-py waits for its flusher, by default with no timeout (and a cancel
            # of that wait is swallowed): against a server that stopped reading, an append hung for good
            "flush_timeout": s["publish_timeout"],
            "reconnected_cb": self._reconnected,
            "name": f"eventsource:{s['stream']}",
        }
        if _accepts_skip_subject_validation():
            # every subject this provider uses is built from validated settings (stream name, prefix:
            # regexps without whitespace or CR/LF), encoded tokens ([A-Za-z0-9_-]) and hex keys, so
            # the client's per-publish regexp check can never fire; skipping it keeps the append cheap
            opts["skip_subject_validation"] = True
        opts.update(credentials(self.url, s))
        return opts

    async def _probe_servers(self, limit: float) -> None:
        """Fail at once when no server accepts a TCP connection (refused, unresolvable).

        nats-py keeps retrying a refused initial connect until its budget runs out; a server that
        answers is then connected to as usual. ``limit``: seconds each server gets to accept.
        """
        reasons = []
        for server in self.url.servers:
            parts = urlsplit(server)
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, parts.port or 4222), timeout=limit
                )
            except (OSError, TimeoutError) as e:
                reasons.append(f"{parts.hostname}:{parts.port or 4222}: {e.strerror or type(e).__name__}")
                continue
            writer.close()
            await quiet(writer.wait_closed())
            return
        msg = f"cannot connect to {self.display_url}: no server accepts connections ({'; '.join(reasons)})"
        raise ProviderUnavailableError(msg, operation="connect")

    async def _stream_info_or_create(self, cfg: Any) -> Any:
        """The events stream's info, creating it from ``cfg`` if missing; subjects another stream holds are refused."""
        import nats.js.errors

        js = self.js
        try:
            return await js.stream_info(cfg.name)
        except nats.js.errors.NotFoundError:
            pass
        try:
            return await creating(f"the JetStream stream {cfg.name!r}", lambda: js.add_stream(cfg))
        except nats.js.errors.BadRequestError as e:
            if e.err_code == SUBJECTS_OVERLAP:
                msg = (
                    f"cannot create the JetStream stream {cfg.name!r}: its subjects {self.names.events_wildcard!r} "
                    "overlap with an existing stream (another store on this server); give each store its own "
                    "subject_prefix setting, or use that store's stream name"
                )
                raise ConfigurationError(msg, field="subject_prefix") from e
            return await js.stream_info(cfg.name)  # created concurrently by another instance

    async def _ensure_store(self) -> None:
        import nats.js.errors
        from nats.js import api

        s = self.settings
        nc, js = self.nc, self.js
        self.server_version = _version_tuple(nc.connected_server_version)
        self.max_payload = int(nc.max_payload)
        atomic_possible = self.server_version >= ATOMIC_BATCH_SINCE
        if s["batch_mode"] == "atomic" and not atomic_possible:
            msg = (
                f"batch_mode='atomic' needs nats-server >= 2.12 (atomic batch publish); "
                f"{self.display_url} runs {'.'.join(map(str, self.server_version))}"
            )
            raise ConfigurationError(msg, field="batch_mode")
        want_atomic = atomic_possible and s["batch_mode"] != "envelope"
        storage = api.StorageType.MEMORY if s["storage"] == "memory" else api.StorageType.FILE
        cfg = api.StreamConfig(
            name=s["stream"],
            subjects=[self.names.events_wildcard],
            storage=storage,
            num_replicas=s["replicas"],
            duplicate_window=s["duplicate_window"],
            allow_direct=True,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            allow_atomic=True if want_atomic else None,
        )
        if not s["create_store"]:  # (nothing is created nor updated: a store with anything missing is refused)
            await self._check_store()
        info = await self._events_stream(cfg, want_atomic=want_atomic)
        self.replicas = int(info.config.num_replicas or 1)
        self.stream_wide = False
        if self.replicas > 1 and self.server_version < FIXED_REPLICATED_OCC:
            if s["old_server_replicated"] == "refuse":
                msg = (
                    f"stream {s['stream']!r} has {self.replicas} replicas, but {self.display_url} runs nats-server "
                    f"{'.'.join(map(str, self.server_version))}, whose per-subject concurrency check is not enforced "
                    "under replication before 2.9.21 (nats-server #4320): upgrade the server, use replicas=1, or set "
                    "old_server_replicated='stream_wide' (correct, but serialises every writer)"
                )
                raise ConfigurationError(msg, field="replicas")
            self.stream_wide = True
        self.atomic = want_atomic and bool(info.config.allow_atomic)
        self.leader_read.clear()
        for bucket in self.names.buckets:
            try:
                kv = await js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                if not s["create_store"]:  # (deleted since _check_store looked)
                    raise self._absent([f"KV bucket {bucket!r}"]) from None
                try:
                    kv = await creating(
                        f"the KV bucket {bucket!r}",
                        functools.partial(
                            js.create_key_value,
                            bucket=bucket,
                            history=1,
                            replicas=s["replicas"],
                            storage=storage,
                            direct=True,
                        ),
                    )
                except nats.js.errors.BadRequestError:
                    kv = await js.key_value(bucket)
            self.kv[bucket] = kv
            if int((await js.stream_info(f"KV_{bucket}")).config.num_replicas or 1) > 1:
                self.leader_read.add(bucket)

    async def _check_store(self) -> None:
        """With ``create_store`` off: refuse (``StoreNotFoundError``) a store whose stream or a bucket is missing."""
        import nats.js.errors

        js, missing = self.js, []
        try:
            await js.stream_info(self.names.stream)
        except nats.js.errors.NotFoundError:
            missing.append(f"JetStream stream {self.names.stream!r}")
        for bucket in self.names.buckets:
            try:
                await js.stream_info(f"KV_{bucket}")
            except nats.js.errors.NotFoundError:
                missing.append(f"KV bucket {bucket!r}")
        if missing:
            raise self._absent(missing)

    def _absent(self, missing: list[str]) -> EventSourceError:
        """The refusal of a store with ``missing`` parts (``create_store`` off)."""
        whole = len(missing) == 1 + len(self.names.buckets)
        why = "the server has no such JetStream stream nor its KV buckets" if whole else f"missing {', '.join(missing)}"
        return store_not_found(self.where, why, missing=missing)

    @property
    def where(self) -> str:
        """The store as a message names it: the masked URL, the stream and the subject prefix."""
        return f"{self.display_url} (stream {self.names.stream!r}, subject_prefix {self.names.prefix!r})"

    async def _events_stream(self, cfg: Any, *, want_atomic: bool) -> Any:
        """The events stream's info: created from ``cfg`` when missing, checked and completed when it exists."""
        js = self.js
        if self.settings["create_store"]:
            info = await self._stream_info_or_create(cfg)
        else:
            info = await js.stream_info(cfg.name)
        self._check_subjects(list(info.config.subjects or []))
        if not self.settings["create_store"]:
            if not info.config.allow_direct and int(info.config.num_replicas or 1) == 1:
                why = f"stream {cfg.name!r} does not allow direct gets (set when eventsource creates or completes it)"
                raise store_not_found(self.where, why, missing=["allow_direct"], outdated=True)
            return info  # (allow_atomic unset: appends use envelopes, as on servers before 2.12)
        if not info.config.allow_direct and int(info.config.num_replicas or 1) == 1:
            # a stream made elsewhere: a one-replica stream is read with direct gets (a replicated one from its
            # leader, which needs no update: an account may lack the permission, and the setting is the operator's)
            info = await js.update_stream(replace(info.config, allow_direct=True))
        if want_atomic and not info.config.allow_atomic:
            info = await js.update_stream(replace(info.config, allow_atomic=True))
        return info

    def _check_subjects(self, subjects: list[str]) -> None:
        """Refuse a JetStream stream that does not take this store's events subjects (another store's stream)."""
        if not any(_covers(subject, self.names.events_wildcard) for subject in subjects):
            msg = (
                f"JetStream stream {self.names.stream!r} holds the subjects {subjects}, not "
                f"{self.names.events_wildcard!r}: the stream belongs to another store, or subject_prefix was "
                "changed after it was created"
            )
            raise ConfigurationError(msg, field="subject_prefix")

    async def settle(self) -> None:
        """Wait for the background work (consumer deletions) to finish."""
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def close(self) -> None:
        """Forget the client and the buckets, then drain and close the connection (bounded). Idempotent."""
        reviving, self._reviving = self._reviving, None
        if reviving is not None:
            reviving.cancel()
            await asyncio.gather(reviving, return_exceptions=True)
        nc, self.nc, self.js = self.nc, None, None
        self.kv.clear()
        if nc is not None and not nc.is_closed:
            await close_client(nc, drain=True)  # bounded: a frozen server never reads what is left to send

    async def drop_store(self) -> None:
        """Delete the JetStream stream and the four KV buckets (every event, snapshot and index)."""
        import nats.js.errors

        js = self.require()
        for name in (self.names.stream, *(f"KV_{b}" for b in self.names.buckets)):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)

    # ------------------------------------------------------------------ shared calls

    def require(self) -> Any:
        """The JetStream context; :class:`ProviderUnavailableError` when not connected.

        A client that gave up reconnecting (``max_reconnect_attempts``, a long outage) is replaced in the
        background, one attempt per call that finds it closed: nothing else would ever connect again.
        """
        if self.js is None or self.nc is None:
            msg = f"NATS provider {self.provider_name!r} is not connected (call connect())"
            raise ProviderUnavailableError(msg)
        if self.nc.is_closed:
            if self._reviving is None or self._reviving.done():
                self._reviving = asyncio.ensure_future(self._revive())
            msg = f"NATS provider {self.provider_name!r} lost its connection to {self.display_url}; connecting again"
            raise ProviderUnavailableError(msg)
        return self.js

    async def _revive(self) -> None:
        """Connect again after the client gave up; waiters read again (what was published meanwhile was missed)."""
        with contextlib.suppress(Exception):
            await self.connect()
            await self._reconnected()

    async def call(self, what: str, aw: Awaitable[T]) -> T:
        """Await ``aw``, mapping any driver error with :func:`~eventsource_nats.errors.map_error`."""
        try:
            return await cancellable(aw)
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, what) from e

    async def api(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A raw JetStream API request (for replies nats-py does not fully expose)."""
        self.require()
        return await api_request(self.nc, subject, payload, self.settings["request_timeout"])

    async def _get_msg(self, **req: Any) -> Any:
        """One stored message (``None`` when there is none); leader-read on replicated streams."""
        import nats.js.errors

        js = self.require()
        try:
            return await cancellable(js.get_msg(self.names.stream, direct=self.replicas == 1, **req))
        except nats.js.errors.NotFoundError:
            return None

    async def msg_at(self, seq: int) -> Any:
        """The message at stream sequence ``seq`` (``None`` when there is none)."""
        return await self._get_msg(seq=seq)

    async def last_msg(self, subject: str) -> Any:
        """The last message on ``subject`` (``None`` when there is none)."""
        return await self._get_msg(subject=subject)

    async def next_msg(self, subject: str, seq: int) -> Any:
        """The first message on ``subject`` at or after sequence ``seq`` (``None`` when there is none)."""
        return await self._get_msg(seq=max(1, seq), subject=subject, next=True)

    async def kv_get(self, bucket: str, key: str) -> Any:
        """A KV entry (``None`` when the key does not exist); from the leader when the bucket is replicated.

        Every replica of a bucket with direct gets answers them, also one behind its leader (nats-server 2.9
        keeps a replica in the direct-get group once it was current), which would read a key written and
        acknowledged a moment ago as missing, or an older value.
        """
        import nats.js.errors

        if bucket in self.leader_read:
            js = self.require()
            try:
                msg = await cancellable(js.get_msg(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}", direct=False))
            except nats.js.errors.NotFoundError:
                return None
            if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
                return None
            return KvEntry(msg.data or b"", int(msg.seq))
        try:
            return await cancellable(self.kv[bucket].get(key))
        except nats.js.errors.KeyNotFoundError:
            return None

    async def info_get(self, token: str) -> tuple[dict[str, Any] | None, int | None]:
        """A stream's info record and its revision (``(None, None)`` when there is none)."""
        entry = await self.kv_get(self.names.info_bucket, token)
        if entry is None or not entry.value:
            return None, None
        return json.loads(entry.value), entry.revision

    async def purge(self, stream: str, **req: Any) -> int:
        """Purge messages of a JetStream stream (``filter``, ``seq``, ``keep``); returns how many."""
        resp = await self.api(f"STREAM.PURGE.{stream}", req)
        return int(resp.get("purged", 0))

    async def subjects(self, stream: str, subjects_filter: str) -> dict[str, int]:
        """Every subject matching ``subjects_filter`` with its message count (paged past 100k)."""
        self.require()
        return await stream_subjects(self.nc, stream, subjects_filter, self.settings["request_timeout"])

    async def retrying(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run a publish, retrying timeouts and missing responders (leader elections) until the horizon."""
        deadline = time.monotonic() + self.settings["publish_retry_seconds"]
        delay = 0.05
        errors = retriable()
        while True:
            try:
                return await cancellable(op())
            except errors:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def spawn(self, aw: Awaitable[Any]) -> None:
        """Run ``aw`` in the background; :meth:`settle` waits for it."""
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def api_request(nc: Any, subject: str, payload: dict[str, Any] | None, wait: float) -> dict[str, Any]:
    """A raw JetStream API request on the connection ``nc``; an error reply raises nats-py's ``APIError``."""
    import nats.js.errors

    msg = await cancellable(nc.request(f"$JS.API.{subject}", json.dumps(payload or {}).encode(), timeout=wait))
    resp: dict[str, Any] = json.loads(msg.data)
    if "error" in resp:
        raise nats.js.errors.APIError.from_error(resp["error"])
    return resp


async def stream_subjects(nc: Any, stream: str, subjects_filter: str, wait: float) -> dict[str, int]:
    """Every subject of ``stream`` matching ``subjects_filter`` with its message count (``STREAM.INFO``, paged).

    The stream's own state: unlike a key-value bucket's ``keys()`` (a watcher that ends at its first "nothing
    pending" sign, which a delivery still on its way can give), it misses no subject that holds a message.
    """
    out: dict[str, int] = {}
    offset = 0
    while True:
        resp = await api_request(
            nc, f"STREAM.INFO.{stream}", {"subjects_filter": subjects_filter, "offset": offset}, wait
        )
        page = (resp.get("state") or {}).get("subjects") or {}
        out.update(page)
        offset += len(page)
        if not page or offset >= int(resp.get("total", 0)):
            return out

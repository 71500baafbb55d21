"""The NATS JetStream provider.

Layout on the server (names in :mod:`eventsource_nats.naming`):

* one JetStream stream (setting ``stream``) with subjects ``<prefix>.e.*``; each event stream is ONE
  subject ``<prefix>.e.<token>`` whose token encodes the stream id (never the raw id);
* KV buckets ``<stream>_info`` (stream attributes, created explicitly or on first append, plus the
  retention counters), ``<stream>_snap`` (snapshots, key ``<token>.<version>``), ``<stream>_ids``
  (best-effort event-id index, ``event id -> (seq, index)``) and ``<stream>_hidden`` (events deleted
  out of a multi-event envelope that still holds live events).

Writes. The version of the last event of each message is in its ``Vx-Version`` header. An append
publishes with ``Nats-Expected-Last-Subject-Sequence`` = the stream sequence of the subject's last
message (cached per stream id from acks, else read with a last-by-subject get), so the SERVER rejects
any write that raced in between: versions stay gap-free and exactly one of two racing writers wins,
across processes. Every publish carries ``Nats-Msg-Id`` (the event id; for an envelope, a hash of its
event ids), so a retry inside the duplicate window is answered with the original sequence; the
provider then reads that message back and checks it is THIS append (a reused id from another stream
raises :class:`DuplicateEventError` instead of a fake success). After the window, a conflicting retry
is recognised through the id index and the messages written after the tail it expected.

Batches: one envelope message holding every event (all or nothing, checked as one unit), or, on
servers with atomic batch publish (>= 2.12, detected at connect), one message per event committed
atomically with ``Nats-Batch-*`` headers. Positions are ``seq << 20 | index`` (see naming).

Publishes that time out or find no responder (a leader election) are retried with the same message
id and the same expected sequence for ``publish_retry_seconds``, so nothing is lost or duplicated.

Old servers: the expected-subject-sequence check is not enforced under replication before 2.9.21
(nats-server #4320). A replicated stream on such a server is refused at connect
(``old_server_replicated="refuse"``) or written with the stream-wide ``Nats-Expected-Last-Sequence``
check, which is correct there but serialises every writer of the store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import ssl
import time
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar
from urllib.parse import urlsplit

from eventsource.errors import (
    ConfigurationError,
    DuplicateEventError,
    EventSourceError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    StreamExistsError,
    StreamNotFoundError,
    ValidationError,
)
from eventsource.model import (
    AppendResult,
    ExpectedVersion,
    HealthStatus,
    NewStream,
    ProviderStats,
    RecordedEvent,
    StreamInfo,
    positional_constructor,
    utcnow,
)
from eventsource.provider import Capabilities, Provider, check_duplicate, check_expected, check_snapshot, position_at

from eventsource_nats import records
from eventsource_nats.errors import (
    _WRONG_SEQ_TEXT,
    DUPLICATE_IN_BATCH_CODE,
    WRONG_SEQUENCE_CODES,
    map_error,
)
from eventsource_nats.errors import DuplicateInBatch as _DuplicateInBatch
from eventsource_nats.errors import WrongSequence as _WrongSequence
from eventsource_nats.errors import js_errors as _js_errors
from eventsource_nats.errors import retriable as _retriable
from eventsource_nats.naming import (
    MAX_EVENTS_PER_MESSAGE,
    Names,
    batch_msg_id,
    event_key,
    position,
    split_position,
    stream_id_of,
    stream_token,
    token_is_reversible,
)
from eventsource_nats.records import HDR_COUNT, HDR_EXPECTED_SEQ, HDR_EXPECTED_SUBJECT_SEQ, HDR_MSG_ID, HDR_VERSION
from eventsource_nats.settings import NatsSettingsSchema, ServerUrl, parse_url

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
    from datetime import datetime

    from eventsource.model import Expected, NewEvent, NewSnapshot, RecordedSnapshot

T = TypeVar("T")

_make_append_result = positional_constructor(AppendResult)

FIXED_REPLICATED_OCC = (2, 9, 21)
"""First server whose expected-subject-sequence check holds on replicated streams (PR #4319)."""
ATOMIC_BATCH_SINCE = (2, 12, 0)
MESSAGE_OVERHEAD = 8192
"""Bytes of a message kept free for headers and the event head (ids, type, timestamp...)."""
ATOMIC_BATCH_LIMIT = 1000
PAGE_BYTES = 1024 * 1024
"""Payload bytes one read page may fetch at once (reads hold O(page) memory)."""
_LRU_SIZE = 50_000
_ACK_TICK = 0.05
"""Seconds between checks of the pub-ack deadlines (the precision of ``publish_timeout``)."""


class _Tail(NamedTuple):
    """What an append needs to know about a stream: its last message and version (a tuple: cheap)."""

    seq: int  # stream sequence of the subject's last message (0: no message)
    version: int
    exists: bool
    stream_seq: int = 0  # last sequence of the whole JetStream stream (stream-wide check only)
    claim: str | None = None  # id of the first event of the NO_STREAM append that created the (empty) stream


def _nats() -> Any:
    import nats

    return nats


@functools.cache
def _accepts_skip_subject_validation() -> bool:
    import inspect

    return "skip_subject_validation" in inspect.signature(_nats().NATS.connect).parameters


def _version_tuple(v: Any) -> tuple[int, int, int]:
    return (int(v.major), int(v.minor), int(v.patch))


class NatsProvider(Provider):
    """Event store on NATS JetStream (``nats://host:4222[,host:4222...]``).

    See the module docstring for the layout and the guarantees; the README lists the settings.
    """

    kind = "nats"
    capabilities: ClassVar[Capabilities] = Capabilities(
        global_order="total",
        concurrency="cross_process",
        deleted_stream_ids="reusable",
        max_event_size=1024 * 1024 - MESSAGE_OVERHEAD,
        max_batch_bytes=1024 * 1024 - 8 * MESSAGE_OVERHEAD,
    )
    settings_schema = NatsSettingsSchema

    def __init__(self, url: str | None = "nats://127.0.0.1:4222", **settings: Any) -> None:
        super().__init__(url or "nats://127.0.0.1:4222", **settings)
        self._url: ServerUrl = parse_url(self.url)
        s = self.settings
        self.names = Names(s["stream"], s["subject_prefix"])
        self._nc: Any = None
        self._js: Any = None
        self._kv: dict[str, Any] = {}
        self._tails: dict[str, _Tail] = {}
        self._tokens: dict[str, str] = {}
        self._events_prefix = self.names.subject("")
        self._ids_prefix = f"$KV.{self.names.ids_bucket}."
        self._ids: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()
        self._started = time.monotonic()
        self._server_version: tuple[int, int, int] = (0, 0, 0)
        self._replicas = 1
        self._atomic = False
        self._stream_wide = False
        self._max_payload = 1024 * 1024
        self._ack_sub: Any = None
        self._ack_prefix = ""
        self._ack_counter = 0
        self._acks: dict[str, tuple[asyncio.Future[Any], float]] = {}
        self._ack_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ plumbing

    @property
    def display_url(self) -> str | None:
        """The URL with the password masked (every host of a multi-server URL kept)."""
        return self._url.display

    @property
    def server_version(self) -> tuple[int, int, int]:
        """Version of the server this provider is connected to."""
        return self._server_version

    @property
    def uses_atomic_batches(self) -> bool:
        """Whether multi-event appends use atomic batch publish (else one envelope message)."""
        return self._atomic

    @property
    def occ_mode(self) -> str:
        """``"subject"`` (per-stream expected sequence) or ``"stream_wide"`` (old replicated server)."""
        return "stream_wide" if self._stream_wide else "subject"

    def _require(self) -> Any:
        if self._js is None or self._nc is None or self._nc.is_closed:
            msg = f"NATS provider {self.name!r} is not connected (call connect())"
            raise ProviderUnavailableError(msg)
        return self._js

    async def _call(self, what: str, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, what) from e

    async def _api(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A raw JetStream API request (for replies nats-py does not fully expose)."""
        import nats.js.errors

        self._require()
        msg = await self._nc.request(
            f"$JS.API.{subject}", json.dumps(payload or {}).encode(), timeout=self.settings["request_timeout"]
        )
        resp: dict[str, Any] = json.loads(msg.data)
        if "error" in resp:
            raise nats.js.errors.APIError.from_error(resp["error"])
        return resp

    def _token(self, stream_id: str) -> str:
        """``stream_token(stream_id)``, memoised (the append path asks for it on every call)."""
        token = self._tokens.get(stream_id)
        if token is None:
            if len(self._tokens) >= _LRU_SIZE:
                self._tokens.clear()
            token = self._tokens[stream_id] = stream_token(stream_id)
        return token

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect, check the server version, create the stream and buckets if missing."""
        if self._nc is not None and not self._nc.is_closed:
            return
        nats = _nats()
        s = self.settings
        opts: dict[str, Any] = {
            "servers": list(self._url.servers),
            "connect_timeout": s["connect_timeout"],
            "max_reconnect_attempts": s["max_reconnect_attempts"],
            "reconnect_time_wait": 0.25,
            "name": f"eventsource:{s['stream']}",
        }
        if _accepts_skip_subject_validation():
            # every subject this provider uses is built from validated settings (stream name, prefix:
            # regexps without whitespace or CR/LF), encoded tokens ([A-Za-z0-9_-]) and hex keys, so
            # the client's per-publish regexp check can never fire; skipping it keeps the append cheap
            opts["skip_subject_validation"] = True
        if self._url.user is not None:
            if self._url.password is None:
                opts["token"] = self._url.user
            else:
                opts["user"] = self._url.user
                opts["password"] = self._url.password
        if s["credentials_file"]:
            opts["user_credentials"] = s["credentials_file"]
        if s["nkeys_seed_file"]:
            opts["nkeys_seed"] = s["nkeys_seed_file"]
        if self._url.tls or s["tls_ca_file"] or s["tls_cert_file"]:
            ctx = ssl.create_default_context(cafile=s["tls_ca_file"])
            if s["tls_cert_file"]:
                ctx.load_cert_chain(s["tls_cert_file"], s["tls_key_file"])
            opts["tls"] = ctx
            if s["tls_hostname"]:
                opts["tls_hostname"] = s["tls_hostname"]
        await self._probe_servers(s["connect_timeout"])
        nc = nats.NATS()
        budget = s["connect_timeout"] * 2 * len(self._url.servers) + 1
        try:
            await asyncio.wait_for(nc.connect(**opts), timeout=budget)
        except Exception as e:
            await _quiet(nc.close())
            err = map_error(e, f"connecting to {self.display_url}")
            if isinstance(err, ProviderTimeoutError):
                err = ProviderUnavailableError(f"cannot connect to {self.display_url} within {budget:.0f}s")
            raise err from e
        self._nc = nc
        self._js = nc.jetstream(timeout=s["request_timeout"])
        try:
            await self._call("preparing the JetStream store", self._ensure_store())
        except BaseException:
            await _quiet(nc.close())
            self._nc = self._js = None
            raise

    async def _probe_servers(self, limit: float) -> None:
        """Fail at once when no server accepts a TCP connection (refused, unresolvable).

        nats-py keeps retrying a refused initial connect until its budget runs out (about 11 s with the
        defaults, times the manager's retries); a server that answers is then connected to as usual.
        ``limit``: seconds each server gets to accept.
        """
        reasons = []
        for server in self._url.servers:
            parts = urlsplit(server)
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, parts.port or 4222), timeout=limit
                )
            except (OSError, TimeoutError) as e:
                reasons.append(f"{parts.hostname}:{parts.port or 4222}: {e.strerror or type(e).__name__}")
                continue
            writer.close()
            await _quiet(writer.wait_closed())
            return
        msg = f"cannot connect to {self.display_url}: no server accepts connections ({'; '.join(reasons)})"
        raise ProviderUnavailableError(msg, operation="connect")

    async def _ensure_store(self) -> None:
        import nats.js.errors
        from nats.js import api

        s = self.settings
        nc, js = self._nc, self._js
        self._server_version = _version_tuple(nc.connected_server_version)
        self._max_payload = int(nc.max_payload)
        atomic_possible = self._server_version >= ATOMIC_BATCH_SINCE
        if s["batch_mode"] == "atomic" and not atomic_possible:
            msg = (
                f"batch_mode='atomic' needs nats-server >= 2.12 (atomic batch publish); "
                f"{self.display_url} runs {'.'.join(map(str, self._server_version))}"
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
        try:
            info = await js.stream_info(s["stream"])
        except nats.js.errors.NotFoundError:
            try:
                info = await js.add_stream(cfg)
            except nats.js.errors.BadRequestError:
                info = await js.stream_info(s["stream"])  # created concurrently by another instance
        if want_atomic and not info.config.allow_atomic:
            info = await js.update_stream(replace(info.config, allow_atomic=True))
        self._replicas = int(info.config.num_replicas or 1)
        self._stream_wide = False
        if self._replicas > 1 and self._server_version < FIXED_REPLICATED_OCC:
            if s["old_server_replicated"] == "refuse":
                msg = (
                    f"stream {s['stream']!r} has {self._replicas} replicas, but {self.display_url} runs nats-server "
                    f"{'.'.join(map(str, self._server_version))}, whose per-subject concurrency check is not enforced "
                    "under replication before 2.9.21 (nats-server #4320): upgrade the server, use replicas=1, or set "
                    "old_server_replicated='stream_wide' (correct, but serialises every writer)"
                )
                raise ConfigurationError(msg, field="replicas")
            self._stream_wide = True
        self._atomic = want_atomic and bool(info.config.allow_atomic)
        for bucket in self.names.buckets:
            try:
                kv = await js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                try:
                    kv = await js.create_key_value(
                        bucket=bucket, history=1, replicas=s["replicas"], storage=storage, direct=True
                    )
                except nats.js.errors.BadRequestError:
                    kv = await js.key_value(bucket)
            self._kv[bucket] = kv
        room = self._max_payload - MESSAGE_OVERHEAD
        # per-instance limits of this server (the kit and the manager read provider.capabilities)
        self.capabilities = Capabilities(  # type: ignore[misc]
            global_order="total",
            concurrency="cross_process",
            deleted_stream_ids="reusable",
            max_event_size=room,
            max_batch_bytes=None if self._atomic else self._max_payload - 8 * MESSAGE_OVERHEAD,
            extra={
                "batches": "atomic batch publish" if self._atomic else "one envelope message",
                "occ": self.occ_mode,
                "server_version": ".".join(map(str, self._server_version)),
            },
        )

    async def close(self) -> None:
        """Finish background work (consumer deletions) and close the connection. Idempotent."""
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        nc, self._nc, self._js = self._nc, None, None
        self._ack_sub = None
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._kv.clear()
        self._tails.clear()
        if nc is not None and not nc.is_closed:
            await _quiet(nc.drain())
            await _quiet(nc.close())

    async def drop_store(self) -> None:
        """Delete the JetStream stream and the four KV buckets (every event, snapshot and index)."""
        import nats.js.errors

        js = self._require()
        for name in (self.names.stream, *(f"KV_{b}" for b in self.names.buckets)):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        self._tails.clear()
        self._ids.clear()

    # ------------------------------------------------------------------ low-level reads

    async def _get(self, req: dict[str, Any]) -> Any:
        """One stored message (``None`` when there is none); leader-read on replicated streams."""
        import nats.js.errors

        js = self._require()
        direct = self._replicas == 1
        try:
            if "last_by_subj" in req:
                return await js.get_msg(self.names.stream, subject=req["last_by_subj"], direct=direct)
            if "next_by_subj" in req:
                return await js.get_msg(
                    self.names.stream, seq=req["seq"], subject=req["next_by_subj"], next=True, direct=direct
                )
            return await js.get_msg(self.names.stream, seq=req["seq"], direct=direct)
        except nats.js.errors.NotFoundError:
            return None

    async def _last_msg(self, subject: str) -> Any:
        return await self._get({"last_by_subj": subject})

    async def _next_msg(self, subject: str, seq: int) -> Any:
        return await self._get({"seq": max(1, seq), "next_by_subj": subject})

    async def _kv_get(self, bucket: str, key: str) -> Any:
        import nats.js.errors

        try:
            return await self._kv[bucket].get(key)
        except nats.js.errors.KeyNotFoundError:
            return None

    async def _info_get(self, token: str) -> tuple[dict[str, Any] | None, int | None]:
        entry = await self._kv_get(self.names.info_bucket, token)
        if entry is None or not entry.value:
            return None, None
        return json.loads(entry.value), entry.revision

    async def _purge(self, stream: str, **req: Any) -> int:
        resp = await self._api(f"STREAM.PURGE.{stream}", req)
        return int(resp.get("purged", 0))

    async def _subjects(self, stream: str, subjects_filter: str) -> dict[str, int]:
        """Every subject matching ``subjects_filter`` with its message count (paged past 100k)."""
        out: dict[str, int] = {}
        offset = 0
        while True:
            resp = await self._api(f"STREAM.INFO.{stream}", {"subjects_filter": subjects_filter, "offset": offset})
            page = (resp.get("state") or {}).get("subjects") or {}
            out.update(page)
            offset += len(page)
            if not page or offset >= int(resp.get("total", 0)):
                return out

    def _stream_id(self, subject_or_token: str, msg_body: bytes | None = None) -> str | None:
        token = subject_or_token.rsplit(".", 1)[-1]
        sid = stream_id_of(token)
        if sid is None and msg_body:
            head, _, _ = next(records.frames(msg_body))
            return str(head["s"])
        return sid

    async def _consume(self, subject: str, start_seq: int, page_size: int) -> AsyncGenerator[Any, None]:
        """Messages on ``subject`` from ``start_seq`` to the end, through an ephemeral pull consumer.

        Holds one page at a time; the consumer is deleted when the iteration ends or is abandoned.
        """
        import nats.errors
        from nats.js import api

        js = self._require()
        cfg = api.ConsumerConfig()

        async def subscribe() -> Any:
            nonlocal cfg
            cfg = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(1, start_seq),
                ack_policy=api.AckPolicy.NONE,
                mem_storage=True,
                num_replicas=1,
                inactive_threshold=60.0,
            )
            return await js.pull_subscribe(subject, stream=self.names.stream, config=cfg)

        # consumer creation right after a node loss can time out while the cluster recovers: retried
        # (an ephemeral consumer created by a timed-out attempt expires after its inactive threshold)
        sub = await self._retrying(subscribe)
        try:
            remaining = (await self._retrying(sub.consumer_info)).num_pending
            per_msg_events, per_msg_bytes = 1.0, float(PAGE_BYTES)  # first fetch: one message, then adapt
            while remaining > 0:
                # a page is page_size EVENTS (an envelope holds many) and at most PAGE_BYTES of payload
                batch = int(min(remaining, max(1, page_size / per_msg_events), max(1, PAGE_BYTES / per_msg_bytes)))
                try:
                    msgs = await sub.fetch(batch, timeout=self.settings["request_timeout"])
                except nats.errors.TimeoutError:
                    remaining = (await sub.consumer_info()).num_pending  # purged while reading
                    if remaining:
                        raise
                    return
                per_msg_events = max(1.0, sum(int((m.headers or {}).get(HDR_COUNT, "1")) for m in msgs) / len(msgs))
                per_msg_bytes = max(1.0, sum(len(m.data) for m in msgs) / len(msgs))
                remaining = msgs[-1].metadata.num_pending
                for m in msgs:
                    yield m
        finally:
            name = cfg.name
            self._spawn(_quiet(sub.unsubscribe()))
            if name:
                self._spawn(_quiet(js.delete_consumer(self.names.stream, name)))

    async def _hidden_possible(self) -> bool:
        """Whether any envelope has deleted events (the hidden bucket holds a key)."""
        resp = await self._api(f"STREAM.INFO.KV_{self.names.hidden_bucket}")
        return int(resp["state"]["messages"]) > 0

    async def _hidden(self, token: str, seq: int) -> frozenset[int]:
        entry = await self._kv_get(self.names.hidden_bucket, Names.hidden_key(token, seq))
        if entry is None or not entry.value:
            return frozenset()
        return frozenset(json.loads(entry.value))

    async def _decode_msg(
        self, subject: str, seq: int, headers: dict[str, str] | None, body: bytes, hidden_possible: bool = True
    ) -> list[RecordedEvent]:
        token = self.names.token_of_subject(subject)
        sid = stream_id_of(token)
        hidden: frozenset[int] = frozenset()
        if hidden_possible and int((headers or {}).get(HDR_COUNT, "1")) > 1:
            hidden = await self._hidden(token, seq)
        return records.decode(body, headers, seq, sid, hidden)

    # ------------------------------------------------------------------ tails (expected versions)

    async def _fetch_tail(self, token: str) -> _Tail:
        """Read the subject's last message (and the info record when the subject is empty)."""
        subject = self.names.subject(token)
        stream_seq = 0
        if self._stream_wide:
            resp = await self._api(f"STREAM.INFO.{self.names.stream}")
            stream_seq = int(resp["state"]["last_seq"])
        last, (info, _) = await asyncio.gather(self._last_msg(subject), self._info_get(token))
        if last is not None:
            _, version = records.message_versions(last.headers)
            tail = _Tail(int(last.seq), version, exists=True, stream_seq=max(stream_seq, int(last.seq)))
        else:
            known = int(info.get("known_version", 0)) if info else 0
            claim = info.get("claim") if info else None
            tail = _Tail(0, known, exists=info is not None, stream_seq=stream_seq, claim=claim)
        self._tails[token] = tail
        return tail

    @staticmethod
    def _satisfied(expected: Expected, tail: _Tail, first_id: str) -> bool:
        if expected == ExpectedVersion.ANY:
            return True
        if expected == ExpectedVersion.NO_STREAM:
            # a stream this very append claimed (and has not written yet: a retry) still counts as new
            return not tail.exists or (tail.seq == 0 and tail.version == 0 and tail.claim == first_id)
        if expected == ExpectedVersion.STREAM_EXISTS:
            return tail.exists
        return tail.version == expected

    # ------------------------------------------------------------------ events: append

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Append atomically with the version check done by the server (see the module docstring)."""
        self._require()
        if len(events) >= MAX_EVENTS_PER_MESSAGE:
            msg = f"a batch holds at most {MAX_EVENTS_PER_MESSAGE - 1} events on NATS"
            raise ValidationError(msg, field="events")
        try:
            return await self._append(stream_id, list(events), expected, stream)
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, f"append to {stream_id!r}") from e

    async def _append(
        self, sid: str, events: list[NewEvent], expected: Expected, stream: NewStream | None
    ) -> AppendResult:
        token = self._token(sid)
        if len(events) > 1 or events[0].event_id in self._ids:
            # ids inside one envelope are not deduplicated by the server one by one, and an id this
            # process wrote may be older than the duplicate window: look them up first
            dup = await self._find_stored(sid, events, scan_from=None)
            if dup is not None:
                return dup
        tail = self._tails.get(token)
        if tail is not None and tail.seq == 0:
            # an empty stream's cached tail expects subject sequence 0, which a stream deleted meanwhile
            # (by another instance) matches too: read it again
            tail = None
        fresh = tail is None
        if tail is None:
            tail = await self._fetch_tail(token)
        first_id = events[0].event_id
        for _ in range(200):
            if not self._satisfied(expected, tail, first_id):
                if not fresh:
                    tail, fresh = await self._fetch_tail(token), True
                    continue
                # a retry of an append that landed after the duplicate window is not a conflict: its ids are
                # in the index, or (its ack lost, so never indexed) in the messages right after `expected`
                scan_from = None
                if not isinstance(expected, ExpectedVersion) and tail.exists and tail.seq and tail.version > expected:
                    scan_from = await self._seek(self.names.subject(token), expected + 1, 1, tail.seq)
                dup = await self._find_stored(sid, events, scan_from=scan_from, scan_messages=len(events))
                if dup is not None:
                    return dup
                check_expected(sid, expected, exists=tail.exists, version=tail.version)
            claim: int | None = None
            if expected == ExpectedVersion.NO_STREAM and not tail.exists and not self._stream_wide:
                self._check_fits(sid, token, events)  # refuse an oversize append before it claims the id
                # claim the id in the info bucket first (KV create: one creator wins), so a create_stream
                # or another NO_STREAM append racing this one loses instead of both succeeding
                claim = await self._claim(token, sid, stream, events[0])
                if claim is None:
                    tail, fresh = await self._fetch_tail(token), True
                    continue
                tail = tail._replace(exists=True, claim=first_id)
            try:
                try:
                    result = await self._write(sid, token, events, tail)
                except BaseException:
                    if claim is not None:
                        # lost, failed, or unknown (a timeout): give the id back, so an append that did not
                        # happen leaves no empty stream behind (one that did gets its record from its first event)
                        await self._unclaim(token, claim)
                    raise
            except _WrongSequence:
                before = tail
                tail, fresh = await self._fetch_tail(token), True
                dup = await self._find_stored(sid, events, scan_from=before.seq + 1)
                if dup is not None:
                    return dup
                continue
            except _DuplicateInBatch:
                self._tails.pop(token, None)
                dup = await self._find_stored(sid, events, scan_from=tail.seq + 1 if tail.seq else 1)
                if dup is not None:
                    return dup
                msg = f"an event id of this batch is already stored (stream {sid!r}), and this append is not a retry"
                raise DuplicateEventError(msg, stream_id=sid) from None
            if not tail.exists and not result.duplicate:
                await self._create_info(token, sid, stream, events[0])
            return result
        msg = f"append to {sid!r}: the stream kept changing under contention"
        raise ProviderTimeoutError(msg, stream_id=sid)

    @staticmethod
    def _implicit_info(sid: str, stream: NewStream | None, first: NewEvent) -> dict[str, Any]:
        """The info record of a stream created by its first append."""
        return {
            "id": sid,
            "name": stream.name if stream else None,
            "aggregate_id": stream.aggregate_id if stream else first.aggregate_id,
            "aggregate_type": stream.aggregate_type if stream else first.aggregate_type,
            "metadata": dict(stream.metadata) if stream else {},
            "created_at": first.timestamp.isoformat(),
            "removed": 0,
            "known_version": 0,
        }

    async def _claim(self, token: str, sid: str, stream: NewStream | None, first: NewEvent) -> int | None:
        """Create the stream's info record naming ``first`` as its creator: its revision, or ``None`` if one exists."""
        import nats.js.errors

        info = self._implicit_info(sid, stream, first)
        info["claim"] = first.event_id
        try:
            return int(await self._kv[self.names.info_bucket].create(token, json.dumps(info).encode()))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return None

    async def _unclaim(self, token: str, revision: int) -> None:
        """Delete a claim record if it is still at ``revision`` (best effort: nothing else to do on failure)."""
        await _quiet(self._kv[self.names.info_bucket].delete(token, last=revision))

    async def _create_info(self, token: str, sid: str, stream: NewStream | None, first: NewEvent) -> None:
        info = self._implicit_info(sid, stream, first)
        # create-if-absent (expected subject sequence 0) without waiting for the ack: a stream created
        # concurrently keeps its record, and a lost record is rebuilt from the first event on read
        subject = f"$KV.{self.names.info_bucket}.{token}"
        await _quiet(self._nc.publish(subject, json.dumps(info).encode(), headers={HDR_EXPECTED_SUBJECT_SEQ: "0"}))

    def _expect_headers(self, tail: _Tail) -> dict[str, str]:
        if self._stream_wide:
            return {HDR_EXPECTED_SEQ: str(tail.stream_seq)}
        return {HDR_EXPECTED_SUBJECT_SEQ: str(tail.seq)}

    async def _retrying(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run a publish, retrying timeouts and missing responders (leader elections) until the horizon."""
        deadline = time.monotonic() + self.settings["publish_retry_seconds"]
        delay = 0.05
        retriable = _retriable()
        while True:
            try:
                return await op()
            except retriable:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _write(self, sid: str, token: str, events: list[NewEvent], tail: _Tail) -> AppendResult:
        if len(events) > 1 and self._atomic and len(events) <= ATOMIC_BATCH_LIMIT:
            return await self._write_atomic(sid, token, events, tail)
        return await self._write_message(sid, token, events, tail)

    def _check_fits(self, sid: str, token: str, events: list[NewEvent]) -> None:
        """The size check of :meth:`_write_message`, run before anything is written."""
        n = len(events)
        if n > 1 and self._atomic and n <= ATOMIC_BATCH_LIMIT:
            return  # atomic batches check each message as they build it
        body = records.encode(events, None if token_is_reversible(token) else sid)
        self._check_size(body, {HDR_MSG_ID: "x" * 64, HDR_VERSION: "0" * 20}, "the event" if n == 1 else f"the batch of {n} events")

    def _check_size(self, body: bytes, headers: dict[str, str], what: str) -> None:
        size = len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 16
        if size > self._max_payload:
            msg = f"{what} is {size} bytes as a NATS message; the server's max_payload is {self._max_payload}"
            raise ValidationError(msg, field="events", size=size, limit=self._max_payload)

    async def _write_message(self, sid: str, token: str, events: list[NewEvent], tail: _Tail) -> AppendResult:
        """One message holding every event (a single event, or an envelope)."""
        self._require()
        n = len(events)
        last_version = tail.version + n
        headers = {
            HDR_MSG_ID: events[0].event_id if n == 1 else batch_msg_id([e.event_id for e in events]),
            HDR_VERSION: str(last_version),
        }
        if self._stream_wide:
            headers[HDR_EXPECTED_SEQ] = str(tail.stream_seq)
        else:
            headers[HDR_EXPECTED_SUBJECT_SEQ] = str(tail.seq)
        if n > 1:  # readers take a missing Vx-Count as 1
            headers[HDR_COUNT] = str(n)
        body = records.encode(events, None if token_is_reversible(token) else sid)
        if len(body) + 1024 > self._max_payload:
            self._check_size(body, headers, "the event" if n == 1 else f"the batch of {n} events")
        subject = f"{self._events_prefix}{token}"
        ack = await self._publish_expecting(subject, body, headers)
        if ack.get("duplicate"):
            resolved = await self._resolve_duplicate_ack(sid, events, int(ack["seq"]))
            if resolved is not None:
                return resolved
            # the message the server remembers for this id is gone (stream deleted, or retention): the id
            # is free again. Publish under a message id derived from the gone one, so a retry of this
            # publish is still recognised as a duplicate of it.
            headers[HDR_MSG_ID] = f"{headers[HDR_MSG_ID]}~{int(ack['seq'])}"
            ack = await self._publish_expecting(subject, body, headers)
            if ack.get("duplicate"):
                again = await self._resolve_duplicate_ack(sid, events, int(ack["seq"]))
                if again is None:
                    msg = f"message id {headers[HDR_MSG_ID]!r} is remembered for a message that no longer exists"
                    raise DuplicateEventError(msg, event_id=events[0].event_id, stream_id=sid)
                return again
        seq = int(ack["seq"])
        self._tails[token] = _Tail(seq, last_version, True, seq)  # noqa: FBT003 - positional: hot path
        if n == 1:  # the hot path: no per-call generators
            ev = events[0]
            await self._index_one(ev.event_id, seq, 0)
            return _make_append_result(
                sid,
                last_version,
                last_version,
                (position(seq, 0),),
                (ev.event_id,),
                ev.timestamp,
                False,  # noqa: FBT003
            )
        await self._index(events, [(seq, i) for i in range(n)])
        return _make_append_result(
            sid,
            tail.version + 1,
            last_version,
            tuple(position(seq, i) for i in range(n)),
            tuple(e.event_id for e in events),
            events[0].timestamp,
            False,  # noqa: FBT003
        )

    async def _publish_expecting(self, subject: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """Publish with retries (:meth:`_retrying`); a refused expected sequence raises :class:`_WrongSequence`."""
        timeout = self.settings["publish_timeout"]
        try:
            try:
                return await self._publish(subject, body, headers, timeout)
            except _retriable():
                return await self._retrying(lambda: self._publish(subject, body, headers, timeout))  # type: ignore[no-any-return]
        except _js_errors().APIError as e:
            if e.err_code in WRONG_SEQUENCE_CODES or _WRONG_SEQ_TEXT.search(e.description or ""):
                raise _WrongSequence from e
            raise

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str], wait: float) -> dict[str, Any]:
        """A JetStream publish awaiting its ack, through one reply subscription kept for the connection.

        Same protocol as ``js.publish`` (a request whose reply is the pub ack) without a per-call
        ``wait_for`` and ack dataclass: the append path is the hot path.
        """
        if self._ack_sub is None:
            self._ack_prefix = self._nc.new_inbox()
            self._ack_sub = await self._nc.subscribe(f"{self._ack_prefix}.*", cb=self._on_ack)
        self._ack_counter += 1
        token = str(self._ack_counter)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._acks[token] = (fut, loop.time() + wait)
        if self._ack_timer is None:
            self._ack_timer = loop.call_later(_ACK_TICK, self._expire_acks)
        try:
            await self._nc.publish(subject, body, reply=f"{self._ack_prefix}.{token}", headers=headers)
            msg = await fut
        finally:
            self._acks.pop(token, None)
        if not msg.data and (msg.headers or {}).get("Status") == "503":
            raise _js_errors().NoStreamResponseError
        resp: dict[str, Any] = json.loads(msg.data)
        if "error" in resp:
            raise _js_errors().APIError.from_error(resp["error"])
        return resp

    async def _on_ack(self, msg: Any) -> None:
        entry = self._acks.get(msg.subject.rsplit(".", 1)[-1])
        if entry is not None and not entry[0].done():
            entry[0].set_result(msg)

    def _expire_acks(self) -> None:
        """Fail the pub acks past their deadline with a timeout (one timer for every pending publish).

        Armed while publishes wait, so an append does not pay for a timeout object and a timer of its
        own; a deadline is honoured within ``_ACK_TICK``.
        """
        self._ack_timer = None
        if not self._acks:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for fut, deadline in list(self._acks.values()):
            if deadline <= now and not fut.done():
                fut.set_exception(TimeoutError())
        self._ack_timer = loop.call_later(_ACK_TICK, self._expire_acks)

    async def _write_atomic(self, sid: str, token: str, events: list[NewEvent], tail: _Tail) -> AppendResult:
        """One message per event, committed as one atomic batch (nats-server >= 2.12)."""
        import nats.js.errors

        self._require()
        nc = self._nc
        subject = self.names.subject(token)
        carry = None if token_is_reversible(token) else sid
        n = len(events)
        timeout = self.settings["publish_timeout"]
        bodies = [records.encode([ev], carry) for ev in events]
        for ev, body in zip(events, bodies, strict=True):
            self._check_size(body, {HDR_MSG_ID: ev.event_id, "x" * 64: "x" * 64}, "an event of the batch")

        async def send() -> dict[str, Any]:
            batch_id = uuid.uuid4().hex
            reply: dict[str, Any] = {}
            for i, (ev, body) in enumerate(zip(events, bodies, strict=True), start=1):
                headers = {
                    "Nats-Batch-Id": batch_id,
                    "Nats-Batch-Sequence": str(i),
                    HDR_MSG_ID: ev.event_id,
                    HDR_VERSION: str(tail.version + i),
                    HDR_COUNT: "1",
                }
                if i == 1:
                    headers.update(self._expect_headers(tail))
                if i == n:
                    headers["Nats-Batch-Commit"] = "1"
                if i in (1, n):
                    msg = await nc.request(subject, body, headers=headers, timeout=timeout)
                    if msg.data:
                        reply = json.loads(msg.data)
                        if "error" in reply:
                            return reply
                else:
                    await nc.publish(subject, body, headers=headers)
            return reply

        try:
            reply = await self._retrying(send)
        except nats.errors.NoRespondersError as e:
            raise nats.js.errors.NoStreamResponseError from e
        if "error" in reply:
            err = reply["error"]
            code = int(err.get("err_code", 0))
            if code in WRONG_SEQUENCE_CODES or _WRONG_SEQ_TEXT.search(err.get("description", "")):
                raise _WrongSequence
            if code == DUPLICATE_IN_BATCH_CODE:
                raise _DuplicateInBatch
            raise nats.js.errors.APIError.from_error(err)
        last_seq = int(reply["seq"])
        seqs = [last_seq - n + 1 + i for i in range(n)]
        self._tails[token] = _Tail(last_seq, tail.version + n, exists=True, stream_seq=last_seq)
        await self._index(events, [(s, 0) for s in seqs])
        return AppendResult(
            stream_id=sid,
            first_version=tail.version + 1,
            last_version=tail.version + n,
            positions=tuple(position(s, 0) for s in seqs),
            event_ids=tuple(e.event_id for e in events),
            timestamp=events[0].timestamp,
        )

    def _remember(self, event_id: str, loc: tuple[int, int]) -> None:
        self._ids[event_id] = loc
        self._ids.move_to_end(event_id)
        if len(self._ids) > _LRU_SIZE:
            self._ids.popitem(last=False)

    async def _index(self, events: Sequence[NewEvent], locs: Sequence[tuple[int, int]]) -> None:
        """Record ``event id -> (seq, index)`` in this process and (best effort, no ack) in the id index.

        The index is written after the ack without waiting for the server's ack of the index entry; an
        entry lost in a crash makes ``get_event`` without a stream id miss that event (with a stream id
        it falls back to reading the stream); :meth:`rebuild_id_index` rewrites every entry.
        """
        publish = self._nc.publish
        bucket = self.names.ids_bucket
        try:
            for ev, loc in zip(events, locs, strict=True):
                self._remember(ev.event_id, loc)
                await publish(f"$KV.{bucket}.{event_key(ev.event_id)}", f"{loc[0]} {loc[1]}".encode())
        except Exception:  # noqa: BLE001, S110 - best effort: the events themselves are stored
            pass

    async def _index_one(self, event_id: str, seq: int, index: int) -> None:
        """:meth:`_index` for one event (the single-append hot path)."""
        ids = self._ids
        ids[event_id] = (seq, index)
        ids.move_to_end(event_id)
        if len(ids) > _LRU_SIZE:
            ids.popitem(last=False)
        try:  # noqa: SIM105 - cheaper than a suppress() object on the hot path
            await self._nc.publish(f"{self._ids_prefix}{event_key(event_id)}", f"{seq} {index}".encode())
        except Exception:  # noqa: BLE001, S110 - best effort: the event itself is stored
            pass

    async def rebuild_id_index(self) -> int:
        """Rewrite the id-index entry of every stored event (after a crash lost some); returns the count."""
        js = self._require()
        bucket = self.names.ids_bucket

        async def run() -> int:
            n = 0
            pending = []
            async with contextlib.aclosing(self.read_all(page_size=1000)) as recs:
                async for rec in recs:
                    seq, idx = split_position(rec.position)
                    pending.append(
                        await js.publish_async(f"$KV.{bucket}.{event_key(rec.event_id)}", f"{seq} {idx}".encode())
                    )
                    n += 1
                    if len(pending) >= 1000:  # noqa: PLR2004 - acknowledgement window
                        await asyncio.gather(*pending)
                        pending.clear()
            await asyncio.gather(*pending)
            return n

        return await self._call("rebuild the id index", run())

    async def _locate(self, event_id: str) -> tuple[int, int] | None:
        loc = self._ids.get(event_id)
        if loc is not None:
            return loc
        entry = await self._kv_get(self.names.ids_bucket, event_key(event_id))
        if entry is None or not entry.value:
            return None
        seq, idx = entry.value.decode().split()
        return int(seq), int(idx)

    async def _locate_many(self, event_ids: Sequence[str]) -> list[tuple[int, int] | None]:
        """Locations of many ids: this process first, then pipelined direct gets on the id index."""
        out: list[tuple[int, int] | None] = [self._ids.get(i) for i in event_ids]
        todo = [n for n, loc in enumerate(out) if loc is None]
        if not todo:
            return out
        bucket = self.names.ids_bucket
        values = await self._direct_last_many(f"KV_{bucket}", [f"$KV.{bucket}.{event_key(event_ids[n])}" for n in todo])
        for n, value in zip(todo, values, strict=True):
            if value:
                seq, idx = value.decode().split()
                out[n] = (int(seq), int(idx))
        return out

    async def _direct_last_many(self, stream: str, subjects: Sequence[str]) -> list[bytes | None]:
        """Last message data of each subject: every direct get sent at once, one reply inbox, one wait.

        ``None`` for a subject without a message (or whose last message is a delete/purge marker).
        """
        nc = self._nc
        inbox = nc.new_inbox()
        results: list[bytes | None] = [None] * len(subjects)
        failures: list[str] = []
        waiting = len(subjects)
        done = asyncio.get_running_loop().create_future()

        async def on_reply(msg: Any) -> None:
            nonlocal waiting
            n = int(msg.subject.rsplit(".", 1)[-1])
            status = (msg.headers or {}).get("Status")
            op = (msg.headers or {}).get("KV-Operation")
            if not status and op not in ("DEL", "PURGE"):
                results[n] = msg.data
            elif status and status != "404":  # 404: no such key; anything else is a failed lookup
                failures.append(status)
            waiting -= 1
            if waiting == 0 and not done.done():
                done.set_result(None)

        sub = await nc.subscribe(f"{inbox}.*", cb=on_reply)
        try:
            for n, subject in enumerate(subjects):
                await nc.publish(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", reply=f"{inbox}.{n}")
            await nc.flush()
            await asyncio.wait_for(done, timeout=self.settings["request_timeout"])
        finally:
            await _quiet(sub.unsubscribe())
        if failures:
            msg = f"{len(failures)} lookups on {stream} failed (status {failures[0]})"
            raise ProviderUnavailableError(msg)
        return results

    async def _load_event(self, loc: tuple[int, int], event_id: str) -> RecordedEvent | None:
        """The live event at ``loc`` if it really is ``event_id`` (index entries may be stale)."""
        msg = await self._get({"seq": loc[0]})
        if msg is None:
            return None
        for rec in await self._decode_msg(msg.subject, int(msg.seq), msg.headers, msg.data or b""):
            if rec.event_id == event_id and rec.position == position(*loc):
                return rec
        return None

    async def _find_stored(
        self, sid: str, events: Sequence[NewEvent], scan_from: int | None, scan_messages: int | None = None
    ) -> AppendResult | None:
        """Idempotency: the original result if every id is stored as this append, ``None`` if none is.

        Looks ids up in this process, then in the id index; with ``scan_from`` it also reads the
        stream's messages from that sequence on (the writes that raced a stale expected sequence), at
        most ``scan_messages`` of them when given.
        """
        ids = [e.event_id for e in events]
        locs = await self._locate_many(ids)
        stored: list[RecordedEvent | None] = list(
            await asyncio.gather(
                *(self._load_event(loc, i) if loc else _none() for loc, i in zip(locs, ids, strict=True))
            )
        )
        if scan_from is not None and any(s is None for s in stored):
            wanted = {i: n for n, i in enumerate(ids) if stored[n] is None}
            subject = self.names.subject(stream_token(sid))
            budget = scan_messages
            async with contextlib.aclosing(self._consume(subject, scan_from, min(256, budget or 256))) as msgs:
                async for m in msgs:
                    for rec in await self._decode_msg(m.subject, m.metadata.sequence.stream, m.headers, m.data):
                        n = wanted.pop(rec.event_id, None)
                        if n is not None:
                            stored[n] = rec
                    if budget is not None:
                        budget -= 1
                    if not wanted or budget == 0:
                        break
        return check_duplicate(sid, events, stored)

    async def _resolve_duplicate_ack(self, sid: str, events: Sequence[NewEvent], seq: int) -> AppendResult | None:
        """JetStream answered "duplicate" with the seq of the message that holds this message id.

        ``None`` when that message no longer exists (deleted with its stream, or by retention).
        """
        msg = await self._get({"seq": seq})
        if msg is None:
            return None
        found = {r.event_id: r for r in await self._decode_msg(msg.subject, seq, msg.headers, msg.data or b"")}
        stored: list[RecordedEvent | None] = [found.get(e.event_id) for e in events]
        result = check_duplicate(sid, events, stored)
        if result is None:
            text = f"message id {events[0].event_id!r} was already used for other events (at sequence {seq})"
            raise DuplicateEventError(text, event_id=events[0].event_id, stream_id=sid)
        return result

    # ------------------------------------------------------------------ events: read

    async def _seek(self, subject: str, from_version: int, first_seq: int, last_seq: int) -> int:
        """The sequence of the first message on ``subject`` holding a version >= ``from_version``.

        Binary search with next-by-subject gets: O(log n) requests, never a scan.
        """
        lo, hi = first_seq, last_seq  # smallest s whose next message on the subject reaches from_version
        while lo < hi:
            mid = (lo + hi) // 2
            m = await self._next_msg(subject, mid)
            if m is None:
                return hi
            _, last_v = records.message_versions(m.headers)
            if last_v >= from_version:
                hi = mid
            else:
                lo = int(m.seq) + 1
        return lo

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Events of one stream in version order (or reversed), a page at a time."""
        self._require()
        token = stream_token(stream_id)
        subject = self.names.subject(token)
        try:
            # the first and last message bound the consumer: it starts AT the stream's first message
            # (a filtered consumer from sequence 1 would make the server walk the whole store)
            last, first, hidden_possible = await asyncio.gather(
                self._last_msg(subject), self._next_msg(subject, 1), self._hidden_possible()
            )
            if last is None or first is None:
                return  # empty or missing: no consumer
            _, top = records.message_versions(last.headers)
            hi_v = top if to_version is None else min(to_version, top)
            bounds = (int(first.seq), records.message_versions(first.headers)[0], int(last.seq))
            if not backwards:
                async with contextlib.aclosing(
                    self._range(
                        subject, from_version, hi_v, bounds, page_size=page_size, hidden_possible=hidden_possible
                    )
                ) as recs:
                    async for rec in recs:
                        yield rec
                return
            low = max(from_version, bounds[1])
            while hi_v >= low:
                lo_v = max(low, hi_v - page_size + 1)
                chunk = [
                    r
                    async for r in self._range(
                        subject, lo_v, hi_v, bounds, page_size=page_size, hidden_possible=hidden_possible
                    )
                ]
                for rec in reversed(chunk):
                    yield rec
                hi_v = lo_v - 1
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, f"reading stream {stream_id!r}") from e

    async def _range(
        self,
        subject: str,
        lo_v: int,
        hi_v: int,
        bounds: tuple[int, int, int],
        *,
        page_size: int,
        hidden_possible: bool,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Events with ``lo_v <= version <= hi_v``; ``bounds`` = (first seq, first version, last seq)."""
        first_seq, first_v, last_seq = bounds
        start = await self._seek(subject, lo_v, first_seq, last_seq) if lo_v > first_v else first_seq
        async with contextlib.aclosing(self._consume(subject, start, page_size)) as msgs:
            async for m in msgs:
                first_v, last_v = records.message_versions(m.headers)
                if last_v < lo_v:
                    continue
                if first_v > hi_v:
                    return
                for rec in await self._decode_msg(
                    m.subject, m.metadata.sequence.stream, m.headers, m.data, hidden_possible
                ):
                    if lo_v <= rec.version <= hi_v:
                        yield rec

    async def read_all(self, *, from_position: int = 0, page_size: int = 500) -> AsyncGenerator[RecordedEvent, None]:
        """Every event in JetStream sequence order (a total order: the server assigns it at commit)."""
        self._require()
        seq, _ = split_position(from_position)
        start = max(1, seq)
        try:
            state, hidden_possible = await asyncio.gather(
                self._api(f"STREAM.INFO.{self.names.stream}"), self._hidden_possible()
            )
            st = state["state"]
            if int(st["messages"]) == 0 or int(st["last_seq"]) < start:
                return  # nothing to read: no consumer
            async with contextlib.aclosing(self._consume(self.names.events_wildcard, start, page_size)) as msgs:
                async for m in msgs:
                    for rec in await self._decode_msg(
                        m.subject, m.metadata.sequence.stream, m.headers, m.data, hidden_possible
                    ):
                        if rec.position >= from_position:
                            yield rec
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, "reading all events") from e

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """By id: the id index (verified against the message), else a scan of the named stream."""
        self._require()

        async def find() -> RecordedEvent | None:
            loc = await self._locate(event_id)
            rec = await self._load_event(loc, event_id) if loc else None
            if rec is not None:
                return rec if stream_id is None or rec.stream_id == stream_id else None
            if stream_id is None:
                return None
            async with contextlib.aclosing(self.read_stream(stream_id)) as recs:
                async for r in recs:
                    if r.event_id == event_id:
                        self._remember(event_id, split_position(r.position))
                        return r
            return None

        return await self._call(f"get event {event_id!r}", find())

    # ------------------------------------------------------------------ streams

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Record the stream in the info bucket (KV create: exactly one creator wins)."""
        import nats.js.errors

        self._require()
        token = stream_token(stream.stream_id)
        now = utcnow()
        info = {
            "id": stream.stream_id,
            "name": stream.name,
            "aggregate_id": stream.aggregate_id,
            "aggregate_type": stream.aggregate_type,
            "metadata": dict(stream.metadata),
            "created_at": now.isoformat(),
            "removed": 0,
            "known_version": 0,
        }

        async def create() -> None:
            if await self._last_msg(self.names.subject(token)) is not None:
                raise StreamExistsError(f"stream {stream.stream_id!r} already exists", stream_id=stream.stream_id)
            try:
                await self._kv[self.names.info_bucket].create(token, json.dumps(info).encode())
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError) as e:
                msg = f"stream {stream.stream_id!r} already exists"
                raise StreamExistsError(msg, stream_id=stream.stream_id) from e

        await self._call(f"create stream {stream.stream_id!r}", create())
        self._tails.pop(token, None)
        return StreamInfo.new(stream, now)

    async def delete_stream(self, stream_id: str) -> None:
        """Purge the stream's subject, info, snapshots and deletion marks; the id can be reused."""
        self._require()
        token = stream_token(stream_id)
        n = self.names

        async def delete() -> None:
            (info, _), last = await asyncio.gather(self._info_get(token), self._last_msg(n.subject(token)))
            if info is None and last is None:
                raise StreamNotFoundError(f"stream {stream_id!r} does not exist", stream_id=stream_id)
            await self._purge(n.stream, filter=n.subject(token))
            await asyncio.gather(
                self._purge(f"KV_{n.info_bucket}", filter=f"$KV.{n.info_bucket}.{token}"),
                self._purge(f"KV_{n.snapshot_bucket}", filter=f"$KV.{n.snapshot_bucket}.{token}.>"),
                self._purge(f"KV_{n.hidden_bucket}", filter=f"$KV.{n.hidden_bucket}.{token}.>"),
            )

        try:
            await self._call(f"delete stream {stream_id!r}", delete())
        finally:
            self._tails.pop(token, None)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info: version from the last message, counts from the retention bookkeeping."""
        self._require()
        return await self._call(f"stream info of {stream_id!r}", self._stream_info(stream_id))

    async def _stream_info(self, stream_id: str) -> StreamInfo | None:
        token = stream_token(stream_id)
        subject = self.names.subject(token)
        (info, _), last, first = await asyncio.gather(
            self._info_get(token), self._last_msg(subject), self._next_msg(subject, 1)
        )
        if info is None and last is None:
            return None
        info = info or {}
        removed = int(info.get("removed", 0))
        first_event = last_event = None
        if last is not None:
            version = records.message_versions(last.headers)[1]
            last_event = (await self._decode_msg(subject, int(last.seq), last.headers, last.data or b""))[-1]
            if first is not None:
                first_event = (await self._decode_msg(subject, int(first.seq), first.headers, first.data or b""))[0]
        else:
            version = int(info.get("known_version", 0))
        created = info.get("created_at")
        created_at = _parse_ts(created) if created else (first_event.timestamp if first_event else utcnow())
        count = version - removed
        return StreamInfo(
            stream_id=stream_id,
            version=version,
            event_count=count,
            created_at=created_at,
            updated_at=last_event.timestamp if last_event else created_at,
            name=info.get("name"),
            aggregate_id=info.get("aggregate_id", first_event.aggregate_id if first_event else None),
            aggregate_type=info.get("aggregate_type", first_event.aggregate_type if first_event else None),
            metadata=dict(info.get("metadata") or {}),
            last_event_id=last_event.event_id if last_event else None,
            first_version=first_event.version if first_event and count > 0 else None,
        )

    async def _all_stream_ids(self) -> list[str]:
        """Every stream id: subjects holding events plus info records (empty or truncated streams)."""
        n = self.names
        subjects, infos = await asyncio.gather(
            self._subjects(n.stream, n.events_wildcard), self._subjects(f"KV_{n.info_bucket}", f"$KV.{n.info_bucket}.*")
        )
        tokens = {s.rsplit(".", 1)[-1] for s in subjects} | {s.rsplit(".", 1)[-1] for s in infos}
        out = []
        for token in tokens:
            sid = stream_id_of(token)
            if sid is None:
                info, _ = await self._info_get(token)
                if info is not None:
                    sid = info["id"]
                else:
                    first = await self._next_msg(n.subject(token), 1)
                    sid = self._stream_id(token, first.data if first else None)
            if sid is not None:
                out.append(sid)
        return out

    async def list_streams(self, *, limit: int, offset: int) -> tuple[list[StreamInfo], int]:
        """A page of streams ordered by id."""
        self._require()

        async def page() -> tuple[list[StreamInfo], int]:
            ids = sorted(await self._all_stream_ids())
            infos = await asyncio.gather(*(self._stream_info(i) for i in ids[offset : offset + limit]))
            return [i for i in infos if i is not None], len(ids)

        return await self._call("list streams", page())

    # ------------------------------------------------------------------ snapshots

    async def _snapshot_versions(self, token: str) -> list[int]:
        n = self.names
        subjects = await self._subjects(f"KV_{n.snapshot_bucket}", f"$KV.{n.snapshot_bucket}.{token}.*")
        return sorted(int(s.rsplit(".", 1)[-1]) for s in subjects)

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Put the snapshot under ``<token>.<version>`` (a snapshot at the same version is replaced)."""
        self._require()
        value = records.encode_snapshot(snapshot)
        if len(value) + 256 > self._max_payload:
            msg = f"the snapshot is {len(value)} bytes; a NATS KV value holds at most {self._max_payload - 256}"
            raise ValidationError(msg, field="data", size=len(value), limit=self._max_payload - 256)
        key = Names.snapshot_key(stream_token(snapshot.stream_id), snapshot.version)

        async def save() -> None:
            # check, then put (JetStream has no transaction spanning both): a delete and re-create racing
            # the put can still slip in between; the window is one KV put (see the README)
            info = await self._stream_info(snapshot.stream_id)
            at = None
            if info is not None and snapshot.position is not None:
                at = await position_at(self, snapshot.stream_id, snapshot.version)
            check_snapshot(snapshot, exists=info is not None, version=info.version if info else 0, position_at=at)
            await self._kv[self.names.snapshot_bucket].put(key, value)

        await self._call("save snapshot", save())

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot at or below ``max_version``."""
        self._require()
        token = stream_token(stream_id)

        async def get() -> RecordedSnapshot | None:
            for v in reversed(await self._snapshot_versions(token)):
                if max_version is not None and v > max_version:
                    continue
                entry = await self._kv_get(self.names.snapshot_bucket, Names.snapshot_key(token, v))
                if entry is not None and entry.value:
                    snap: RecordedSnapshot = records.decode_snapshot(entry.value)
                    return snap
            return None

        return await self._call(f"get snapshot of {stream_id!r}", get())

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Purge one snapshot key (or all of the stream's); returns how many existed."""
        self._require()
        token = stream_token(stream_id)
        n = self.names

        async def delete() -> int:
            versions = await self._snapshot_versions(token)
            targets = versions if version is None else [v for v in versions if v == version]
            for v in targets:
                await self._purge(
                    f"KV_{n.snapshot_bucket}", filter=f"$KV.{n.snapshot_bucket}.{Names.snapshot_key(token, v)}"
                )
            return len(targets)

        return await self._call(f"delete snapshots of {stream_id!r}", delete())

    # ------------------------------------------------------------------ retention

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """Delete events below ``before_version``: purge whole messages, mark the rest of an envelope."""
        self._require()

        def victims(rec: RecordedEvent) -> bool:
            return rec.version < before_version

        async def run() -> int:
            token = stream_token(stream_id)
            (info, _), last = await asyncio.gather(self._info_get(token), self._last_msg(self.names.subject(token)))
            if info is None and last is None:
                raise StreamNotFoundError(f"stream {stream_id!r} does not exist", stream_id=stream_id)
            return await self._delete_where(self.names.subject(token), victims, stop_version=before_version)

        return await self._call(f"truncate {stream_id!r}", run())

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Delete events with ``timestamp < cutoff`` (one stream or every stream; a scan of the events)."""
        self._require()
        subject = self.names.subject(stream_token(stream_id)) if stream_id is not None else self.names.events_wildcard
        return await self._call(
            "delete events before a time", self._delete_where(subject, lambda r: r.timestamp < cutoff)
        )

    async def _delete_where(
        self, subject: str, doomed: Callable[[RecordedEvent], bool], stop_version: int | None = None
    ) -> int:
        """Delete matching events of the messages on ``subject``; versions never change or go down.

        Per event stream: a leading run of wholly deleted messages is purged in one request, other
        wholly deleted messages are deleted one by one, and an envelope that keeps live events gets
        its deleted indexes in the hidden bucket. The info record counts the removed events and
        remembers the version, so an emptied stream keeps its version. A subject's last message stays
        while an earlier one does (events whose client timestamps run backwards): the stream's tail is
        read from it, and nats-server 2.9 no longer finds a subject's last message once it is deleted.
        """
        n = self.names

        @dataclass
        class _Plan:
            purge_below: int = 0
            prefix: bool = True
            singles: list[int] | None = None
            partial: dict[int, list[int]] | None = None
            envelopes: list[int] | None = None
            removed: int = 0
            version: int = 0
            stream_id: str = ""
            last: tuple[int, int] = (0, 0)  # the last message seen: (seq, events it loses)

        plans: dict[str, _Plan] = {}
        to_the_end = True
        async with contextlib.aclosing(self._consume(subject, 1, 256)) as msgs:
            async for m in msgs:
                seq = m.metadata.sequence.stream
                token = n.token_of_subject(m.subject)
                first_v, last_v = records.message_versions(m.headers)
                if stop_version is not None and first_v >= stop_version:
                    to_the_end = False
                    break
                plan = plans.setdefault(token, _Plan(singles=[], partial={}, envelopes=[]))
                plan.version = max(plan.version, last_v)
                count = int((m.headers or {}).get(HDR_COUNT, "1"))
                hidden = await self._hidden(token, seq) if count > 1 else frozenset()
                if count > 1:
                    assert plan.envelopes is not None
                    plan.envelopes.append(seq)
                live = records.decode(m.data, m.headers, seq, self._stream_id(m.subject, m.data), hidden)
                if live:
                    plan.stream_id = live[0].stream_id
                gone = [r for r in live if doomed(r)]
                plan.removed += len(gone)
                plan.last = (seq, len(gone))
                if gone and len(gone) == len(live):
                    if plan.prefix:
                        plan.purge_below = seq + 1
                    else:
                        assert plan.singles is not None
                        plan.singles.append(seq)
                else:
                    plan.prefix = False
                    if gone:
                        assert plan.partial is not None
                        plan.partial[seq] = sorted(hidden | {split_position(r.position)[1] for r in gone})
        for plan in plans.values():
            if to_the_end and plan.singles and plan.singles[-1] == plan.last[0]:
                plan.singles.pop()  # the subject's last message, with live ones before it: it stays
                plan.removed -= plan.last[1]
        total = 0
        for token, plan in plans.items():
            if plan.removed == 0:
                continue
            sid = plan.stream_id
            last = await self._last_msg(n.subject(token))
            version = max(plan.version, records.message_versions(last.headers)[1] if last else 0)
            await self._bump_info(token, sid, plan.removed, version)
            for seq, idxs in (plan.partial or {}).items():
                await self._kv[n.hidden_bucket].put(Names.hidden_key(token, seq), json.dumps(idxs).encode())
            if plan.purge_below:
                await self._purge(n.stream, filter=n.subject(token), seq=plan.purge_below)
            for seq in plan.singles or []:
                await self._api(f"STREAM.MSG.DELETE.{n.stream}", {"seq": seq})
                await self._purge(
                    f"KV_{n.hidden_bucket}", filter=f"$KV.{n.hidden_bucket}.{Names.hidden_key(token, seq)}"
                )
            for seq in plan.envelopes or []:
                if seq < plan.purge_below:
                    await self._purge(
                        f"KV_{n.hidden_bucket}", filter=f"$KV.{n.hidden_bucket}.{Names.hidden_key(token, seq)}"
                    )
            self._tails.pop(token, None)
            total += plan.removed
        return total

    async def _bump_info(self, token: str, sid: str, removed: int, version: int) -> None:
        """Add ``removed`` to the stream's removed count and remember ``version`` (CAS loop)."""
        import nats.js.errors

        kv = self._kv[self.names.info_bucket]
        for _ in range(50):
            info, rev = await self._info_get(token)
            if info is None:
                info = {"id": sid, "removed": 0, "known_version": 0, "metadata": {}}
            info.pop("claim", None)  # the stream has had events: no append can count as its creator any more
            info["removed"] = int(info.get("removed", 0)) + removed
            info["known_version"] = max(int(info.get("known_version", 0)), version)
            try:
                if rev is None:
                    await kv.create(token, json.dumps(info).encode())
                else:
                    await kv.update(token, json.dumps(info).encode(), last=rev)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
                continue
            return
        msg = f"could not update the info of stream {sid!r} under contention"
        raise ProviderTimeoutError(msg)

    # ------------------------------------------------------------------ monitoring

    async def stats(self) -> ProviderStats:
        """Counts from one scan of every event (exact); sizes from the stream state."""
        self._require()

        async def run() -> ProviderStats:
            n = self.names
            by_type: dict[str, int] = {}
            by_stream: dict[str, int] = {}
            total = 0
            last_at = None
            async for rec in self.read_all(page_size=1000):
                total += 1
                by_type[rec.event_type] = by_type.get(rec.event_type, 0) + 1
                by_stream[rec.stream_id] = by_stream.get(rec.stream_id, 0) + 1
                last_at = rec.timestamp
            ids, state, snaps = await asyncio.gather(
                self._all_stream_ids(),
                self._api(f"STREAM.INFO.{n.stream}"),
                self._subjects(f"KV_{n.snapshot_bucket}", f"$KV.{n.snapshot_bucket}.>"),
            )
            for sid in ids:
                by_stream.setdefault(sid, 0)
            return ProviderStats(
                total_events=total,
                total_streams=len(ids),
                total_snapshots=len(snaps),
                events_by_type=by_type,
                events_by_stream=by_stream,
                storage_size=int(state["state"]["bytes"]),
                last_event_at=last_at,
                uptime_seconds=time.monotonic() - self._started,
                provider=self.name,
                extra={
                    "messages": int(state["state"]["messages"]),
                    "server_version": ".".join(map(str, self._server_version)),
                },
            )

        return await self._call("stats", run())

    def durability_warnings(self, stream_config: dict[str, Any], cluster: dict[str, Any] | None) -> list[str]:
        """Settings under which an acknowledged event can be lost."""
        out = []
        replicas = int(stream_config.get("num_replicas", 1))
        if stream_config.get("storage") == "memory":
            out.append("memory storage: every stored event is lost when the server restarts")
        if replicas == 1:
            out.append(
                "1 replica: an acknowledged event lives on one server; nats-server syncs its file store to disk "
                "only every sync_interval (2 min by default), so a crash or power loss of that machine can lose "
                "acknowledged events (use replicas=3, or jetstream { sync_interval: always })"
            )
        elif replicas == 2:  # noqa: PLR2004 - R2 is a specific durability case
            out.append("2 replicas: no quorum survives the loss of one server (writes stop); use 3")
        if self._stream_wide:
            out.append(
                "replicated stream on nats-server < 2.9.21: writes use the stream-wide expected sequence "
                "(correct, but every writer is serialised); KV compare-and-set is not enforced on this server"
            )
        if cluster:
            out.extend(
                f"replica {peer.get('name')} is offline or behind: fewer copies than configured"
                for peer in cluster.get("replicas") or []
                if not peer.get("current", False) or peer.get("offline", False)
            )
        window = float(stream_config.get("duplicate_window", 0)) / 1e9
        if window and window < self.settings["publish_retry_seconds"]:
            out.append(f"duplicate_window ({window:.0f}s) is shorter than publish_retry_seconds")
        return out

    async def health(self) -> HealthStatus:
        """Connected, stream and buckets present, a leader elected; lists durability risks."""
        start = time.perf_counter()
        try:
            self._require()
            resp = await self._api(f"STREAM.INFO.{self.names.stream}")
            for b in self.names.buckets:
                await self._api(f"STREAM.INFO.KV_{b}")
        except Exception as e:  # noqa: BLE001 - a health check reports, it never raises
            err = map_error(e, "health check")
            return HealthStatus(
                healthy=False,
                provider=self.name,
                message=f"{type(err).__name__}: {err}",
                latency_ms=(time.perf_counter() - start) * 1000,
            )
        cfg = resp.get("config", {})
        cluster: dict[str, Any] = resp.get("cluster") or {}
        warnings = self.durability_warnings(cfg, cluster)
        leaderless = bool(cluster) and int(cfg.get("num_replicas", 1)) > 1 and not cluster.get("leader")
        details = {
            "server_version": ".".join(map(str, self._server_version)),
            "url": self.display_url,
            "stream": self.names.stream,
            "replicas": int(cfg.get("num_replicas", 1)),
            "storage": cfg.get("storage"),
            "duplicate_window_s": float(cfg.get("duplicate_window", 0)) / 1e9,
            "batches": "atomic" if self._atomic else "envelope",
            "occ": self.occ_mode,
            "messages": int(resp["state"]["messages"]),
            "leader": (cluster or {}).get("leader"),
            "durability_warnings": warnings,
        }
        message = "ok" if not warnings else f"ok; {len(warnings)} durability warning(s): " + " | ".join(warnings)
        if leaderless:
            message = "the stream has no leader (no quorum): writes will fail"
        return HealthStatus(
            healthy=not leaderless,
            provider=self.name,
            message=message,
            details=details,
            latency_ms=(time.perf_counter() - start) * 1000,
        )


async def _quiet(aw: Awaitable[Any]) -> None:
    """Await and ignore failures (clean-up of consumers, subscriptions and connections)."""
    with contextlib.suppress(Exception):
        await aw


async def _none() -> None:
    return None


def _parse_ts(value: str) -> datetime:
    from datetime import datetime as dt

    return dt.fromisoformat(value)

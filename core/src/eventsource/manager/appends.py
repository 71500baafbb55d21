"""Appends: one batch of events to one stream, checked, encoded and stored, and the responses built from it.

:class:`Appends` checks the stream id, expected version and batch size, asks the provider chosen by the
manager's ``get_provider``, encodes the events (:mod:`.batches`) or seals them (:mod:`.sealed`) and stores
them under the call policy, then asks the snapshot threshold whether a snapshot is due. The sync API's usual
call, one plain event, takes a shorter way to the same end (:meth:`Appends.one_now`). The response builders
turn its :class:`AppendResult` into the seed's response objects.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsource.manager.ids import event_id
from eventsource.manager.policy import RetryLater
from eventsource.manager.validation import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    check_batch_size,
    check_expected,
    check_time,
)
from eventsource.model import (
    ANY,
    MAX_NUMBER,
    AppendEventResponse,
    AppendEventsBatchResponse,
    NewEvent,
    NewStream,
    positional_constructor,
    utcnow,
)
from eventsource.timestamps import in_utc

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

    from eventsource.config import ManagerConfig
    from eventsource.manager.batches import BatchEncoder
    from eventsource.manager.codec import EventCodec
    from eventsource.manager.policy import CallPolicy
    from eventsource.manager.sealed import SealedAppends
    from eventsource.manager.threshold import SnapshotThreshold
    from eventsource.model import AppendResult, EventData, Expected
    from eventsource.provider import Provider

    GetProvider = Callable[[str | None], Provider]

_make_new_stream = positional_constructor(NewStream)
_make_new_event = positional_constructor(NewEvent)
_NO_EXTRAS = (None,) * 6  # a NewEvent's correlation, causation, user, tenant, aggregate id and type

PLAIN_KEYS = frozenset({"stream_id", "event_type", "data", "event_id", "timestamp", "expected_version"})
"""The ``append_event`` keywords :meth:`Appends.one_now` takes (no metadata, tenant, aggregate or provider)."""
PLAIN_NEEDS = frozenset({"stream_id", "event_type", "data"})
"""The keywords ``append_event`` needs (its request's fields without a default)."""
_make_append_event_response = positional_constructor(AppendEventResponse)


class Appends:
    """Append calls of one manager, through its codec, call policy and snapshot threshold."""

    __slots__ = ("batches", "codec", "config", "policy", "sealed", "threshold")

    def __init__(
        self, config: ManagerConfig, codec: EventCodec, sealed: SealedAppends, threshold: SnapshotThreshold
    ) -> None:
        self.config = config
        self.codec = codec
        self.policy: CallPolicy = sealed.policy  # the sealed path's policy and encoder serve the plain path too
        self.batches: BatchEncoder = sealed.encoder
        self.sealed = sealed
        self.threshold = threshold

    async def append(
        self, sid: str, events: list[EventData], expected: object, name: str | None, get_provider: GetProvider
    ) -> tuple[AppendResult, bool]:
        """Append ``events`` to the (checked) stream ``sid``; the result and whether a snapshot is due."""
        exp = check_expected(expected)
        check_batch_size(len(events), self.config.max_batch_size)
        provider = get_provider(name)
        if self.policy.telemetry is not None:  # the caller's trace context into each event's metadata
            events = self.policy.telemetry.inject(events)
        if self.codec.cipher is None:
            encoded, stream = self._encode(sid, events, provider)
            res: AppendResult = await self.policy.run(
                provider,
                "append",
                lambda: provider.append(sid, encoded, exp, stream),
                events=len(encoded),
                stream=sid,
                expected=exp,
            )
        else:
            res = await self.sealed.append(provider, sid, events, exp)
        res = _own_retry(res, events)
        if self.threshold.threshold is None:
            return res, False
        return res, await self.threshold.due(provider, res)

    def append_now(  # noqa: PLR0917 - append()'s arguments, and the sync caller's timeout
        self,
        sid: str,
        events: list[EventData],
        expected: object,
        name: str | None,
        get_provider: GetProvider,
        timeout: float | None,
    ) -> tuple[AppendResult, bool] | Coroutine[Any, Any, tuple[AppendResult, bool]]:
        """:meth:`append` done in the caller's thread when the provider can (the sync API's lane), else its coroutine.

        The lane takes plain appends only (no telemetry, encryption or snapshot threshold: those await), checks
        and encodes exactly as :meth:`append` does, then asks :meth:`Provider.append_now`. What it returns
        instead of a result (the provider declined, or its first attempt failed and may be retried) is the
        coroutine that finishes the call on the loop, with the same encoded events and ids.
        """
        if self.policy.telemetry is not None or self.codec.cipher is not None or self.threshold.threshold is not None:
            return self.append(sid, events, expected, name, get_provider)
        exp = check_expected(expected)
        check_batch_size(len(events), self.config.max_batch_size)
        provider = get_provider(name)
        if len(events) == 1:  # (what _encode does, one call shorter: the sync API's usual append)
            first = self.batches.encode_one(sid, events[0], provider)
            encoded = [first]
            stream = _make_new_stream(sid, None, first.aggregate_id, first.aggregate_type, {})
        else:
            encoded, stream = self._encode(sid, events, provider)
        args = (sid, encoded, exp, stream)
        try:
            res = self.policy.now(provider, "append", provider.append_now, args, timeout)
        except RetryLater:
            return self._store(provider, _made_here(events), args, resumed=True)
        if res is None:
            return self._store(provider, _made_here(events), args, resumed=False)
        return (_own_retry(res, events) if res.duplicate else res), False

    def one_now(
        self, sid: str, kwargs: Mapping[str, Any], get_default: Callable[[], Provider], timeout: float | None
    ) -> tuple[AppendResult, bool] | Coroutine[Any, Any, tuple[AppendResult, bool]] | None:
        """:meth:`append_now` of one plain event given as ``append_event``'s keywords, or ``None``: not this way.

        The sync API's usual append, in about half the calls (a one-event append pays for each call again once
        its commit's sync has left the CPU's caches cold). It takes only what needs nothing but these checks:
        the keywords of :data:`PLAIN_KEYS` (the caller checks), a printable ASCII type and id, a payload the
        serializer writes as stored (no compression, encryption, telemetry or snapshot threshold) within the
        size limits (over one, it raises what that path raises, without serializing the payload again). Anything
        else returns ``None`` before anything is done, and the full path checks, refuses or writes it as ever.
        ``sid`` is checked; what this raises is what that path would raise first.
        """
        codec = self.codec
        chained = codec.chain.events.types  # a type with a chain: the full path checks its chain reads it back
        if (
            codec.dumps_plain is None
            or self.policy.telemetry is not None
            or self.threshold.threshold is not None
            or (chained and type(kwargs["event_type"]) is str and kwargs["event_type"] in chained)
        ):
            return None
        exp = kwargs.get("expected_version", ANY)
        if type(exp) is not int or not 0 <= exp <= MAX_NUMBER:  # (an exact version: check_expected passes it as is)
            exp = check_expected(exp)
        provider = get_default()
        event_type, eid = kwargs["event_type"], kwargs.get("event_id")
        own = eid is None  # an id made here: a stored copy is this call's own earlier attempt (_own_retry)
        if own:
            eid = event_id()
        if not (  # printable ASCII of 1 to the limit's characters, which check_text passes as it is
            type(event_type) is str
            and event_type.isascii()
            and event_type.isprintable()
            and 0 < len(event_type) <= MAX_EVENT_TYPE_LENGTH
            and type(eid) is str
            and eid.isascii()
            and eid.isprintable()
            and 0 < len(eid) <= MAX_EVENT_ID_LENGTH
        ):
            return None
        ts = kwargs.get("timestamp")
        if type(ts) is not datetime or ts.tzinfo is not UTC:  # (a UTC datetime: check_time passes it as is)
            check_time("timestamp", ts)
        data, meta, encoding, size = codec.encode_plain(kwargs["data"])
        limit = provider.capabilities.max_event_size
        if size > self.config.max_event_size or (limit is not None and len(data) + len(meta) > limit):
            self.batches.refuse(event_type, size, provider)  # as encode_one does: never serialized twice
        if ts is None or ts.tzinfo is not UTC:  # an instant, handed to the store in UTC (as batches.encode does)
            ts = utcnow() if ts is None else in_utc(ts)
        ev = _make_new_event(eid, event_type, data, meta, encoding, ts, *_NO_EXTRAS)
        args = (sid, [ev], exp, None)  # no stream attributes: the provider takes the first event's (none here)
        try:
            res = self.policy.now(provider, "append", provider.append_now, args, timeout)
        except RetryLater:
            return self._store(provider, own, args, resumed=True)
        if res is None:
            return self._store(provider, own, args, resumed=False)
        return (_not_duplicate(res) if res.duplicate and own else res), False

    async def _store(
        self,
        provider: Provider,
        own: bool,
        args: tuple[str, list[NewEvent], Expected, NewStream | None],
        *,
        resumed: bool,
    ) -> tuple[AppendResult, bool]:
        """The rest of a lane's append on the loop (see :meth:`append_now`); ``args``: ``provider.append``'s.

        ``own``: every id was made for this call (a duplicate is then its own earlier attempt: :func:`_own_retry`).
        """
        res: AppendResult = await self.policy.run(
            provider,
            "append",
            lambda: provider.append(*args),
            events=len(args[1]),
            stream=args[0],
            expected=args[2],
            resumed=resumed,
        )
        return (_not_duplicate(res) if res.duplicate and own else res), False

    def _encode(self, sid: str, events: list[EventData], provider: Provider) -> tuple[list[NewEvent], NewStream]:
        """The stored records of ``events`` and the attributes a new stream takes from the first one."""
        encoded = self.batches.encode(sid, events, provider, 0)
        first = encoded[0]
        return encoded, _make_new_stream(sid, None, first.aggregate_id, first.aggregate_type, {})


def _own_retry(res: AppendResult, events: list[EventData]) -> AppendResult:
    """``res``, not a duplicate when the ids were made for this call (the stored copy is its own earlier attempt)."""
    if res.duplicate and _made_here(events):
        return _not_duplicate(res)
    return res


def _made_here(events: list[EventData]) -> bool:
    """Whether every id of ``events`` is made by the manager (none given)."""
    return all(e.event_id is None for e in events)


def _not_duplicate(res: AppendResult) -> AppendResult:
    return dataclasses.replace(res, duplicate=False)


def event_response(res: AppendResult, due: bool) -> AppendEventResponse:
    """The response to ``append_event`` (built positionally, in AppendEventResponse's field order)."""
    return _make_append_event_response(
        res.event_ids[0], res.stream_id, res.first_version, res.positions[0], res.timestamp, res.duplicate, due
    )


def batch_response(res: AppendResult, due: bool) -> AppendEventsBatchResponse:
    """The response to ``append_events_batch``."""
    return AppendEventsBatchResponse(
        stream_id=res.stream_id,
        event_ids=list(res.event_ids),
        first_version=res.first_version,
        last_version=res.last_version,
        positions=list(res.positions),
        timestamp=res.timestamp,
        duplicate=res.duplicate,
        snapshot_due=due,
    )

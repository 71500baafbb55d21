"""Appends: one batch of events to one stream, checked, encoded and stored, and the responses built from it.

:class:`Appends` checks the stream id, expected version and batch size, asks the provider chosen by the
manager's ``get_provider``, encodes the events (:mod:`.batches`) or seals them (:mod:`.sealed`) and stores
them under the call policy, then asks the snapshot threshold whether a snapshot is due. The response builders
turn its :class:`AppendResult` into the seed's response objects.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from eventsource.manager.policy import RetryLater
from eventsource.manager.validation import check_batch_size, check_expected
from eventsource.model import AppendEventResponse, AppendEventsBatchResponse, NewStream, positional_constructor

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from eventsource.config import ManagerConfig
    from eventsource.manager.batches import BatchEncoder
    from eventsource.manager.codec import EventCodec
    from eventsource.manager.policy import CallPolicy
    from eventsource.manager.sealed import SealedAppends
    from eventsource.manager.threshold import SnapshotThreshold
    from eventsource.model import AppendResult, EventData, Expected, NewEvent
    from eventsource.provider import Provider

    GetProvider = Callable[[str | None], Provider]

_make_new_stream = positional_constructor(NewStream)
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
        encoded, stream = self._encode(sid, events, provider)
        try:
            res = self.policy.now(
                provider,
                "append",
                lambda: provider.append_now(sid, encoded, exp, stream, timeout=timeout),
                events=len(encoded),
            )
        except RetryLater:
            return self._store(provider, events, (sid, encoded, exp, stream), resumed=True)
        if res is None:
            return self._store(provider, events, (sid, encoded, exp, stream), resumed=False)
        return _own_retry(res, events), False

    async def _store(
        self,
        provider: Provider,
        events: list[EventData],
        args: tuple[str, list[NewEvent], Expected, NewStream],
        *,
        resumed: bool,
    ) -> tuple[AppendResult, bool]:
        """The rest of a lane's append on the loop (see :meth:`append_now`); ``args``: ``provider.append``'s."""
        res: AppendResult = await self.policy.run(
            provider,
            "append",
            lambda: provider.append(*args),
            events=len(args[1]),
            stream=args[0],
            expected=args[2],
            resumed=resumed,
        )
        return _own_retry(res, events), False

    def _encode(self, sid: str, events: list[EventData], provider: Provider) -> tuple[list[NewEvent], NewStream]:
        """The stored records of ``events`` and the attributes a new stream takes from the first one."""
        encoded = self.batches.encode(sid, events, provider, 0)
        first = encoded[0]
        return encoded, _make_new_stream(sid, None, first.aggregate_id, first.aggregate_type, {})


def _own_retry(res: AppendResult, events: list[EventData]) -> AppendResult:
    """``res``, not a duplicate when the ids were made for this call (the stored copy is its own earlier attempt)."""
    if res.duplicate and all(e.event_id is None for e in events):
        return dataclasses.replace(res, duplicate=False)
    return res


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

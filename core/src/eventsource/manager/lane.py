"""The sync API's lane: an append done in the caller's thread, without a coroutine, where the provider can.

While every provider is loop-free, the sync facade runs its loop in the caller's thread, and an append on
SQLite or memory never waits for it; yet through the async manager it paid for the loop all the same: a
coroutine per layer, the loop marked running, the deadline timer. :class:`SyncLane` takes the facade's
``append_event`` and ``append_events_batch``: it checks and encodes as the async call does and asks the
provider's :meth:`~eventsource.provider.Provider.append_now`. What it cannot finish there (the provider
declines, a retry, telemetry, encryption, a snapshot threshold) it returns as the coroutine that finishes
the call on the loop, with the same encoded events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.manager.appends import PLAIN_KEYS, PLAIN_NEEDS, batch_response, event_response
from eventsource.manager.validation import coerce, event_list, event_of
from eventsource.model import AppendEventRequest, AppendEventsBatchRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

    from eventsource.manager import EventSourcingManager
    from eventsource.model import AppendEventResponse, AppendEventsBatchResponse, AppendResult

    Outcome = tuple[AppendResult, bool] | Coroutine[Any, Any, tuple[AppendResult, bool]]

R = TypeVar("R")


class SyncLane:
    """``append_event`` and ``append_events_batch`` of one manager, for its sync facade (see the module docstring).

    Each returns the response, or the coroutine that produces it; the facade calls them holding its loop,
    idle, in the calling thread (:meth:`~eventsource.syncloop.SyncLoop.now`).
    """

    __slots__ = ("manager",)

    def __init__(self, manager: EventSourcingManager) -> None:
        self.manager = manager

    def append_event(
        self, request: AppendEventRequest | None, kwargs: Mapping[str, Any], timeout: float | None
    ) -> AppendEventResponse | Coroutine[Any, Any, AppendEventResponse]:
        """:meth:`EventSourcingManager.append_event`, here if it can be."""
        m = self.manager
        if not m._providers.lane:  # noqa: SLF001 - no provider takes the lane: the async call, untouched
            return m.append_event(request, **kwargs)
        if request is None and PLAIN_KEYS.issuperset(kwargs) and kwargs.keys() >= PLAIN_NEEDS:  # one plain event
            sid = kwargs["stream_id"]
            if not (  # printable ASCII within the limit: the manager's check (first, as ever) passes it as is
                type(sid) is str
                and sid.isascii()
                and sid.isprintable()
                and 0 < len(sid) <= m.config.max_stream_id_length
            ):
                sid = m._queries.stream_id(sid)  # noqa: SLF001 - the manager's own check, in its order
            done = m._appends.one_now(sid, kwargs, m._providers.get_default, timeout)  # noqa: SLF001
            if type(done) is tuple:
                return event_response(*done)
            if done is not None:
                return _later(done, event_response)  # type: ignore[arg-type]
        req = coerce(AppendEventRequest, request, kwargs)
        sid = m._queries.stream_id(req.stream_id)  # noqa: SLF001 - the manager's own check, in its order
        out = m._appends.append_now(  # noqa: SLF001
            sid, [event_of(req)], req.expected_version, req.provider, m.get_provider, timeout=timeout
        )
        if type(out) is tuple:  # (what _respond does, one call shorter: every sync append_event's path)
            return event_response(*out)
        return _later(out, event_response)  # type: ignore[arg-type]

    def append_events_batch(
        self, request: AppendEventsBatchRequest | None, kwargs: Mapping[str, Any], timeout: float | None
    ) -> AppendEventsBatchResponse | Coroutine[Any, Any, AppendEventsBatchResponse]:
        """:meth:`EventSourcingManager.append_events_batch`, here if it can be."""
        if not self.manager._providers.lane:  # noqa: SLF001
            return self.manager.append_events_batch(request, **kwargs)
        req = coerce(AppendEventsBatchRequest, request, kwargs)
        events = event_list(req.events)
        out = self._append(req.stream_id, events, req.expected_version, req.provider, timeout)
        return _respond(out, batch_response)

    def _append(
        self, stream_id: object, events: list[Any], expected: object, provider: str | None, timeout: float | None
    ) -> Outcome:
        m = self.manager
        sid = m._stream_id(stream_id)  # noqa: SLF001 - the manager's own check, in its order
        return m._appends.append_now(sid, events, expected, provider, m.get_provider, timeout=timeout)  # noqa: SLF001


def _respond(out: Outcome, build: Callable[[AppendResult, bool], R]) -> R | Coroutine[Any, Any, R]:
    """The response now, or the coroutine that builds it once ``out`` is done."""
    if type(out) is tuple:
        return build(*out)
    return _later(out, build)  # type: ignore[arg-type]


async def _later(out: Coroutine[Any, Any, tuple[AppendResult, bool]], build: Callable[[AppendResult, bool], R]) -> R:
    res, due = await out
    return build(res, due)

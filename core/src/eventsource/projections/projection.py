"""A :class:`Projection`: handlers per event type, a name (its checkpoint) and an :class:`ErrorPolicy`.

Handlers are declared with the :meth:`Projection.on` decorator or passed as a mapping; each is called as
``handler(event, tx)``, where ``tx`` is what the projection's sink hands out (a ``sqlite3.Connection`` or a
psycopg connection inside the transaction that also commits the checkpoint, or ``None`` for an
at-least-once sink). A handler may be a plain function or a coroutine function.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from eventsource.checkpoints.base import MAX_NAME_LENGTH, check_name
from eventsource.errors import ConfigurationError, EventSourceError, ProviderUnavailableError, ValidationError
from eventsource.manager.validation import check_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from eventsource.model import Event

Tx = TypeVar("Tx")


def seconds(what: str, value: object, *, zero: bool = False) -> float:
    """``value`` as a positive (``zero``: or 0), finite number of seconds, or :class:`ValidationError` naming ``what``.

    NaN would make a wait never end (every comparison with it is false), a negative one retry without a pause.
    """
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        msg = f"{what} must be a {'non-negative' if zero else 'positive'} number of seconds, got {value!r}"
        raise ValidationError(msg, field=what)
    return float(number)


def _stream(stream_id: object) -> str:
    return check_text("stream id", stream_id, 65536, field_name="stream_id")  # (the manager's limit: at add())


class ProjectionError(EventSourceError):
    """A projection cannot go on (its error policy said ``stop``, or its sink was misused)."""


class CheckpointMovedError(ProjectionError):
    """The checkpoint in the sink is not where this runner left it: another runner moved it.

    The transaction that noticed it was rolled back; the runner resubscribes from the stored checkpoint.
    """


class SinkUnavailableError(ProviderUnavailableError):
    """The sink's database failed (busy past its timeout, connection lost): an outage, not a bad event.

    The error policy never sees it (nothing is retried per event or parked): the runner waits ``lease_wait``
    seconds and resumes from the stored checkpoint.
    """


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """What a projection does when a handler raises.

    :param retries: attempts after the first one, each after a pause (``backoff`` doubling up to
        ``max_backoff`` seconds).
    :param then: after the last retry: ``"stop"`` (the runner raises :class:`ProjectionStoppedError`, the
        checkpoint stays before the event) or ``"park"`` (the event goes to a dead-letter stream and the
        projection moves past it).
    :param dead_letter_stream: the stream parked events go to (default ``dead-letter-<projection name>``).
    :param dead_letter_provider: the manager's provider that holds it (default: the source store).
    """

    retries: int = 3
    backoff: float = 0.1
    max_backoff: float = 5.0
    then: Literal["stop", "park"] = "stop"
    dead_letter_stream: str | None = None
    dead_letter_provider: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            msg = "retries must be a non-negative int"
            raise ValidationError(msg, field="retries")
        for field in ("backoff", "max_backoff"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                msg = f"{field} must be a non-negative number of seconds"
                raise ValidationError(msg, field=field)
        if self.then not in ("stop", "park"):
            msg = f"then must be 'stop' or 'park', not {self.then!r}"
            raise ValidationError(msg, field="then")

    def pause(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return float(min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 64)))  # (2**1024: no float)


class ProjectionStoppedError(ProjectionError):
    """A handler kept failing and the projection's error policy is ``stop``; the original error is the cause."""


class Projection(Generic[Tx]):
    """Handlers per event type, run by a :class:`~eventsource.projections.ProjectionRunner` into a sink.

    :param name: the checkpoint name (one projection version: give a rebuilt one a new name, e.g. ``"x.v2"``).
    :param handlers: ``{event_type: handler}``; more can be added with :meth:`on`.
    :param stream_id: follow one stream (positions are its versions) instead of every stream.
    :param stream_prefix: follow only streams whose id starts with it.
    :param provider: the manager's provider to read from (default: the default provider).
    :param source: the checkpoint's source name (default: the provider's ``checkpoint_source``, as subscriptions use).
    :param errors: the :class:`ErrorPolicy` (default: 3 retries, then stop).
    """

    def __init__(
        self,
        name: str,
        handlers: Mapping[str, Callable[[Event, Tx], Awaitable[None] | None]] | None = None,
        *,
        stream_id: str | None = None,
        stream_prefix: str | None = None,
        provider: str | None = None,
        source: str | None = None,
        errors: ErrorPolicy | None = None,
    ) -> None:
        self.name = check_text("projection name", check_name("name", name), MAX_NAME_LENGTH, field_name="name")
        # checked now, not when run() subscribes (catch_up() of a stream with no events returned before that)
        self.stream_id = stream_id if stream_id is None else _stream(stream_id)
        self.stream_prefix = stream_prefix
        if stream_prefix is not None:
            self.stream_prefix = check_text("stream prefix", stream_prefix, 65536, field_name="stream_prefix")
            if stream_id is not None:
                msg = "a one-stream projection (stream_id) takes no stream_prefix"
                raise ValidationError(msg, field="stream_prefix")
        self.provider = provider
        self.source = check_name("source", source) if source is not None else None
        if errors is not None and not isinstance(errors, ErrorPolicy):
            msg = f"errors must be an ErrorPolicy, not {type(errors).__name__}"
            raise ConfigurationError(msg, field="errors")
        self.errors = errors or ErrorPolicy()
        self.handlers: dict[str, Callable[[Event, Tx], Awaitable[None] | None]] = {}
        self._reset: Callable[[Tx], Awaitable[None] | None] | None = None
        for event_type, handler in (handlers or {}).items():
            self.on(event_type)(handler)

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, handles={sorted(self.handlers)})"

    def on(self, *event_types: str) -> Callable[[Callable[[Event, Tx], Any]], Callable[[Event, Tx], Any]]:
        """Decorator: the function handles events of ``event_types``."""
        if not event_types:
            msg = "on() needs at least one event type"
            raise ValidationError(msg, field="event_types")
        for t in event_types:
            if not isinstance(t, str) or not t:
                msg = "event types must be non-empty strings"
                raise ValidationError(msg, field="event_types")
            if t in self.handlers:
                msg = f"projection {self.name!r} already handles {t!r}"
                raise ConfigurationError(msg, field="event_types")

        def register(fn: Callable[[Event, Tx], Any]) -> Callable[[Event, Tx], Any]:
            if not callable(fn):
                msg = f"a handler must be callable, not {type(fn).__name__}"
                raise ConfigurationError(msg, field="handler")
            for t in event_types:
                self.handlers[t] = fn
            return fn

        return register

    def on_reset(self, fn: Callable[[Tx], Any]) -> Callable[[Tx], Any]:
        """Decorator: ``fn(tx)`` empties the projection's tables when it is reset (same transaction)."""
        self._reset = fn
        return fn

    @property
    def event_types(self) -> list[str]:
        """The event types with a handler (the subscription reads only those)."""
        return sorted(self.handlers)

    @property
    def is_async(self) -> bool:
        """Whether any handler (or the reset hook) is a coroutine function."""
        fns = [*self.handlers.values(), *([self._reset] if self._reset else [])]
        return any(_is_coroutine_function(f) for f in fns)

    @property
    def is_sync(self) -> bool:
        """Whether every handler is a plain function."""
        return not self.is_async

    async def handle(self, event: Event, tx: Tx) -> None:
        """Call the handler of ``event`` (awaiting it if it is async)."""
        result = self.handlers[event.event_type](event, tx)
        if inspect.isawaitable(result):
            await result

    def handle_sync(self, event: Event, tx: Tx) -> None:
        """Call the (plain) handler of ``event``; one that returns an awaitable raises :class:`ProjectionError`."""
        self._not_awaitable(self.handlers[event.event_type](event, tx))

    async def reset(self, tx: Tx) -> None:
        """Run the reset hook, if any."""
        if self._reset is not None:
            result = self._reset(tx)
            if inspect.isawaitable(result):
                await result

    def reset_sync(self, tx: Tx) -> None:
        """Run the (plain) reset hook, if any."""
        if self._reset is not None:
            self._not_awaitable(self._reset(tx))

    def _not_awaitable(self, result: object) -> None:
        """A plain function returned an awaitable (it wraps a coroutine function): it never ran, so stop."""
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # no "never awaited" warning: the error says it
            msg = (
                f"a handler of projection {self.name!r} is a plain function that returned an awaitable; "
                "declare it with async def so the sink awaits it"
            )
            raise ProjectionError(msg, name=self.name)


def _is_coroutine_function(fn: object) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (``inspect`` answers ``False`` for it)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004

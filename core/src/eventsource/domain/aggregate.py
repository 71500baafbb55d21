"""Aggregates: state rebuilt by applying event-class instances, with the new events it records pending a save.

A subclass names its ``aggregate_type`` (default: the class name) and handles each event class with a
method decorated by :func:`applies`. :meth:`Aggregate.record` applies a new event and keeps it pending;
a :class:`~eventsource.domain.Repository` appends the pending events and clears them. Snapshots hold
:meth:`Aggregate.to_snapshot` (default: the public instance attributes) at schema ``snapshot_version``;
override it with :meth:`Aggregate.from_snapshot` when the state is not plain data.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar, Self

from eventsource.domain.events import DomainEvent
from eventsource.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.model import EventData

_HANDLES = "__eventsource_applies__"
_OWN = frozenset({"id", "version", "snapshot_at"})


def _escape_type(aggregate_type: str) -> str:
    """``aggregate_type`` with ``%`` and ``-`` percent-escaped: the first ``-`` of a stream id then ends the type."""
    return aggregate_type.replace("%", "%25").replace("-", "%2D")


def applies(*event_classes: type[DomainEvent]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark an aggregate method as the handler of ``event_classes`` (it is called with the instance)."""
    for cls in event_classes:
        if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
            msg = f"@applies takes DomainEvent classes, got {cls!r}"
            raise ConfigurationError(msg, field="event_class")

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):  # apply() would drop its coroutine
            msg = f"@applies handler {getattr(fn, '__qualname__', fn)!r} is async: a handler changes the state at once"
            raise ConfigurationError(msg, field="event_class")
        setattr(fn, _HANDLES, (*getattr(fn, _HANDLES, ()), *event_classes))
        return fn

    return mark


class Aggregate:
    """Base of aggregates; see the module docstring.

    :param aggregate_id: the aggregate's id; its stream is ``f"{aggregate_type}-{aggregate_id}"`` with ``%``
        and ``-`` in the type percent-escaped (see :meth:`stream_id_of`).
    """

    aggregate_type: ClassVar[str] = ""
    snapshot_version: ClassVar[int] = 1
    """Schema version of this class's snapshot data (bump it, and add a snapshot upcaster, when it changes)."""
    _handlers: ClassVar[dict[type[DomainEvent], Callable[..., None]]] = {}
    _handler_names: ClassVar[dict[type[DomainEvent], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("aggregate_type"):
            cls.aggregate_type = cls.__name__
        names = dict(cls._handler_names)
        own: dict[type[DomainEvent], str] = {}
        for name, value in cls.__dict__.items():
            for event_class in getattr(value, _HANDLES, ()):
                if own.get(event_class, name) != name:  # one would silently never run
                    msg = (
                        f"{cls.__name__} has two @applies handlers of {event_class.__name__}: {own[event_class]} "
                        f"and {name}; one handler per event class"
                    )
                    raise ConfigurationError(msg, field="event_class")
                own[event_class] = names[event_class] = name
        cls._handler_names = names
        # by name, so a subclass's override of an inherited handler method runs (decorated again or not)
        cls._handlers = {event_class: getattr(cls, name) for event_class, name in names.items()}

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0
        self.snapshot_at = 0
        """Version of the snapshot this aggregate was loaded from or last saved (0: none); drives the cadence."""
        self._pending: list[DomainEvent] = []
        self._pending_ids: list[str] = []  # each pending event's id, minted when recorded: a repeated save is a retry
        self._pending_data: list[EventData] = []  # each pending event encoded when recorded (as it was then)
        self._head_event_id: str | None = None  # the event at ``version`` when loaded or saved (None: unknown)
        self._stream_id: str | None = None  # set when the repository found the stream under the legacy scheme
        self._broken: str | None = None  # the event class whose handler raised: the state may be half-changed

    @classmethod
    def event_classes(cls) -> list[type[DomainEvent]]:
        """The event classes this aggregate handles."""
        return list(cls._handlers)

    @classmethod
    def stream_id_of(cls, aggregate_id: str) -> str:
        """The stream of the aggregate with id ``aggregate_id``: ``"{type}-{id}"``, ``%`` and ``-`` escaped in the type.

        The type never holds a bare ``-``, so the first ``-`` ends it and no two (type, id) pairs share a
        stream (``("order", "a-b")`` and ``("order-a", "b")`` did under the legacy scheme; see
        :meth:`legacy_stream_id_of`). An id that is not a non-empty string raises ValidationError.
        """
        if not isinstance(aggregate_id, str) or not aggregate_id:
            msg = f"an aggregate id must be a non-empty string, got {aggregate_id!r}"
            raise ValidationError(msg, field="aggregate_id", aggregate_type=cls.aggregate_type)
        return f"{_escape_type(cls.aggregate_type)}-{aggregate_id}"

    @classmethod
    def legacy_stream_id_of(cls, aggregate_id: str) -> str | None:
        """The stream under the legacy ``"{type}-{id}"`` scheme (type unescaped), or ``None`` when it is the same.

        Only a type holding ``%`` or ``-`` has one; the repository reads and extends such a stream when its
        events name this aggregate (type and id) in their envelope, so older aggregates stay readable.
        """
        t = cls.aggregate_type
        return None if _escape_type(t) == t else f"{t}-{aggregate_id}"

    @property
    def stream_id(self) -> str:
        """The stream of this aggregate."""
        return self._stream_id or self.stream_id_of(self.id)

    @property
    def pending(self) -> list[DomainEvent]:
        """Events recorded since the last load or save (a copy)."""
        return list(self._pending)

    def record(self, event: DomainEvent) -> None:
        """Apply a new event and keep it pending (with the id it will be stored under) until the repository saves it.

        The event is encoded first (its schema or annotations checked): one its class refuses raises
        ValidationError and changes nothing, and what is saved is the event as it was when recorded.
        """
        from eventsource.manager.ids import event_id  # the manager's generator (importing it here makes a cycle)

        eid = event_id()
        data = event.event_data(event_id=eid, aggregate_id=self.id, aggregate_type=self.aggregate_type)
        self.apply(event)
        self._pending.append(event)
        self._pending_ids.append(eid)
        self._pending_data.append(data)

    def apply(self, event: DomainEvent) -> None:
        """Change the state by one event (no pending entry); a class with no handler raises ValidationError.

        A handler that raises leaves the aggregate unsaveable: it may have changed part of the state.
        """
        handler = self._handlers.get(type(event))
        if handler is None:
            msg = (
                f"{type(self).__name__} has no @applies handler for {type(event).__name__} "
                f"(event type {getattr(event, 'event_type', '?')!r})"
            )
            raise ValidationError(msg, field="event_type", aggregate_type=self.aggregate_type)
        try:
            out = handler(self, event)
            if out is not None and inspect.isawaitable(out):  # a coroutine: the state would never change
                self._refuse_awaitable(event, out)
        except BaseException:
            self._broken = type(event).__name__  # a repository refuses to save (or snapshot) this state
            raise

    def _refuse_awaitable(self, event: DomainEvent, out: Any) -> None:
        """Close the awaitable a handler returned and raise ConfigurationError naming the handler."""
        getattr(out, "close", lambda: None)()
        msg = (
            f"{type(self).__name__}.{self._handler_names.get(type(event))}, the @applies handler of "
            f"{type(event).__name__}, returned an awaitable: a handler changes the state at once (no await)"
        )
        raise ConfigurationError(msg, field="event_class")

    def to_snapshot(self) -> Any:
        """The state as snapshot data: the public instance attributes except ``id`` and ``version``."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in _OWN}

    @classmethod
    def from_snapshot(cls, aggregate_id: str, data: Any) -> Self:
        """An aggregate from snapshot data (at :attr:`snapshot_version`); the inverse of :meth:`to_snapshot`."""
        agg = cls(aggregate_id)
        if not isinstance(data, dict):
            msg = f"snapshot of {cls.__name__} must be a dict by default, got {type(data).__name__}"
            raise ValidationError(msg, field="data")
        for k, v in data.items():
            if isinstance(k, str) and not k.startswith("_") and k not in _OWN:  # never the envelope or internals
                setattr(agg, k, v)
        return agg

    def mark_saved(self, version: int, head_event_id: str | None = None, *, count: int | None = None) -> None:
        """Clear the first ``count`` pending events (``None``: all): they are stored and the stream is at ``version``.

        ``head_event_id`` is the event at ``version``. Events recorded while the save was in flight stay pending.
        """
        n = len(self._pending) if count is None else count
        del self._pending[:n]
        del self._pending_ids[:n]
        del self._pending_data[:n]
        self.version = version
        self._head_event_id = head_event_id


__all__ = ["Aggregate", "applies"]

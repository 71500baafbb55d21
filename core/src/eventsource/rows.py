"""Fast record constructors and plain-row pages: the read and append hot paths' records (re-exported by model).

:func:`positional_constructor` builds a frozen, slotted record without the dataclass ``__init__`` cost, and
``make_recorded_event`` / ``make_event`` / ``make_append_result`` are its products for the records of
:mod:`eventsource.model`; :class:`EventRow` and :class:`RowPage` carry stored events as plain rows in
:data:`RECORD_FIELDS` order. Every name here is also importable from :mod:`eventsource.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from eventsource.errors import CodecError, EventSourceError
from eventsource.model import AppendResult, Event, RecordedEvent, RecordedSnapshot

T = TypeVar("T")


def positional_constructor(cls: type[T]) -> Callable[..., T]:
    """A fast positional constructor for a frozen, slotted record dataclass (the read hot path).

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which is slow for a
    wide record, and reads build one :class:`RecordedEvent` and one :class:`Event` per event. This builds
    the same (equal, still frozen) object faster (``benchmarks/`` measures the read path): a plain class
    with the same slots is filled by ordinary attribute stores (the interpreter's fastest), then the
    object's ``__class__`` is set to ``cls`` (allowed because the two layouts are identical, and checked once
    here). Pass every field, in field order; there are no defaults. Classes with ``__post_init__`` get
    their plain constructor.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    slots = getattr(cls, "__slots__", None)
    if hasattr(cls, "__post_init__") or not isinstance(slots, tuple) or sorted(slots) != sorted(names):
        return cls
    args = ", ".join(names)
    stores = "".join(f"    o.{n} = {n}\n" for n in names)  # in make's own frame: no __init__ call
    src = (
        f"class _Builder:\n    __slots__ = _slots\n\n"
        f"def make({args}):\n    o = _new(_Builder)\n{stores}    o.__class__ = _cls\n    return o\n"
    )
    namespace: dict[str, Any] = {"_cls": cls, "_slots": slots, "_new": object.__new__, "__name__": cls.__module__}
    exec(src, namespace)  # noqa: S102 - generated from the dataclass's own field names, as dataclasses does
    make = namespace["make"]
    try:  # the layouts must match for the __class__ switch, and the plain constructor take every field
        probe = make(*range(len(names)))
        if type(probe) is not cls or probe != cls(*range(len(names))):
            return cls
    except TypeError:
        return cls
    make.__doc__ = f"Build a {cls.__name__} from all of its fields, positionally (fast path)."
    return make  # type: ignore[no-any-return]


make_recorded_event = positional_constructor(RecordedEvent)
"""``RecordedEvent(*fields)`` without the frozen-dataclass ``__init__`` cost (providers' read paths)."""

make_event = positional_constructor(Event)
"""``Event(*fields)`` without the frozen-dataclass ``__init__`` cost (the manager's decode)."""

make_append_result = positional_constructor(AppendResult)
"""``AppendResult(*fields)`` without the frozen-dataclass ``__init__`` cost (providers' append paths)."""


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RecordedEvent))
""":class:`RecordedEvent`'s fields in order: the column order of a :class:`RowPage` row."""


class EventRow(NamedTuple):
    """One stored event as a plain row: :class:`RecordedEvent`'s fields, in order, as a tuple.

    A database row selected in this column order is one as it is (providers pass their rows unchanged);
    ``timestamp`` holds the stored form, which :attr:`RowPage.timestamp` converts when it is not a datetime.
    """

    event_id: str
    stream_id: str
    event_type: str
    version: int
    position: int
    data: bytes
    metadata: bytes
    encoding: str
    timestamp: Any
    correlation_id: str | None
    causation_id: str | None
    user_id: str | None
    tenant_id: str | None
    aggregate_id: str | None
    aggregate_type: str | None


if EventRow._fields != RECORD_FIELDS:  # pragma: no cover - a field added to one and not the other
    msg = f"EventRow's fields {EventRow._fields} differ from RecordedEvent's {RECORD_FIELDS}"
    raise TypeError(msg)
_TS = EventRow._fields.index("timestamp")


@dataclass(frozen=True, slots=True)
class RowPage:
    """One page of stored events as plain rows: a provider's fast read path.

    A provider's ``read_stream_pages`` / ``read_all_pages`` may yield these instead of sequences of
    :class:`RecordedEvent`: the manager then builds each :class:`Event` straight from its row, and no
    intermediate record is made.

    :param rows: one :class:`EventRow` per event (any tuple with its fields in that order).
    :param timestamp: converts the stored form of :attr:`EventRow.timestamp` into an aware
        :class:`~datetime.datetime`; ``None`` when the rows hold datetimes already.
    """

    rows: Sequence[EventRow]
    timestamp: Callable[[Any], datetime] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"RowPage({len(self.rows)} rows)"

    def records(self) -> list[RecordedEvent]:
        """The page as :class:`RecordedEvent` objects (the general path)."""
        make, conv = make_recorded_event, self.timestamp
        if conv is None:
            return [make(*r) for r in self.rows]
        try:
            return [make(*r[:_TS], conv(r[_TS]), *r[_TS + 1 :]) for r in self.rows]
        except UNREADABLE:
            for r in self.rows:
                stored_time(conv, r)  # raises for the row whose timestamp is not the store's form
            raise


UNREADABLE = (TypeError, AttributeError, ValueError, OverflowError, IndexError)
"""What a stored value of another type raises where a store's own form is expected (another tool wrote it)."""
_TEXT_AT = tuple(RECORD_FIELDS.index(n) for n in ("event_id", "stream_id", "event_type", "encoding"))
_INT_AT = tuple(RECORD_FIELDS.index(n) for n in ("version", "position"))
_BYTES_AT = tuple(RECORD_FIELDS.index(n) for n in ("data", "metadata"))
_OPTIONAL_AT = tuple(range(_TS + 1, len(RECORD_FIELDS)))


def row_problem(row: Sequence[Any]) -> str | None:
    """The first field of a stored event (a row in :data:`RECORD_FIELDS` order) whose type no store writes there.

    ``None`` if every field has its type (the timestamp is not looked at: its stored form is the store's own).
    """

    def said(i: int, want: str) -> str:
        return f"its {RECORD_FIELDS[i]} is {type(row[i]).__name__}, not {want}"

    for i in _TEXT_AT:
        if not isinstance(row[i], str):
            return said(i, "text")
    for i in _INT_AT:
        if not isinstance(row[i], int) or isinstance(row[i], bool):
            return said(i, "an integer")
    for i in _BYTES_AT:
        if not isinstance(row[i], (bytes, bytearray, memoryview)):
            return said(i, "bytes")
    for i in _OPTIONAL_AT:
        if row[i] is not None and not isinstance(row[i], str):
            return said(i, "text")
    return None


def malformed(row: Sequence[Any], problem: str | None = None, cause: BaseException | None = None) -> CodecError:
    """The error for a stored event that another tool wrote with a value of another type (``problem`` says which).

    Without ``problem``, :func:`row_problem` finds it; failing that, ``cause``'s type is named (never its message,
    which may quote the payload).
    """
    problem = problem or row_problem(row) or f"it cannot be decoded ({type(cause).__name__})"
    eid, sid, version = row[0], row[1], row[3]
    msg = (
        f"event {eid!r} (version {version!r} of stream {sid!r}) is stored malformed: {problem} "
        "(written by another tool?)"
    )
    return CodecError(msg, event_id=eid, stream_id=sid)


def stored_time(conv: Callable[[Any], datetime], row: Sequence[Any]) -> datetime:
    """``conv`` of ``row``'s stored timestamp; :class:`CodecError` naming the event if it is not the store's form."""
    ts = row[_TS]
    try:
        return conv(ts)
    except EventSourceError:
        raise
    except UNREADABLE as e:
        shown = repr(ts) if len(repr(ts)) <= 40 else f"{repr(ts)[:40]}..."  # noqa: PLR2004
        raise malformed(row, f"its timestamp {shown} ({type(ts).__name__}) is not one this store writes") from e


class EventShell:
    """A plain class with :class:`Event`'s slots: fill every field, then set ``__class__ = Event``.

    The read hot path builds events this way (ordinary slot stores, no constructor frame); the codec
    checks once at import that a shell filled so equals the same :class:`Event` built normally.
    """

    __slots__ = Event.__slots__


def check_snapshot(snap: RecordedSnapshot) -> None:
    """Refuse a stored snapshot holding a value of another type (another tool wrote it): :class:`CodecError`."""
    for name, want, types in (
        ("snapshot_id", "text", str),
        ("encoding", "text", str),
        ("version", "an integer", int),
        ("data", "bytes", (bytes, bytearray, memoryview)),
        ("metadata", "bytes", (bytes, bytearray, memoryview)),
        ("aggregate_id", "text", str),
        ("aggregate_type", "text", str),
    ):
        value = getattr(snap, name)
        if not isinstance(value, types) and not (value is None and name.startswith("aggregate")):
            msg = (
                f"snapshot {snap.snapshot_id!r} (version {snap.version!r} of stream {snap.stream_id!r}) is stored "
                f"malformed: its {name} is {type(value).__name__}, not {want} (written by another tool?)"
            )
            raise CodecError(msg, snapshot_id=snap.snapshot_id, stream_id=snap.stream_id)

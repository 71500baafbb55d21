"""Event classes: frozen dataclasses that name their event type and schema version, optionally validated.

Declare one by subclassing :class:`DomainEvent` with class keywords and decorating it as a frozen
dataclass: ``@dataclass(frozen=True) class OrderPlaced(DomainEvent, type_name="OrderPlaced", version=2)``.
``schema=`` names a marshmallow schema that validates the data on append and loads it on read
(a failure is a :class:`~eventsource.errors.ValidationError` naming the field). Appending an instance
stores its fields as the event's data and, above version 1, its schema version in the metadata under
:data:`~eventsource.domain.upcasting.SCHEMA_KEY`. :class:`EventClasses` maps type names to classes for
reads (``as_classes=True`` puts an instance in ``Event.data``); one type name has one class.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
import types
import typing
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Self
from uuid import UUID

from eventsource.domain.upcasting import SCHEMA_KEY, stored_version
from eventsource.errors import ConfigurationError, SchemaVersionError, ValidationError
from eventsource.model import Event, EventData, redacted_scope

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import marshmallow

    from eventsource.domain.upcasting import Upcasters


def _field_error(cls_name: str, type_name: str, messages: Any) -> ValidationError:
    """A :class:`ValidationError` naming the first bad field of a marshmallow error dict."""
    if isinstance(messages, dict) and messages:
        path: list[str] = []
        cur: Any = messages
        while isinstance(cur, dict) and cur:
            key = next(iter(cur))
            path.append(str(key))
            cur = cur[key]
        name = ".".join(path)
        text = "; ".join(str(m) for m in cur) if isinstance(cur, list) else str(cur)
        msg = f"event {type_name!r} ({cls_name}): field {name!r}: {text}"
        return ValidationError(msg, field=name, event_type=type_name)
    msg = f"event {type_name!r} ({cls_name}): {messages}"
    return ValidationError(msg, field="data", event_type=type_name)


_CHECKED = frozenset({str, int, float, bool, Decimal, datetime, date, time, timedelta, UUID, bytes, list, dict, set})
_TYPES_ATTR = "_eventsource_field_types"
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
_event_values = operator.attrgetter(*_EVENT_FIELDS)


def _accepted(hint: Any) -> tuple[type, ...] | None:
    """The runtime types a field annotated ``hint`` may hold; ``None``: not checked (``Any``, a class, ``Literal``)."""
    if hint is None or hint is type(None):
        return (type(None),)
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        out: list[type] = []
        for arg in typing.get_args(hint):
            acc = _accepted(arg)
            if acc is None:
                return None
            out.extend(acc)
        return tuple(out)
    if origin in (list, dict, set):  # the container only: its items are not checked
        return (origin,)
    if origin is not None or hint not in _CHECKED:
        return None
    return (float, int) if hint is float else (hint,)


def _field_types(cls: type) -> dict[str, tuple[type, ...]]:
    """The checked fields of an event class and their accepted types (resolved once per class, then cached).

    An annotation that does not resolve (a name local to a function, under postponed evaluation) is not checked.
    A field whose default is ``None`` takes ``None`` whatever its annotation (``note: str = None``).
    """
    cached = cls.__dict__.get(_TYPES_ATTR)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    out: dict[str, tuple[type, ...]] = {}
    for f in dataclasses.fields(cls):
        hint: Any = f.type
        if isinstance(hint, str):
            shim = type("_", (), {"__annotations__": {f.name: hint}, "__module__": cls.__module__})
            try:
                hint = typing.get_type_hints(shim, localns=dict(vars(cls)))[f.name]
            except Exception:  # noqa: BLE001, S112 - an unresolvable annotation is simply not checked
                continue
        acc = _accepted(hint)
        if acc is not None:
            out[f.name] = acc if f.default is not None or type(None) in acc else (*acc, type(None))
    setattr(cls, _TYPES_ATTR, out)
    return out


_REBUILT_ATTR = "_eventsource_rebuilt"
_SHAPE_ATTR = "_eventsource_shape"


def _shape(cls: type) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]:
    """``cls``'s field names, its init fields' names and those without a default (kept on the class: read per event)."""
    cached = cls.__dict__.get(_SHAPE_ATTR)
    if cached is None:
        fields = dataclasses.fields(cls)
        init = tuple(f.name for f in fields if f.init)
        required = tuple(
            f.name
            for f in fields
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        cached = (frozenset(f.name for f in fields), init, required)
        setattr(cls, _SHAPE_ATTR, cached)
    return cached


def _rebuilt(cls: type) -> bool:
    """Whether a read builds ``cls`` otherwise than from its stored fields (a ``field(init=False)``, an ``InitVar``)."""
    cached = cls.__dict__.get(_REBUILT_ATTR)
    if cached is None:
        fields = dataclasses.fields(cls)
        init = {f.name for f in fields if f.init}
        try:
            params = set(inspect.signature(cls).parameters)  # the init fields, and InitVars (not fields)
        except (TypeError, ValueError):
            params = set()
        cached = len(init) != len(fields) or bool(params - init)
        setattr(cls, _REBUILT_ATTR, cached)
    return bool(cached)


def _wrong_type(
    cls: type[DomainEvent], values: Mapping[str, Any], *, read_back: bool = False
) -> ValidationError | None:
    """A :class:`ValidationError` for the first field of ``values`` whose value is not of its annotated type.

    ``read_back``: ``values`` are what the class's schema loads from its own dump (the message says so).
    """
    for name, acc in _field_types(cls).items():
        if name not in values:
            continue
        v = values[name]
        if isinstance(v, acc) and (type(v) is not bool or bool in acc):  # a bool is an int to isinstance, not here
            continue
        want = " or ".join("None" if t is type(None) else t.__name__ for t in acc if t is not int or float not in acc)
        holds = "would be read back by its schema as" if read_back else "holds"
        msg = f"event {cls.event_type!r} ({cls.__name__}): field {name!r} {holds} a {type(v).__name__}, not {want}"
        return ValidationError(msg, field=name, event_type=cls.event_type)
    return None


def _nested_dataclass(value: Any, path: str) -> tuple[str, type] | None:
    """Where a dataclass instance sits inside ``value`` (``asdict`` would store it as a dict, read back as one)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return path, type(value)
    if isinstance(value, dict):
        items: Any = ((f"{path}[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, v in items:
        found = _nested_dataclass(v, where)
        if found is not None:
            return found
    return None


PLAIN_JSON = (dict, list, set, str, int, float, datetime, date, time, timedelta, UUID, Decimal, bytes)
"""What the JSON codec gives back as exactly this type (``datetime`` before ``date``): a subclass of one of
these (a defaultdict, a Counter, an IntEnum) comes back as the base type, with other behaviour (a missing
key raising, say); so does a ``bytearray`` or ``memoryview``, as ``bytes``."""


def changed_by_json(state: Any) -> tuple[str, type, str] | None:
    """Where ``state`` holds what the codec reads back as another type: the path, the type and its base's name."""
    stack: list[tuple[str, Any]] = [("", state)]
    while stack:
        path, value = stack.pop()
        t = type(value)
        if t not in PLAIN_JSON and t is not bool and isinstance(value, (*PLAIN_JSON, bytearray, memoryview)):
            base = next((b for b in PLAIN_JSON if isinstance(value, b)), bytes)
            return path or "the state", t, base.__name__
        if isinstance(value, dict):
            stack.extend((f"{path}[{k!r}]", v) for k, v in value.items())
        elif isinstance(value, (list, set)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):  # asdict would choke on a defaultdict
            stack.extend((f"{path}.{f.name}", getattr(value, f.name)) for f in dataclasses.fields(value))
    return None


def _json_subclass(event: DomainEvent) -> ValidationError | None:
    """A :class:`ValidationError` for the first field holding what JSON reads back as its base type (an IntEnum)."""
    cls = type(event)
    for f in dataclasses.fields(event):  # type: ignore[arg-type]
        changed = changed_by_json(getattr(event, f.name))
        if changed is not None:
            where, t, base = changed
            name = f.name if where == "the state" else f"{f.name}{where}"
            msg = (
                f"event {cls.event_type!r} ({cls.__name__}): field {name!r} holds a {t.__name__}, which would be "
                f"read back as a plain {base}; store a plain {base}, or give the class a schema that loads it"
            )
            return ValidationError(msg, field=f.name, event_type=cls.event_type)
    return None


class DomainEvent:
    """Base of event classes; see the module docstring.

    Class keywords: ``type_name`` (default: the class name), ``version`` (the schema version this class
    describes, default 1) and ``schema`` (a marshmallow ``Schema`` class, optional).
    """

    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    schema: ClassVar[type[marshmallow.Schema] | None] = None

    def __init_subclass__(
        cls,
        *,
        type_name: str | None = None,
        version: int | None = None,
        schema: type[marshmallow.Schema] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.event_type = type_name or cls.__name__
        if version is not None:
            if type(version) is not int or version < 1:
                msg = f"event class {cls.__name__}: version must be an int >= 1, got {version!r}"
                raise ConfigurationError(msg, field="version")
            cls.schema_version = version
        else:
            cls.schema_version = 1
        cls.schema = schema

    # ------------------------------------------------------------------ writing

    def to_data(self) -> Any:
        """The event's data as stored: the schema's dump when it has one, else its fields as a dict.

        A class that a read builds otherwise than from the stored fields (a ``field(init=False)``, an ``InitVar``)
        is read back here first: a field that would come back changed raises ValidationError naming it.
        """
        data = self._data()
        cls = type(self)
        if _rebuilt(cls):
            back = cls.from_data(data)
            for f in dataclasses.fields(self):  # type: ignore[arg-type]
                if getattr(back, f.name) != getattr(self, f.name):
                    msg = (
                        f"event {cls.event_type!r} ({cls.__name__}): field {f.name!r} would be read back otherwise "
                        "(the class computes it again on a read, from what is stored); store what it is computed "
                        "from as a field"
                    )
                    raise ValidationError(msg, field=f.name, event_type=cls.event_type)
        return data

    def _data(self) -> Any:
        """:meth:`to_data` without the read-back check."""
        cls = type(self)
        if not dataclasses.is_dataclass(self):
            msg = f"event class {cls.__name__} must be a dataclass (decorate it with @dataclass(frozen=True))"
            raise ConfigurationError(msg, field="event_type")
        if cls.schema is not None:
            return self._schema_data(cls.schema())
        # before asdict, which raises a bare TypeError on a defaultdict
        wrong = _json_subclass(self) or _wrong_type(
            cls, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        )
        if wrong is not None:
            raise wrong
        made: list[None] = []  # asdict makes one dict per dataclass: more than this one's is a nested one

        def as_dict(items: list[tuple[str, Any]]) -> dict[str, Any]:
            made.append(None)
            return dict(items)

        data = dataclasses.asdict(self, dict_factory=as_dict)
        for f in dataclasses.fields(self) if len(made) > 1 else ():  # walked only to name it (rare)
            found = _nested_dataclass(getattr(self, f.name), f.name)
            if found is not None:
                where, inner = found
                msg = (
                    f"event {cls.event_type!r} ({cls.__name__}): field {where!r} holds a {inner.__name__} dataclass, "
                    "which would be stored as a dict and read back as one; store plain data, or give the class a "
                    "schema that loads it"
                )
                raise ValidationError(msg, field=where, event_type=cls.event_type)
        return data

    def _schema_data(self, schema: marshmallow.Schema) -> Any:
        """:meth:`_data` of a class with a schema: its dump, which a read must load back to the annotated types."""
        cls = type(self)
        dumped = {(f.attribute or name).split(".")[0] for name, f in schema.dump_fields.items()}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.init and f.name not in dumped:  # the dump would leave it out: not stored, its default on read
                msg = (
                    f"event {cls.event_type!r} ({cls.__name__}): field {f.name!r} is not dumped by its schema "
                    f"{type(schema).__name__}, so it would not be stored; add it to the schema"
                )
                raise ValidationError(msg, field=f.name, event_type=cls.event_type)
        data = schema.dump(self)
        import marshmallow

        try:  # what a read loads: its fields must still be of their annotated types (a dump may lose them)
            loaded = schema.load(data)
        except marshmallow.ValidationError as e:
            raise _field_error(cls.__name__, cls.event_type, e.messages) from None
        wrong = _wrong_type(cls, loaded, read_back=True) if isinstance(loaded, dict) else None
        if wrong is not None:
            raise wrong
        return data

    def event_data(self, *, metadata: Mapping[str, Any] | None = None, **envelope: Any) -> EventData:
        """The event as an :class:`EventData` to append; ``envelope`` sets ids (correlation, tenant...)."""
        cls = type(self)
        meta = dict(metadata or {})
        if SCHEMA_KEY in meta:  # the class owns its version: a caller's value would be read as the data's version
            msg = (
                f"event {cls.event_type!r} ({cls.__name__}): metadata key {SCHEMA_KEY!r} is reserved; "
                f"the class sets it (version {cls.schema_version})"
            )
            raise ValidationError(msg, field="metadata", event_type=cls.event_type)
        if cls.schema_version != 1:
            meta[SCHEMA_KEY] = cls.schema_version
        return EventData(event_type=cls.event_type, data=self.to_data(), metadata=meta or None, **envelope)

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_data(cls, data: Any) -> Self:
        """An instance from stored data (already at this class's schema version)."""
        if cls.schema is not None:
            import marshmallow

            try:
                loaded = cls.schema().load(data)
            except marshmallow.ValidationError as e:
                raise _field_error(cls.__name__, cls.event_type, e.messages) from None
        else:
            loaded = data
        if not isinstance(loaded, dict):
            msg = f"event {cls.event_type!r} ({cls.__name__}): data must be an object, got {type(loaded).__name__}"
            raise ValidationError(msg, field="data", event_type=cls.event_type)
        names, init, required = _shape(cls)
        extra = sorted(set(loaded) - names) if not names.issuperset(loaded) else ()
        if extra:
            msg = f"event {cls.event_type!r} ({cls.__name__}): unknown field {extra[0]!r}"
            raise ValidationError(msg, field=extra[0], event_type=cls.event_type)
        if cls.schema is None:  # a schema's load checked the types already
            wrong = _wrong_type(cls, loaded)
            if wrong is not None:
                raise wrong
        missing = [name for name in required if name not in loaded]
        if missing:
            msg = f"event {cls.event_type!r} ({cls.__name__}): missing field {missing[0]!r}"
            raise ValidationError(msg, field=missing[0], event_type=cls.event_type)
        try:  # an init=False field is stored (asdict) but computed again by the class, never passed to it
            return cls(**{name: loaded[name] for name in init if name in loaded})
        except TypeError as e:  # raised by the class's own __post_init__
            msg = f"event {cls.event_type!r} ({cls.__name__}): {type(e).__name__}: {e}"
            raise ValidationError(msg, field="data", event_type=cls.event_type) from e


class EventClasses:
    """Event classes by type name, tied to the upcasters that must bring old data to their version."""

    __slots__ = ("by_type", "upcasters")

    def __init__(self, upcasters: Upcasters) -> None:
        self.by_type: dict[str, type[DomainEvent]] = {}
        self.upcasters = upcasters

    def register(self, *classes: type[DomainEvent]) -> None:
        """Register classes; another class under a registered type name raises ConfigurationError."""
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
                msg = f"{cls!r} is not a DomainEvent subclass"
                raise ConfigurationError(msg, field="event_class")
            params = getattr(cls, "__dataclass_params__", None)
            if params is None or not params.frozen:
                msg = f"event class {cls.__name__} must be a frozen dataclass (@dataclass(frozen=True))"
                raise ConfigurationError(msg, field="event_class")
            prev = self.by_type.get(cls.event_type)
            if prev is not None and prev is not cls:
                msg = (
                    f"event type {cls.event_type!r} is already registered to {prev.__module__}.{prev.__qualname__}; "
                    f"refusing {cls.__module__}.{cls.__qualname__}"
                )
                raise ConfigurationError(msg, field="event_type")
            known = self.upcasters.events.latest.get(cls.event_type, 1)
            if known > cls.schema_version:
                msg = (
                    f"event class {cls.__name__} is {cls.event_type!r} version {cls.schema_version}, but the "
                    f"upcasters already produce version {known}"
                )
                raise ConfigurationError(msg, field="version")
            self.by_type[cls.event_type] = cls
            self.upcasters.declare(cls.event_type, cls.schema_version)

    def instance(self, ev: Event) -> DomainEvent | Any:
        """The instance of ``ev``'s class, from its (upcast) data; the data itself for an unregistered type."""
        cls = self.by_type.get(ev.event_type)
        if cls is None:
            return ev.data
        what = f"event {ev.event_id!r} (version {ev.version} of stream {ev.stream_id!r})"
        v = stored_version(ev.metadata, what, event_id=ev.event_id, stream_id=ev.stream_id)
        if v != cls.schema_version:
            msg = (
                f"{what} is {ev.event_type!r} at schema version {v}, but {cls.__name__} is version "
                f"{cls.schema_version}" + (": register an upcaster" if v < cls.schema_version else ": upgrade the code")
            )
            raise SchemaVersionError(msg, event_type=ev.event_type, schema_version=v, event_id=ev.event_id)
        try:
            return cls.from_data(ev.data)
        except ValueError as e:  # a schema or __post_init__ refusing stored data: say which stored event it is
            details = dict(e.details) if isinstance(e, ValidationError) else {"field": "data"}
            text = e.message if isinstance(e, ValidationError) else f"{cls.__name__}: {type(e).__name__}: {e}"
            details.update(event_type=ev.event_type, event_id=ev.event_id, stream_id=ev.stream_id)
            raise ValidationError(f"{what}: {text}", **details) from e

    def typed(self, ev: Event) -> Event:
        """``ev`` with an instance of its class as ``data`` (unchanged for an unregistered type or a redacted event)."""
        if ev.event_type not in self.by_type or (ev.data is None and redacted_scope(ev) is not None):
            return ev
        values = dict(zip(_EVENT_FIELDS, _event_values(ev), strict=True))  # (dataclasses.replace: 4x the cost)
        values["data"] = self.instance(ev)
        return Event(**values)

    def typed_pages(self, decode: Any) -> Any:
        """Wrap a page decoder so each event it yields is :meth:`typed`."""
        typed = self.typed

        def decode_typed(page: Any) -> Iterator[Event]:
            for ev in decode(page):
                yield typed(ev)

        return decode_typed


__all__ = ["DomainEvent", "EventClasses"]

"""Upcasting chains: stored events and snapshots brought to the newest schema version on every read.

An event's schema version is stored in its metadata under :data:`SCHEMA_KEY` (absent: version 1, which
is what every event written before event classes existed is). A step maps ``(type, version)`` to
``(type', version + 1)`` with a function of the data; steps chain until no step starts where the last
one ended. A rename maps an old type name to a new one at the same version, before any step. The chain
then checks the result against the newest version the code knows for that type (the highest step
target, or a registered event class): a missing step, a version from the future, or an upcaster that
raises is an :class:`~eventsource.errors.UpcastError`, never a half-upcast event. Snapshots have their
own chains, keyed by aggregate type. Writing never upcasts: stored bytes are only read. Registration
happens in code (:class:`Upcasters` methods, exposed on the manager) or from plugins through the
``eventsource_register_upcasters`` hook; each manager copies the host's registrations when it is built.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from eventsource.errors import ConfigurationError, ProviderError, SchemaVersionError, UpcastError, ValidationError
from eventsource.model import make_event

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from eventsource.model import Event, Snapshot

SCHEMA_KEY = "eventsource.schema"
"""Metadata key holding the schema version of an event's (or snapshot's) data; absent means 1."""

MAX_STEPS = 10_000
"""A chain longer than this is refused at read time (a guard; versions always increase, so chains end)."""

Step = tuple["Callable[[Any], Any]", "str | None"]


def stored_version(metadata: dict[str, Any], what: str, **where: Any) -> int:
    """The schema version recorded in ``metadata`` (1 when absent); :class:`UpcastError` if it is not an int >= 1."""
    v = metadata.get(SCHEMA_KEY, 1)
    if type(v) is not int or v < 1:
        msg = f"{what} has schema version {v!r} in its metadata; it must be an int >= 1"
        raise UpcastError(msg, schema_version=repr(v), **where)
    return v


def _check_version(from_version: object) -> int:
    if type(from_version) is not int or from_version < 1:
        msg = f"an upcaster's from_version must be an int >= 1, got {from_version!r}"
        raise ConfigurationError(msg, field="from_version")
    return from_version


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        msg = f"{what} must be a non-empty string, got {name!r}"
        raise ConfigurationError(msg, field=what.replace(" ", "_"))
    return name


class _Chains:
    """Steps, renames and newest versions of one kind of record (events, or snapshots by aggregate type)."""

    __slots__ = ("kind", "latest", "pinned", "renames", "steps", "types")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.steps: dict[tuple[str, int], Step] = {}
        self.renames: dict[str, str] = {}
        self.latest: dict[str, int] = {}
        self.pinned: dict[str, int] = {}
        """The version the code reads a type at (an event class, an aggregate's snapshot_version): no step goes past."""
        self.types: set[str] = set()
        """Stored type names a read must look at (a step, a rename, or a newest version above 1)."""

    def add(self, type_name: str, from_version: int, fn: Callable[[Any], Any], to_type: str | None) -> None:
        type_name = _check_name(f"{self.kind} type", type_name)
        from_version = _check_version(from_version)
        if to_type is not None:
            _check_name("to_type", to_type)
        if not callable(fn):
            msg = f"the upcaster of {self.kind} {type_name!r} v{from_version} is not callable: {fn!r}"
            raise ConfigurationError(msg, field="upcaster")
        key = (type_name, from_version)
        target = to_type or type_name
        if self.pinned.get(target, from_version + 1) <= from_version:
            msg = (
                f"a step of {self.kind} {type_name!r} to {target!r} version {from_version + 1} goes past the version "
                f"the code reads it at ({self.pinned[target]}, {self._reader}); raise that version first"
            )
            raise ConfigurationError(msg, field="from_version")
        if to_type not in (None, type_name) and self.pinned.get(type_name, from_version + 1) <= from_version:
            raise self._away(type_name, f"a step from version {from_version} to {to_type!r}")
        if key in self.steps:
            msg = f"{self.kind} {type_name!r} already has an upcaster from schema version {from_version}"
            raise ConfigurationError(msg, field="from_version")
        if type_name in self.renames:
            msg = f"{self.kind} type {type_name!r} is renamed to {self.renames[type_name]!r}; add its upcasters there"
            raise ConfigurationError(msg, field="event_type")
        self.steps[key] = (fn, to_type)
        self.declare(target, from_version + 1)
        self.types.add(type_name)

    def rename(self, old: str, new: str) -> None:
        old = _check_name("old type", old)
        new = _check_name("new type", new)
        if old in self.renames:
            msg = f"{self.kind} type {old!r} is already renamed to {self.renames[old]!r}"
            raise ConfigurationError(msg, field="old_type")
        if old in self.pinned:
            raise self._away(old, f"a rename to {new!r}")
        if any(t == old for t, _ in self.steps):
            msg = f"{self.kind} type {old!r} has upcasters of its own; a renamed type cannot"
            raise ConfigurationError(msg, field="old_type")
        seen, cur = {old}, new
        while cur in self.renames:  # refuse A -> B -> ... -> A
            cur = self.renames[cur]
            if cur in seen:
                msg = f"renaming {self.kind} type {old!r} to {new!r} makes a cycle of renames"
                raise ConfigurationError(msg, field="new_type")
            seen.add(cur)
        if cur == old:
            msg = f"renaming {self.kind} type {old!r} to {new!r} makes a cycle of renames"
            raise ConfigurationError(msg, field="new_type")
        self.renames[old] = new
        self.types.add(old)

    def declare(self, type_name: str, version: int) -> None:
        """Record that the code knows ``type_name`` up to schema ``version``."""
        if version > self.latest.get(type_name, 1):
            self.latest[type_name] = version
            self.types.add(type_name)

    def _away(self, type_name: str, how: str) -> ConfigurationError:
        """The refusal of a type that an event class reads being read as another one (the class would never be)."""
        msg = (
            f"{self.kind} {type_name!r} has {self._reader} and {how}: the events it writes would be read as another "
            "type, never as that class (register the class under the new name)"
        )
        return ConfigurationError(msg, field="event_type", event_type=type_name)

    @property
    def _reader(self) -> str:
        return "its event class" if self.kind == "event" else "the aggregate's snapshot_version"

    def pin(self, type_name: str, version: int, *, hold: bool) -> None:
        """Record that the code reads ``type_name`` at ``version``: a chain already past it raises ConfigurationError.

        ``hold``: a step added later past it raises too (one event class per type; not for snapshots, whose
        aggregate class a release may replace in a running manager, the old repository then ignoring them).
        """
        known = self.latest.get(type_name, 1)
        if known > version:
            msg = (
                f"{self.kind} {type_name!r} is read at version {version} ({self._reader}), but the "
                f"upcasters already produce version {known}"
            )
            raise ConfigurationError(msg, field="version")
        if hold:
            if type_name in self.renames:
                raise self._away(type_name, f"a rename to {self.renames[type_name]!r}")
            away = [(v, to) for (t, v), (_, to) in self.steps.items() if t == type_name and v >= version and to]
            if away:
                raise self._away(type_name, f"a step from version {away[0][0]} to {away[0][1]!r}")
            self.pinned[type_name] = min(version, self.pinned.get(type_name, version))
        self.declare(type_name, version)

    def run(self, type_name: str, version: int, data: Any, rec: Any) -> tuple[str, int, Any]:  # noqa: C901 - each refusal named
        """``(type, version, data)`` of ``rec`` brought to the newest version; :class:`UpcastError` if that fails.

        ``rec`` (the event or snapshot) is only looked at to describe an error.
        """
        renames, steps = self.renames, self.steps
        n = 0
        while True:
            while type_name in renames:
                type_name = renames[type_name]
                n += 1
                if n > MAX_STEPS:
                    break
            step = steps.get((type_name, version))
            if step is None or n > MAX_STEPS:
                break
            fn, to_type = step
            try:
                out = fn(data)
            except ProviderError:  # a store it looked up failing is no fault of the event
                raise
            except Exception as e:
                what, ids = _describe(rec)
                msg = (
                    f"the upcaster of {self.kind} {type_name!r} from schema version {version} raised "
                    f"{type(e).__name__} on {what}"
                )
                raise UpcastError(msg, event_type=type_name, schema_version=version, **ids) from e
            if out is None and data is not None:  # an in-place update that forgot to return the data
                what, ids = _describe(rec)
                msg = (
                    f"the upcaster of {self.kind} {type_name!r} from schema version {version} returned None on "
                    f"{what}: an upcaster returns the data at the next version"
                )
                raise UpcastError(msg, event_type=type_name, schema_version=version, **ids)
            data = out
            type_name = to_type or type_name
            version += 1
            n += 1
        if n > MAX_STEPS:
            what, ids = _describe(rec)
            msg = f"the upcasters of {self.kind} {type_name!r} did not end within {MAX_STEPS} steps ({what})"
            raise UpcastError(msg, event_type=type_name, schema_version=version, **ids)
        newest = self.latest.get(type_name, 1)
        if version < newest:
            what, ids = _describe(rec)
            msg = (
                f"no upcaster takes {self.kind} {type_name!r} from schema version {version} "
                f"(the newest is {newest}); {what} cannot be read"
            )
            raise SchemaVersionError(msg, event_type=type_name, schema_version=version, newest=newest, **ids)
        if version > newest and type_name in self.latest:
            what, ids = _describe(rec)
            msg = (
                f"{what} has {self.kind} {type_name!r} at schema version {version}, "
                f"newer than this code knows ({newest}): upgrade the code that reads it"
            )
            raise SchemaVersionError(msg, event_type=type_name, schema_version=version, newest=newest, **ids)
        return type_name, version, data

    def ends(self, type_name: str) -> set[str]:
        """The types an event stored as ``type_name`` reads as, over the schema versions it can be stored at."""
        r, n = type_name, 0
        while r in self.renames and n <= MAX_STEPS:
            r, n = self.renames[r], n + 1
        versions = {1, self.latest.get(r, 1)} | {v for t, v in self.steps if t == r}
        out: set[str] = set()
        for start in versions:
            t, v, n = self._walk(type_name, start)
            newest = self.latest.get(t, 1)
            if n <= MAX_STEPS and v >= newest and (v == newest or t not in self.latest):  # else unreadable
                out.add(t)
        return out

    def unreadable(self, type_name: str, version: object) -> str | None:
        """Why an event stored as ``type_name`` at schema ``version`` would not read back (``None``: it would).

        The chain is walked by its keys only (no upcaster runs): a version that is not an int >= 1, a missing
        step, or a version newer than the code knows is what a read would raise on.
        """
        if type(version) is not int or version < 1:
            return f"schema version {version!r} is not an int >= 1"
        t, v, _ = self._walk(type_name, version)
        newest = self.latest.get(t, 1)
        if v < newest:
            return f"no upcaster takes {t!r} from schema version {v} (the code reads version {newest})"
        if v > newest and t in self.latest:
            return f"schema version {v} of {t!r} is newer than this code knows ({newest})"
        return None

    def _walk(self, type_name: str, version: int) -> tuple[str, int, int]:
        """Where the chain takes ``type_name`` at ``version`` by its keys alone (no upcaster runs): type, version, n.

        ``n`` counts the steps; past :data:`MAX_STEPS` (a cycle) the walk ends with ``n > MAX_STEPS``.
        """
        t, v, n = type_name, version, 0
        while n <= MAX_STEPS:
            while t in self.renames and n <= MAX_STEPS:
                t, n = self.renames[t], n + 1
            step = self.steps.get((t, v))
            if step is None:
                break
            t, v, n = step[1] or t, v + 1, n + 1
        return t, v, n

    def copy_into(self, other: _Chains) -> None:
        for (t, v), (fn, to) in self.steps.items():
            other.add(t, v, fn, to)
        for old, new in self.renames.items():
            other.rename(old, new)
        for t, v in self.latest.items():
            other.declare(t, v)
        for t, v in self.pinned.items():
            other.pin(t, v, hold=True)


def _describe(rec: Any) -> tuple[str, dict[str, Any]]:
    """What an error says about an event or snapshot: a phrase and its ids (never its data)."""
    if isinstance(rec, tuple):  # (event id, stream id, version) from the page decoder
        eid, sid, ver = rec
        return f"event {eid!r} (version {ver} of stream {sid!r})", {"event_id": eid, "stream_id": sid}
    snapshot_id = getattr(rec, "snapshot_id", None)
    if snapshot_id is not None:
        what = f"snapshot {snapshot_id!r} (version {rec.version} of stream {rec.stream_id!r})"
        return what, {"snapshot_id": snapshot_id, "stream_id": rec.stream_id}
    what = f"event {rec.event_id!r} (version {rec.version} of stream {rec.stream_id!r})"
    return what, {"event_id": rec.event_id, "stream_id": rec.stream_id}


class Upcasters:
    """Event and snapshot upcasting chains (see the module docstring); filled in code or by plugins."""

    __slots__ = ("events", "snapshots")

    def __init__(self) -> None:
        self.events = _Chains("event")
        self.snapshots = _Chains("snapshot")

    # ------------------------------------------------------------------ registration

    def add(
        self, event_type: str, from_version: int, upcaster: Callable[[Any], Any], *, to_type: str | None = None
    ) -> None:
        """Upcast events of ``event_type`` at ``from_version`` to ``from_version + 1`` with ``upcaster(data)``.

        ``to_type`` also renames the type at that step. A second upcaster for the same
        ``(event_type, from_version)`` raises :class:`~eventsource.errors.ConfigurationError`.
        """
        self.events.add(event_type, from_version, upcaster, to_type)

    def rename(self, old_type: str, new_type: str) -> None:
        """Read events stored as ``old_type`` as ``new_type`` (same schema version; its steps then apply)."""
        self.events.rename(old_type, new_type)

    def add_snapshot(self, aggregate_type: str, from_version: int, upcaster: Callable[[Any], Any]) -> None:
        """Upcast snapshots of ``aggregate_type`` at ``from_version`` to ``from_version + 1``."""
        self.snapshots.add(aggregate_type, from_version, upcaster, None)

    def declare(self, event_type: str, version: int) -> None:
        """Record that the code reads ``event_type`` at schema ``version`` (an event class does this).

        A step that already goes past it, or one added later, raises :class:`~eventsource.errors.ConfigurationError`.
        """
        self.events.pin(_check_name("event type", event_type), _check_version(version), hold=True)

    def declare_snapshot(self, aggregate_type: str, version: int) -> None:
        """Record that the code reads snapshots of ``aggregate_type`` at schema ``version`` (a repository does this).

        A snapshot step that already goes past it raises ConfigurationError: every snapshot would be ignored.
        """
        self.snapshots.pin(_check_name("aggregate type", aggregate_type), _check_version(version), hold=False)

    def copy(self) -> Upcasters:
        """An independent copy (a manager copies its host's registrations, then adds its own)."""
        out = Upcasters()
        self.events.copy_into(out.events)
        self.snapshots.copy_into(out.snapshots)
        return out

    def stored_types(self, event_types: Iterable[str]) -> tuple[str, ...]:
        """The stored type names that a filter on ``event_types`` (names as read) must match in the store.

        An event stored under an old name (a rename, a step's ``to_type``) reads as the new one, so a filter on
        the new name matches the old one too. A name whose stored events read as a type the filter does not
        name raises :class:`~eventsource.errors.ValidationError`: the store cannot tell them apart by type.
        """
        chains = self.events
        wanted = set(event_types)
        if not chains.types:
            return tuple(wanted)
        names = wanted | {t for t, _ in chains.steps} | set(chains.renames)
        out = []
        for name in sorted(names):
            ends = (chains.ends(name) if name in chains.types else None) or {name}  # none readable: reads raise
            if (name in wanted and not ends & wanted) or (ends & wanted and not ends <= wanted):
                seen = " or ".join(repr(t) for t in sorted(ends)) or "nothing readable"
                msg = (
                    f"event type {name!r} is read as {seen} (a rename or an upcaster's to_type): filter by the "
                    "name it is read as"
                )
                raise ValidationError(msg, field="event_types", event_type=name)
            if ends & wanted:
                out.append(name)
        return tuple(out)

    def never_read(self, event_types: Iterable[str]) -> dict[str, set[str]]:
        """The names of ``event_types`` no stored event is read as, each with the names read instead.

        Such a name is renamed, or an upcaster's ``to_type`` takes it to another at every schema version it can
        be stored at, and no other type's chain ends in it: a handler (a filter) of it never sees an event.
        """
        chains = self.events
        if not chains.types:
            return {}
        reached = set().union(*(chains.ends(t) for t in chains.types))
        return {t: chains.ends(t) for t in event_types if t in chains.types and t not in reached}

    # ------------------------------------------------------------------ reads

    def upcast(self, ev: Event) -> Event:
        """``ev`` at the newest schema version of its type (``ev`` itself when nothing changes)."""
        meta = ev.metadata
        version = meta.get(SCHEMA_KEY, 1)
        if type(version) is not int or version < 1:
            what, ids = _describe(ev)
            stored_version(meta, what, **ids)  # raises, with the message
        t, v, data = self.events.run(ev.event_type, version, ev.data, ev)
        if v == version and t == ev.event_type:
            return ev
        return make_event(  # positional, in Event's field order (the read hot path)
            ev.event_id,
            ev.stream_id,
            t,
            data,
            {**meta, SCHEMA_KEY: v},
            ev.version,
            ev.position,
            ev.timestamp,
            ev.correlation_id,
            ev.causation_id,
            ev.user_id,
            ev.tenant_id,
            ev.aggregate_id,
            ev.aggregate_type,
        )

    def upcast_parts(self, event_type: str, data: Any, meta: dict[str, Any], rec: Any) -> tuple[str, Any]:
        """The page decoder's form of :meth:`upcast`: ``(type, data)``, writing the version into ``meta``.

        ``meta`` must be the caller's own fresh dict (it is updated in place, saving a copy per event);
        ``rec`` is ``(event id, stream id, version)``, looked at only to describe an error.
        """
        version = meta.get(SCHEMA_KEY, 1)
        if type(version) is not int or version < 1:
            what, ids = _describe(rec)
            stored_version(meta, what, **ids)  # raises, with the message
        t, v, data = self.events.run(event_type, version, data, rec)
        if v != version:
            meta[SCHEMA_KEY] = v
        return t, data

    def upcast_snapshot(self, snap: Snapshot) -> Snapshot:
        """``snap`` at the newest schema version of its aggregate type (itself when nothing changes)."""
        t = snap.aggregate_type
        if t is None or t not in self.snapshots.types:
            return snap
        meta = snap.metadata
        what, ids = _describe(snap)
        version = stored_version(meta, what, **ids)
        _, v, data = self.snapshots.run(t, version, snap.data, snap)
        if v == version:
            return snap
        return dataclasses.replace(snap, data=data, metadata={**meta, SCHEMA_KEY: v})


__all__ = ["MAX_STEPS", "SCHEMA_KEY", "SchemaVersionError", "UpcastError", "Upcasters", "stored_version"]

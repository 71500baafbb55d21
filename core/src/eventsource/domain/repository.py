"""Repositories: load an aggregate from its latest snapshot plus the tail of its stream, save its new events.

``get`` applies only the events after the latest snapshot (replaying from the start when the snapshot no
longer matches its stream); ``save`` appends with the loaded version as the expected version and snapshots
every ``snapshot_threshold`` events in the same call; ``update`` retries on a conflict. Details: docs/domain.md.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventsource.domain.events import DomainEvent
from eventsource.domain.events import changed_by_json as _changed_by_json
from eventsource.domain.upcasting import SCHEMA_KEY
from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    EventNotFoundError,
    KeyShreddedError,
    SnapshotNotFoundError,
    StreamNotFoundError,
    UnsupportedOperationError,
    UpcastError,
    ValidationError,
)
from eventsource.model import NO_STREAM, redacted_scope

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventsource.domain.aggregate import Aggregate
    from eventsource.manager import EventSourcingManager
    from eventsource.model import AppendEventsBatchResponse, Event, Snapshot
    from eventsource.sync import SyncEventSourcingManager

A = TypeVar("A", bound="Aggregate")

EVENT_KEY = "eventsource.event_id"
"""Snapshot metadata key: the id of the event at the snapshot's version (detects a recreated stream)."""

log = logging.getLogger("eventsource")


def _lost_by_snapshot(aggregate: Aggregate, state: Any) -> str | None:
    """An attribute of ``aggregate`` that the default ``from_snapshot`` of ``state`` does not give back equal.

    The default snapshot holds the public attributes only: a handler that keeps state in ``self._seen``
    would see it reset on every load from a snapshot, while a replay rebuilds it.
    """
    from eventsource.domain.aggregate import Aggregate

    rebuilt = vars(type(aggregate).from_snapshot(aggregate.id, state))
    base = vars(Aggregate(aggregate.id))  # the envelope and the repository's own markers
    for k, v in vars(aggregate).items():
        if k not in base and (k not in rebuilt or rebuilt[k] != v):
            return k
    return None


def _default_snapshots(cls: type[Aggregate]) -> bool:
    """Whether ``cls`` keeps the default ``to_snapshot`` and ``from_snapshot`` (its public attributes, as a dict)."""
    from eventsource.domain.aggregate import Aggregate

    own = getattr(cls.from_snapshot, "__func__", None)
    return cls.to_snapshot is Aggregate.to_snapshot and own is vars(Aggregate)["from_snapshot"].__func__


def _missing_from_snapshot(cls: type[Aggregate], aggregate_id: str, data: Any) -> str | None:
    """A public attribute a new ``cls`` sets that the default snapshot ``data`` does not hold (an older shape).

    Loaded from it, the attribute would keep its ``__init__`` value while a replay computes it: a class that
    gained state without a new ``snapshot_version``. Only the defaults are judged (an override knows its data).
    """
    if not isinstance(data, dict) or not _default_snapshots(cls):
        return None
    fresh = cls(aggregate_id).to_snapshot()
    return next((k for k in fresh if k not in data), None)


def _why(e: Exception) -> str:
    """What a failed snapshot's log line may say of ``e``: the state attribute, or the codec's reason (never data)."""
    if not isinstance(e, ValidationError):
        return ""
    found = re.match(r"\$\['([A-Za-z_][A-Za-z0-9_]*)'\]", str(e.details.get("path", "")))
    if found is not None:  # an attribute name (code); deeper steps could be keys of the user's data
        return f" (attribute {found.group(1)!r}; JSON would not give it back as it was)"
    said = str(e.__cause__) if isinstance(e.__cause__, TypeError) else ""
    found = re.fullmatch(r"[Oo]bject of type (\w+) is not (JSON )?serializable", said)  # a type name, nothing else
    return f" (a {found.group(1)} is not serializable)" if found is not None else ""


async def _awaited(out: Awaitable[Any]) -> None:
    await out


def _check_retries(retries: object) -> None:
    if type(retries) is not int or retries < 0:
        msg = f"retries must be an int >= 0, got {retries!r}"
        raise ConfigurationError(msg, field="retries")


def _check_readable(ev: Event) -> None:
    """Refuse to rebuild an aggregate from an event redacted by ``shredded_events="redact"`` (it has no data)."""
    scope = redacted_scope(ev) if ev.data is None else None
    if scope is not None:
        msg = (
            f"event {ev.event_id!r} (version {ev.version} of stream {ev.stream_id!r}): the key of scope {scope!r} "
            "was shredded; the aggregate cannot be rebuilt"
        )
        raise KeyShreddedError(msg, scope=scope, event_id=ev.event_id, stream_id=ev.stream_id)


def _apply(agg: Aggregate, ev: Event) -> None:
    """Apply the stored ``ev`` (read ``as_classes``); one whose type has no event class is named, with the event."""
    _check_readable(ev)
    if not isinstance(ev.data, DomainEvent):
        msg = (
            f"{type(agg).__name__} {agg.id!r} cannot be loaded: event {ev.event_id!r} (version {ev.version} of stream "
            f"{ev.stream_id!r}) is of type {ev.event_type!r}, which no event class is registered for (a class "
            "renamed? type_name defaults to the class name; set it to the stored name, or add a rename upcaster)"
        )
        raise ValidationError(
            msg, field="event_type", event_type=ev.event_type, event_id=ev.event_id, stream_id=ev.stream_id
        )
    try:
        agg.apply(ev.data)
    except Exception as e:  # the handler's own error, with the stored event it choked on (never its data)
        e.add_note(
            f"while loading {type(agg).__name__} {agg.id!r}: applying event {ev.event_id!r} ({ev.event_type!r}, "
            f"version {ev.version} of stream {ev.stream_id!r})"
        )
        raise


class Repository(Generic[A]):
    """Aggregates of one class on one manager; see the module docstring.

    :param manager: the async manager.
    :param aggregate_class: the :class:`~eventsource.domain.Aggregate` subclass; its event classes are
        registered with the manager.
    :param snapshot_threshold: events between snapshots; default: the manager's ``snapshot_threshold``
        (``None``: never snapshot).
    :param provider: the provider to use (default: the manager's default).
    """

    def __init__(
        self,
        manager: EventSourcingManager,
        aggregate_class: type[A],
        *,
        snapshot_threshold: int | None = None,
        provider: str | None = None,
    ) -> None:
        threshold = manager.config.snapshot_threshold if snapshot_threshold is None else snapshot_threshold
        if threshold is not None and (type(threshold) is not int or threshold < 1):
            msg = f"snapshot_threshold must be an int >= 1 or None, got {threshold!r}"
            raise ConfigurationError(msg, field="snapshot_threshold")
        self.manager = manager
        self.aggregate_class = aggregate_class
        self.snapshot_threshold = threshold
        self.provider = provider
        manager.register_event_class(*aggregate_class.event_classes())
        manager.event_classes.upcasters.declare_snapshot(
            aggregate_class.aggregate_type, aggregate_class.snapshot_version
        )

    def new(self, aggregate_id: str) -> A:
        """A new, empty aggregate (saving it requires that its stream does not exist yet)."""
        return self.aggregate_class(aggregate_id)

    async def get(self, aggregate_id: str) -> A:
        """The aggregate at its latest version; :class:`StreamNotFoundError` if it has no events."""
        cls = self.aggregate_class
        m = self.manager
        sid = await self._locate(aggregate_id)
        snap = await self._snapshot(sid, aggregate_id)
        agg: A | None = None
        start = 1
        if snap is not None:
            try:
                agg = cls.from_snapshot(aggregate_id, snap.data)
            except Exception as e:  # noqa: BLE001 - the snapshot is only a cache: the stream holds the state
                log.warning(
                    "ignoring a snapshot of %s that its from_snapshot refused (%s): replaying the stream (bump "
                    "snapshot_version, with a snapshot upcaster, when the snapshot's shape changes)",
                    cls.__name__, type(e).__name__,
                )  # fmt: skip
                return await self._replay(aggregate_id, sid)
            agg.version = snap.version
            start = snap.version
        applied = 0
        head: str | None = None
        async for ev in m.read_stream(sid, from_version=start, provider=self.provider, as_classes=True):
            if head is None:
                self._check_owner(ev, aggregate_id)
            self._check_next(ev, agg.version + 1 if agg is not None else 1, aggregate_id, snapshot=snap is not None)
            if snap is not None and applied == 0 and ev.version == snap.version:
                if ev.event_id != snap.metadata.get(EVENT_KEY):  # the stream was deleted and recreated
                    log.warning("ignoring a snapshot of a stream that was recreated since it was taken")
                    return await self._replay(aggregate_id, sid)
                head = ev.event_id
                continue
            if agg is None:
                agg = cls(aggregate_id)
            _apply(agg, ev)
            agg.version = ev.version
            head = ev.event_id
            applied += 1
        if agg is None:
            msg = f"{cls.__name__} {aggregate_id!r} has no events (stream {sid!r})"
            raise StreamNotFoundError(msg, stream_id=sid)
        if snap is not None and head is None and await self._recreated_shorter(sid, snap.version):
            log.warning("ignoring a snapshot newer than its stream (the stream was recreated)")
            return await self._replay(aggregate_id, sid)
        agg.snapshot_at = snap.version if snap is not None else 0
        return self._loaded(agg, sid, head)

    async def _recreated_shorter(self, sid: str, snapshot_version: int) -> bool:
        """Whether a stream with no event at or after the snapshot's version is shorter than it (re-created).

        The other reason is retention (``BeforeSnapshotPolicy`` deletes every event the snapshot covers,
        its own included): the stream is then still at the snapshot's version, and the snapshot is the state.
        The head event is then unknown, so the next save cannot check it (a version alone still guards it).
        """
        info = await self.manager.get_stream_info(sid, provider=self.provider)
        return info.version != snapshot_version

    def _loaded(self, agg: A, sid: str, head: str | None) -> A:
        agg._head_event_id = head  # noqa: SLF001 - the repository keeps the aggregate's load marker
        if sid != agg.stream_id:
            agg._stream_id = sid  # noqa: SLF001 - a stream found under the legacy scheme
        return agg

    async def _replay(self, aggregate_id: str, sid: str) -> A:
        cls = self.aggregate_class
        agg = cls(aggregate_id)
        head: str | None = None
        async for ev in self.manager.read_stream(sid, provider=self.provider, as_classes=True):
            if head is None:
                self._check_owner(ev, aggregate_id)
            self._check_next(ev, agg.version + 1, aggregate_id, snapshot=False)
            _apply(agg, ev)
            agg.version = ev.version
            head = ev.event_id
        if agg.version == 0:
            msg = f"{cls.__name__} {aggregate_id!r} has no events (stream {sid!r})"
            raise StreamNotFoundError(msg, stream_id=sid)
        agg.snapshot_at = 0
        return self._loaded(agg, sid, head)

    def _check_next(self, ev: Event, expected: int, aggregate_id: str, *, snapshot: bool) -> None:
        """:class:`EventNotFoundError` when events before ``ev`` that the state needs are gone (never a partial state).

        Retention (``max_count``, ``max_age``) deletes a stream's oldest events; only the ones a usable snapshot
        covers may be missing. ``expected`` is the version after the state so far (the snapshot's own event may
        be gone too: the next one then follows it).
        """
        if ev.version <= expected:
            return
        cls = self.aggregate_class
        msg = (
            f"{cls.__name__} {aggregate_id!r} cannot be loaded: events {expected} to {ev.version - 1} of stream "
            f"{ev.stream_id!r} were deleted (retention?) and "
            + ("the snapshot does not cover them" if snapshot else "no usable snapshot covers them")
        )
        raise EventNotFoundError(msg, stream_id=ev.stream_id, version=expected)

    def _check_owner(self, ev: Event, aggregate_id: str) -> None:
        """:class:`StreamNotFoundError` when the stream's events name another aggregate in their envelope.

        Under the legacy ``"{type}-{id}"`` scheme ``("order-a", "b")`` was stored as ``order-a-b``, which is
        also the stream of ``("order", "a-b")``; the envelope says whose events they are.
        """
        cls = self.aggregate_class
        if ev.aggregate_type not in (None, cls.aggregate_type) or ev.aggregate_id not in (None, aggregate_id):
            msg = (
                f"{cls.__name__} {aggregate_id!r} has no events: stream {ev.stream_id!r} holds those of "
                f"{ev.aggregate_type!r} {ev.aggregate_id!r} (the legacy stream-id scheme gave both one stream)"
            )
            raise StreamNotFoundError(msg, stream_id=ev.stream_id)

    async def _locate(self, aggregate_id: str) -> str:
        """The aggregate's stream: the escaped scheme's, or the legacy one when its events name this aggregate."""
        cls = self.aggregate_class
        sid = cls.stream_id_of(aggregate_id)
        legacy = cls.legacy_stream_id_of(aggregate_id)
        if legacy is None or await self.manager.stream_exists(sid, provider=self.provider):
            return sid
        async for ev in self.manager.read_stream(legacy, page_size=1, provider=self.provider):
            if ev.aggregate_type == cls.aggregate_type and ev.aggregate_id == aggregate_id:
                return legacy
            break  # another aggregate's stream that the legacy scheme gave the same id
        return sid

    async def _snapshot(self, sid: str, aggregate_id: str) -> Snapshot | None:
        if self.snapshot_threshold is None:
            return None
        cls = self.aggregate_class
        try:
            snap = await self.manager.get_snapshot(sid, provider=self.provider)
        except (SnapshotNotFoundError, StreamNotFoundError, UnsupportedOperationError):
            return None
        except UpcastError as e:
            log.warning("ignoring a snapshot that cannot be upcast: %s", e.message)
            return None
        if snap.aggregate_type != cls.aggregate_type or snap.metadata.get(SCHEMA_KEY, 1) != cls.snapshot_version:
            log.warning("ignoring a snapshot of another aggregate type or schema version")
            return None
        missing = _missing_from_snapshot(cls, aggregate_id, snap.data)
        if missing is not None:
            log.warning(
                "ignoring a snapshot of %s without its attribute %s (taken before the class had it; bump "
                "snapshot_version and add a snapshot upcaster to keep using such snapshots)", cls.__name__, missing,
            )  # fmt: skip
            return None
        return snap

    async def save(self, aggregate: A) -> AppendEventsBatchResponse | None:
        """Append the pending events (expected version: the loaded one); snapshot when due. ``None`` if none."""
        pending = aggregate.pending
        if not pending:
            return None
        cls = self.aggregate_class
        if type(aggregate).aggregate_type != cls.aggregate_type:  # its stream and our envelope would disagree
            msg = (
                f"a Repository of {cls.aggregate_type!r} cannot save {type(aggregate).__name__} {aggregate.id!r} "
                f"(aggregate type {type(aggregate).aggregate_type!r}): save it with a repository of its own class"
            )
            raise ValidationError(msg, field="aggregate", aggregate_type=type(aggregate).aggregate_type)
        broken = getattr(aggregate, "_broken", None)
        if broken is not None:
            msg = (
                f"{type(aggregate).__name__} {aggregate.id!r} is not saved: the handler of {broken} raised while it "
                "was applied, so its state may be half-changed; load it again"
            )
            raise ValidationError(msg, field="aggregate", aggregate_type=cls.aggregate_type)
        if aggregate.version == 0 and aggregate._stream_id is None:  # noqa: SLF001
            self._loaded(aggregate, await self._locate(aggregate.id), None)  # a legacy stream makes this a conflict
        expected = aggregate.version if aggregate.version > 0 else NO_STREAM
        if aggregate.version > 0:
            await self._check_incarnation(aggregate)
        # encoded at record(), each with the id minted there (a repeated save is a retry)
        events = aggregate._pending_data[: len(pending)]  # noqa: SLF001
        res = await self.manager.append_events_batch(
            stream_id=aggregate.stream_id, events=events, expected_version=expected, provider=self.provider
        )
        aggregate.mark_saved(res.last_version, res.event_ids[-1], count=len(pending))  # keep any recorded meanwhile
        threshold = self.snapshot_threshold
        # a state holding events not stored yet, or half-changed by a handler that raised meanwhile: no snapshot of it
        ahead = bool(aggregate._pending) or aggregate._broken is not None  # noqa: SLF001
        if threshold is not None and not ahead and res.last_version - aggregate.snapshot_at >= threshold:
            await self._take_snapshot(aggregate, res)
        return res

    async def _take_snapshot(self, aggregate: A, res: AppendEventsBatchResponse) -> None:
        """Snapshot ``aggregate`` at ``res``'s last version; a failure is logged (the events are stored).

        With the default ``from_snapshot``, a state holding what JSON would give back as another type (a
        ``defaultdict`` as a ``dict``) is not snapshotted: loaded from it, the aggregate would behave otherwise.
        """
        from eventsource.domain.aggregate import Aggregate

        cls = self.aggregate_class
        try:
            state = copy.deepcopy(aggregate.to_snapshot())  # encoded after an await: events recorded meanwhile stay out
            own = getattr(type(aggregate).from_snapshot, "__func__", None)
            default = own is vars(Aggregate)["from_snapshot"].__func__
            changed = _changed_by_json(state) if default else None
            if changed is not None:
                where, t, base = changed
                log.warning(
                    "no snapshot of %s: %s is a %s, which its snapshot would give back as a plain %s (override "
                    "from_snapshot to rebuild it)", cls.__name__, where, t.__name__, base,
                )  # fmt: skip
                return
            lost = _lost_by_snapshot(aggregate, state) if default else None
            if lost is not None:
                log.warning(
                    "no snapshot of %s: its attribute %s would not come back from it (the default snapshot holds the "
                    "public attributes; override to_snapshot and from_snapshot to carry it)", cls.__name__, lost,
                )  # fmt: skip
                return
            await self.manager.create_snapshot(
                stream_id=aggregate.stream_id,
                data=state,
                version=res.last_version,
                metadata={SCHEMA_KEY: cls.snapshot_version, EVENT_KEY: res.event_ids[-1]},
                aggregate_id=aggregate.id,
                aggregate_type=cls.aggregate_type,
                provider=self.provider,
            )
            aggregate.snapshot_at = res.last_version
        except Exception as e:  # noqa: BLE001 - the events are stored; the snapshot is only a cache
            log.warning("snapshot of %s failed after its save: %s%s", cls.__name__, type(e).__name__, _why(e))

    async def _check_incarnation(self, aggregate: A) -> None:
        """:class:`ConcurrencyError` when the event at the loaded version is not the one the aggregate was built on.

        The expected version alone cannot see a stream deleted and re-created to the same length since the
        load; its event at that version has another id. A delete and re-create landing between this read and
        the append is not seen (a window of one round trip).
        """
        head = aggregate._head_event_id  # noqa: SLF001
        if head is None:
            return
        sid, v = aggregate.stream_id, aggregate.version
        found = None
        async for ev in self.manager.read_stream(sid, from_version=v, to_version=v, provider=self.provider):
            found = ev.event_id
        if found != head:
            info = await self.manager.get_stream_info(sid, provider=self.provider) if found is not None else None
            msg = (
                f"stream {sid!r} was deleted and re-created since {type(aggregate).__name__} {aggregate.id!r} was "
                f"loaded at version {v} (its event there is {'another one' if found else 'gone'}): reload it"
            )
            raise ConcurrencyError(msg, stream_id=sid, expected=v, actual=info.version if info else 0)

    async def update(self, aggregate_id: str, fn: Callable[[A], Any], *, retries: int = 3) -> A:
        """Load, apply ``fn(aggregate)`` (sync or async), save; on :class:`ConcurrencyError` start over.

        ``fn`` may run up to ``retries + 1`` times, each on a freshly loaded aggregate; the last
        conflict is raised. Keep side effects (emails, payments) out of ``fn``: they would run once
        per attempt, including attempts whose events were never saved.
        """
        _check_retries(retries)
        attempt = 0
        while True:
            agg = await self.get(aggregate_id)
            out = fn(agg)
            if inspect.isawaitable(out):
                await out
            try:
                await self.save(agg)
            except ConcurrencyError:
                attempt += 1
                if attempt > retries:
                    raise
                continue
            return agg


class SyncRepository(Generic[A]):
    """The blocking twin of :class:`Repository` over a :class:`~eventsource.sync.SyncEventSourcingManager`.

    Each call runs the async repository on the sync manager's private loop, so the two share one code
    path; ``fn`` of :meth:`update` is a plain function.
    """

    def __init__(
        self,
        manager: SyncEventSourcingManager,
        aggregate_class: type[A],
        *,
        snapshot_threshold: int | None = None,
        provider: str | None = None,
    ) -> None:
        self._sync = manager
        self._repo: Repository[A] = Repository(
            manager.manager, aggregate_class, snapshot_threshold=snapshot_threshold, provider=provider
        )

    @property
    def snapshot_threshold(self) -> int | None:
        """Events between snapshots (``None``: never)."""
        return self._repo.snapshot_threshold

    def new(self, aggregate_id: str) -> A:
        """A new, empty aggregate (saving it requires that its stream does not exist yet)."""
        return self._repo.new(aggregate_id)

    def get(self, aggregate_id: str) -> A:
        """The aggregate at its latest version; :class:`StreamNotFoundError` if it has no events."""
        return self._sync._loop.run(self._repo.get(aggregate_id))  # noqa: SLF001 - the facade's own loop

    def save(self, aggregate: A) -> AppendEventsBatchResponse | None:
        """Append the pending events (expected version: the loaded one); snapshot when due. ``None`` if none."""
        return self._sync._loop.run(self._repo.save(aggregate))  # noqa: SLF001

    def update(self, aggregate_id: str, fn: Callable[[A], Any], *, retries: int = 3) -> A:
        """Load, apply ``fn(aggregate)``, save; on :class:`ConcurrencyError` start over (``retries`` times).

        ``fn`` runs in the calling thread (not on the facade's loop), so it may use the sync API itself.
        """
        _check_retries(retries)
        attempt = 0
        while True:
            agg = self.get(aggregate_id)
            out = fn(agg)
            if inspect.isawaitable(out):
                self._sync._loop.run(_awaited(out))  # noqa: SLF001
            try:
                self.save(agg)
            except ConcurrencyError:
                attempt += 1
                if attempt > retries:
                    raise
                continue
            return agg


__all__ = ["EVENT_KEY", "Repository", "SyncRepository"]

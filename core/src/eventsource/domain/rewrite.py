"""The offline upcast rewrite: a stream's stored events brought to the newest schema version, in place, reported.

:func:`rewrite_stream` reads the stream's stored records page by page, runs each through the upcasting chains
(never the older ``register_upcaster`` functions), re-encodes the changed ones with the same ids, version,
position, timestamp and envelope (an encrypted payload is encrypted again, bound to the same stream, event
id and version) and has the store swap each payload only if it is still the one read
(:meth:`~eventsource.provider.Provider.rewrite_events`). ``dry_run`` reads and counts, and writes nothing.
A store that cannot change a stored event refuses with :class:`UnsupportedOperationError`.
:func:`rewrite_stream_sync` is the same on the sync manager.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsource.domain.upcasting import SCHEMA_KEY, stored_version
from eventsource.errors import ConfigurationError, EventSourceError, KeyShreddedError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.domain.events import EventClasses
    from eventsource.manager import EventSourcingManager
    from eventsource.manager.codec import EventCodec
    from eventsource.model import RecordedEvent
    from eventsource.provider import Provider
    from eventsource.sync import SyncEventSourcingManager


@dataclass(frozen=True, slots=True)
class EventRewrite:
    """One stored event's new payload, applied only while the store still holds ``old`` as it was read."""

    old: RecordedEvent
    event_type: str
    data: bytes
    metadata: bytes
    encoding: str


@dataclass
class RewriteReport:
    """What one run found and did (a dry run: what it would do)."""

    stream_id: str
    provider: str
    dry_run: bool
    read: int = 0
    """Events looked at."""
    current: int = 0
    """Events already at the newest schema version of their type (left as they are)."""
    rewritten: int = 0
    """Events replaced (a dry run: that would be)."""
    shredded: int = 0
    """Events whose key was shredded: unreadable, left as they are."""
    changed_meanwhile: int = 0
    """Events deleted or changed by someone else between the read and the write (left as they are)."""
    changes: dict[str, int] = field(default_factory=dict)
    """``"Type v1 -> Type v3"``: how many events this run found on that path, ``changed_meanwhile`` ones included
    (the store says how many of a batch it replaced, not which)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain data (the CLI's JSON output)."""
        return {
            "stream_id": self.stream_id,
            "provider": self.provider,
            "dry_run": self.dry_run,
            "read": self.read,
            "current": self.current,
            "rewritten": self.rewritten,
            "shredded": self.shredded,
            "changed_meanwhile": self.changed_meanwhile,
            "changes": dict(self.changes),
        }


def _check_class(classes: EventClasses, etype: str, newest: int, data: Any, *, where: str, rec: RecordedEvent) -> None:
    """:class:`ValidationError` when the event class registered at ``etype`` v``newest`` refuses the upcast data.

    The rewrite replaces the only copy of the old payload, so data that a read with ``as_classes=True``
    would refuse (a buggy upcaster step) must stop the run before it is stored, not after.
    """
    cls = classes.by_type.get(etype)
    if cls is None or cls.schema_version != newest:
        return
    try:
        cls.from_data(data)
    except ValueError as e:
        details = dict(e.details) if isinstance(e, ValidationError) else {"field": "data"}
        text = e.message if isinstance(e, ValidationError) else f"{cls.__name__}: {type(e).__name__}: {e}"
        details.update(event_type=etype, event_id=rec.event_id, stream_id=rec.stream_id)
        msg = f"{where} upcast to {etype!r} v{newest} is refused by {cls.__name__}, so it is not stored: {text}"
        raise ValidationError(msg, **details) from e


def _check_type(etype: str, *, where: str, rec: RecordedEvent) -> None:
    """:class:`ValidationError` when ``etype`` is a type name an append would refuse (control characters, length)."""
    from eventsource.manager.validation import MAX_EVENT_TYPE_LENGTH, check_text  # the manager imports the plugins

    try:
        check_text("event type", etype, MAX_EVENT_TYPE_LENGTH, field_name="event_type")
    except ValidationError as e:
        msg = f"{where} would be stored as type {etype!r}, which an append refuses: {e.message}"
        raise ValidationError(msg, **{**e.details, "event_id": rec.event_id, "stream_id": rec.stream_id}) from e


def _refusals(
    codec: EventCodec, classes: EventClasses | None, rec: RecordedEvent, new: tuple[str, int, Any], *, where: str
) -> None:
    """What must stop the run before ``rec``'s rewrite ``new`` (type, version, data) is encoded, dry run or not."""
    etype, newest, data = new
    if etype != rec.event_type:  # a rename's name was checked by nothing an append runs: it is stored now
        _check_type(etype, where=where, rec=rec)
    if codec.encrypted(rec.encoding) and codec.cipher is None:
        msg = f"{where} is encrypted but this manager does not encrypt: its rewrite would be stored in the clear"
        raise ConfigurationError(msg, field="encryption", event_id=rec.event_id)
    if classes is not None:
        _check_class(classes, etype, newest, data, where=where, rec=rec)


def _rewrite_of(
    codec: EventCodec,
    rec: RecordedEvent,
    report: RewriteReport,
    max_size: int | None,
    *,
    classes: EventClasses | None = None,
    dry_run: bool = False,
) -> EventRewrite | None:
    """The new payload of ``rec`` at the newest schema version, or ``None`` when it stays as it is.

    A dry run returns a rewrite whose payload is empty: it is counted, never written.
    """
    try:
        data, meta = codec.decode_stored(rec)
    except KeyShreddedError:
        report.shredded += 1
        return None
    where = f"event {rec.event_id!r} (version {rec.version} of stream {rec.stream_id!r})"
    version = stored_version(meta, where, event_id=rec.event_id, stream_id=rec.stream_id)
    etype, newest, data = codec.chain.events.run(rec.event_type, version, data, rec)
    if etype == rec.event_type and newest == version:
        report.current += 1
        return None
    _refusals(codec, classes, rec, (etype, newest, data), where=where)
    new_meta = {**meta, SCHEMA_KEY: newest}

    def check(size: int) -> None:  # before sealing, as an append checks: refused data never mints a data key
        if max_size is not None and size > max_size:
            msg = f"{where} upcast to {etype!r} v{newest} is {size} bytes serialized, over max_event_size ({max_size})"
            raise ValidationError(msg, field="data", event_id=rec.event_id, size=size, max_event_size=max_size)

    if dry_run:
        raw, metab, encoding, size = b"", b"", rec.encoding, codec.serialized_size(data, new_meta)
    else:
        raw, metab, encoding, size = codec.encode_event(
            rec.stream_id,
            rec.event_id,
            rec.tenant_id,
            data,
            new_meta,
            version=rec.version,
            event_type=etype,
            check=check,
        )
        if codec.encrypted(rec.encoding):
            try:  # its key may have been shredded since it was opened (by another process): never seal it again
                codec.decode_stored(rec)
            except KeyShreddedError:
                report.shredded += 1
                return None
    check(size)  # the unsealed path (and a dry run) reports the size only after encoding
    path = f"{rec.event_type} v{version} -> {etype} v{newest}"
    report.changes[path] = report.changes.get(path, 0) + 1
    return EventRewrite(rec, etype, raw, metab, encoding)


async def _page(p: Provider, stream_id: str, from_version: int, size: int) -> list[RecordedEvent]:
    """Up to ``size`` stored records from ``from_version`` (the read is closed before anything is written)."""
    out: list[RecordedEvent] = []
    it = p.read_stream(stream_id, from_version=from_version, page_size=size)
    try:
        async for rec in it:
            out.append(rec)
            if len(out) >= size:
                break
    finally:
        await it.aclose()  # type: ignore[attr-defined]
    return out


async def rewrite_stream(
    manager: EventSourcingManager,
    stream_id: str,
    *,
    dry_run: bool = False,
    provider: str | None = None,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> RewriteReport:
    """Rewrite ``stream_id``'s events to the newest schema version of their types; see the module docstring.

    Each batch of up to ``batch_size`` events is one atomic write on the store; a run that stops part-way
    (an error, a missing upcaster step) leaves the batches before it rewritten and the rest as they were,
    and every event stays readable either way (a typed error then carries the counts so far in
    ``details["rewrite_report"]``). ``progress(done, total)`` is called after each batch
    (``total``: the stream's event count when the run started). A missing stream raises
    :class:`StreamNotFoundError`; a store that cannot rewrite raises :class:`UnsupportedOperationError`
    (declared as ``"rewrite_events"`` in its ``capabilities.unsupported``), dry run or not.
    """
    if type(batch_size) is not int or batch_size < 1:
        msg = f"batch_size must be an int >= 1, got {batch_size!r}"
        raise ConfigurationError(msg, field="batch_size")
    p = manager.get_provider(provider)
    if not p.capabilities.supports("rewrite_events"):
        raise p.unsupported("rewrite_events")
    info = await manager.get_stream_info(stream_id, provider=provider)
    codec: EventCodec = manager._codec  # noqa: SLF001 - the manager's own codec: same keys, chains and settings
    report = RewriteReport(stream_id=info.stream_id, provider=p.name, dry_run=dry_run)
    try:
        await _run(manager, p, codec, report, total=info.event_count, batch_size=batch_size, progress=progress)
    except EventSourceError as e:  # earlier batches are stored: say how far the run got
        e.details.setdefault("rewrite_report", report.as_dict())
        raise
    return report


async def _run(
    manager: EventSourcingManager,
    p: Provider,
    codec: EventCodec,
    report: RewriteReport,
    *,
    total: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """The batches of :func:`rewrite_stream`, counted into ``report``."""
    dry_run = report.dry_run
    next_version = 1
    while True:
        page = await _page(p, report.stream_id, next_version, batch_size)
        if not page:
            break
        report.read += len(page)
        limit = manager.config.max_event_size
        classes = manager.event_classes
        batch = [
            r for r in (_rewrite_of(codec, rec, report, limit, classes=classes, dry_run=dry_run) for rec in page) if r
        ]
        if batch and not dry_run:
            done = await p.rewrite_events(report.stream_id, batch)
            report.rewritten += done
            report.changed_meanwhile += len(batch) - done
        elif batch:
            report.rewritten += len(batch)
        if progress is not None:
            progress(report.read, total)
        if len(page) < batch_size:
            break
        next_version = page[-1].version + 1
        await asyncio.sleep(0)  # a store that never suspends (memory): a cancel lands here, others run meanwhile


def rewrite_stream_sync(
    manager: SyncEventSourcingManager,
    stream_id: str,
    *,
    dry_run: bool = False,
    provider: str | None = None,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> RewriteReport:
    """:func:`rewrite_stream` on a :class:`~eventsource.sync.SyncEventSourcingManager` (run on its own loop)."""
    run = rewrite_stream(
        manager.manager, stream_id, dry_run=dry_run, provider=provider, batch_size=batch_size, progress=progress
    )
    return manager._loop.run(run)  # noqa: SLF001 - the facade's own loop, as SyncRepository uses it


__all__ = ["EventRewrite", "RewriteReport", "rewrite_stream", "rewrite_stream_sync"]

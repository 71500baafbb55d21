"""The transfer loop and its three uses: store to store (copy), store to file (export), file to store (import).

:func:`transfer` hands each item of a source to a sink and reports progress after every page of events.
:func:`copy_store`, :func:`export_store` and :func:`import_store` pair a source and a sink over connected
providers; the command-line commands call them.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from eventsource.errors import ConfigurationError, TransferFormatError, ValidationError, VerificationError
from eventsource.model import StreamInfo
from eventsource.transfer.jsonl import JsonlSink, JsonlSource
from eventsource.transfer.posmap import PositionMap
from eventsource.transfer.sink import StoreSink
from eventsource.transfer.source import ProviderSource, Step, check_provider
from eventsource.transfer.verify import VerifyReport, verify_stores

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from os import PathLike

    from eventsource.model import RecordedEvent, RecordedSnapshot
    from eventsource.provider import Provider
    from eventsource.transfer.source import Item


class Source(Protocol):
    """What :func:`transfer` reads (:class:`ProviderSource`, :class:`JsonlSource`)."""

    async def total_events(self) -> int | None: ...  # noqa: D102
    def items(self) -> AsyncIterator[Item]: ...  # noqa: D102


class Sink(Protocol):
    """What :func:`transfer` writes to (:class:`StoreSink`, :class:`JsonlSink`)."""

    streams: int
    written: int
    skipped: int
    snapshots: int

    async def stream(self, info: StreamInfo) -> None: ...  # noqa: D102
    async def events(self, page: list[RecordedEvent]) -> int: ...  # noqa: D102
    async def snapshot(self, snap: RecordedSnapshot) -> None: ...  # noqa: D102
    async def complete(self) -> None: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Where a running transfer is: events read so far, the total if known, and the time it has taken.

    ``phase`` is ``"write"``, ``"check"`` while an import reads a file through once before writing, ``"streams"``
    while a store's streams are listed (before its events; ``streams`` counts them) and ``"snapshots"`` while
    they are looked at for snapshots (after its events; ``streams`` of ``stream_total``).
    """

    events: int
    total: int | None
    elapsed: float
    phase: str = "write"
    streams: int = 0
    stream_total: int | None = None

    @property
    def rate(self) -> float:
        """Events per second so far."""
        return self.events / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (``None`` without a total)."""
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.events) / self.rate)


@dataclass(slots=True)
class TransferResult:
    """What a transfer did: streams, events read / written / already present, snapshots, time, verification."""

    streams: int = 0
    events: int = 0
    written: int = 0
    skipped: int = 0
    snapshots: int = 0
    seconds: float = 0.0
    position_map: str | None = None
    verify: VerifyReport | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Events read per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


WINDOW = 10_000
"""Events a transfer gathers from consecutive pages before writing them (more per stream, larger appends)."""
WINDOW_BYTES = 16 * 1024 * 1024
"""... or fewer, once their payloads reach this many bytes."""


async def transfer(
    source: Source, sink: Sink, *, progress: Callable[[TransferProgress], None] | None = None, window: int = WINDOW
) -> TransferResult:
    """Hand every item of ``source`` to ``sink``; call ``progress`` after every write of events and every step.

    Event pages are gathered up to ``window`` events (or :data:`WINDOW_BYTES`) and handed to the sink
    together, so a store whose streams interleave still gets appends of many events per stream.
    """
    start = time.monotonic()
    total: int | None = None  # asked again until known (a store's source knows it once its streams are listed)
    events = 0
    held: list[RecordedEvent] = []
    size = 0

    async def flush() -> None:
        nonlocal events, size, total
        if not held:
            return
        await sink.events(held)
        events += len(held)
        held.clear()
        size = 0
        if progress is not None:
            total = total if total is not None else await source.total_events()
            progress(TransferProgress(events, total, time.monotonic() - start))

    async for item in source.items():
        if isinstance(item, list):
            held.extend(item)
            size += sum(len(r.data) + len(r.metadata) for r in item)
            if len(held) >= window or size >= WINDOW_BYTES:
                await flush()
            continue
        await flush()
        if isinstance(item, Step):
            if progress is not None:
                total = total if total is not None else await source.total_events()
                elapsed = time.monotonic() - start
                progress(TransferProgress(events, total, elapsed, item.phase, item.done, item.total))
        elif isinstance(item, StreamInfo):
            await sink.stream(item)
        else:
            await sink.snapshot(item)
    await flush()
    await sink.complete()
    seconds = time.monotonic() - start
    return TransferResult(
        streams=sink.streams,
        events=events,
        written=sink.written,
        skipped=sink.skipped,
        snapshots=sink.snapshots,
        seconds=seconds,
    )


def _at_least_1(**values: int) -> None:
    """Refuse a page size, window or concurrency below 1 (a read of 0 events, a copy waiting forever)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a whole number >= 1, got {value!r}"
            raise ValidationError(msg, field=name)


def same_store(source: Provider, target: Provider) -> bool:
    """Whether two providers are one store: one instance, one SQLite file (however named), or one identity.

    The identity is what checkpoints use (:attr:`~eventsource.provider.Provider.checkpoint_source`: the masked URL
    with a schema, stream or topic prefix); one server named two ways (``localhost``, ``127.0.0.1``) is not seen.
    """
    if source is target:
        return True
    if type(source) is not type(target):
        return False
    from eventsource.sqlite import SqliteProvider

    if isinstance(source, SqliteProvider) and isinstance(target, SqliteProvider):
        if source.memory or target.memory:
            return False  # each in-memory database is its own
        with contextlib.suppress(OSError):  # (a file gone since it was opened: not the same)
            return Path(source.path).samefile(target.path)
    return source.checkpoint_source == target.checkpoint_source


def cursor_name(source: Provider, target: Provider, streams: Sequence[str] | None) -> str:
    """The key of a copy's resume cursor in its position map: the two stores and the stream patterns."""
    return json.dumps([source.display_url, target.display_url, sorted(streams or [])])


async def check_map(positions: PositionMap, target: Provider) -> None:
    """Refuse a map whose last entry the target does not hold (the target was reset, or is another store).

    A re-run trusts the map: its cursor skips what it says was written, its entries what it says was mapped.
    Its last entry must name a stream the target holds at least to that version, and the event there (unless
    truncated away since) must sit at the mapped position.
    """
    last = positions.entry()
    if last is None:
        return
    _source, position, stream_id, version, event_id = last
    if not await _holds(target, stream_id, version, position, event_id, truncated_ok=True):
        msg = (
            f"the position map {positions.path or '(memory)'} was written for a target that does not hold what it "
            f"maps (stream {stream_id!r} version {version} at position {position}): the target was reset or is "
            "another store; remove the map file, or name a new one, and run the copy again"
        )
        raise ConfigurationError(msg, field="position_map")


async def _holds(
    store: Provider, stream_id: str, version: int, position: int, event_id: str | None, *, truncated_ok: bool
) -> bool:
    """Whether ``store`` holds the event ``event_id`` at ``version`` of ``stream_id``, at ``position``.

    With ``truncated_ok``, a stream that reached ``version`` but no longer holds the event counts as holding it.
    """
    info = await store.get_stream_info(stream_id)
    if info is None or info.version < version:
        return False
    rows = store.read_stream(stream_id, from_version=version, to_version=version, page_size=1)
    async with contextlib.aclosing(rows) as events:  # type: ignore[type-var]
        rec = await anext(events, None)
    if rec is None:
        return truncated_ok
    return rec.position == position and event_id in (None, rec.event_id)


async def resume_from(positions: PositionMap, source: Provider, name: str) -> int:
    """Where a copy named ``name`` resumes reading ``source``: after its cursor, if the source still holds it.

    The cursor's event must be where the map recorded it (the same id at the same position); otherwise (the
    source was replaced, reset, or lost that event) the copy reads from the start, skipping what the target
    holds after checking it against the source's events.
    """
    done = positions.cursor(name)
    entry = positions.entry(done) if done is not None else None
    if done is None or entry is None:
        return 0
    _position, _target, stream_id, version, event_id = entry
    held = await _holds(source, stream_id, version, done, event_id, truncated_ok=False)
    return done + 1 if held else 0


async def copy_store(
    source: Provider,
    target: Provider,
    *,
    streams: Sequence[str] | None = None,
    position_map: str | PathLike[str] | None = None,
    verify: bool = False,
    progress: Callable[[TransferProgress], None] | None = None,
    page_size: int = 500,
    window: int = WINDOW,
    concurrency: int = 8,
) -> TransferResult:
    """Copy every stream, event and snapshot of ``source`` into ``target``, as stored (see docs/transfer.md).

    Both providers must be connected. Re-running the same copy (after a kill, say) writes only what the
    target lacks. ``position_map`` is the SQLite file the source -> target positions go to (``None``: kept in
    memory and dropped). With ``verify``, every copied stream is compared afterwards and a difference raises
    :class:`~eventsource.errors.VerificationError` carrying the report.

    :param streams: shell-style stream id patterns (``order-*``); none: every stream.
    :param progress: called after every write with a :class:`TransferProgress`.
    :param window: events gathered before a write (see :func:`transfer`); the memory a copy holds.
    :param concurrency: streams of one write appended at once.
    """
    check_provider(source, "source", "copy_store")
    check_provider(target, "target", "copy_store")
    _at_least_1(page_size=page_size, window=window, concurrency=concurrency)
    if same_store(source, target):
        msg = (
            f"copy_store: the source and the target are the same store ({target.display_url or target.kind}): a copy "
            "into it writes nothing, and verifying it compares the store with itself; name another target"
        )
        raise ConfigurationError(msg, field="target")
    positions = PositionMap(position_map)
    try:
        await check_map(positions, target)
        # a source in total order is read from where the last run got to; any other from the start
        resume = source.capabilities.global_order == "total"
        name = cursor_name(source, target, streams) if resume else None
        start = await resume_from(positions, source, name) if name is not None else 0
        copied = positions.highest_version if start > 0 else None
        src = ProviderSource(source, streams=streams, page_size=page_size, from_position=start, copied=copied)
        sink = StoreSink(target, positions, concurrency=concurrency, cursor=name)
        result = await transfer(src, sink, progress=progress, window=window)
    finally:
        positions.close()
    result.position_map = positions.path
    if verify:
        result.verify = await verify_stores(source, target, streams=streams, page_size=page_size)
        if not result.verify.ok:
            n = len(result.verify.differences)
            first = result.verify.differences[0]
            msg = f"the copy differs from the source in {n} place{'s' if n != 1 else ''}: {first}"
            raise VerificationError(msg, report=result.verify)
    return result


async def export_store(
    source: Provider,
    out: IO[bytes],
    *,
    streams: Sequence[str] | None = None,
    progress: Callable[[TransferProgress], None] | None = None,
    page_size: int = 500,
) -> TransferResult:
    """Write every stream, event and snapshot of ``source`` to ``out`` as export lines (see :mod:`.jsonl`)."""
    check_provider(source, "source", "export_store")
    _at_least_1(page_size=page_size)
    sink = JsonlSink(out, source=source.display_url)
    src = ProviderSource(source, streams=streams, page_size=page_size, as_listed=True)
    return await transfer(src, sink, progress=progress, window=page_size)


async def import_store(
    stream: IO[bytes],
    target: Provider,
    *,
    name: str = "-",
    streams: Sequence[str] | None = None,
    position_map: str | PathLike[str] | None = None,
    progress: Callable[[TransferProgress], None] | None = None,
    check_first: bool = False,
    page_size: int = 500,
    window: int = WINDOW,
) -> TransferResult:
    """Write the items of an export (``stream``, opened with :func:`~.jsonl.open_input`) into ``target``.

    With ``check_first`` (a file, not a pipe), the whole export is read and checked before anything is
    written (``progress`` hears of it, phase ``"check"``), so a corrupted file leaves the store unchanged; then
    ``stream`` is rewound. Without it, a bad line stops the import after what came before it was written.
    """
    check_provider(target, "target", "import_store")
    _at_least_1(page_size=page_size, window=window)
    source = JsonlSource(stream, name=name, streams=streams, page_size=page_size)
    if check_first:
        report = progress
        source.check(
            None if report is None else lambda n, t: report(TransferProgress(n, None, t, phase="check")),
            target.capabilities.max_event_size,
        )
        stream.seek(0)
    positions = PositionMap(position_map)
    try:
        await check_map(positions, target)
        result = await transfer(source, StoreSink(target, positions), progress=progress, window=window)
    except TransferFormatError as e:
        if check_first:
            raise
        msg = (
            f"{e}; the records before it were imported: fix the input and run the import again "
            "(what the store holds is skipped)"
        )
        raise TransferFormatError(msg, **e.details) from e
    finally:
        positions.close()
    result.position_map = positions.path
    return result

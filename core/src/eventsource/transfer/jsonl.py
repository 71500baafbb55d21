"""The export format: JSON Lines (gzip when asked), one record per line, payload bytes in base64.

A header line, then every stream, every event in the source's global order, every snapshot, and an end line
with the counts and a SHA-256 of every line before it (a file cut short has none, and import refuses it; one
whose bytes changed fails the SHA-256). Each event line carries the same fields
and bytes as a copy moves, so an import restores them byte for byte. :class:`JsonlSink` writes one,
:class:`JsonlSource` reads one back as a transfer source, a line at a time (O(page) memory either way).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import io
import json
import re
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from eventsource.errors import TransferFormatError
from eventsource.manager.validation import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    check_optional_text,
    check_text,
    check_time,
    plain_metadata,
)
from eventsource.model import MAX_NUMBER, RecordedEvent, RecordedSnapshot, StreamInfo
from eventsource.timestamps import from_iso
from eventsource.transfer.output import GZIP_MAGIC
from eventsource.transfer.source import StreamFilter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence

    from eventsource.transfer.source import Item

FORMAT = "eventsource-export"
FORMAT_VERSION = 1
MAX_LINE = 128 << 20
"""Longest line an import reads (room for a 50 MB payload in base64 and its fields); longer is refused."""
MAX_VALUES = 1_000_000
"""Most JSON values an import line may hold, counted by their separators before it is parsed: a record holds a few
dozen (payloads are base64 text), stream metadata what a manager's ``max_event_size`` lets it store. The line limit
bounds bytes, not what they parse into: ``{},`` is 3 bytes and a 64-byte dict, so a long line of them (a gzip file of
a few hundred KB) would take gigabytes before any record is looked at."""
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _values(raw: bytes) -> int:
    """About how many JSON values ``raw`` holds: its separators outside strings (cheap where none are inside)."""
    n = raw.count(b",") + raw.count(b":")
    if n > MAX_VALUES and b'"' in raw:  # text may hold commas (a CSV note in stream metadata): count without it
        stripped = _STRING.sub(b'""', raw)
        n = stripped.count(b",") + stripped.count(b":")
    return n


MAX_PLACEHOLDERS = 10_000_000
"""Most versions below a stream's first stored event an import fills with placeholders (see the sink)."""
CHECK_EVERY = 1000
"""Events between two progress calls of :meth:`JsonlSource.check`."""
MAX_STREAM_ID = 65536
"""Longest stream id an import takes: the largest ``max_stream_id_length`` a manager can be configured with."""
_EVENT_OPTIONAL = ("correlation_id", "causation_id", "user_id", "tenant_id", "aggregate_id", "aggregate_type")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_STREAM_KEYS = ("stream_id", "name", "aggregate_id", "aggregate_type", "version", "first_version", "event_count")


class _ConstantError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    msg = f"{name} is not JSON (Python's json writes it; no store keeps it as a number)"
    raise _ConstantError(msg)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def event_line(rec: RecordedEvent) -> dict[str, Any]:
    """The export record of one event (``position`` is the source's)."""
    d: dict[str, Any] = {
        "kind": "event",
        "event_id": rec.event_id,
        "stream_id": rec.stream_id,
        "event_type": rec.event_type,
        "version": rec.version,
        "position": rec.position,
        "encoding": rec.encoding,
        "timestamp": rec.timestamp.isoformat(),
        "data": _b64(rec.data),
        "metadata": _b64(rec.metadata),
    }
    for name in _EVENT_OPTIONAL:
        value = getattr(rec, name)
        if value is not None:
            d[name] = value
    return d


def stream_line(info: StreamInfo) -> dict[str, Any]:
    """The export record of one stream: its attributes and where its stored versions start."""
    d: dict[str, Any] = {"kind": "stream", **{k: getattr(info, k) for k in _STREAM_KEYS}}
    d["metadata"] = info.metadata
    d["created_at"] = info.created_at.isoformat()
    d["updated_at"] = info.updated_at.isoformat()
    if info.last_event_id is not None:  # a stream truncated to nothing reads back with it (see the sink)
        d["last_event_id"] = info.last_event_id
    return d


def snapshot_line(snap: RecordedSnapshot) -> dict[str, Any]:
    """The export record of one snapshot (``position`` is the source's)."""
    return {
        "kind": "snapshot",
        "snapshot_id": snap.snapshot_id,
        "stream_id": snap.stream_id,
        "version": snap.version,
        "encoding": snap.encoding,
        "created_at": snap.created_at.isoformat(),
        "data": _b64(snap.data),
        "metadata": _b64(snap.metadata),
        "aggregate_id": snap.aggregate_id,
        "aggregate_type": snap.aggregate_type,
        "position": snap.position,
    }


class JsonlSink:
    """Writes a source's items to ``out`` as export lines; :meth:`complete` writes the end line."""

    def __init__(self, out: IO[bytes], *, source: str | None = None) -> None:
        self.out = out
        self.streams = self.written = self.snapshots = self.skipped = 0
        self.digest = hashlib.sha256()
        """Over the bytes of every line before the end line (which carries it)."""
        self._line({"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "source": source})

    def _write(self, data: bytes) -> None:
        self.digest.update(data)
        self.out.write(data)

    def _line(self, d: dict[str, Any]) -> None:
        self._write(json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    async def stream(self, info: StreamInfo) -> None:
        """Write a stream line."""
        self._line(stream_line(info))
        self.streams += 1

    async def events(self, page: list[RecordedEvent]) -> int:
        """Write one line per event."""
        dumps = json.dumps
        self._write(
            b"".join(dumps(event_line(r), ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in page)
        )
        self.written += len(page)
        return len(page)

    async def snapshot(self, snap: RecordedSnapshot) -> None:
        """Write a snapshot line."""
        self._line(snapshot_line(snap))
        self.snapshots += 1

    async def complete(self) -> None:
        """Write the end line (the counts and the SHA-256 an import checks) and flush."""
        counts = {"streams": self.streams, "events": self.written, "snapshots": self.snapshots}
        self._line({"kind": "end", **counts, "sha256": self.digest.hexdigest()})
        self.out.flush()


def _bytes(d: dict[str, Any], key: str) -> bytes:
    value = d.get(key, "")
    if not isinstance(value, str):
        msg = f"{key} is not base64 text"
        raise TypeError(msg)
    return base64.b64decode(value, validate=True)


def _when(value: Any, name: str = "timestamp") -> datetime:
    ts = from_iso(value)  # fromisoformat alone drops a sub-second UTC offset, moving the instant
    if ts.tzinfo is None:
        msg = f"{name} without a time zone"
        raise ValueError(msg)
    check_time(name, ts)  # an instant a store can hold: one outside years 1-9999 in UTC broke reads of the store
    return ts


def _encoding(d: dict[str, Any]) -> str:
    """The encoding descriptor of a record: id-like text (a NUL in it failed at PostgreSQL, after other records)."""
    return check_text("encoding", d["encoding"], MAX_EVENT_TYPE_LENGTH, field_name="encoding")


def parse_event(d: dict[str, Any]) -> RecordedEvent:
    """The event of an export line (raises ``KeyError`` / ``TypeError`` / ``ValueError`` on a bad one)."""
    opt = [check_optional_text(name.replace("_", " "), d.get(name), field_name=name) for name in _EVENT_OPTIONAL]
    check_text("event id", d["event_id"], MAX_EVENT_ID_LENGTH, field_name="event_id")
    check_text("stream id", d["stream_id"], MAX_STREAM_ID, field_name="stream_id")
    check_text("event type", d["event_type"], MAX_EVENT_TYPE_LENGTH, field_name="event_type")
    _encoding(d)
    _int(d, "version", 1)
    _int(d, "position")
    return RecordedEvent(
        d["event_id"],
        d["stream_id"],
        d["event_type"],
        d["version"],
        d["position"],
        _bytes(d, "data"),
        _bytes(d, "metadata"),
        d["encoding"],
        _when(d["timestamp"]),
        *opt,
    )


def _int(d: dict[str, Any], key: str, low: int = 0, *, optional: bool = False) -> Any:
    value = d.get(key) if optional else d[key]
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_NUMBER:
        msg = f"{key} is not an integer from {low} to 2**63 - 1"
        raise TypeError(msg)
    return value


def parse_stream(d: dict[str, Any]) -> StreamInfo:
    """The stream of an export line."""
    for key in ("name", "aggregate_id", "aggregate_type", "last_event_id"):
        check_optional_text(key.replace("_", " "), d.get(key), field_name=key)
    check_text("stream id", d["stream_id"], MAX_STREAM_ID, field_name="stream_id")
    if not isinstance(d.get("metadata", {}), dict):
        raise TypeError("metadata")
    # what a manager's create_stream takes: no NUL or lone surrogate (PostgreSQL's jsonb refuses them), not too deep
    metadata = plain_metadata(d.get("metadata") or {}, MAX_LINE)
    version = _int(d, "version")
    first = _int(d, "first_version", 1, optional=True)
    if first is not None and first > version:
        msg = f"first_version {first} is above the stream's version {version}"
        raise ValueError(msg)
    missing = (first - 1) if first is not None else version
    if missing > MAX_PLACEHOLDERS:
        msg = (
            f"the stream's first stored version is {missing + 1}: an import would write {missing} placeholder events "
            f"below it (at most {MAX_PLACEHOLDERS:,}; copy such a stream store to store instead)"
        )
        raise ValueError(msg)
    return StreamInfo(
        stream_id=d["stream_id"],
        version=version,
        event_count=_int(d, "event_count"),
        created_at=_when(d["created_at"], "created_at"),
        updated_at=_when(d["updated_at"], "updated_at"),
        name=d.get("name"),
        aggregate_id=d.get("aggregate_id"),
        aggregate_type=d.get("aggregate_type"),
        metadata=metadata,
        first_version=first,
        last_event_id=d.get("last_event_id"),
    )


def parse_snapshot(d: dict[str, Any]) -> RecordedSnapshot:
    """The snapshot of an export line."""
    check_text("snapshot id", d["snapshot_id"], MAX_EVENT_ID_LENGTH, field_name="snapshot_id")
    check_text("stream id", d["stream_id"], MAX_STREAM_ID, field_name="stream_id")
    _encoding(d)
    for key in ("aggregate_id", "aggregate_type"):
        check_optional_text(key.replace("_", " "), d.get(key), field_name=key)
    _int(d, "position", optional=True)
    return RecordedSnapshot(
        snapshot_id=d["snapshot_id"],
        stream_id=d["stream_id"],
        version=_int(d, "version"),
        data=_bytes(d, "data"),
        metadata=_bytes(d, "metadata"),
        encoding=d["encoding"],
        created_at=_when(d["created_at"], "created_at"),
        aggregate_id=d.get("aggregate_id"),
        aggregate_type=d.get("aggregate_type"),
        position=d.get("position"),
    )


def open_input(path: str) -> IO[bytes]:
    """A binary stream to read an export from (``-``: stdin); gzip is recognised by its magic bytes."""
    try:
        raw: IO[bytes] = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115 - closed by the caller
    except OSError as e:
        msg = f"cannot read the export {path!r}: {e.strerror or e}"
        raise TransferFormatError(msg, file=path) from e
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered


class _EventIds:
    """The event ids a check has read, with their lines, in a temporary SQLite file (not in memory)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # a private temporary file, removed on close
        self.db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def add(self, event_id: str, line: int) -> int | None:
        """Record ``event_id``; the line it was first seen on if it was seen before."""
        try:
            self.db.execute("INSERT INTO ids VALUES (?, ?)", (event_id, line))
        except sqlite3.IntegrityError:
            return int(self.db.execute("SELECT line FROM ids WHERE id = ?", (event_id,)).fetchone()[0])
        return None

    def close(self) -> None:
        """Drop the file."""
        self.db.close()


class JsonlSource:
    """The items of an export file, read a line at a time (a transfer source, see :mod:`eventsource.transfer.source`).

    :param stream: the open binary input (see :func:`open_input`).
    :param name: the file's name, for error messages.
    :param streams: shell-style stream id patterns (none: every stream).
    :param page_size: events per page handed to the sink.
    """

    def __init__(
        self, stream: IO[bytes], *, name: str = "-", streams: Sequence[str] | None = None, page_size: int = 500
    ) -> None:
        self.stream = stream
        self.name = name
        self.wanted = StreamFilter(streams)
        self.page_size = page_size
        self.header: dict[str, Any] | None = None
        self.total: int | None = None

    async def total_events(self) -> int | None:
        """The file's event count once :meth:`check` has read it (unknown before the end line)."""
        return self.total

    def _error(self, lineno: int, what: str) -> TransferFormatError:
        msg = f"{self.name}, line {lineno}: {what}"
        return TransferFormatError(msg, file=self.name, line=lineno)

    def _header(self, d: dict[str, Any]) -> None:
        if d.get("kind") != "header" or d.get("format") != FORMAT:
            raise self._error(1, f"not an eventsource export (no {FORMAT!r} header)")
        if d.get("version") != FORMAT_VERSION:
            raise self._error(1, f"export format version {d.get('version')!r}; this reads {FORMAT_VERSION}")
        self.header = d

    def _end(self, lineno: int, end: dict[str, Any] | None, counts: dict[str, int], digest: str) -> None:
        if lineno == 0:
            raise self._error(1, "empty file, not an eventsource export")
        if end is None:
            raise self._error(lineno, "no end line: the export was cut short")
        want = {"stream": end.get("streams"), "event": end.get("events"), "snapshot": end.get("snapshots")}
        if want != counts:
            raise self._error(lineno, f"the end line counts {want}, the file holds {counts}")
        if "sha256" not in end:
            return  # an export written before the end line carried one
        said = end["sha256"]
        if not isinstance(said, str) or not _HEX64.fullmatch(said):
            raise self._error(lineno, "the end line's sha256 is not a SHA-256 (64 hex digits)")
        if said.lower() != digest:
            what = (
                "the records do not match the end line's SHA-256: the file was changed or corrupted after it was "
                "written (export it again, or restore it from a good copy)"
            )
            raise self._error(lineno, what)

    def _decode(self, lineno: int, raw: bytes) -> dict[str, Any]:
        if len(raw) >= MAX_LINE and not raw.endswith(b"\n"):
            raise self._error(lineno, f"a line longer than {MAX_LINE >> 20} MiB")
        if len(raw) > MAX_VALUES and _values(raw) > MAX_VALUES:  # (a short line cannot hold so many)
            raise self._error(lineno, f"a line of more than {MAX_VALUES:,} JSON values (no record holds so many)")
        try:
            d = json.loads(raw, parse_constant=_no_constant)
        except _ConstantError as e:
            raise self._error(lineno, str(e)) from e
        except (ValueError, UnicodeDecodeError) as e:
            raise self._error(lineno, "not a JSON line (corrupted or cut short?)") from e
        except RecursionError:  # a crafted line: records nest little (payloads are base64, metadata validated)
            raise self._error(lineno, "a JSON line nested too deeply to be an export record") from None
        if not isinstance(d, dict):
            raise self._error(lineno, "not a JSON object")
        return d

    def _lines(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(line number, record)`` of every line, the header and end line checked."""
        lineno = 0
        end: dict[str, Any] | None = None
        counts = {"stream": 0, "event": 0, "snapshot": 0}
        digest = hashlib.sha256()  # over every line before the end line, as read
        try:
            for lineno, raw in enumerate(iter(lambda: self.stream.readline(MAX_LINE), b""), start=1):
                d = self._decode(lineno, raw)
                if lineno == 1:
                    self._header(d)
                    digest.update(raw)
                    continue
                if end is not None:
                    raise self._error(lineno, "a line after the end line")
                kind = d.get("kind")
                if kind == "end":
                    end = d
                    continue
                digest.update(raw)
                if not isinstance(kind, str) or kind not in counts:  # a JSON array or object: unhashable
                    raise self._error(lineno, f"unknown record kind {kind!r}")
                counts[kind] += 1
                yield lineno, d
        except (OSError, EOFError) as e:  # a gzip stream cut short or corrupted
            raise self._error(lineno + 1, f"unreadable ({e})") from e
        self._end(lineno, end, counts, digest.hexdigest())

    def check(
        self, progress: Callable[[int, float], None] | None = None, max_event_size: int | None = None
    ) -> dict[str, int]:
        """Read the whole file once and raise at its first bad line (for a file: import nothing from a bad one).

        Beyond each line, every stream's events must follow each other version by version, start at the
        stream line's first stored version and end at its version. ``progress(events, seconds)`` hears of the
        events checked so far every :data:`CHECK_EVERY` events and at the end. ``max_event_size`` (the target's
        ``capabilities.max_event_size``) bounds an event's data and metadata bytes, as a manager's append does.
        """
        n = {"stream": 0, "event": 0, "snapshot": 0}
        seen: dict[str, tuple[int, int, int]] = {}  # stream id -> (first version, last version, line of the last)
        heads: dict[str, tuple[StreamInfo, int]] = {}
        start = time.monotonic()
        with contextlib.closing(_EventIds()) as ids:
            for lineno, d in self._lines():
                item = self._parse(lineno, d)
                n[d["kind"]] += 1
                if isinstance(item, RecordedEvent):
                    self._check_event(lineno, item, ids, max_event_size)
                    if progress is not None and n["event"] % CHECK_EVERY == 0:
                        progress(n["event"], time.monotonic() - start)
                self._follows(lineno, item, seen, heads)
        self._complete(seen, heads)
        self.total = None if self.wanted.patterns else n["event"]
        if progress is not None:
            progress(n["event"], time.monotonic() - start)
        return n

    def _check_event(self, lineno: int, rec: RecordedEvent, ids: _EventIds, max_event_size: int | None) -> None:
        """Refuse an event whose id came before, or larger than the target holds."""
        first = ids.add(rec.event_id, lineno)
        if first is not None:
            raise self._error(lineno, f"event id {rec.event_id!r} is used twice (first on line {first})")
        size = len(rec.data) + len(rec.metadata)
        if max_event_size is not None and size > max_event_size:
            what = f"event {rec.event_id!r} is {size} bytes encoded; the target holds at most {max_event_size}"
            raise self._error(lineno, what)

    def _follows(
        self,
        lineno: int,
        item: StreamInfo | RecordedEvent | RecordedSnapshot,
        seen: dict[str, tuple[int, int, int]],
        heads: dict[str, tuple[StreamInfo, int]],
    ) -> None:
        """Check that an event follows its stream's previous one and a snapshot lies within its stream."""
        if isinstance(item, RecordedSnapshot):
            head = heads.get(item.stream_id)
            top = max(head[0].version if head is not None else 0, seen.get(item.stream_id, (0, 0, 0))[1])
            if item.version > top:
                what = f"a snapshot at version {item.version} of stream {item.stream_id!r}, which ends at version {top}"
                raise self._error(lineno, what)
        elif isinstance(item, RecordedEvent):
            prev = seen.get(item.stream_id)
            if prev is None and item.version != 1 and item.stream_id not in heads:
                what = (
                    f"stream {item.stream_id!r} has no stream line before its events, which start at version "
                    f"{item.version} (without one a stream starts at version 1)"
                )
                raise self._error(lineno, what)
            if prev is not None and item.version != prev[1] + 1:
                what = f"event version {item.version} of stream {item.stream_id!r} does not follow {prev[1]}"
                raise self._error(lineno, what)
            seen[item.stream_id] = (item.version if prev is None else prev[0], item.version, lineno)
        else:
            if item.stream_id in seen:
                what = f"the line of stream {item.stream_id!r} comes after its events (streams come first)"
                raise self._error(lineno, what)
            if item.stream_id in heads:
                first = heads[item.stream_id][1]
                raise self._error(lineno, f"a second line of stream {item.stream_id!r} (first on line {first})")
            heads[item.stream_id] = (item, lineno)

    def _complete(self, seen: dict[str, tuple[int, int, int]], heads: dict[str, tuple[StreamInfo, int]]) -> None:
        """Check that every stream's events start at its first stored version and reach at least its version.

        More is taken: an export made before streams were taken as listed holds the events appended to a
        stream after its line (they follow on, version by version).
        """
        for sid, (info, lineno) in heads.items():
            first, last, _ = seen.get(sid, (0, 0, 0))
            want_first = info.first_version if info.first_version is not None else (info.version + 1)
            fits = (first == want_first and last >= info.version) if first else want_first > info.version
            if not fits:
                what = (
                    f"stream {sid!r} says versions {want_first}..{info.version}, "
                    f"the file holds {f'{first}..{last}' if first else 'no events'} of it"
                )
                raise self._error(lineno, what)

    def _parse(self, lineno: int, d: dict[str, Any]) -> StreamInfo | RecordedEvent | RecordedSnapshot:
        kind = d["kind"]
        try:
            if kind == "event":
                return parse_event(d)
            if kind == "stream":
                return parse_stream(d)
            return parse_snapshot(d)
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise self._error(lineno, f"a bad {kind} record ({type(e).__name__}: {e})") from e

    async def items(self) -> AsyncIterator[Item]:
        """Streams, event pages and snapshots, as the file holds them."""
        page: list[RecordedEvent] = []
        wanted = self.wanted
        for lineno, d in self._lines():
            item = self._parse(lineno, d)
            if isinstance(item, RecordedEvent):
                if wanted(item.stream_id):
                    page.append(item)
                    if len(page) >= self.page_size:
                        yield page
                        page = []
                continue
            if page:
                yield page
                page = []
            if wanted(item.stream_id):
                yield item
        if page:
            yield page

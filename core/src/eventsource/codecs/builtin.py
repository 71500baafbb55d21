"""Built-in codecs: a lossless JSON serializer, zlib and brotli compressors."""

from __future__ import annotations

import base64
import json
import json.encoder
import uuid
import zlib
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

from eventsource.codecs import Compressor, Serializer, too_large
from eventsource.errors import CodecError, ValidationError

_TAG = "$es"
"""A dict ``{"$es": <kind>, "v": <value>}`` is a tagged value. A user dict that has a ``$es`` key is
stored as ``{"$es": "dict", "v": [[key, value], ...]}``, so no user object is ever read back as a tag
(``json``'s object hook runs innermost first, so the escape must not leave the user's object intact)."""


def _encode_datetime(value: datetime) -> dict[str, Any]:
    offset = value.utcoffset()
    if offset is not None and offset.microseconds:  # ISO parsing drops sub-second offsets
        return {
            _TAG: "datetime_us_offset",
            "v": [value.replace(tzinfo=None).isoformat(), offset // timedelta(microseconds=1)],
        }
    return {_TAG: "datetime", "v": value.isoformat()}


def _encode_time(value: time) -> dict[str, Any]:
    offset = value.utcoffset()
    if offset is not None and offset.microseconds:  # time.fromisoformat drops them too (it read back at UTC)
        return {
            _TAG: "time_us_offset",
            "v": [value.replace(tzinfo=None).isoformat(), offset // timedelta(microseconds=1)],
        }
    return {_TAG: "time", "v": value.isoformat()}


def _decimal(value: Any) -> Decimal:
    if type(value) is not str:  # Decimal() would take a tuple (or a list) too: never written here
        msg = f"a tagged decimal must be a string, got {type(value).__name__}"
        raise TypeError(msg)
    return Decimal(value)


_ENCODERS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (datetime, _encode_datetime),  # before date: a datetime is a date
    (date, lambda v: {_TAG: "date", "v": v.isoformat()}),
    (time, _encode_time),
    (timedelta, lambda v: {_TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]}),
    (uuid.UUID, lambda v: {_TAG: "uuid", "v": str(v)}),
    (Decimal, lambda v: {_TAG: "decimal", "v": str(v)}),
    ((bytes, bytearray, memoryview), lambda v: {_TAG: "bytes", "v": base64.b64encode(bytes(v)).decode("ascii")}),
    ((set, frozenset), lambda v: {_TAG: "set", "v": list(v)}),
)
"""``json``'s ``default``: the first entry whose type matches encodes the value as a tagged dict."""


def _default(value: Any) -> Any:
    for types, encode in _ENCODERS:
        if isinstance(value, types):
            return encode(value)
    msg = f"object of type {type(value).__name__} is not serializable"
    raise TypeError(msg)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "datetime_us_offset": lambda v: datetime.fromisoformat(v[0]).replace(tzinfo=timezone(timedelta(microseconds=v[1]))),
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "time_us_offset": lambda v: time.fromisoformat(v[0]).replace(tzinfo=timezone(timedelta(microseconds=v[1]))),
    "timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": uuid.UUID,
    "decimal": _decimal,
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "set": set,
}
"""Tag kind -> decoder of its ``"v"``. What a decoder raises is a corrupt payload (:func:`_hook` says so)."""


def _escape(value: Any) -> Any:
    """Escape user dicts that contain the tag key, recursively (rare path)."""
    if isinstance(value, dict):
        if _TAG in value:
            return {_TAG: "dict", "v": [[k, _escape(v)] for k, v in value.items()]}
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {_TAG: "set", "v": [_escape(v) for v in value]}
    return value


_LEAVES = frozenset({str, int, float, bool, type(None)})

MAX_NESTING = 256
"""How deeply payloads may nest (lists and dicts), counted as stored. Deeper data is refused on write:
decoding it needs that much of the reader's stack, so it might not read back in a deeper call stack."""


def _inexact(value: Any, depth: int = 1) -> tuple[str, str] | None:
    """``(path, problem)`` of the first part of ``value`` JSON would give back changed, else ``None``.

    Tuples would come back as lists, non-string dict keys as strings, frozensets as sets, and a set
    inside a set could not be read back at all; data nested deeper than :data:`MAX_NESTING` (``depth``
    is ``value``'s level as stored, tags and escapes included) might not read back at all. ``path`` is
    ``[key]`` / ``[index]`` steps from the top. Plain values are skipped by their exact type, so a flat
    payload costs one pass over its items.
    """
    if depth > MAX_NESTING:
        return "", f"nested more than {MAX_NESTING} levels deep"
    if isinstance(value, dict):
        inner = depth + 3 if _TAG in value else depth + 1  # an escaped dict is stored as [[key, value], ...]
        return _inexact_dict(value, inner)
    if isinstance(value, list):
        return _inexact_list(value, depth + 1)
    return _inexact_leaf(value, depth)


def _exact(value: Any, depth: int) -> bool:  # noqa: C901 - every payload walks here: one frame per container
    """Whether :func:`_inexact` certainly finds nothing in ``value`` (a dict or list at ``depth``): the common case.

    One frame per container and exact-type checks only; ``False`` (anything unusual: a subclass, a tuple,
    a set, a non-``str`` key, the depth limit) means "ask :func:`_inexact`", which walks again and says what.
    """
    if depth > MAX_NESTING:
        return False
    if type(value) is dict:
        for k in value:
            if type(k) is not str:
                return False
        items: Iterable[Any] = value.values()
        inner = depth + 3 if _TAG in value else depth + 1
    elif type(value) is list:
        items, inner = value, depth + 1
    else:
        return False
    for v in items:
        t = type(v)
        if t in _LEAVES:
            continue
        if t is dict or t is list:
            if not _exact(v, inner):
                return False
        elif isinstance(v, _CHECKED):
            return False
    return True


def json_change(value: Any) -> tuple[str, str] | None:
    """``(path, problem)`` of the first part of ``value`` that JSON would give back changed (see :func:`_inexact`).

    ``None`` when nothing would change, or when ``value`` is circular or deeper than the stack (the encoder
    refuses it then). The JSON serializer asks this of every payload; the manager of stream metadata.
    """
    try:
        return None if _exact(value, 1) else _inexact(value)
    except RecursionError:
        return None


_CHECKED = (dict, list, tuple, set, frozenset)
"""Types :func:`_exact` leaves to :func:`_inexact` (containers of other kinds, subclasses)."""


def _inexact_dict(value: dict[Any, Any], inner: int) -> tuple[str, str] | None:
    for k, v in value.items():
        if type(k) is not str and not isinstance(k, str):
            return f"[{k!r}]", f"a key of type {type(k).__name__} (JSON keys are strings)"
        if type(v) not in _LEAVES:
            found = _inexact(v, inner)
            if found is not None:
                return f"[{k!r}]{found[0]}", found[1]
    return None


def _inexact_list(value: list[Any], inner: int) -> tuple[str, str] | None:
    for i, v in enumerate(value):
        if type(v) not in _LEAVES:
            found = _inexact(v, inner)
            if found is not None:
                return f"[{i}]{found[0]}", found[1]
    return None


def _inexact_leaf(value: Any, depth: int) -> tuple[str, str] | None:
    """A value that is neither dict nor list: tuples and frozensets change; a set may hold what cannot."""
    if isinstance(value, tuple):
        return "", f"a {type(value).__name__} (JSON has no tuple; pass a list)"
    if isinstance(value, frozenset):
        return "", "a frozenset (it would come back as a set; pass a set)"
    if isinstance(value, set):
        if depth + 2 > MAX_NESTING:  # stored as {"$es": "set", "v": [...]}, its items tagged in turn
            return "", f"nested more than {MAX_NESTING} levels deep"
        for v in value:
            if isinstance(v, (tuple, frozenset)):
                return "{...}", f"a {type(v).__name__} inside a set (it could not be read back)"
    return None


def _hook(obj: dict[str, Any]) -> Any:
    kind = obj.get(_TAG)
    if not isinstance(kind, str) or len(obj) != 2 or "v" not in obj:  # noqa: PLR2004
        return obj
    if kind == "dict":
        return dict(obj["v"])
    decoder = _DECODERS.get(kind)
    if decoder is None:
        return obj
    try:
        return decoder(obj["v"])
    except Exception as e:  # InvalidOperation, OverflowError, AttributeError...: loads reports a CodecError
        msg = f"a tagged {kind} value is corrupt: {type(e).__name__}"
        raise ValueError(msg) from e


class JsonSerializer(Serializer):
    """JSON that round-trips datetimes, dates, times, timedeltas, UUIDs, Decimals, bytes and sets.

    What JSON would give back changed is refused with :class:`ValidationError` naming its path, never
    changed silently: tuples (they would come back as lists), non-string dict keys (as strings) and
    frozensets (as sets); so is data nested more than :data:`MAX_NESTING` levels deep. Aware datetimes come back with
    a fixed UTC offset (same instant, same offset;
    a ``zoneinfo`` zone name is not kept). NaN and infinities are refused, since other JSON readers
    cannot parse them.
    """

    name = "json"

    def __init__(self) -> None:
        self._tags = 0
        self._encoder = json.JSONEncoder(
            default=self._count, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        self._encode: Callable[[Any], str] = self._encoder.encode
        self._chunks: Callable[[Any, int], Iterable[str]] | None = None
        make = getattr(json.encoder, "c_make_encoder", None)
        if make is not None:  # the C encoder built once, not per call (building it is much of a small event's cost)
            # no markers: a circular structure ends in RecursionError, refused like any unserializable data
            # arguments: markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan
            c_iter = make(None, self._count, json.encoder.encode_basestring, None, ":", ",", False, False, False)  # noqa: FBT003
            self._chunks = c_iter
            self._encode = lambda value: "".join(c_iter(value, 0))
        self._tag = _TAG.encode()
        self._tagged = json.JSONDecoder(object_hook=_hook)
        self._untagged = json.JSONDecoder()
        self._quoted = f'"{_TAG}"'

    def _count(self, value: Any) -> Any:
        out = _default(value)
        if type(out) is dict:
            self._tags += 1
        return out

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as UTF-8 JSON.

        Tagged values (datetimes, Decimals...) each add one ``"$es"`` to the text; when the text holds
        more than that, the user's data itself has a ``"$es"`` key (or string) and the rare escaping
        path runs. So a payload with tagged values costs one encoding pass, not two. What JSON would
        give back changed (a tuple, a non-string key, a frozenset) is refused, naming its path.
        """
        if type(value) not in _LEAVES:
            found = json_change(value)
            if found is not None:
                path, problem = found
                if problem.startswith("nested"):
                    where = path if len(path) <= 40 else f"{path[:40]}..."  # noqa: PLR2004
                    msg = f"data at ${where} is {problem}: it might not read back (MAX_NESTING)"
                    raise ValidationError(msg, codec=self.name, path=f"${path}", limit=MAX_NESTING)
                msg = f"data at ${path} is {problem}: stored as JSON it would not come back as it was"
                raise ValidationError(msg, codec=self.name, path=f"${path}")
        try:
            self._tags = 0
            chunks = self._chunks  # (what _encode does, one call shorter: every event's data passes here)
            text = "".join(chunks(value, 0)) if chunks is not None else self._encode(value)
            if self._tags != text.count(self._quoted):
                text = self._encode(_escape(value))
        except (TypeError, ValueError, RecursionError) as e:
            msg = f"event data is not serializable as JSON: {e}"
            raise ValidationError(msg, codec=self.name) from e
        return text.encode("utf-8", "surrogatepass")

    def scanners(self) -> tuple[bytes, Callable[[str, int], tuple[Any, int]], Callable[[str, int], tuple[Any, int]]]:
        """What :meth:`loads` runs, for a caller that inlines it in a loop (the event codec's plain rows).

        ``(tag, tagged, untagged)``: UTF-8 text (``surrogatepass``) whose bytes contain ``tag`` is scanned
        with ``tagged``, any other with ``untagged``; each returns ``(value, end)``. A scan that raises or
        ends before the text does is not a fast-path value: call :meth:`loads` (which decides or raises).
        """
        return self._tag, self._tagged.scan_once, self._untagged.scan_once  # type: ignore[attr-defined]

    def loads(self, raw: bytes) -> Any:
        """Decode JSON written by :meth:`dumps` (the scanner directly: no encoding sniffing, no wrapper)."""
        try:
            text = raw.decode("utf-8", "surrogatepass")  # dumps keeps lone surrogates; so does loads
            decoder = self._tagged if self._tag in raw else self._untagged
            del raw  # bytes handed over as their only reference (the pipeline's) go before the value is built
            try:
                value, end = decoder.scan_once(text, 0)  # type: ignore[attr-defined]
            except StopIteration:
                end = -1
            if end != len(text):  # leading/trailing whitespace or junk: the full decoder says which
                value = decoder.decode(text)
        except (ValueError, TypeError) as e:
            msg = f"stored payload is not valid JSON: {type(e).__name__}"
            raise CodecError(msg, codec=self.name) from e
        except RecursionError as e:  # written before MAX_NESTING, or by another writer
            msg = "stored payload is nested too deeply to decode on this call stack"
            raise CodecError(msg, codec=self.name) from e
        return value


_PIECE = 1 << 20
"""zlib takes a payload larger than this a piece at a time: a one-call output buffer grows past the result in blocks
and is then copied whole, so its peak is over twice the result."""


class ZlibCompressor(Compressor):
    """zlib (stdlib) at level 6."""

    name = "zlib"

    def __init__(self, level: int = 6) -> None:
        self.level = level

    def compress(self, raw: bytes) -> bytes:
        """Compress with zlib (a large payload a piece at a time: the same bytes as one call, in less memory)."""
        if len(raw) <= _PIECE:
            return zlib.compress(raw, self.level)
        c = zlib.compressobj(self.level)
        view = memoryview(raw)
        out = [c.compress(view[i : i + _PIECE]) for i in range(0, len(view), _PIECE)]
        out.append(c.flush())
        return b"".join(out)

    def decompress(self, raw: bytes) -> bytes:
        """Decompress zlib data."""
        return zlib.decompress(raw)

    def decompress_bounded(self, raw: bytes, limit: int) -> bytes:
        """Decompress zlib data, stopping once the output passes ``limit`` bytes (:class:`CodecError`).

        A large payload is inflated twice: once a piece at a time to count its size (and refuse it over
        ``limit``), then into an output buffer of exactly that size, which is returned without a copy.
        """
        if len(raw) >= _PIECE:
            return zlib.decompress(raw, bufsize=max(self._inflated_size(raw, limit), 1))
        d = zlib.decompressobj()
        out = d.decompress(raw, limit + 1)
        if len(out) > limit:
            raise too_large(self.name, limit)
        if not d.eof:
            raise self._truncated()
        return out

    def _inflated_size(self, raw: bytes, limit: int) -> int:
        """What ``raw`` decompresses to, counted a piece of output at a time; over ``limit``: :class:`CodecError`."""
        d = zlib.decompressobj()
        size = 0
        view = memoryview(raw)
        for i in range(0, len(view), _PIECE):
            data: Any = view[i : i + _PIECE]
            while True:
                n = len(d.decompress(data, _PIECE))
                size += n
                if size > limit:
                    raise too_large(self.name, limit)
                data = d.unconsumed_tail
                if d.eof or (not data and n < _PIECE):  # this piece is used up and nothing is pending
                    break
            if d.eof:
                return size
        raise self._truncated()

    def _truncated(self) -> CodecError:
        """As zlib.decompress refuses a stream that ends before its end marker."""
        msg = "payload cannot be decompressed with 'zlib': incomplete or truncated stream"
        return CodecError(msg, codec=self.name)


class BrotliCompressor(Compressor):
    """brotli at quality 5 (a good speed/ratio point for event-sized payloads)."""

    name = "brotli"

    def __init__(self, quality: int = 5) -> None:
        self.quality = quality

    def compress(self, raw: bytes) -> bytes:
        """Compress with brotli."""
        import brotli

        return bytes(brotli.compress(raw, quality=self.quality))

    def decompress(self, raw: bytes) -> bytes:
        """Decompress brotli data."""
        import brotli

        try:
            return bytes(brotli.decompress(raw))
        except brotli.error as e:
            msg = "payload cannot be decompressed with 'brotli'"
            raise CodecError(msg, codec=self.name) from e

    def decompress_bounded(self, raw: bytes, limit: int) -> bytes:
        """Decompress brotli data, stopping once the output passes ``limit`` bytes (:class:`CodecError`)."""
        import brotli

        d = brotli.Decompressor()
        try:
            out = d.process(raw, output_buffer_limit=limit + 1)
        except brotli.error as e:
            msg = "payload cannot be decompressed with 'brotli'"
            raise CodecError(msg, codec=self.name) from e
        if len(out) > limit or not (d.is_finished() or d.can_accept_more_data()):  # output left: over the limit
            raise too_large(self.name, limit)
        if not d.is_finished():  # as brotli.decompress refuses it
            msg = "payload cannot be decompressed with 'brotli': truncated stream"
            raise CodecError(msg, codec=self.name)
        return bytes(out)

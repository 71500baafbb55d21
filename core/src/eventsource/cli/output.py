"""Where the command's results go and how values look there: human text or JSON lines on stdout, notes on stderr.

:class:`Output` is the only writer of results; :func:`plain` turns library objects (dataclasses, datetimes,
enums, bytes) into JSON-able data, and the small formatters (:func:`short`, :func:`when`, :func:`size_text`,
:func:`mask`) keep the human output of every command alike.
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import uuid
from dataclasses import fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TextIO, cast

_KIB = 1024
_SURROGATE = re.compile("[\ud800-\udfff]")


class Output:
    """Where results go: human text or JSON on stdout; progress and notes on stderr."""

    def __init__(self, *, as_json: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.as_json = as_json
        self.out = stdout or sys.stdout
        # `2>&-`: sys.stderr is None, and print(file=None) writes to stdout, into the data: drop notes instead
        self.err = stderr or sys.stderr or cast("TextIO", _Discard())

    def line(self, text: str = "") -> None:
        """Print a line of human output (nothing in ``--json`` mode)."""
        if not self.as_json:
            print(text, file=self.out)

    def json(self, value: object) -> None:
        """Print ``value`` as one JSON line (only in ``--json`` mode)."""
        if self.as_json:
            print(dumps(value), file=self.out)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr), e.g. a count or a hint."""
        print(text, file=self.err)

    @property
    def interactive(self) -> bool:
        """Whether stderr is a terminal (progress lines are shown only there)."""
        isatty = getattr(self.err, "isatty", None)
        return bool(isatty and isatty())


class _Discard(io.TextIOBase):
    """Where notes go when stderr is closed: nowhere."""

    def write(self, text: str) -> int:
        """Drop ``text``."""
        return len(text)


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: dataclasses become dicts, datetimes ISO strings, sets sorted lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    return _plain_scalar(value)


def _plain_scalar(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    return value


def dumps(value: object, *, indent: int | None = None) -> str:
    """Compact (or indented) JSON of :func:`plain` data, Unicode kept readable."""
    sep = (",", ": ") if indent else (",", ":")
    return _escaped(json.dumps(plain(value), ensure_ascii=False, indent=indent, separators=sep, default=str))


def short(value: object) -> str:
    """Compact one-line JSON for human output."""
    return _escaped(json.dumps(plain(value), ensure_ascii=False, separators=(", ", ": "), default=str))


def _escaped(text: str) -> str:
    r"""JSON ``text`` with each lone surrogate as its JSON escape (``\ud800``: it reads back as the same text).

    A payload may hold any ``str``, a lone surrogate too, and no UTF-8 stream can print one: ``read`` stopped
    on such an event with an ``UnicodeEncodeError``. In JSON every ``str`` is inside a string literal, where
    the escape means the same.
    """
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def when(ts: datetime | None) -> str:
    """A timestamp for people: UTC, seconds precision."""
    if ts is None:
        return "-"
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def size_text(n: int | None) -> str:
    """``12.3 KiB``-style size."""
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < _KIB:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= _KIB
    return f"{size:.1f} GiB"


def mask(url: str) -> str:
    """``url`` with its password hidden."""
    from eventsource.config import mask_url

    return mask_url(url)

"""Argument types shared by the commands, and reading JSON arguments (``-`` reads stdin).

The argparse types (:func:`expected_version`, :func:`int_at_least`, :func:`duration`, :func:`given`) turn bad
values into argparse's own usage error (exit 2); :func:`parse_json` raises
:class:`~eventsource.cli.errors.UsageError` naming the argument.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO

from eventsource.cli.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.cli.output import Output

SHOWN_INPUT = 40
"""Characters of bad input echoed in an error message."""

_UNDECODED = re.compile("[\udc80-\udcff]")
"""How Python reads a byte of argv or stdin that is not UTF-8 (``surrogateescape``)."""


def expected_version(text: str) -> int:
    """An argparse type: a version number ``>= 0`` or ``any``, ``no_stream``, ``stream_exists``."""
    from eventsource.model import ExpectedVersion

    key = text.strip().lower().replace("-", "_")
    names = {
        "any": ExpectedVersion.ANY,
        "no_stream": ExpectedVersion.NO_STREAM,
        "stream_exists": ExpectedVersion.STREAM_EXISTS,
    }
    if key in names:
        return names[key]
    try:
        value = int(key)
    except ValueError:
        msg = f"expected a version number >= 0, 'any', 'no_stream' or 'stream_exists', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        msg = f"a version number must be >= 0, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def int_at_least(minimum: int, *, at_most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number ``>= minimum`` (and ``<= at_most``, when given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"expected a whole number, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if value < minimum:
            msg = f"must be >= {minimum}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        if at_most is not None and value > at_most:
            msg = f"must be from {minimum} to {at_most:,}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


positive = int_at_least(1)
non_negative = int_at_least(0)


def given(what: str) -> Callable[[str], str]:
    """An argparse type: a value that is not empty or blank (``--store "$URL"`` with ``URL`` unset in a script).

    Left out, such an option takes its default; given empty, it used to take the default too, so a script whose
    variable was unset read or wrote ``./eventsource.db`` instead of failing.
    """

    def parse(text: str) -> str:
        if not text.strip():
            msg = f"is empty: give {what}, or leave the option out"
            raise argparse.ArgumentTypeError(msg)
        return text

    return parse


store_url = given("a store URL (e.g. sqlite:///events.db)")
store_or_provider = given("a store URL or the name of a --config provider")


def duration(text: str) -> float:
    """An argparse type: a duration such as ``250ms``, ``5s`` or ``2m``, in seconds."""
    from eventsource.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_json(
    text: str, what: str, *, out: Output | None = None, stdin: TextIO | None = None, want_object: bool = False
) -> Any:
    """Parse a JSON argument (``-`` reads stdin, with a word to ``out`` when it is a terminal); errors name it."""
    if text == "-":
        source = stdin or sys.stdin
        if source is None:  # `<&-`
            msg = f"{what} is '-' (read stdin), but stdin is closed: pipe the JSON in, or give it as the argument"
            raise UsageError(msg, field=what)
        isatty = getattr(source, "isatty", None)
        if out is not None and isatty and isatty():  # typed by hand: say how to finish, or it looks hung
            out.note(f"reading {what} from the terminal; end with Ctrl-D (Ctrl-Z Enter on Windows)")
        text = source.read()
    if (byte := _UNDECODED.search(text)) is not None:  # stored as is, it became a lone surrogate in the data
        msg = (
            f"{what} is not UTF-8 text: byte 0x{ord(byte[0]) - 0xDC00:02x} at character {byte.start() + 1}; "
            "convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)"
        )
        raise UsageError(msg, field=what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        shown = text if len(text) <= SHOWN_INPUT else text[: SHOWN_INPUT - 3] + "..."
        msg = f"{what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): {shown!r}"
        raise UsageError(msg, field=what) from None
    except RecursionError:
        msg = f"{what} nests too deeply to be read as JSON"
        raise UsageError(msg, field=what) from None
    if want_object and not isinstance(value, dict):
        msg = f'{what} must be a JSON object like \'{{"key": "value"}}\', got {type(value).__name__}'
        raise UsageError(msg, field=what)
    return value

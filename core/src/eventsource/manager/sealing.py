"""Associated data: what binds a sealed payload to its place, and the older forms that still open.

An event's payload is sealed under ``e NUL stream NUL event id NUL version NUL part NUL event type``, a
snapshot's under ``s NUL stream NUL snapshot id NUL version NUL part``; ``part`` is ``d`` (data), ``d+m`` (data
stored beside metadata) or ``m`` (metadata). Payloads sealed by earlier builds (without the type, or ``d`` for
data beside metadata) still open: the newest form is tried first, and a payload sealed under it fails every
older one, so relabelling a new event's type or emptying its metadata in the store is a ``DecryptionError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.errors import CodecError, DecryptionError, UnknownKeyError

if TYPE_CHECKING:
    from collections.abc import Callable

DATA = b"d"
META = b"m"
DATA_WITH_META = b"d+m"


def aad_prefix(kind: str, stream_id: str, item_id: str, version: int) -> bytes:
    """Associated data up to the payload part: ``kind NUL stream NUL id NUL version NUL``.

    ``kind`` is ``e`` (event) or ``s`` (snapshot).
    """
    return f"{kind}\x00{stream_id}\x00{item_id}\x00{version}\x00".encode()


def typed(part: bytes, event_type: str | None) -> bytes:
    """``part`` bound to the event's type (a snapshot has none: ``part`` as it is)."""
    if event_type is None:
        return part
    return part + b"\x00" + event_type.encode("utf-8", "surrogatepass")


def data_aad(prefix: bytes, event_type: str | None, *, has_meta: bool) -> bytes:
    """What a data part is sealed under now."""
    return prefix + typed(DATA_WITH_META if has_meta else DATA, event_type)


def meta_aad(prefix: bytes, event_type: str | None) -> bytes:
    """What a metadata part is sealed under now."""
    return prefix + typed(META, event_type)


def open_data(
    decode: Callable[..., Any],
    raw: bytes,
    encoding: str,
    *,
    prefix: bytes,
    scope: str | None,
    event_type: str | None,
    has_meta: bool,
) -> Any:
    """The data part of a stored payload, under the newest form it opens with (see the module docstring)."""
    forms = [data_aad(prefix, event_type, has_meta=has_meta)]
    if event_type is not None:
        forms.append(prefix + (DATA_WITH_META if has_meta else DATA))
    if has_meta:
        forms.append(prefix + DATA)
    return _first(decode, raw, encoding, scope, forms)


def open_meta(
    decode: Callable[..., Any], raw: bytes, encoding: str, *, prefix: bytes, scope: str | None, event_type: str | None
) -> Any:
    """The metadata part of a stored payload (bound to the type, or sealed before that binding)."""
    forms = [meta_aad(prefix, event_type)]
    if event_type is not None:
        forms.append(prefix + META)
    meta = _first(decode, raw, encoding, scope, forms)
    if not isinstance(meta, dict):
        raise not_an_object(meta)
    return meta


def not_an_object(meta: object) -> CodecError:
    """The error for stored metadata that decodes to anything but an object (another writer stored it so)."""
    msg = f"stored metadata is a {type(meta).__name__}, not a JSON object (written by another tool?)"
    return CodecError(msg)


def _first(decode: Callable[..., Any], raw: bytes, encoding: str, scope: str | None, forms: list[bytes]) -> Any:
    """``raw`` opened under the first of ``forms`` that authenticates; the last failure if none does."""
    last = len(forms) - 1
    for i, aad in enumerate(forms):
        try:
            return decode(raw, encoding, aad=aad, scope=scope)
        except UnknownKeyError:
            raise  # no key to try: every form would fail alike
        except DecryptionError:  # sealed under an older form (a tampered payload fails every one)
            if i == last:
                raise
    msg = "unreachable: no associated data to try"  # pragma: no cover - forms is never empty
    raise AssertionError(msg)

"""Where an export goes: stdout, a pipe or a device as it is, a regular file written aside and renamed in place.

:func:`open_output` opens it (gzip when asked); :func:`finish_output` puts a complete file in the place of the
one it replaces, so an export that fails half-way leaves the previous one whole.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import stat
import sys
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING

from eventsource.errors import TransferFormatError

if TYPE_CHECKING:
    from collections.abc import Callable

GZIP_MAGIC = b"\x1f\x8b"
PARTIAL = ".partial"
"""Suffix of an export file being written (see :func:`open_output`)."""
_HEADER_START = b'{"kind":"header"'
"""How every export begins (uncompressed)."""


def _regular_or_absent(path: str) -> bool:
    """Whether ``path`` is a regular file or nothing (not a pipe, a device, a directory)."""
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _check_replaceable(path: str) -> None:
    """Refuse to overwrite a regular file that holds something other than an export (a store's database, say)."""
    try:
        with Path(path).open("rb") as f:
            start = f.read(len(_HEADER_START))
            if start.startswith(GZIP_MAGIC):  # a gzip export begins with the same header once decompressed
                f.seek(0)
                start = _gunzip_start(f)
    except OSError:
        return  # absent, or not readable: opening it for writing says why
    if start and not _HEADER_START.startswith(start):
        what = "a SQLite database" if start.startswith(b"SQLite format 3") else "something else"
        msg = (
            f"{path!r} exists and is not an eventsource export (it holds {what}); refusing to overwrite it: "
            "name another file"
        )
        raise TransferFormatError(msg, file=path)


def _gunzip_start(f: IO[bytes]) -> bytes:
    """The first bytes of a gzip file decompressed (none: cut short before any; ``b"?"``: not gzip after all)."""
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as z:
            return z.read(len(_HEADER_START))
    except EOFError:
        return b""  # an export killed before its first block
    except (gzip.BadGzipFile, zlib.error):
        return b"?"


def _create(name: str) -> IO[bytes]:
    return os.fdopen(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


_NO_NEW_FILE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG)
"""Why ``<path>.partial`` may not be creatable where ``path`` is writable (a locked folder; a name at the limit)."""


def _open_partial(path: str, note: Callable[[str], None] | None) -> IO[bytes]:
    """``<path>.partial`` with the mode (and, where allowed, owner) of the file at ``path`` it will replace.

    A folder that takes no new file, or a name too long for the suffix (the export itself writable), gets ``path``
    written in place, as ``note`` hears.
    """
    final = os.path.realpath(path)  # a link: the file it names
    try:
        raw = _create(f"{final}{PARTIAL}")
    except OSError as e:
        if e.errno not in _NO_NEW_FILE or not os.access(final, os.W_OK):
            raise
        if note is not None:
            note(f"cannot create {final}{PARTIAL} ({e.strerror}): writing {path} in place (a failed run cuts it)")
        return _create(path)
    with contextlib.suppress(FileNotFoundError):
        st = Path(final).stat()
        os.fchmod(raw.fileno(), stat.S_IMODE(st.st_mode))  # a replaced export stays readable by whom it was
        with contextlib.suppress(PermissionError):
            os.fchown(raw.fileno(), st.st_uid, st.st_gid)
    return raw


def open_output(
    path: str, *, gzipped: bool, partial: bool = False, note: Callable[[str], None] | None = None
) -> IO[bytes]:
    """A binary stream to write an export to (``-``: stdout), gzip-compressed when ``gzipped``.

    With ``partial``, a regular file is written as ``<path>.partial`` (with the mode of the file it replaces),
    which :func:`finish_output` renames over ``path`` once the export is complete: until then an earlier export
    at ``path`` stays whole. A pipe or a device is written as it is, and so is an export in a folder where no
    file can be created (``note`` hears of it).
    """
    if path == "-":
        raw: IO[bytes] = sys.stdout.buffer
    else:  # a new file is the owner's only: it holds every event, unencrypted ones readable as they are
        regular = _regular_or_absent(path)  # a pipe or a device is written as it is, never replaced nor read
        if regular:
            _check_replaceable(path)
        try:
            raw = _open_partial(path, note) if partial and regular else _create(path)
        except OSError as e:
            msg = f"cannot write the export {path!r}: {e.strerror or e}"
            raise TransferFormatError(msg, file=path) from e
    if gzipped:
        return _GzipOut(raw)  # type: ignore[return-value]
    return raw


def finish_output(path: str, *, complete: bool) -> None:
    """Put a complete ``<path>.partial`` (see :func:`open_output`) in the place of ``path``, durably; else drop it.

    Nothing to do for a ``path`` that is not a regular file (a pipe, a device: written as it is).
    """
    final = os.path.realpath(path)  # a link: the file it names is replaced, the link stays
    partial = Path(f"{final}{PARTIAL}")
    try:
        aside = partial.is_file()
    except OSError:  # a name too long for the suffix: it was written in place
        aside = False
    if not _regular_or_absent(path) or not aside:
        return
    if not complete:
        partial.unlink(missing_ok=True)
        return
    with partial.open("rb+") as f:
        os.fsync(f.fileno())
    partial.replace(final)
    folder = os.open(Path(final).parent, os.O_RDONLY)  # the rename is durable once the folder is
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class _GzipOut(gzip.GzipFile):
    """A gzip stream that closes the file under it too (a plain GzipFile leaves it open, its tail unflushed)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw  # first: Python 3.13 writes the header in __init__, and a closed pipe fails it before its end
        super().__init__(fileobj=raw, mode="wb", mtime=0)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.raw is not sys.stdout.buffer:
                self.raw.close()
            else:
                self.raw.flush()

"""Key providers: where the AES-256-GCM cipher gets its keys, by key id and by scope.

A *scope* is a string the manager derives from each event (global, ``"tenant:<id>"`` or ``"stream:<id>"``
per ``encryption_scope``); every ciphertext names the key id that sealed it, so rotation adds a key and
crypto-shredding removes a scope's keys, leaving a tombstone that makes reads fail with
:class:`KeyShreddedError`. :class:`StaticKeyRing` holds the configured keys; :class:`ScopedKeyStore` keeps
one wrapped data key per scope. Keys never appear in ``repr``, logs or errors. The design (scopes,
envelope encryption, the key file) is in ``docs/internals/encryption.md``. The ring, the provider interface and
the key-id helpers live in :mod:`eventsource.codecs.keyring` and are re-exported here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import threading
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsource.codecs.keyring import (
    KEY_SIZE,
    MAX_KEY_ID_BYTES,
    KeyProvider,
    StaticKeyRing,
    check_key_id,
    decode_key,
    generate_key,
)
from eventsource.errors import (
    ConfigurationError,
    DecryptionError,
    KeyShreddedError,
    UnknownKeyError,
    UnsupportedOperationError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "KEY_SIZE",
    "MAX_KEY_ID_BYTES",
    "KeyProvider",
    "ScopedKeyStore",
    "StaticKeyRing",
    "check_key_id",
    "decode_key",
    "generate_key",
]


log = logging.getLogger("eventsource.keys")


class _Held(threading.local):
    on = False  # this thread runs a call that checked the key file when it began (ScopedKeyStore.catch_up)


def _fsync_dir(path: Path) -> None:
    """Make a new name or a rename in ``path``'s directory durable."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_DEK_AAD = b"eventsource-dek\x00"
_STORE_FORMAT = 1


class ScopedKeyStore(KeyProvider):
    """One data key per scope, wrapped by a master :class:`StaticKeyRing`; shreddable per scope.

    :param master: the ring whose active key wraps new data keys (and which serves the global scope).
    :param path: a file holding wrapped data keys and tombstones, or ``None`` to keep them in memory
        (lost when the process exits: only for tests and throw-away stores).

    The file is JSON lines: a header, one line per data key created (wrapped by the master key: no key
    in clear ever reaches the disk), and one line per shred. Creating a scope's key appends one line
    (O(1), so a key per stream scales with the number of streams); shredding rewrites the file without
    that scope's keys (atomic rename) and keeps only tombstones (key id -> scope), so the removed keys
    are gone from the live file. Copies and backups of the file are the operator's to destroy.

    The first payload of a new scope pays for creating its key: one appended line and an ``fsync``, on
    the calling thread (every later payload of the scope uses the cached key).

    Several processes may share the file: writes take an exclusive ``flock`` on ``<path>.lock`` and
    first read what others appended. A shred replaces the file: a call that begins after it sees that
    before it seals or opens a payload (one ``fstat`` per payload, or per call: :meth:`catch_up`, then
    ``held.on`` around its work). New keys and rotations by others are read on a miss, or within a second.
    """

    def __init__(self, master: StaticKeyRing, path: str | os.PathLike[str] | None = None) -> None:
        self.master = master
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()
        self._entries: dict[str, dict[str, str]] = {}  # key id -> {scope, master, wrapped, created_at}
        self._active: dict[str, str] = {}  # scope -> key id
        self._tombstones: dict[str, dict[str, str]] = {}  # key id -> {scope, at}
        self._plain: dict[str, bytes] = {}  # key id -> unwrapped data key (cache)
        # the file this state was read from (held open: while it is, a replacement file can never get its
        # inode number, so "replaced" is always seen) and how far
        self._fd: weakref.finalize | None = None  # type: ignore[type-arg]
        self._fd_no = -1
        self._offset = 0
        self._checked = time.monotonic()
        self.held = _Held()
        if self.path is not None:
            self._sync()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return f"ScopedKeyStore(store={where!r}, scopes={len(self._active)}, master={self.master!r})"

    # ------------------------------------------------------------------ persistence

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[None]:
        """Hold the in-process lock and, with a file, an exclusive flock on ``<path>.lock``."""
        with self._lock:
            if self.path is None:
                yield
                return
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._sync()
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _unreadable(self, why: str) -> ConfigurationError:
        msg = f"key store {str(self.path)!r} {why}"
        return ConfigurationError(msg, field="encryption_key_store")

    def _reset(self) -> None:
        self._entries, self._active, self._tombstones, self._offset = {}, {}, {}, 0

    def _forget_file(self) -> None:
        if self._fd is not None:
            self._fd()  # closes the descriptor (once)
        self._fd, self._fd_no = None, -1

    def _sync(self) -> None:
        """Apply what the file holds beyond what was read (all of it when the file was replaced)."""
        if self.path is None:
            return
        with self._lock:
            chunk = self._read_new(self.path)
            if chunk is None:
                return
            end = chunk.rfind(b"\n") + 1  # complete lines only; a line being written is read next time
            self._apply_lines(chunk[:end])
            self._offset += end
            for kid in [k for k in self._plain if k not in self._entries]:
                del self._plain[kid]

    def _read_new(self, path: Path) -> bytes | None:
        """The bytes past what was read, reopening a replaced or shrunk file; ``None`` when there are none."""
        try:
            st = path.stat()
            held = os.fstat(self._fd_no) if self._fd is not None else None
            if held is None or held.st_ino != st.st_ino or held.st_dev != st.st_dev or st.st_size < self._offset:
                self._forget_file()
                fd = os.open(path, os.O_RDONLY)
                self._fd, self._fd_no = weakref.finalize(self, os.close, fd), fd
                self._reset()
            size = os.fstat(self._fd_no).st_size
            if size == self._offset:
                return None
            return os.pread(self._fd_no, size - self._offset, self._offset)
        except FileNotFoundError:
            if self._fd is not None:
                raise self._unreadable("was deleted while in use") from None
            return None
        except OSError as e:
            raise self._unreadable(f"cannot be read: {type(e).__name__}") from e

    def _apply_lines(self, data: bytes) -> None:
        try:
            for line in data.splitlines():
                if line.strip():
                    self._apply(json.loads(line))
        except ConfigurationError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise self._unreadable(f"is corrupt: {type(e).__name__}") from e

    def _apply(self, rec: dict[str, Any]) -> None:
        if "format" in rec:
            if rec["format"] != _STORE_FORMAT:
                raise self._unreadable(f"has format {rec['format']!r}; this version reads {_STORE_FORMAT}")
        elif "key" in rec:
            kid = rec["key"]
            self._entries[kid] = {k: rec[k] for k in ("scope", "master", "wrapped", "created_at")}
            self._active[rec["scope"]] = kid
        elif "rewrap" in rec:
            entry = self._entries.get(rec["rewrap"])
            if entry is not None:
                entry.update(master=rec["master"], wrapped=rec["wrapped"])
        elif "shred" in rec:
            scope = rec["shred"]
            for kid in rec["keys"]:
                self._entries.pop(kid, None)
                self._tombstones[kid] = {"scope": scope, "at": rec["at"]}
            if self._active.get(scope) not in self._entries:
                self._active.pop(scope, None)
        elif self._offset == 0 and not self._entries:
            raise self._unreadable("is not an eventsource key store")

    def _append(self, *records: dict[str, Any]) -> None:
        """Append records (under the flock), fsync, and read them back into the state.

        Under the flock no write is in progress, so bytes after the last complete line are a write a
        crash cut short (its caller never got the key): they are cut off first, or the next line would
        be glued to them and the whole file become unreadable. A file with no complete line but some
        bytes is not a key store, and is left alone.
        """
        if self.path is None:
            for rec in records:
                self._apply(rec)
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # keys: owner only
        created = self._offset == 0 and os.fstat(fd).st_size == 0
        with os.fdopen(fd, "ab") as f:
            size = os.fstat(f.fileno()).st_size
            if size > self._offset:  # _locked_file read every complete line just before
                if self._offset == 0:
                    raise self._unreadable("is not an eventsource key store (no complete line)")
                log.warning("key store %s: dropping %d bytes of an unfinished write", self.path, size - self._offset)
                os.truncate(f.fileno(), self._offset)
            if self._offset == 0:
                f.write(json.dumps({"format": _STORE_FORMAT}).encode() + b"\n")
            for rec in records:
                f.write(json.dumps(rec, sort_keys=True).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        if created:  # the file's name is durable once its directory is
            _fsync_dir(self.path)
        self._sync()

    def _compact(self) -> None:
        """Rewrite the file from the state (atomic rename): shredded keys leave the live file.

        If the rewrite fails (a full disk), the state is read back from the file, which still holds
        everything: the caller's change is undone, never half-kept in memory only.
        """
        if self.path is None:
            return
        lines: list[dict[str, Any]] = [{"format": _STORE_FORMAT}]
        lines += [{"key": kid, **entry} for kid, entry in self._entries.items()]
        by_scope: dict[tuple[str, str], list[str]] = {}
        for kid, tomb in self._tombstones.items():
            by_scope.setdefault((tomb["scope"], tomb["at"]), []).append(kid)
        lines += [{"shred": scope, "keys": kids, "at": at} for (scope, at), kids in by_scope.items()]
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
            _fsync_dir(self.path)  # else a crash could bring the old file back, shredded keys and all
        except BaseException:
            tmp.unlink(missing_ok=True)
            # the file was not replaced: back to what it holds, so a retried shred (rewrap) does it all again
            self._forget_file()
            self._offset = 0
            with contextlib.suppress(ConfigurationError):
                self._sync()
            raise
        self._forget_file()
        self._offset = 0
        self._sync()  # the new file, held from now on (its lines are what the state already holds)

    # ------------------------------------------------------------------ keys

    def _wrap(self, key_id: str, scope: str, dek: bytes) -> dict[str, str]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        mkid, mkey = self.master.encryption_key(None)
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(mkey).encrypt(nonce, dek, _DEK_AAD + f"{key_id}\x00{scope}".encode())
        return {
            "scope": scope,
            "master": mkid,
            "wrapped": base64.b64encode(nonce + sealed).decode("ascii"),
            "created_at": datetime.now(UTC).isoformat(),
        }

    def _unwrap(self, key_id: str, entry: Mapping[str, str]) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if entry["master"] not in self.master:  # every scope it wrapped is affected: configuration, not a payload
            msg = (
                f"data key {key_id!r} is wrapped by master key {entry['master']!r}, which is not in encryption_keys "
                "(configure it again, or keep it until rewrap() has run)"
            )
            raise ConfigurationError(msg, field="encryption_keys", key_id=key_id, master_key_id=entry["master"])
        mkey = self.master.decryption_key(entry["master"], None)
        try:
            blob = base64.b64decode(entry["wrapped"], validate=True)
            return AESGCM(mkey).decrypt(blob[:12], blob[12:], _DEK_AAD + f"{key_id}\x00{entry['scope']}".encode())
        except (InvalidTag, ValueError):  # ValueError: not base64, or too short to hold a nonce (damaged)
            msg = f"data key {key_id!r} failed to unwrap with master key {entry['master']!r}"
            raise DecryptionError(msg, key_id=key_id) from None

    def _new_key_id(self) -> str:
        while True:
            kid = "dk-" + secrets.token_hex(8)
            if kid not in self._entries and kid not in self._tombstones and kid not in self.master:
                return kid

    def _create(self, scope: str) -> str:
        kid = self._new_key_id()
        dek = secrets.token_bytes(KEY_SIZE)
        self._append({"key": kid, **self._wrap(kid, scope, dek)})
        self._plain[kid] = dek
        return kid

    def encryption_key(self, scope: str | None) -> tuple[str, bytes]:
        """The scope's active data key, created (and persisted) on first use; the master ring for ``None``."""
        if scope is None:
            return self.master.encryption_key(None)
        if self.path is not None:
            self._catch_up()
        kid = self._active.get(scope)
        if kid is not None and kid in self._plain:
            return kid, self._plain[kid]
        with self._locked_file():
            kid = self._active.get(scope)
            if kid is None:
                kid = self._create(scope)
            return kid, self._key(kid)

    def _key(self, kid: str) -> bytes:
        key = self._plain.get(kid)
        if key is None:
            key = self._unwrap(kid, self._entries[kid])
            self._plain[kid] = key
        return key

    def refresh(self) -> None:
        """Drop cached data keys and re-read the whole file (a shred by another process is seen at once)."""
        with self._lock:
            self._plain.clear()
            self._forget_file()
            self._offset = 0
            self._sync()

    def catch_up(self) -> None:
        """See a shred made by another process now (one ``fstat``): a call's start, before it sets ``held.on``."""
        if self.path is not None and not self.held.on:
            self._catch_up()

    def _catch_up(self) -> None:
        """See a shred made elsewhere at once, other changes within a second (new keys, rotations).

        A shred replaces the file, leaving the one held with no link: one ``fstat`` tells, so a payload is
        never sealed with a shredded key, nor opened with one (whose plaintext could then be sealed again
        under a fresh key: an upcast rewrite, a snapshot). A hard link to the old file elsewhere hides
        that; the once-a-second :meth:`_sync` compares the path's inode and catches it. Within a call that
        checked when it began (``held.on``), only that once-a-second check runs.
        """
        if self.held.on:
            replaced = False
        else:
            try:
                replaced = self._fd_no < 0 or os.fstat(self._fd_no).st_nlink == 0
            except OSError:
                replaced = True  # _sync says what is wrong
        now = time.monotonic()
        if replaced or now - self._checked >= 1.0:
            self._checked = now
            self._sync()

    def decryption_key(self, key_id: str, scope: str | None) -> bytes:
        """A data key by id (master keys serve the global scope); tombstoned ids raise :class:`KeyShreddedError`.

        A key (live or shredded) of another scope of the same kind as ``scope`` raises :class:`DecryptionError`.
        With a key file, a shred done by another process takes effect here at once (the file was replaced).
        """
        if self.path is not None:
            self._catch_up()
        key = self._plain.get(key_id)
        if key is not None:
            self._check_scope(key_id, scope)
            return key
        if key_id in self.master:
            return self.master.decryption_key(key_id, scope)
        with self._lock:
            if key_id not in self._entries and key_id not in self._tombstones:
                self._sync()  # another process may have created (or shredded) it
            if key_id in self._entries:
                self._check_scope(key_id, scope)
                return self._key(key_id)
            tomb = self._tombstones.get(key_id)
            self._check_scope(key_id, scope)
        if tomb is not None:
            shredded = tomb["scope"]
            msg = f"the key of scope {shredded!r} was shredded; this payload can no longer be decrypted"
            raise KeyShreddedError(msg, scope=shredded, key_id=key_id)
        msg = f"the payload was encrypted with key id {key_id!r}, which this key store does not hold"
        msg += f" (expected scope {scope!r})" if scope is not None else ""
        raise UnknownKeyError(msg, key_id=key_id, scope=scope)

    def _check_scope(self, key_id: str, scope: str | None) -> None:
        """Refuse a key of another tenant (stream) for a payload whose envelope names ``scope`` (if it names one).

        The associated data binds stream, event id and version, not the tenant: without this, an event relabelled
        to another tenant (``"tenant:"``: to none) in the store would read as theirs, and outlive its shred. Keys
        of another kind (``stream:`` for a ``tenant:`` scope) predate a change of the configured scope: readable.
        Shredded keys count too: an edited header must not make a live event read as shredded (hidden, skipped).
        """
        if scope is None:
            return
        entry = self._entries.get(key_id) or self._tombstones.get(key_id)
        owner = entry["scope"] if entry is not None else scope
        if owner != scope and owner.partition(":")[0] == scope.partition(":")[0]:
            whose = repr(scope) if scope[-1:] != ":" else f"no {scope[:-1]} (its envelope names none)"
            msg = f"the payload is sealed with a key of scope {owner!r}, but its event belongs to {whose}"
            raise DecryptionError(msg, key_id=key_id, scope=scope)

    def shred(self, scope: str) -> int:
        """Delete every data key of ``scope`` (persisted at once); its payloads become unreadable."""
        if not isinstance(scope, str) or not scope:
            msg = "shred needs a scope name"
            raise ConfigurationError(msg, field="scope")
        with self._locked_file():
            gone = [kid for kid, e in self._entries.items() if e["scope"] == scope]
            if gone:
                self._apply({"shred": scope, "keys": gone, "at": datetime.now(UTC).isoformat()})
                for kid in gone:
                    self._plain.pop(kid, None)
                self._compact()
            return len(gone)

    def rotate(self, scope: str | None = None) -> str:
        """A new active data key for ``scope`` (older ones stay readable); ``None`` is the master ring's job."""
        if scope is None:
            msg = "the global scope uses the master ring: add a key id to encryption_keys and set active_key_id"
            raise UnsupportedOperationError(msg, operation="rotate")
        with self._locked_file():
            return self._create(scope)

    def rewrap(self) -> int:
        """Re-wrap every data key under the master ring's active key (so old master keys can be retired)."""
        with self._locked_file():
            n = 0
            active = self.master.active_key_id
            records = []
            for kid, entry in list(self._entries.items()):
                if entry["master"] != active:
                    wrapped = self._wrap(kid, entry["scope"], self._key(kid))
                    records.append({"rewrap": kid, "master": wrapped["master"], "wrapped": wrapped["wrapped"]})
                    n += 1
            if records:
                for rec in records:
                    self._apply(rec)
                self._compact()  # the copies wrapped by the old master key leave the live file
            return n

    def scopes(self) -> list[str]:
        """Scopes that currently hold at least one key."""
        with self._lock:
            return sorted({e["scope"] for e in self._entries.values()})

    def shredded_scopes(self) -> list[str]:
        """Scopes with at least one shredded key."""
        with self._lock:
            return sorted({t["scope"] for t in self._tombstones.values()})

    def check(self) -> None:
        """Raise if the master ring is unusable or the key file cannot be read."""
        self.master.check()
        self._sync()

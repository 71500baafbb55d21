"""The configured keys: key ids, the :class:`KeyProvider` interface and :class:`StaticKeyRing`.

A :class:`KeyProvider` gives the AES-256-GCM cipher its keys by key id and by scope; :class:`StaticKeyRing` holds
the configured ones, every payload in the global scope. The scoped, shreddable store is
:class:`~eventsource.codecs.keys.ScopedKeyStore` (which re-exports everything here).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from eventsource.errors import ConfigurationError, UnknownKeyError, UnsupportedOperationError

if TYPE_CHECKING:
    from collections.abc import Mapping

KEY_SIZE = 32
"""AES-256 keys are 32 bytes."""
MAX_KEY_ID_BYTES = 255
"""Key ids are stored in each ciphertext header with a one-byte length."""


def decode_key(key_id: str, value: str | bytes) -> bytes:
    """A 32-byte key from raw bytes or base64 text; the error names ``key_id``, never the value."""
    if isinstance(value, bytes) and len(value) == KEY_SIZE:
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        msg = f"encryption key {key_id!r} is not valid base64"
        raise ConfigurationError(msg, field="encryption_keys", key_id=key_id) from None
    if len(raw) != KEY_SIZE:
        msg = f"encryption key {key_id!r} is {len(raw)} bytes; AES-256 needs {KEY_SIZE}"
        raise ConfigurationError(msg, field="encryption_keys", key_id=key_id)
    return raw


def check_key_id(key_id: object) -> str:
    """Validate a key id (non-empty text, at most 255 UTF-8 bytes; a lone surrogate has no UTF-8 form)."""
    utf8 = key_id.encode("utf-8", "replace") if isinstance(key_id, str) else b""
    if not isinstance(key_id, str) or not 0 < len(utf8) <= MAX_KEY_ID_BYTES or utf8.decode("utf-8") != key_id:
        msg = f"a key id must be non-empty text of at most {MAX_KEY_ID_BYTES} UTF-8 bytes, got {key_id!r}"
        raise ConfigurationError(msg, field="active_key_id")
    return key_id


def generate_key() -> str:
    """A fresh random AES-256 key as base64 text (for ``encryption_keys``)."""
    return base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode("ascii")


class KeyProvider(ABC):
    """Source of encryption keys. Implementations must never expose key bytes in ``repr`` or errors."""

    @abstractmethod
    def encryption_key(self, scope: str | None) -> tuple[str, bytes]:
        """The active ``(key id, key)`` for new payloads of ``scope`` (created on first use if needed)."""

    @abstractmethod
    def decryption_key(self, key_id: str, scope: str | None) -> bytes:
        """The key with ``key_id``.

        :param scope: the scope the event's envelope gives; a provider that knows its keys' scopes should
            refuse a key of another tenant (:class:`DecryptionError`), as :class:`ScopedKeyStore` does.
        :raises KeyShreddedError: the key's scope was shredded.
        :raises UnknownKeyError: no such key id.
        """

    def shred(self, scope: str) -> int:
        """Remove every key of ``scope``; returns how many keys were removed."""
        msg = f"{type(self).__name__} has no per-scope keys, so it cannot shred scope {scope!r}"
        raise UnsupportedOperationError(msg, operation="shred", scope=scope)

    def rotate(self, scope: str | None = None) -> str:
        """Make a new key active for ``scope``; returns its id. Older keys stay readable."""
        msg = f"{type(self).__name__} cannot generate keys; add a key id to the ring instead"
        raise UnsupportedOperationError(msg, operation="rotate", scope=scope)

    def check(self) -> None:
        """Raise if the provider cannot serve keys (used by health checks)."""
        self.encryption_key(None)


class StaticKeyRing(KeyProvider):
    """Keys by id with one active id; every payload is in the global scope.

    :param keys: key id -> 32-byte key (bytes, or base64 text).
    :param active_key_id: the id new payloads use; optional when the ring holds exactly one key.
    """

    def __init__(self, keys: Mapping[str, bytes | str], active_key_id: str | None = None) -> None:
        if not keys:
            msg = "encryption needs at least one key (encryption_keys = {key_id: base64 key})"
            raise ConfigurationError(msg, field="encryption_keys")
        self._keys: dict[str, bytes] = {check_key_id(k): decode_key(k, v) for k, v in keys.items()}
        if active_key_id is None:
            if len(self._keys) != 1:
                msg = "active_key_id must name the key new events use when the ring holds several keys"
                raise ConfigurationError(msg, field="active_key_id")
            active_key_id = next(iter(self._keys))
        if active_key_id not in self._keys:
            msg = f"active_key_id {active_key_id!r} is not one of encryption_keys ({sorted(self._keys)})"
            raise ConfigurationError(msg, field="active_key_id")
        self.active_key_id = active_key_id

    def __repr__(self) -> str:
        return f"StaticKeyRing(key_ids={sorted(self._keys)!r}, active_key_id={self.active_key_id!r})"

    @property
    def key_ids(self) -> list[str]:
        """Ids of the keys held (sorted)."""
        return sorted(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def encryption_key(self, scope: str | None) -> tuple[str, bytes]:  # noqa: ARG002 - one global scope
        """The active key."""
        return self.active_key_id, self._keys[self.active_key_id]

    def decryption_key(self, key_id: str, scope: str | None) -> bytes:  # noqa: ARG002
        """The key with ``key_id``, or :class:`UnknownKeyError`."""
        try:
            return self._keys[key_id]
        except KeyError:
            msg = f"the payload was encrypted with key id {key_id!r}, which is not in the key ring"
            raise UnknownKeyError(msg, key_id=key_id) from None

    def add_key(self, key_id: str, key: bytes | str, *, activate: bool = True) -> None:
        """Add a key (rotation: ``activate=True`` makes new payloads use it)."""
        check_key_id(key_id)
        if key_id in self._keys:
            msg = f"key id {key_id!r} is already in the ring; a key id must never change its key"
            raise ConfigurationError(msg, field="encryption_keys", key_id=key_id)
        self._keys[key_id] = decode_key(key_id, key)
        if activate:
            self.active_key_id = key_id

    def remove_key(self, key_id: str) -> None:
        """Drop a key: payloads sealed with it become unreadable (:class:`UnknownKeyError`)."""
        if key_id == self.active_key_id:
            msg = f"key id {key_id!r} is the active key; activate another one first"
            raise ConfigurationError(msg, field="active_key_id", key_id=key_id)
        self._keys.pop(key_id, None)

"""AES-256-GCM cipher (``cryptography``) with key ids in the header, for rotation and crypto-shredding.

A payload is ``0x01 | len(key id) | key id | nonce(12) | ciphertext || tag(16)``: a fresh random nonce
per payload, and the header plus the caller's ``aad`` as associated data, so any changed byte, swapped
key id or moved ciphertext fails with :class:`~eventsource.errors.DecryptionError`. The layout is drawn
in ``docs/internals/encryption.md``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventsource.codecs import Cipher
from eventsource.errors import DecryptionError, EventSourceError, KeyProviderError, KeysNotConfiguredError

if TYPE_CHECKING:
    from eventsource.codecs.keys import KeyProvider

FORMAT = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_CACHE_LIMIT = 4096


class AesGcmCipher(Cipher):
    """AES-256-GCM. The registered instance has no keys; :meth:`bind` returns one that does.

    :param keys: the key provider (``None`` for the unkeyed registry entry).
    """

    name = "aes256gcm"

    def __init__(self, keys: KeyProvider | None = None) -> None:
        self.keys = keys
        self._aeads: dict[str, tuple[bytes, AESGCM]] = {}

    def __repr__(self) -> str:
        return f"AesGcmCipher(keys={self.keys!r})"

    def bind(self, keys: KeyProvider) -> AesGcmCipher:
        """A cipher using ``keys``."""
        return AesGcmCipher(keys)

    def forget(self) -> None:
        """Drop cached key schedules (after a shred, no key material lingers here)."""
        self._aeads.clear()

    def _provider(self) -> KeyProvider:
        if self.keys is None:
            msg = (
                f"the {self.name} cipher has no key provider: "
                "set encryption_keys (or a key provider) to read or write encrypted payloads"
            )
            raise KeysNotConfiguredError(msg, codec=self.name)
        return self.keys

    def _failed(self, provider: KeyProvider, why: str, key_id: object) -> KeyProviderError:
        msg = f"key provider {type(provider).__name__} {why}"
        return KeyProviderError(msg, codec=self.name, key_provider=type(provider).__name__, key_id=key_id)

    def _encryption_key(self, provider: KeyProvider, scope: str | None) -> tuple[str, bytes]:
        """The provider's active key for ``scope``; whatever goes wrong is a :class:`KeyProviderError`."""
        try:
            key_id, key = provider.encryption_key(scope)
        except EventSourceError:
            raise
        except Exception as e:
            raise self._failed(provider, f"failed to give a key: {type(e).__name__}", None) from e
        try:
            size = len(key_id.encode("utf-8")) if isinstance(key_id, str) else 0
        except UnicodeEncodeError:  # a lone surrogate
            size = 0
        if not 0 < size <= 255:  # noqa: PLR2004 - the header holds its length in one byte
            raise self._failed(provider, "gave a key id that is not 1 to 255 bytes of UTF-8 text", None)
        return key_id, self._checked(provider, key_id, key)

    def _decryption_key(self, provider: KeyProvider, key_id: str, scope: str | None) -> bytes:
        try:
            key = provider.decryption_key(key_id, scope)
        except EventSourceError:
            raise
        except Exception as e:
            raise self._failed(provider, f"failed to give key {key_id!r}: {type(e).__name__}", key_id) from e
        return self._checked(provider, key_id, key)

    def _checked(self, provider: KeyProvider, key_id: str, key: object) -> bytes:
        """``key`` if it is 32 bytes (AES-256; ``cryptography`` would take 16 or 24 as AES-128/192)."""
        if type(key) is not bytes:
            if not isinstance(key, (bytearray, memoryview)):
                raise self._failed(provider, f"gave a {type(key).__name__} for key {key_id!r}, not bytes", key_id)
            key = bytes(key)
        if len(key) != KEY_SIZE:
            why = f"gave a {len(key)}-byte key for key id {key_id!r}; AES-256 needs {KEY_SIZE}"
            raise self._failed(provider, why, key_id)
        return key

    def _aead(self, key_id: str, key: bytes) -> AESGCM:
        cached = self._aeads.get(key_id)
        if cached is not None and cached[0] is key:
            return cached[1]
        aead = AESGCM(key)
        if len(self._aeads) >= _CACHE_LIMIT:
            self._aeads.clear()
        self._aeads[key_id] = (key, aead)
        return aead

    def encrypt(self, plain: bytes, *, aad: bytes, scope: str | None) -> bytes:
        """Seal ``plain`` under the scope's active key with a fresh nonce."""
        key_id, key = self._encryption_key(self._provider(), scope)
        kid = key_id.encode("utf-8")
        header = bytes((FORMAT, len(kid))) + kid
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead(key_id, key).encrypt(nonce, plain, header + aad)
        del plain  # a caller that handed over its only reference (the pipeline does) frees it before the copy below
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, aad: bytes, scope: str | None) -> bytes:
        """Open a payload sealed by :meth:`encrypt`; any mismatch raises :class:`DecryptionError`."""
        provider = self._provider()
        if len(blob) < 2 or blob[0] != FORMAT:  # noqa: PLR2004
            msg = "encrypted payload has an unknown header (corrupt or tampered with)"
            raise DecryptionError(msg, codec=self.name)
        end = 2 + blob[1]
        if len(blob) < end + NONCE_SIZE + TAG_SIZE:
            msg = "encrypted payload is truncated (corrupt or tampered with)"
            raise DecryptionError(msg, codec=self.name)
        try:
            key_id = blob[2:end].decode("utf-8")
        except UnicodeDecodeError:
            msg = "encrypted payload has a corrupt key id (tampered with)"
            raise DecryptionError(msg, codec=self.name) from None
        key = self._decryption_key(provider, key_id, scope)
        nonce = blob[end : end + NONCE_SIZE]
        sealed = memoryview(blob)[end + NONCE_SIZE :]  # the ciphertext in place: a slice would copy the payload
        try:
            return self._aead(key_id, key).decrypt(nonce, sealed, blob[:end] + aad)
        except InvalidTag:
            msg = (
                f"encrypted payload failed authentication under key id {key_id!r}: it was tampered with, "
                "moved from another event, or sealed with a different key"
            )
            raise DecryptionError(msg, codec=self.name, key_id=key_id) from None

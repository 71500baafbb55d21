"""The codec pipeline: serialize -> compress -> encrypt on write, reversed on read.

Every stored payload carries an *encoding descriptor*, the ``+``-joined names of the steps applied
(``"json"``, ``"json+zlib"``, ``"json+brotli+aes256gcm"``). Reads decode by the descriptor, not by the
current configuration, so events written under any past configuration stay readable as long as the
named codecs are registered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from eventsource.errors import CodecError

if TYPE_CHECKING:
    from eventsource.registry import CodecRegistry


class Serializer(ABC):
    """Turns user data into bytes and back."""

    name: str = ""

    @abstractmethod
    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`~eventsource.errors.ValidationError` if it cannot be."""

    @abstractmethod
    def loads(self, raw: bytes) -> Any:
        """Decode bytes written by :meth:`dumps`."""


class Compressor(ABC):
    """A lossless byte compressor."""

    name: str = ""

    @abstractmethod
    def compress(self, raw: bytes) -> bytes:
        """Compress ``raw``."""

    @abstractmethod
    def decompress(self, raw: bytes) -> bytes:
        """Invert :meth:`compress`."""


class Cipher(ABC):
    """Authenticated encryption. ``aad`` binds the ciphertext to its event; ``scope`` selects the key."""

    name: str = ""

    @abstractmethod
    def encrypt(self, plain: bytes, *, aad: bytes, scope: str | None) -> bytes:
        """Encrypt ``plain``."""

    @abstractmethod
    def decrypt(self, blob: bytes, *, aad: bytes, scope: str | None) -> bytes:
        """Decrypt and authenticate; raise :class:`~eventsource.errors.DecryptionError` on any mismatch."""


class CodecPipeline:
    """One configured pipeline, built once at start-up; no hook is called per payload."""

    def __init__(
        self,
        registry: CodecRegistry,
        *,
        serializer: str = "json",
        compressor: str | None = None,
        compression_threshold: int = 1024,
        cipher: Cipher | None = None,
    ) -> None:
        self.registry = registry
        self.serializer = registry.serializers.get(serializer)
        self.compressor = registry.compressors.get(compressor) if compressor else None
        self.threshold = compression_threshold
        self.cipher = cipher
        self._plain = self.serializer.name
        self._compressed = f"{self._plain}+{self.compressor.name}" if self.compressor else self._plain

    def encode(self, value: Any, *, aad: bytes = b"", scope: str | None = None) -> tuple[bytes, str]:
        """``value`` as stored bytes plus the descriptor saying how to read them back."""
        raw = self.serializer.dumps(value)
        descriptor = self._plain
        if self.compressor is not None and len(raw) >= self.threshold:
            raw = self.compressor.compress(raw)
            descriptor = self._compressed
        if self.cipher is not None:
            raw = self.cipher.encrypt(raw, aad=aad, scope=scope)
            descriptor = f"{descriptor}+{self.cipher.name}"
        return raw, descriptor

    def encode_as(self, value: Any, descriptor: str, *, aad: bytes = b"", scope: str | None = None) -> bytes:
        """Encode ``value`` with exactly the steps of ``descriptor`` (metadata follows its event's data)."""
        raw = self.serializer.dumps(value)
        if self.compressor is not None and descriptor.startswith(self._compressed):
            raw = self.compressor.compress(raw)
        if self.cipher is not None:
            raw = self.cipher.encrypt(raw, aad=aad, scope=scope)
        return raw

    def decode(self, raw: bytes, descriptor: str, *, aad: bytes = b"", scope: str | None = None) -> Any:
        """Invert :meth:`encode` for a payload written under any past configuration."""
        if descriptor == self._plain:
            return self.serializer.loads(raw)
        steps = descriptor.split("+")
        ser_name, rest = steps[0], steps[1:]
        for step in reversed(rest):
            if step in self.registry.ciphers:
                cipher = self.cipher if self.cipher is not None and self.cipher.name == step else None
                if cipher is None:
                    cipher = self.registry.ciphers.get(step)
                raw = cipher.decrypt(raw, aad=aad, scope=scope)
            elif step in self.registry.compressors:
                try:
                    raw = self.registry.compressors.get(step).decompress(raw)
                except Exception as e:
                    msg = f"payload cannot be decompressed with {step!r}: {type(e).__name__}"
                    raise CodecError(msg, codec=step) from e
            else:
                msg = f"payload was written with codec {step!r}, which is not registered here"
                raise CodecError(msg, codec=step, descriptor=descriptor)
        if ser_name not in self.registry.serializers:
            msg = f"payload was written with serializer {ser_name!r}, which is not registered here"
            raise CodecError(msg, codec=ser_name, descriptor=descriptor)
        return self.registry.serializers.get(ser_name).loads(raw)

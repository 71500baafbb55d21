"""The codec pipeline: serialize -> compress -> encrypt on write, reversed on read.

Every stored payload carries an *encoding descriptor*, the ``+``-joined names of the steps applied
(``"json"``, ``"json+zlib"``, ``"json+brotli+aes256gcm"``). Reads decode by the descriptor, not by the
current configuration, so events written under any past configuration stay readable as long as the
named codecs are registered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    CodecError,
    EventSourceError,
    KeyProviderError,
    KeysNotConfiguredError,
    PayloadTooLargeError,
)

if TYPE_CHECKING:
    from eventsource.codecs.keys import KeyProvider
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

    def decompress_bounded(self, raw: bytes, limit: int) -> bytes:
        """:meth:`decompress`, refusing (:class:`CodecError`) output over ``limit`` bytes.

        Override it to stop *while* decompressing (the built-ins do): this default decompresses first,
        so a stored bomb still allocates its whole output once.
        """
        out = self.decompress(raw)
        if len(out) > limit:
            raise too_large(self.name, limit)
        return out


def too_large(codec: str, limit: int) -> PayloadTooLargeError:
    """The error for a payload that decompresses to more than ``limit`` bytes (corrupt, or a hostile store's bomb)."""
    msg = (
        f"payload decompresses ({codec}) to more than {limit} bytes, more than this configuration writes (the larger "
        "of max_event_size and max_snapshot_size): raise those to read it"
    )
    return PayloadTooLargeError(msg, codec=codec, limit=limit)


class Cipher(ABC):
    """Authenticated encryption. ``aad`` binds the ciphertext to its event; ``scope`` selects the key.

    The registered instance has no keys: the manager calls :meth:`bind` once, at start-up, for a copy
    that takes its keys from the configured key provider, and :meth:`forget` after a scope is shredded.
    """

    name: str = ""

    def bind(self, keys: KeyProvider) -> Cipher | None:  # noqa: ARG002 - the keyless default ignores it
        """A copy of this cipher that uses ``keys``; ``None`` (the default) if this cipher takes no keys."""
        return None

    def forget(self) -> None:  # noqa: B027 - optional hook, a no-op unless the cipher caches key material
        """Drop any cached key material (called after a scope's keys are shredded)."""

    @abstractmethod
    def encrypt(self, plain: bytes, *, aad: bytes, scope: str | None) -> bytes:
        """Encrypt ``plain``."""

    @abstractmethod
    def decrypt(self, blob: bytes, *, aad: bytes, scope: str | None) -> bytes:
        """Decrypt and authenticate; raise :class:`~eventsource.errors.DecryptionError` on any mismatch.

        Anything else raised (not an :class:`~eventsource.errors.EventSourceError`: a key service timing
        out) reaches readers as :class:`~eventsource.errors.KeyProviderError`, which no subscription skips.
        """


class CodecPipeline:
    """One configured pipeline, built once at start-up; no hook is called per payload.

    :param registry: the codec registry (decoding looks up every step a descriptor names).
    :param serializer: name of the serializer for new payloads.
    :param compressor: name of the compressor for new payloads (``None``: never compress).
    :param compression_threshold: payloads of at least this many serialized bytes are compressed (and
        kept compressed only when that makes them smaller).
    :param cipher: the keyed cipher for new payloads (``None``: write plaintext).
    :param ciphers: keyed ciphers for *reading*, by name (the write cipher is added). A payload naming a
        cipher that is registered but has no keys here fails with :class:`CodecError`.
    :param max_decoded_size: the most bytes a payload may decompress to on reads (``None``: no bound); a
        stored payload that would decompress to more fails with :class:`CodecError` before it is allocated.

    The cipher's associated data is ``descriptor-without-cipher + NUL + aad``: changing the stored
    descriptor (say, dropping ``+zlib``) fails authentication instead of feeding garbage to a decoder.
    """

    def __init__(
        self,
        registry: CodecRegistry,
        *,
        serializer: str = "json",
        compressor: str | None = None,
        compression_threshold: int = 1024,
        cipher: Cipher | None = None,
        ciphers: dict[str, Cipher] | None = None,
        max_decoded_size: int | None = None,
    ) -> None:
        self.registry = registry
        self.max_decoded_size = max_decoded_size
        self.serializer = registry.serializers.get(serializer)
        self.compressor = registry.compressors.get(compressor) if compressor else None
        self.threshold = compression_threshold
        self.cipher = cipher
        self.ciphers: dict[str, Cipher] = dict(ciphers or {})
        if cipher is not None:
            self.ciphers[cipher.name] = cipher
        self._plain = self.serializer.name
        self._compressed = f"{self._plain}+{self.compressor.name}" if self.compressor else self._plain
        self._plain_aad = self._plain.encode() + b"\x00"
        self._compressed_aad = self._compressed.encode() + b"\x00"
        self._steps: dict[str, tuple[Serializer, tuple[tuple[str, Any], ...], bytes]] = {}

    @property
    def descriptors(self) -> tuple[str, ...]:
        """The descriptors new payloads get (uncompressed, compressed)."""
        suffix = f"+{self.cipher.name}" if self.cipher is not None else ""
        return (self._plain + suffix, self._compressed + suffix)

    def encode(self, value: Any, *, aad: bytes = b"", scope: str | None = None) -> tuple[bytes, str]:
        """``value`` as stored bytes plus the descriptor saying how to read them back."""
        raw, descriptor, _ = self.encode_sized(value, aad=aad, scope=scope)
        return raw, descriptor

    def encode_sized(self, value: Any, *, aad: bytes = b"", scope: str | None = None) -> tuple[bytes, str, int]:
        """Like :meth:`encode`, plus the serialized size (before compression and encryption)."""
        held = [self.serializer.dumps(value)]
        size = len(held[0])
        packed, descriptor = self.pack(held.pop(), aad=aad, scope=scope)  # handed over: see pack
        return packed, descriptor, size

    def pack(self, raw: bytes, *, aad: bytes = b"", scope: str | None = None) -> tuple[bytes, str]:
        """Serialized bytes compressed (as :meth:`encode` would) and sealed; the stored bytes and descriptor.

        A caller that hands ``raw`` over as its only reference (``pack(held.pop())``) has it freed as soon as
        it is compressed, and the plaintext handed to the cipher the same way: one large payload is then never
        alive in more than two or three whole copies at once.
        """
        descriptor = self._plain
        if self.compressor is not None and len(raw) >= self.threshold:
            packed = self.compressor.compress(raw)
            if len(packed) < len(raw):
                raw = packed
                descriptor = self._compressed
            del packed
        if self.cipher is not None:
            prefix = self._compressed_aad if descriptor is self._compressed else self._plain_aad
            held = [raw]
            del raw
            return self.cipher.encrypt(held.pop(), aad=prefix + aad, scope=scope), f"{descriptor}+{self.cipher.name}"
        return raw, descriptor

    def pack_as(self, raw: bytes, descriptor: str, *, aad: bytes = b"", scope: str | None = None) -> bytes:
        """Serialized bytes through exactly the steps of ``descriptor`` after its serializer."""
        _, steps, aad_prefix = self._parse(descriptor)
        for kind, codec in reversed(steps):
            raw = codec.compress(raw) if kind == "z" else codec.encrypt(raw, aad=aad_prefix + aad, scope=scope)
        return raw

    def encode_as(self, value: Any, descriptor: str, *, aad: bytes = b"", scope: str | None = None) -> bytes:
        """Encode ``value`` with exactly the steps of ``descriptor`` (metadata follows its event's data)."""
        return self.encode_as_sized(value, descriptor, aad=aad, scope=scope)[0]

    def encode_as_sized(
        self, value: Any, descriptor: str, *, aad: bytes = b"", scope: str | None = None
    ) -> tuple[bytes, int]:
        """Like :meth:`encode_as`, plus the serialized size (before compression and encryption)."""
        raw = self._parse(descriptor)[0].dumps(value)
        return self.pack_as(raw, descriptor, aad=aad, scope=scope), len(raw)

    def _parse(self, descriptor: str) -> tuple[Serializer, tuple[tuple[str, Any], ...], bytes]:
        """Serializer, decode steps (outermost first) and cipher AAD prefix for ``descriptor`` (cached)."""
        hit = self._steps.get(descriptor)
        if hit is not None:
            return hit
        names = descriptor.split("+")
        if names[0] not in self.registry.serializers:
            msg = f"payload was written with serializer {names[0]!r}, which is not registered here"
            raise CodecError(msg, codec=names[0], descriptor=descriptor)
        steps: list[tuple[str, Any]] = []
        plain_names: list[str] = [names[0]]
        for name in names[1:]:
            if name in self.registry.compressors:
                if steps and steps[-1][0] == "c":
                    msg = f"encoding descriptor {descriptor!r} compresses after encrypting"
                    raise CodecError(msg, descriptor=descriptor)
                if len(plain_names) > 1:  # never written so: each step would cost a bounded decompression
                    msg = f"encoding descriptor {descriptor!r} has more than one compression step"
                    raise CodecError(msg, descriptor=descriptor)
                steps.append(("z", self.registry.compressors.get(name)))
                plain_names.append(name)
            elif name in self.ciphers:
                steps.append(("c", self.ciphers[name]))
            elif name in self.registry.ciphers:
                msg = f"payload is encrypted with {name!r}, but no keys are configured for it here"
                raise KeysNotConfiguredError(msg, codec=name, descriptor=descriptor)
            else:
                msg = f"payload was written with codec {name!r}, which is not registered here"
                raise CodecError(msg, codec=name, descriptor=descriptor)
        parsed = (
            self.registry.serializers.get(names[0]),
            tuple(reversed(steps)),
            "+".join(plain_names).encode() + b"\x00",
        )
        if len(self._steps) < 1024:  # noqa: PLR2004 - descriptors are few; never let junk grow the cache
            self._steps[descriptor] = parsed
        return parsed

    def decode(self, raw: bytes, descriptor: str, *, aad: bytes = b"", scope: str | None = None) -> Any:
        """Invert :meth:`encode` for a payload written under any past configuration."""
        if descriptor == self._plain:
            return self.serializer.loads(raw)
        serializer, steps, aad_prefix = self._parse(descriptor)
        # the decoded bytes are handed to loads as its only reference (no local here holds them): the built-in
        # serializer drops them once it has their text, so bytes, text and value are never all alive at once
        return serializer.loads(self._unpack(raw, steps, aad_prefix + aad, scope))

    def _unpack(self, raw: bytes, steps: tuple[tuple[str, Any], ...], aad: bytes, scope: str | None) -> bytes:
        """Stored bytes through the decode ``steps`` of their descriptor (decrypt, bounded decompression)."""
        limit = self.max_decoded_size
        if type(raw) is not bytes and not isinstance(raw, (bytearray, memoryview)):  # a store another tool wrote to
            msg = f"stored payload is a {type(raw).__name__}, not bytes (malformed)"
            raise CodecError(msg)  # before a cipher sees it: what a cipher raises reads as its key service failing
        for kind, codec in steps:
            if kind == "c":
                try:
                    raw = codec.decrypt(raw, aad=aad, scope=scope)
                except EventSourceError:
                    raise
                except Exception as e:  # a plugin's key service timing out: never "undecodable" (never skipped)
                    msg = f"cipher {codec.name!r} failed: {type(e).__name__}"
                    raise KeyProviderError(msg, codec=codec.name) from e
            else:
                try:
                    raw = codec.decompress(raw) if limit is None else codec.decompress_bounded(raw, limit)
                except CodecError:
                    raise
                except Exception as e:
                    msg = f"payload cannot be decompressed with {codec.name!r}: {type(e).__name__}"
                    raise CodecError(msg, codec=codec.name) from e
            if type(raw) is not bytes:  # a plugin's bug: named here, not an AttributeError in the next step
                if not isinstance(raw, (bytearray, memoryview)):
                    msg = f"codec {codec.name!r} gave a {type(raw).__name__} instead of bytes"
                    raise CodecError(msg, codec=codec.name)
                raw = bytes(raw)
        return raw

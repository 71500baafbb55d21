"""The built-in plugin: registered by :class:`~eventsource.plugins.PluginHost` like any external one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.hookspecs import hookimpl

if TYPE_CHECKING:
    from eventsource.registry import CodecRegistry, ProviderRegistry


@hookimpl
def eventsource_register_providers(registry: ProviderRegistry) -> None:
    """Register the in-memory provider and the embedded SQLite default."""
    from eventsource.memory import MemoryProvider  # noqa: PLC0415

    registry.add(MemoryProvider, schemes=("memory",))


@hookimpl
def eventsource_register_codecs(registry: CodecRegistry) -> None:
    """Register the JSON serializer and the zlib and brotli compressors."""
    from eventsource.codecs.builtin import BrotliCompressor, JsonSerializer, ZlibCompressor  # noqa: PLC0415

    registry.add_serializer(JsonSerializer())
    registry.add_compressor(ZlibCompressor())
    registry.add_compressor(BrotliCompressor())

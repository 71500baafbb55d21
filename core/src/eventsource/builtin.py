"""The built-in plugin: registered by :class:`~eventsource.plugins.PluginHost` like any external one.

Its hooks run first (``tryfirst``), whatever order plugins were registered in: the core's names are taken before
any plugin's, so a plugin claiming one is the one refused and named, never the built-in plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.hookspecs import hookimpl

if TYPE_CHECKING:
    from eventsource.registry import (
        CheckpointRegistry,
        CodecRegistry,
        LeaseRegistry,
        ProviderRegistry,
        RetentionRegistry,
    )


@hookimpl(tryfirst=True)
def eventsource_register_providers(registry: ProviderRegistry) -> None:
    """Register the in-memory provider and the embedded SQLite default."""
    from eventsource.memory import MemoryProvider

    registry.add(MemoryProvider, schemes=("memory",))
    from eventsource.sqlite import SqliteProvider

    registry.add(SqliteProvider, schemes=("sqlite",))


@hookimpl(tryfirst=True)
def eventsource_register_codecs(registry: CodecRegistry) -> None:
    """Register the JSON serializer, the zlib and brotli compressors and the AES-256-GCM cipher."""
    from eventsource.codecs.aesgcm import AesGcmCipher
    from eventsource.codecs.builtin import BrotliCompressor, JsonSerializer, ZlibCompressor

    registry.add_serializer(JsonSerializer())
    registry.add_compressor(ZlibCompressor())
    registry.add_compressor(BrotliCompressor())
    registry.add_cipher(AesGcmCipher())


@hookimpl(tryfirst=True)
def eventsource_register_retention_policies(registry: RetentionRegistry) -> None:
    """Register the max_age, max_count and before_snapshot retention policies."""
    from eventsource.retention import BUILTIN_POLICIES

    for policy in BUILTIN_POLICIES:
        registry.add(policy)


@hookimpl(tryfirst=True)
def eventsource_register_checkpoint_stores(registry: CheckpointRegistry) -> None:
    """Register the in-memory and SQLite checkpoint stores."""
    from eventsource.checkpoints import MemoryCheckpointStore, SqliteCheckpointStore

    registry.add(MemoryCheckpointStore, schemes=("memory",))
    registry.add(SqliteCheckpointStore, schemes=("sqlite",))


@hookimpl(tryfirst=True)
def eventsource_register_leases(registry: LeaseRegistry) -> None:
    """Register the SQLite file lease (an OS file lock next to the database file)."""
    from eventsource.sqlite.lease import SqliteFileLease

    registry.add(SqliteFileLease, schemes=("sqlite",))

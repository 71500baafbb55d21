"""The per-stream caches (last known version, latest snapshot version): keys and a bound on their size."""

from __future__ import annotations

from typing import Any

STREAM_CACHE_SIZE = 65_536
"""Streams whose version / latest snapshot version the manager remembers (oldest evicted first)."""


def stream_key(provider: str, stream_id: str) -> str:
    """The cache key of a stream on a provider."""
    return f"{provider}\x00{stream_id}"


def bounded_put(cache: dict[str, Any], key: str, value: Any) -> None:
    """Set ``cache[key]``, evicting the oldest entry when the cache is full."""
    if key not in cache and len(cache) >= STREAM_CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[key] = value

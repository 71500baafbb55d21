"""Distributed per-stream leases.

A store without a conditional append (Kafka) keeps its expected-version check correct within one
process only. With a lease configured, the check-then-write of an append runs while holding an
exclusive lease on the stream id in a shared system (PostgreSQL advisory locks, a NATS KV entry...),
so writers in several processes stay safe. Lease types are plugins, registered through the
``eventsource_register_leases`` hook and selected by URL scheme.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager


class Lease(ABC):
    """An exclusive lock per key, shared by every process that uses the same URL.

    :param url: where the lease lives (``postgresql://...``, ``nats://...``).
    """

    kind: ClassVar[str] = ""

    def __init__(self, url: str, **settings: Any) -> None:
        self.url = url
        self.settings = settings

    @property
    def capacity(self) -> int | None:
        """How many keys one instance can hold at once (``None``: no limit).

        A :class:`~eventsource.projections.ProjectionRunner` holds one per projection for as long as it runs
        it, so it takes no more projections than this.
        """
        return None

    @abstractmethod
    async def connect(self) -> None:
        """Open connections. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Release every held lease and connection. Idempotent."""

    @abstractmethod
    def hold(self, key: str, *, timeout: float) -> AbstractAsyncContextManager[None]:
        """Hold the lease on ``key`` for the ``async with`` block.

        Raises :class:`~eventsource.errors.ProviderTimeoutError` when it cannot be acquired within
        ``timeout`` seconds. If the lease is lost while held (connection dropped), leaving the block
        raises :class:`~eventsource.errors.ProviderUnavailableError` so the caller cannot believe a
        write was protected when it was not.
        """

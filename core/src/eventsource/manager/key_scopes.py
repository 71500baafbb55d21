"""The key methods of :class:`~eventsource.EventSourcingManager`: key scopes, rotation and crypto-shredding.

A role class the manager inherits (its event codec holds the keys); the guide is ``docs/api/manager.rst``
(Keys: rotation and crypto-shredding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventsource.config import ManagerConfig
    from eventsource.manager.codec import EventCodec


class KeyScopes:
    """Key scopes, rotation and crypto-shredding, through the manager's event codec."""

    config: ManagerConfig
    _codec: EventCodec

    def key_scope(self, *, stream_id: str | None = None, tenant_id: str | None = None) -> str | None:
        """The key scope of an event: ``None`` (global scope; no tenant), ``"tenant:<id>"`` or ``"stream:<id>"``."""
        return self._codec.key_scope(stream_id=stream_id, tenant_id=tenant_id)

    async def shred(
        self, *, tenant_id: str | None = None, stream_id: str | None = None, scope: str | None = None
    ) -> int:
        """Crypto-shred one scope: delete its keys, so its events and snapshots can never be read again.

        By ``tenant_id`` or ``stream_id`` (per ``encryption_scope``) or ``scope`` (``"tenant:<id>"``/``"stream:<id>"``).
        Its payloads then raise :class:`KeyShreddedError`; its new events get a fresh key. Returns the keys removed.
        """
        return await self._codec.shred(tenant_id, stream_id, scope, self.config.max_stream_id_length)

    def rotate_key(
        self, *, tenant_id: str | None = None, stream_id: str | None = None, scope: str | None = None
    ) -> str:
        """Give a scope a new active key (old payloads stay readable); returns the new key id.

        The global key ring rotates by configuration instead: add a key id and set ``active_key_id``.
        """
        return self._codec.rotate_key(tenant_id, stream_id, scope, self.config.max_stream_id_length)

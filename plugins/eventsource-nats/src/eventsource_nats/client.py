"""The nats-py client of the checkpoint store and the lease: the provider's reconnect settings, and a bounded close.

nats-py's defaults retry a lost server 60 times two seconds apart and then close the client for good; a
checkpoint store or lease that kept such a client failed every call from then on, until the process was
restarted. :func:`open_client` connects with the provider's settings (``max_reconnect_attempts`` a quarter of a
second apart, ``connect_timeout``), and its callers replace a client that gave up on their next call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from eventsource.errors import ConfigurationError, ProviderUnavailableError

if TYPE_CHECKING:
    from eventsource_nats.settings import ServerUrl

RECONNECT_TIME_WAIT = 0.25
"""Seconds between reconnect attempts (the provider's own)."""


def client_settings(settings: dict[str, Any]) -> tuple[float, int]:
    """``connect_timeout`` and ``max_reconnect_attempts`` popped from ``settings`` (defaults 5 s and 60), checked."""
    timeout = settings.pop("connect_timeout", 5.0)
    attempts = settings.pop("max_reconnect_attempts", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        msg = "connect_timeout must be a positive number of seconds"
        raise ConfigurationError(msg, field="connect_timeout")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        msg = "max_reconnect_attempts must be a whole number, at least 1"
        raise ConfigurationError(msg, field="max_reconnect_attempts")
    return float(timeout), attempts


async def open_client(server: ServerUrl, what: str, *, connect_timeout: float, max_reconnect_attempts: int) -> Any:
    """A connected nats-py client; :class:`ProviderUnavailableError` when no server answers in time."""
    from nats.aio.client import Client

    budget = connect_timeout * 2 * len(server.servers) + 1
    nc: Any = Client()  # (Any: nats-py types its timeouts as int; fractions of a second work)
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=list(server.servers),
                user=server.user,
                password=server.password,
                connect_timeout=connect_timeout,
                max_reconnect_attempts=max_reconnect_attempts,
                reconnect_time_wait=RECONNECT_TIME_WAIT,
            ),
            timeout=budget,
        )
    except Exception as e:
        with contextlib.suppress(Exception):
            await nc.close()
        msg = f"cannot reach NATS at {server.display} for {what}: {type(e).__name__}"
        raise ProviderUnavailableError(msg, operation=what) from e
    return nc

"""The nats-py client of the checkpoint store and the lease: the provider's reconnect settings, and a bounded close.

nats-py's defaults retry a lost server 60 times two seconds apart and then close the client for good; a
checkpoint store or lease that kept such a client failed every call from then on, until the process was
restarted. :func:`open_client` connects with the provider's settings (``max_reconnect_attempts`` a quarter of a
second apart, ``connect_timeout``, credentials and TLS: :func:`credentials`, the provider's too), and its callers
replace a client that gave up on their next call.
:func:`close_client` (the provider's close too) bounds closing: against a server that stopped reading (a frozen
process, a dead link) nats-py's close waited for the socket to take its unsent bytes, for ever. :func:`creating`
retries a stream or bucket creation the server failed with err_code 10049 (the provider's too).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import ConfigurationError, ProviderUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from eventsource_nats.settings import ServerUrl

T = TypeVar("T")

RECONNECT_TIME_WAIT = 0.25
"""Seconds between reconnect attempts (the provider's own)."""
STORE_CREATE_FAILED = 10049
"""JetStream's err_code (500, "error creating store for stream") when the server could not create a stream's store.

The server logs the cause (a directory a racing delete still holds, a full disk, an open-file limit) and answers
with that sentence only; a stream or bucket creation meeting it is tried again, then reported as unavailable.
"""
CREATE_ATTEMPTS = 4
CLOSE_SECONDS = 5.0
"""How long closing a client may take (drain, flush, socket) before its socket is dropped with what it held."""


def client_settings(settings: dict[str, Any], what: str) -> dict[str, Any]:
    """The provider's connection settings (``ClientSettingsSchema``) popped from ``settings``, checked as there.

    ``what`` names their owner in the error (``lease 'nats'``).
    """
    from marshmallow import ValidationError

    from eventsource_nats.settings import CLIENT_SETTINGS, ClientSettingsSchema

    given = {name: settings.pop(name) for name in CLIENT_SETTINGS if name in settings}
    try:
        return dict(ClientSettingsSchema().load(given))
    except ValidationError as e:
        fields = e.normalized_messages()  # type: ignore[no-untyped-call]
        first = next(iter(fields)) if isinstance(fields, dict) else "?"
        msg = f"invalid settings for {what}: {fields}"
        raise ConfigurationError(msg, field=first) from e


def credentials(server: ServerUrl, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``nats.connect`` arguments for the URL's credentials and the credentials and TLS settings.

    A URL user without a password is a token; TLS when the URL is ``nats+tls://`` or a TLS file is given.
    """
    import ssl

    opts: dict[str, Any] = {}
    if server.user is not None:
        if server.password is None:
            opts["token"] = server.user
        else:
            opts["user"] = server.user
            opts["password"] = server.password
    if settings["credentials_file"]:
        opts["user_credentials"] = settings["credentials_file"]
    if settings["nkeys_seed_file"]:
        opts["nkeys_seed"] = settings["nkeys_seed_file"]
    if server.tls or settings["tls_ca_file"] or settings["tls_cert_file"]:
        ctx = ssl.create_default_context(cafile=settings["tls_ca_file"])
        if settings["tls_cert_file"]:
            ctx.load_cert_chain(settings["tls_cert_file"], settings["tls_key_file"])
        opts["tls"] = ctx
        if settings["tls_hostname"]:
            opts["tls_hostname"] = settings["tls_hostname"]
    return opts


async def open_client(server: ServerUrl, what: str, settings: Mapping[str, Any]) -> Any:
    """A connected nats-py client; :class:`ProviderUnavailableError` when no server answers in time.

    ``settings``: what :func:`client_settings` returned.
    """
    from nats.aio.client import Client

    connect_timeout = settings["connect_timeout"]
    budget = connect_timeout * 2 * len(server.servers) + 1
    nc: Any = Client()  # (Any: nats-py types its timeouts as int; fractions of a second work)
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=list(server.servers),
                connect_timeout=connect_timeout,
                max_reconnect_attempts=settings["max_reconnect_attempts"],
                reconnect_time_wait=RECONNECT_TIME_WAIT,
                flush_timeout=connect_timeout,  # (else unbounded: a server that stopped reading hangs a put)
                **credentials(server, settings),
            ),
            timeout=budget,
        )
    except Exception as e:
        await close_client(nc, drain=False)
        msg = f"cannot reach NATS at {server.display} for {what}: {type(e).__name__}"
        raise ProviderUnavailableError(msg, operation=what) from e
    return nc


def _drop_socket(nc: Any) -> None:
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()


async def close_client(nc: Any, *, drain: bool) -> None:
    """Drain (when ``drain``) and close ``nc`` within :data:`CLOSE_SECONDS`, else drop its socket. Never raises.

    Closing runs in a task of its own: nats-py swallows a cancel while it flushes, so a timeout around the
    close itself would not end it.
    """

    async def close() -> None:
        if drain and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.drain()
        with contextlib.suppress(Exception):
            await nc.close()

    task = asyncio.ensure_future(close())
    done, _ = await asyncio.wait([task], timeout=CLOSE_SECONDS)
    if not done:
        _drop_socket(nc)  # what the server never read is lost with it; the close then ends
        task.cancel()
        await asyncio.wait([task], timeout=CLOSE_SECONDS)


async def creating(what: str, create: Callable[[], Awaitable[T]]) -> T:
    """``create()``, tried again while the server fails to create the store (:data:`STORE_CREATE_FAILED`)."""
    import nats.js.errors

    for attempt in range(CREATE_ATTEMPTS):
        try:
            return await create()
        except nats.js.errors.APIError as e:
            if getattr(e, "err_code", None) != STORE_CREATE_FAILED:
                raise
            failed = e
        if attempt < CREATE_ATTEMPTS - 1:
            await asyncio.sleep(0.25 * 2**attempt)
    msg = (
        f"nats-server could not create the store of {what} (JetStream err_code {STORE_CREATE_FAILED}: "
        f"{getattr(failed, 'description', None) or failed}; the server's log names the cause); try again"
    )
    raise ProviderUnavailableError(msg, operation="connect") from failed

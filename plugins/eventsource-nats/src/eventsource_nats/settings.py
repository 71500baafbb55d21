"""Settings of the NATS provider (a marshmallow schema) and the connection URL.

URL: ``nats://[user:password@]host:port[,host:port...]`` (``nats+tls://`` for TLS). A user name
without a password is sent as a token. Credentials files, NKey seeds and TLS files are settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eventsource.config import mask_url, url_authority
from eventsource.create_store import CreateStoreSettings
from eventsource.errors import ConfigurationError
from marshmallow import Schema, validate
from marshmallow import fields as mf

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}\Z")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")
DEFAULT_PORT = 4222


DEFAULT_STREAM = "EVENTSOURCE"
"""The ``stream`` setting's default."""
DEFAULT_SUBJECT_PREFIX = "es"
"""The ``subject_prefix`` setting's default."""


class ClientSettingsSchema(Schema):
    """How a client connects (beyond the URL): the provider's settings, and the lease's and checkpoint store's."""

    connect_timeout = mf.Float(load_default=5.0, validate=validate.Range(min=0.1))
    max_reconnect_attempts = mf.Integer(load_default=60, validate=validate.Range(min=1))
    credentials_file = mf.String(load_default=None, allow_none=True)
    nkeys_seed_file = mf.String(load_default=None, allow_none=True)
    tls_ca_file = mf.String(load_default=None, allow_none=True)
    tls_cert_file = mf.String(load_default=None, allow_none=True)
    tls_key_file = mf.String(load_default=None, allow_none=True)
    tls_hostname = mf.String(load_default=None, allow_none=True)


CLIENT_SETTINGS = tuple(ClientSettingsSchema().fields)
"""The names of :class:`ClientSettingsSchema`'s settings."""


class NatsSettingsSchema(CreateStoreSettings, ClientSettingsSchema):
    """Settings of :class:`~eventsource_nats.provider.NatsProvider` (all optional; ``create_store``: see the README)."""

    stream = mf.String(load_default=DEFAULT_STREAM, validate=validate.Regexp(_NAME))
    """JetStream stream holding every event; KV buckets are named ``<stream>_info|_snap|_ids|_hidden``."""
    subject_prefix = mf.String(
        load_default=DEFAULT_SUBJECT_PREFIX, validate=[validate.Regexp(_PREFIX), validate.Length(max=64)]
    )
    """Events of a stream go to ``<subject_prefix>.e.<token>``."""
    replicas = mf.Integer(load_default=1, validate=validate.Range(min=1, max=5))
    storage = mf.String(load_default="file", validate=validate.OneOf(["file", "memory"]))
    duplicate_window = mf.Float(load_default=120.0, validate=validate.Range(min=1.0))
    """Seconds JetStream remembers message ids (deduplication of retried publishes)."""
    batch_mode = mf.String(load_default="auto", validate=validate.OneOf(["auto", "envelope", "atomic"]))
    """``auto``: atomic batch publish when the server has it (>= 2.12), else one envelope message."""
    old_server_replicated = mf.String(load_default="refuse", validate=validate.OneOf(["refuse", "stream_wide"]))
    """A replicated stream on a server before 2.9.21: refuse at connect, or check the stream-wide sequence."""
    retention_scan = mf.String(load_default="full", validate=validate.OneOf(["full", "leading"]))
    """``delete_events_before``: ``full`` reads every message (exact); ``leading`` only each stream's leading run."""
    request_timeout = mf.Float(load_default=10.0, validate=validate.Range(min=0.1))
    publish_timeout = mf.Float(load_default=5.0, validate=validate.Range(min=0.1))
    publish_retry_seconds = mf.Float(load_default=20.0, validate=validate.Range(min=0.0))
    """How long a publish that times out or finds no responder (leader election) is retried."""


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """A parsed connection URL."""

    servers: tuple[str, ...]
    user: str | None
    password: str | None
    tls: bool

    @property
    def display(self) -> str:
        """The URL with the password (or token) masked, built from what was parsed.

        Not :func:`~eventsource.config.mask_url` of a rebuilt URL: this text is also the checkpoint source of
        subscriptions and projections on the store, so it stays exactly what earlier versions showed.
        """
        scheme = "nats+tls" if self.tls else "nats"
        hosts = ",".join(s.split("://", 1)[1] for s in self.servers)
        if self.user is None:
            return f"{scheme}://{hosts}"
        user = f"{self.user}:***" if self.password is not None else "***"
        return f"{scheme}://{user}@{hosts}"


def parse_url(url: str | None) -> ServerUrl:
    """Split ``nats://[user[:password]@]host[:port][,host[:port]...]`` into servers and credentials."""
    if not url:
        url = f"nats://127.0.0.1:{DEFAULT_PORT}"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "nats+tls", "tls"):
        msg = "a NATS URL looks like nats://host:4222[,host:4222...] (or nats+tls://)"
        raise ConfigurationError(msg, field="url")
    tls = scheme != "nats"
    if "://" in rest:  # nats://h1,nats://h2 was read as h1 and a server named "nats:" (h2 silently dropped)
        msg = f"a NATS URL names its scheme once: nats://h1:4222,h2:4222 (not {mask_url(url)})"
        raise ConfigurationError(msg, field="url")
    user, password, hosts = url_authority(url)
    servers = []
    for host in hosts:
        if host.startswith("["):
            if "]" not in host:
                msg = f"an IPv6 host is written in brackets, [addr] or [addr]:port: {host!r} has no closing ']'"
                raise ConfigurationError(msg, field="url")
            port_part = host.rsplit("]", 1)[1]
            hostport = host if port_part.startswith(":") else f"{host}:{DEFAULT_PORT}"
        else:
            hostport = host if ":" in host else f"{host}:{DEFAULT_PORT}"
        port = hostport.rsplit(":", 1)[1]
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):  # noqa: PLR2004
            msg = f"a NATS server's port is a number from 1 to 65535: {host!r}"
            raise ConfigurationError(msg, field="url")
        servers.append(f"{'tls' if tls else 'nats'}://{hostport}")
    if not servers:
        msg = "the NATS URL names no server"
        raise ConfigurationError(msg, field="url")
    return ServerUrl(tuple(servers), user, password, tls)

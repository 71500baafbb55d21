"""Settings of the Kafka provider (a marshmallow schema), the connection URL, and the kafka-python client config.

URL: ``kafka://[user:password@]host:port[,host:port...]``; a user in the URL sets the SASL PLAIN
credentials unless the settings name a user. The SASL and TLS settings are passed through to
kafka-python; :func:`client_config` is the one place that turns URL and settings into its config.
"""

from __future__ import annotations

from typing import Any

from eventsource.config import mask_url, url_authority
from eventsource.create_store import CreateStoreSettings
from eventsource.errors import ConfigurationError
from marshmallow import fields, validate

DEFAULT_TOPIC_PREFIX = "eventsource"
"""The ``topic_prefix`` setting's default."""
RECORD_OVERHEAD = 4096
"""Bytes of each record kept for the envelope and headers: ``max_event_size = max_record_bytes - RECORD_OVERHEAD``."""
MIN_RECORD_BYTES = RECORD_OVERHEAD + 1024
"""The smallest ``max_record_bytes``: room for an event of 1 KiB (less left a limit of zero or below)."""


class KafkaSettings(CreateStoreSettings):
    """Settings of :class:`~eventsource_kafka.provider.KafkaProvider` (all optional; ``create_store``: README)."""

    topic_prefix = fields.String(load_default=DEFAULT_TOPIC_PREFIX)
    replication_factor = fields.Integer(load_default=1, validate=validate.Range(min=1))
    client_id = fields.String(load_default="eventsource")
    security_protocol = fields.String(
        load_default="PLAINTEXT", validate=validate.OneOf(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    )
    sasl_mechanism = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI"]),
    )
    sasl_plain_username = fields.String(load_default=None, allow_none=True)
    sasl_plain_password = fields.String(load_default=None, allow_none=True)
    ssl_cafile = fields.String(load_default=None, allow_none=True)
    ssl_certfile = fields.String(load_default=None, allow_none=True)
    ssl_keyfile = fields.String(load_default=None, allow_none=True)
    ssl_password = fields.String(load_default=None, allow_none=True)
    ssl_check_hostname = fields.Boolean(load_default=True)
    request_timeout = fields.Float(load_default=30.0, validate=validate.Range(min=0.1))
    lease_url = fields.String(load_default=None, allow_none=True)
    lease_timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.01))
    lease_settings = fields.Dict(keys=fields.String(), load_default=dict)
    dedup_window = fields.Integer(load_default=1000, validate=validate.Range(min=1))
    max_record_bytes = fields.Integer(load_default=1_000_000, validate=validate.Range(min=MIN_RECORD_BYTES))
    io_threads = fields.Integer(load_default=8, validate=validate.Range(min=1, max=256))
    topic_configs = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


def parse_url(url: str) -> tuple[list[str], str | None, str | None]:
    """The bootstrap servers and the SASL user and password of a ``kafka://`` URL (an empty one is ``None``)."""
    if not url.startswith("kafka://"):
        msg = f"a Kafka URL looks like kafka://host:port[,host:port...], got {mask_url(url)!r}"
        raise ConfigurationError(msg, field="url")
    user, password, hosts = url_authority(url)
    if not hosts:
        msg = f"the Kafka URL names no broker: {mask_url(url)!r}"
        raise ConfigurationError(msg, field="url")
    for s in hosts:
        host, _, port = s.rpartition(":")
        if not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):  # noqa: PLR2004
            msg = f"broker address must be host:port (a port from 1 to 65535), got {s!r}"
            raise ConfigurationError(msg, field="url")
    return list(hosts), user or None, password or None


def client_config(url: str, s: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The bootstrap servers and the kafka-python client config for ``url`` and the loaded settings ``s``."""
    servers, user, password = parse_url(url)
    s_user: str | None
    s_password: str | None
    if user and not s.get("sasl_plain_username"):
        s_user, s_password = user, password
    else:
        s_user, s_password = s.get("sasl_plain_username"), s.get("sasl_plain_password")
    protocol = s["security_protocol"]
    mechanism = s.get("sasl_mechanism")
    if s_user and protocol == "PLAINTEXT":
        protocol = "SASL_PLAINTEXT"
    if s_user and mechanism is None:
        mechanism = "PLAIN"
    config: dict[str, Any] = {"bootstrap_servers": servers, "client_id": s["client_id"]}
    config["security_protocol"] = protocol
    if mechanism:
        config["sasl_mechanism"] = mechanism
    if s_user:
        config["sasl_plain_username"] = s_user
        config["sasl_plain_password"] = s_password
    for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
        if s.get(k):
            config[k] = s[k]
    config["ssl_check_hostname"] = s["ssl_check_hostname"]
    return servers, config

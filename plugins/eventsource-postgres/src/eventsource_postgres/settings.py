"""Settings of the PostgreSQL provider and lease (marshmallow schemas) and how they become libpq arguments.

The URL (``postgresql://user:password@host:port/db?sslmode=require``) is passed to libpq as is; settings
given as keywords override URL parameters of the same name. Passwords are never logged: every place
that shows a URL or DSN uses :func:`mask_target`.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from eventsource.config import Duration, mask_url, url_secrets
from eventsource.create_store import CreateStoreSettings
from eventsource.errors import ConfigurationError
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

IDENTIFIER = r"^[a-z_][a-z0-9_]*\Z"
"""Schema names and table prefixes: lower-case letters, digits and ``_`` (they are also quoted). ``\\Z``, not ``$``,
which also matches before a final newline."""

_NO_ZERO_LIFETIME = "must be > 0 (at 0 every call opens a new connection; for rare recycling give a long one)"
_NO_ZERO_STATEMENT_TIMEOUT = "must be at least 1ms (PostgreSQL reads 0 as no limit; null means no limit)"

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class _ConnectionSchema(Schema):
    """Connection settings shared by the provider and the lease."""

    pool_min_size = fields.Integer(load_default=1, validate=validate.Range(min=0, max=1000))
    pool_max_size = fields.Integer(load_default=10, validate=validate.Range(min=1, max=1000))
    pool_timeout = Duration(load_default=30.0)
    connect_timeout = Duration(load_default=10.0)
    max_idle = Duration(load_default=600.0, validate=validate.Range(min=1.0, error="must be at least 1s"))
    """The pool closes a connection unused this long; its shrink check runs this often (at 0 it spun)."""
    max_lifetime = Duration(
        load_default=3600.0, validate=validate.Range(min=0.0, min_inclusive=False, error=_NO_ZERO_LIFETIME)
    )
    """A connection this old is closed when it comes back to the pool (0 would open one per call, not "never")."""
    application_name = fields.String(load_default="eventsource", validate=validate.Length(min=1, max=63))
    sslmode = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(SSL_MODES))
    sslrootcert = fields.String(load_default=None, allow_none=True)
    sslcert = fields.String(load_default=None, allow_none=True)
    sslkey = fields.String(load_default=None, allow_none=True)
    sslcrl = fields.String(load_default=None, allow_none=True)
    connect_args = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    """Any other libpq parameter (``target_session_attrs``, ``keepalives_idle``...), passed through."""

    @validates_schema
    def _sizes(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("pool_max_size", 10) < data.get("pool_min_size", 1):
            msg = "must be >= pool_min_size"
            raise ValidationError(msg, "pool_max_size")
        if data.get("connect_timeout", 1.0) <= 0:
            msg = "must be > 0"
            raise ValidationError(msg, "connect_timeout")
        if data.get("pool_timeout", 1.0) <= 0:
            msg = "must be > 0"
            raise ValidationError(msg, "pool_timeout")
        for key in data.get("connect_args", {}):
            if key in ("password", "dbname", "host", "hostaddr", "port", "user"):
                msg = f"put {key!r} in the URL, not in connect_args"
                raise ValidationError(msg, "connect_args")
            if key == "connect_timeout":  # it overrode the setting; libpq reads 0 as "wait forever"
                msg = "use the connect_timeout setting, not connect_args"
                raise ValidationError(msg, "connect_args")

    @validates_schema
    def _libpq(self, data: dict[str, Any], **_: Any) -> None:
        """Each libpq parameter as libpq takes it: refused here, not when connecting (read as an unreachable server).

        A NUL first: libpq reads the connection string up to it, silently dropping every parameter after it
        (``sslmode`` included), so no parse below would notice.
        """
        from psycopg import ProgrammingError
        from psycopg.conninfo import make_conninfo

        for key, value in _libpq_settings(data).items():
            field = key if key in self.fields else "connect_args"
            if "\x00" in key or (isinstance(value, str) and "\x00" in value):
                msg = f"libpq parameter {key!r} holds a NUL character (libpq would cut the connection string there)"
                raise ValidationError(msg, field)
            try:
                make_conninfo("", **{key: value})
            except (ProgrammingError, UnicodeError) as e:
                detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                msg = f"libpq refuses parameter {key!r}: {detail}"
                raise ValidationError(msg, field) from e


DEFAULT_SCHEMA = "eventsource"
"""The ``schema`` setting's default."""


class PostgresSettingsSchema(CreateStoreSettings, _ConnectionSchema):
    """Settings of :class:`~eventsource_postgres.provider.PostgresProvider` (``create_store``: see the README)."""

    schema = fields.String(
        load_default=DEFAULT_SCHEMA, validate=[validate.Regexp(IDENTIFIER), validate.Length(min=1, max=40)]
    )
    """PostgreSQL schema holding the tables (created if missing, unless ``create_store`` is off): one per
    application, or share one."""
    table_prefix = fields.String(load_default="", validate=validate.Regexp(r"^([a-z_][a-z0-9_]{0,19})?\Z"))
    """Prefix of every table and function name, so several stores can share one schema."""
    statement_timeout = Duration(
        load_default=None, allow_none=True, validate=validate.Range(min=0.001, error=_NO_ZERO_STATEMENT_TIMEOUT)
    )
    """``None``: no limit. At least 1 ms: PostgreSQL reads 0 as no limit (and takes milliseconds)."""
    jit = fields.String(load_default="off", validate=validate.OneOf(("off", "server")))
    """``off``: the provider's connections run with ``SET jit = off`` (its statements are index seeks, which JIT
    only slows down); ``server``: keep the server's ``jit`` setting."""
    prepare_threshold = fields.Integer(load_default=5, allow_none=True, validate=validate.Range(min=0))
    """psycopg's auto-prepare threshold; ``None`` disables prepared statements (PgBouncer in transaction mode)."""
    visibility_wait = Duration(load_default=5.0)
    """How long ``read_all`` waits, at the end of the log, for older transactions to commit (see README)."""
    reconnect_retries = fields.Integer(load_default=1, validate=validate.Range(min=0, max=10))
    """Times a read or an append is retried at once on a fresh connection when its connection dies."""
    live_notify = fields.Boolean(load_default=False)
    """Wake live subscriptions by LISTEN/NOTIFY (installs a trigger; NOTIFY serialises commits: see README)."""
    live_poll_interval = Duration(load_default=0.01, validate=validate.Range(min=0.001))
    """Without ``live_notify``: the longest pause between two probes for new events while a subscription waits
    (at least 1 ms: 0 made a waiting subscription query the server back to back)."""
    read_url = fields.String(load_default=None, allow_none=True)
    """A second URL or DSN for reads (a standby: ``target_session_attrs=prefer-standby``); see the README."""
    read_your_writes = fields.Boolean(load_default=False)
    """With ``read_url``: a read waits until the standby has replayed this provider's writes."""
    read_your_writes_timeout = Duration(load_default=5.0)
    """How long a read waits for the standby before it reads from the primary instead."""
    sync_inline = fields.Boolean(load_default=True)
    """Through the sync API: run each call in the caller's thread (no thread hop; calls from several threads
    take turns), or, when false, on the facade's loop thread (calls from several threads overlap)."""


class PostgresLeaseSettingsSchema(_ConnectionSchema):
    """Settings of :class:`~eventsource_postgres.lease.PostgresAdvisoryLease`."""

    namespace = fields.String(load_default="eventsource", validate=validate.Length(min=1, max=200))
    """Mixed into the lock key, so unrelated applications on one server do not share locks."""
    ttl = Duration(load_default=30.0, allow_none=True, validate=validate.Range(min=1.0))
    """A held lease's session gets ``idle_session_timeout = ttl`` and a keepalive every ``ttl / 3``: the server
    ends the session (dropping the lock) of a holder that stops answering. ``None``: only when it notices."""


def libpq_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """The libpq keyword arguments a connection is opened with (they override the URL's)."""
    kw: dict[str, Any] = {"connect_timeout": max(1, round(settings["connect_timeout"]))}
    return {"application_name": settings["application_name"], **kw, **_libpq_settings(settings)}


def _libpq_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings passed to libpq as given: ``application_name``, the TLS files and mode, ``connect_args``."""
    kw: dict[str, Any] = {}
    if settings.get("application_name") is not None:
        kw["application_name"] = settings["application_name"]
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl"):
        if settings.get(key) is not None:
            kw[key] = settings[key]
    kw.update(settings.get("connect_args") or {})
    return kw


def pool_args(settings: dict[str, Any], *, prepare_threshold: int | None) -> dict[str, Any]:
    """The ``AsyncConnectionPool`` arguments the settings give (sizes, timeouts, each connection's kwargs)."""
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": prepare_threshold}
    kwargs.update(libpq_kwargs(settings))
    return {
        "min_size": settings["pool_min_size"],
        "max_size": settings["pool_max_size"],
        "timeout": settings["pool_timeout"],
        "max_idle": settings["max_idle"],
        "max_lifetime": settings["max_lifetime"],
        "kwargs": kwargs,
    }


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``parts`` (BLAKE2b, never Python's ``hash()``)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8, person=b"eventsrc").digest()
    return int.from_bytes(digest, "big", signed=True)


SCHEMES = ("postgresql", "postgres")


def is_dsn(target: str) -> bool:
    """Whether ``target`` is a libpq key/value string (``host=db dbname=events``) rather than a URL."""
    return "://" not in target and "=" in target


def check_target(target: str | None, what: str) -> str:
    """``target`` if it is a ``postgresql://``/``postgres://`` URL or a DSN libpq parses; else ConfigurationError.

    libpq's own refusal (an unknown URL parameter such as ``?schema=``, a broken IPv6 host) is a configuration
    error too: raised at connect, it read as a server that cannot be reached, and was retried.
    """
    try:
        ours = bool(target) and (is_dsn(str(target)) or urlsplit(str(target)).scheme.lower() in SCHEMES)
    except ValueError:  # urlsplit: "Invalid IPv6 URL"; libpq says more below
        ours = True
    if not ours or target is None:
        shown = mask_target(target) if target else target
        msg = (
            f"the postgres {what} takes a postgresql:// or postgres:// URL or a libpq DSN (host=... dbname=...), "
            f"got {shown!r}"
        )
        raise ConfigurationError(msg, field="url")
    if "\x00" in target:  # libpq reads up to it: what follows (sslmode=...) would be dropped, unseen
        msg = f"the postgres {what} {mask_target(target)!r} holds a NUL character"
        raise ConfigurationError(msg, field="url")
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(target)
    except ProgrammingError as e:
        secrets = target_secrets(target)
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        for secret in secrets:
            detail = detail.replace(secret, "***")
        msg = f"the postgres {what} {mask_target(target)!r} is not one libpq accepts: {detail}"
        raise ConfigurationError(msg, field="url") from e
    return target


def with_url_timeout(target: str, given: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """``loaded`` settings with the ``connect_timeout`` of ``target`` (a checked URL or DSN) unless ``given`` sets it.

    Every connection passes the setting to libpq, which puts it above the URL's: without this, a URL's
    ``?connect_timeout=2`` was silently replaced by the setting's default of 10 s (per host of a list).
    libpq reads 0 and below as "wait forever": refused, as in ``connect_args``.
    """
    if "connect_timeout" in given:
        return loaded
    from psycopg.conninfo import conninfo_to_dict

    value = conninfo_to_dict(target).get("connect_timeout")
    if value is None:
        return loaded
    try:
        seconds = int(str(value).strip())
    except ValueError:
        seconds = 0
    if seconds <= 0:
        msg = (
            f"connect_timeout={value!r} in {mask_target(target)!r} is not a number of seconds above 0 "
            "(libpq reads 0 as wait forever); set the connect_timeout setting instead"
        )
        raise ConfigurationError(msg, field="url")
    return {**loaded, "connect_timeout": float(seconds)}


def mask_target(target: str) -> str:
    """The URL or DSN with its secrets (``password``, ``sslpassword``...) replaced by ``***``."""
    return mask_url(target)


def target_secrets(target: str) -> tuple[str, ...]:
    """Every secret inside a URL or DSN (password, sslpassword...), scrubbed out of driver messages."""
    return url_secrets(target)

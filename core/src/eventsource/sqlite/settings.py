"""Settings of the SQLite provider, and the file path a ``sqlite://`` URL names."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from marshmallow import Schema, fields, validate

from eventsource.errors import (
    ConfigurationError,
)


def path_from_url(url: str) -> str:
    """The database path of a ``sqlite://`` URL (``:memory:`` for the in-memory form)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        msg = f"not a sqlite URL: {url!r} (expected sqlite:///relative.db or sqlite:////absolute.db)"
        raise ConfigurationError(msg, field="url")
    if parts.netloc:
        msg = f"sqlite URLs have no host: {url!r} (use three slashes: sqlite:///path.db)"
        raise ConfigurationError(msg, field="url")
    path = unquote(parts.path)
    if path in ("/:memory:", ":memory:"):
        return ":memory:"
    if "#" in url:  # urlsplit ends the path there: another file would be opened, silently
        msg = f"sqlite URL with a '#': {url!r} (write a '#' of the file's path as %23)"
        raise ConfigurationError(msg, field="url")
    path = path.removeprefix("/")
    if not path or path.endswith("/"):
        msg = f"sqlite URL names no file: {url!r}"
        raise ConfigurationError(msg, field="url")
    return path


MAX_BUSY_TIMEOUT = 2_147_483
"""The longest ``busy_timeout`` (seconds): SQLite takes it in milliseconds as a C int, and a longer one wrapped
around to no wait at all."""


class SqliteSettings(Schema):
    """Settings of :class:`SqliteProvider`."""

    busy_timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0, max=MAX_BUSY_TIMEOUT))
    """Seconds a writer waits for another connection's write lock before :class:`ProviderTimeoutError`
    (at most :data:`MAX_BUSY_TIMEOUT`, about 24 days)."""
    synchronous = fields.String(load_default="full", validate=validate.OneOf(["full", "normal"]))
    """``full`` (default): every commit is durable. ``normal``: faster; WAL may lose the last commits on power loss
    (health reports the store ``degraded``)."""
    read_connection = fields.Boolean(load_default=True)
    """Serve reads from a second connection on its own thread, so they never queue behind writes."""
    cached_statements = fields.Integer(load_default=64, validate=validate.Range(min=8))
    """Prepared statements ``sqlite3`` keeps per connection."""

"""Settings of the SQLite provider, and the file path a ``sqlite://`` URL names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

from marshmallow import ValidationError, fields, validate

from eventsource.config import mask_url
from eventsource.create_store import CreateStoreSettings
from eventsource.errors import (
    ConfigurationError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


def _split(url: str) -> SplitResult:
    """``urlsplit(url)``; a URL it cannot split (an unclosed ``[``, as of an IPv6 host) is ConfigurationError."""
    try:
        return urlsplit(url)
    except ValueError as e:
        msg = f"not a sqlite URL: {mask_url(url)!r} ({e}; expected sqlite:///relative.db or sqlite:////absolute.db)"
        raise ConfigurationError(msg, field="url") from e


def path_from_url(url: str) -> str:
    """The database path of a ``sqlite://`` URL (``:memory:`` for the in-memory form)."""
    parts = _split(url)
    if parts.scheme.lower() != "sqlite":
        msg = f"not a sqlite URL: {mask_url(url)!r} (expected sqlite:///relative.db or sqlite:////absolute.db)"
        raise ConfigurationError(msg, field="url")
    if parts.netloc:
        msg = f"sqlite URLs have no host: {mask_url(url)!r} (use three slashes: sqlite:///path.db)"
        raise ConfigurationError(msg, field="url")
    if not url[len(parts.scheme) :].startswith("://"):  # sqlite:/var/x.db would open var/x.db, relative
        msg = (
            f"not a sqlite URL: {mask_url(url)!r} (write sqlite:///relative/path.db, or "
            "sqlite:////absolute/path.db with four slashes)"
        )
        raise ConfigurationError(msg, field="url")
    path = unquote(parts.path)
    if path in ("/:memory:", ":memory:"):
        return ":memory:"
    if "#" in url:  # urlsplit ends the path there: another file would be opened, silently
        msg = f"sqlite URL with a '#': {mask_url(url)!r} (write a '#' of the file's path as %23)"
        raise ConfigurationError(msg, field="url")
    path = path.removeprefix("/")
    if "\x00" in path:  # (the driver's "embedded null byte" ValueError at connect, otherwise)
        msg = f"sqlite URL with a NUL character (%00) in its path: {mask_url(url)!r} (no file can be named so)"
        raise ConfigurationError(msg, field="url")
    if not path or path.endswith("/"):
        msg = f"sqlite URL names no file: {mask_url(url)!r}"
        raise ConfigurationError(msg, field="url")
    return path


MAX_BUSY_TIMEOUT = 2_147_483
"""The longest ``busy_timeout`` (seconds): SQLite takes it in milliseconds as a C int, and a longer one wrapped
around to no wait at all."""


class SqliteSettings(CreateStoreSettings):
    """Settings of :class:`SqliteProvider` (``create_store`` from :class:`CreateStoreSettings`)."""

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


def absolute_url(url: str, path: str) -> str:
    """``url``'s file by absolute path (another process in another directory finds it), its query string kept."""
    query = urlsplit(url).query
    return f"sqlite:///{quote(str(Path(path).resolve()))}" + (f"?{query}" if query else "")  # ('?', '#', '%' kept)


def url_settings(url: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with those the query string of a ``sqlite://`` URL gives (``?synchronous=normal``).

    A parameter that is not a setting (SQLite's own URI options, ``mode=ro``...) is refused, naming it, never
    ignored; so is a setting given in both places with two values.
    """
    query = _split(url).query
    out = dict(settings)
    if not query:
        return out
    schema = SqliteSettings()
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as e:
        msg = f"sqlite URL {mask_url(url)!r}: its query string cannot be read ({e})"
        raise ConfigurationError(msg, field="url") from e
    for key, value in pairs:
        if key not in schema.fields:
            msg = (
                f"sqlite URL {mask_url(url)!r}: {key!r} is not a setting of the SQLite store (the query string takes "
                f"{', '.join(sorted(schema.fields))}; SQLite's own URI options such as mode=ro are not supported)"
            )
            raise ConfigurationError(msg, field="url")
        if key in out and _loaded(schema, key, out[key]) != _loaded(schema, key, value):
            msg = f"sqlite URL {mask_url(url)!r}: {key!r} is given in the URL and in settings, with two values"
            raise ConfigurationError(msg, field="url")
        out[key] = value
    return out


def _loaded(schema: SqliteSettings, key: str, value: Any) -> Any:
    try:
        return schema.load({key: value})[key]
    except ValidationError:
        return value  # (the settings' own check names the field)

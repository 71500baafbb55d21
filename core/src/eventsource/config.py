"""``ManagerConfig``: every seed field plus providers by name or URL.

Loaded from a dict (:meth:`ManagerConfig.from_dict`), a JSON or TOML file (:meth:`from_file`) or
``EVENTSOURCE_*`` environment variables (:meth:`from_env`), always through one marshmallow schema, so
a wrong value fails with :class:`~eventsource.errors.ConfigurationError` naming the field. Durations
accept seconds as a number or a string with a unit: ``"250ms"``, ``"30s"``, ``"5m"``, ``"12h"``, ``"365d"``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

from marshmallow import RAISE, Schema, ValidationError, validate, validates_schema
from marshmallow import fields as mf

from eventsource.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_SQLITE_URL = "sqlite:///eventsource.db"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


MAX_DURATION = 1000 * 366 * 86400.0
"""The longest duration accepted (1,000 years): longer ones overflow date arithmetic (a cutoff before year 1)."""


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"30s"``; raises ``ValueError`` otherwise."""
    if isinstance(value, bool):
        msg = "not a duration"
        raise ValueError(msg)  # noqa: TRY004 - marshmallow turns ValueError into a field error
    seconds: float | None = None
    if isinstance(value, (int, float)):
        if value < 0:
            msg = "duration must not be negative"
            raise ValueError(msg)
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds is None:
        msg = f"not a duration: {value!r} (use seconds or a unit: 250ms, 30s, 5m, 12h, 365d)"
        raise ValueError(msg)
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        msg = f"duration {value!r} is not a finite number of seconds up to 1,000 years"
        raise ValueError(msg)
    return seconds


if TYPE_CHECKING:  # marshmallow 4 types its fields by value; 3.x fields are not subscriptable at runtime
    _FloatField = mf.Field[float]
    _ProvidersBase = mf.Field[dict[str, dict[str, Any]]]
else:
    _FloatField = _ProvidersBase = mf.Field


class Duration(_FloatField):
    """Marshmallow field for durations in seconds."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:  # noqa: ARG002 - marshmallow's signature
        try:
            return parse_duration(value)
        except ValueError as e:
            raise ValidationError(str(e)) from e


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe for logs, errors and ``repr``).

    Secrets in the query string (``?password=``) are masked too, and so is a user given without a password
    on schemes that send it as a token (``nats://TOKEN@host``).

    Works on multi-host URLs too (``kafka://u:p@b1:9092,b2:9093``), where ``urlsplit`` cannot parse a port, on
    libpq key/value strings (``host=db password=s``), and on text without ``scheme://`` (``app:s@db``).
    """
    if not _URL.match(url):  # a DSN (its values may hold "://"), or text: every secret key, every user:secret@
        return _WORD.sub(_userinfo, _DSN_SECRET.sub(r"\1***", url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" not in netloc and parts.scheme.lower() in _LIBPQ_SCHEMES:
        cut = _libpq_userinfo(url)  # a "?" or "#" in the password ended urlsplit's userinfo, not libpq's
        if cut is not None:
            return mask_url(cut)
    userinfo, sep, hosts = netloc.rpartition("@")
    if sep and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    elif sep and userinfo and parts.scheme.lower() in _TOKEN_USER_SCHEMES:
        netloc = f"***@{hosts}"  # NATS sends a user given without a password as an auth token
    query = parts.query
    if query:  # libpq and others also take passwords as query parameters (?password=, ?sslpassword=)
        query = "&".join(
            f"{k}=***" if unquote(k).lower() in SECRET_PARAMS else f"{k}{eq}{v}"
            for k, eq, v in (item.partition("=") for item in query.split("&"))
        )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_LIBPQ_VALUE = re.compile(
    r'invalid (?:(\w+) value: "|(port) number: "|integer value "[^"]*" for connection option "(\w+)")'
)


def libpq_refused_setting(message: str) -> str | None:
    """The connection setting whose value libpq refused, read from its message at connect, else ``None``.

    libpq checks the values of ``sslmode``, ``port``, ``target_session_attrs``... only when it connects
    (``invalid sslmode value: "bogus"``, ``invalid port number: "99999"``): a configuration error, not an outage.
    """
    found = _LIBPQ_VALUE.search(message)
    return next((g for g in found.groups() if g), None) if found else None


def url_secrets(text: str) -> tuple[str, ...]:
    """Every secret :func:`mask_url` hides in ``text``, as written and percent-decoded (for scrubbing messages).

    A URL's password, read both as ``urlsplit`` and as libpq reads it (up to the last ``@`` before the first
    ``/``, so ``?`` and ``#`` stay in it), its secret query parameters, and the secret values of a key/value
    DSN (unquoted) or of ``user:secret@`` text. A driver may echo any of them in an error message.
    """
    found: list[str] = []
    if _URL.match(text):
        authority = text.partition("://")[2].split("/", 1)[0]
        userinfo, at, _ = authority.rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.partition(":")[2])
        with contextlib.suppress(ValueError):
            parts = urlsplit(text)
            found.append(parts.password or "")
            for key, _, value in (item.partition("=") for item in parts.query.split("&")):
                if unquote(key).lower() in SECRET_PARAMS:
                    found.append(value)
    else:
        for m in _DSN_SECRET.finditer(text):
            value = m[2]
            found.append(re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith("'") else value)
        for word in _WORD.findall(text):
            userinfo, at, _ = word.rpartition("@")
            if at and ":" in userinfo:
                found.append(userinfo.partition(":")[2])
    out = {s for v in found for s in (v, unquote(v)) if s}
    return tuple(sorted(out, key=len, reverse=True))  # the longest first: a secret inside another is replaced last


class UrlAuthority(NamedTuple):
    """The percent-decoded user and password and the hosts of a URL (see :func:`url_authority`)."""

    user: str | None
    """``None`` when the URL has no ``@``."""
    password: str | None
    """``None`` when the userinfo has no ``:`` (NATS sends such a user as a token)."""
    hosts: tuple[str, ...]


def url_authority(url: str) -> UrlAuthority:
    """The user, password and comma-separated hosts of ``scheme://[user[:password]@]host[,host...][/...][?...]``.

    Multi-host URLs (``kafka://u:p@b1:9092,[::1]:9093``) cannot be read by ``urlsplit``; the provider plugins
    read theirs here. The last ``@`` ends the userinfo (an unencoded ``@`` in a password is kept); blank host
    entries are dropped; the path and the query are not read. The caller checks the scheme and each host.
    """
    rest = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    user = password = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        u, has_password, p = userinfo.partition(":")
        user, password = unquote(u), (unquote(p) if has_password else None)
    return UrlAuthority(user, password, tuple(h.strip() for h in rest.split(",") if h.strip()))


_TOKEN_USER_SCHEMES = frozenset({"nats", "nats+tls", "tls"})
# every secret a plugin takes under its own name (libpq: password, sslpassword; Kafka: sasl_plain_password,
# ssl_password) plus generic ones; the other credential settings (sslkey, nkeys_seed_file...) are file paths
SECRET_PARAMS = frozenset(
    {"password", "sslpassword", "passwd", "pass", "secret", "token", "sasl_plain_password", "ssl_password"}
)
_DSN_SECRET = re.compile(
    rf"(?<![\w.-])((?:{'|'.join(sorted(SECRET_PARAMS))})\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)
"""A secret's value in a libpq key/value string (quoted or not)."""
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
"""Text that starts as a URL (``scheme://``): mask_url parses it, ManagerConfig.load takes it as a store."""
_WORD = re.compile(r"\S+")
_LIBPQ_SCHEMES = frozenset({"postgresql", "postgres"})


def _libpq_userinfo(url: str) -> str | None:
    """``url`` with the password libpq reads (up to the ``@`` before the first ``/``) masked, if urlsplit missed it."""
    head, _, after = url.partition("://")
    authority = after.split("/", 1)[0]
    userinfo, at, hosts = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return f"{head}://{userinfo.partition(':')[0]}:***@{hosts}{after[len(authority) :]}"


def _userinfo(word: re.Match[str]) -> str:
    """``word`` with the password of a ``user:password@host`` in it masked (the last ``@`` ends it, as in URLs)."""
    text = word[0]
    userinfo, at, host = text.rpartition("@")
    if not at:
        return text
    start = max(userinfo.rfind(c) for c in "/=('\"") + 1
    user, colon, _ = userinfo[start:].partition(":")
    return f"{text[:start]}{user}:***@{host}" if colon else text


class ProviderEntrySchema(Schema):
    """One configured provider: a URL and optional settings."""

    class Meta:
        """Unknown keys of a provider entry are errors (a setting placed beside ``url`` must not be dropped)."""

        unknown = RAISE

    url = mf.String(required=True, validate=validate.Length(min=1))
    settings = mf.Dict(keys=mf.String(), load_default=dict)


class ProvidersField(_ProvidersBase):
    """``{name: url}`` or ``{name: {"url": ..., "settings": {...}}}``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:  # noqa: ARG002 - marshmallow's signature
        if not isinstance(value, dict):
            msg = "must be a mapping of provider name to URL"
            raise ValidationError(msg)
        out: dict[str, dict[str, Any]] = {}
        for name, entry in value.items():
            if not isinstance(name, str) or not name:
                msg = f"provider name must be a non-empty string, got {name!r}"
                raise ValidationError(msg)
            raw = {"url": entry} if isinstance(entry, str) else entry
            if isinstance(raw, dict):
                for key in raw:
                    if key not in ("url", "settings"):
                        msg = (
                            f"unknown key {key!r} (an entry takes 'url' and 'settings'; "
                            f"provider settings go under 'settings')"
                        )
                        raise ValidationError({name: {key: [msg]}})
            try:
                out[name] = ProviderEntrySchema().load(raw)
            except ValidationError as e:
                raise ValidationError({name: e.messages}) from e
        return out


def _entry_key(name: str, detail: Any) -> tuple[str, Any]:
    """``providers.<name>.<key>`` and its message for an unknown key of a provider entry; else as given."""
    if name == "providers" and isinstance(detail, dict) and len(detail) == 1:
        ((provider, inner),) = detail.items()
        if isinstance(inner, dict) and len(inner) == 1:
            ((key, messages),) = inner.items()
            if key not in ("url", "settings") and isinstance(messages, list) and len(messages) == 1:
                return f"providers.{provider}.{key}", messages[0]
    return name, detail


class ManagerConfigSchema(Schema):
    """Marshmallow schema of :class:`ManagerConfig`."""

    class Meta:
        """Unknown configuration keys are errors (a misspelled setting must not pass silently)."""

        unknown = "raise"

    default_provider = mf.String(allow_none=True)
    providers = ProvidersField()
    retry_attempts = mf.Integer(validate=validate.Range(min=1, max=100))
    retry_delay = Duration()
    retry_max_delay = Duration()
    timeout = Duration(allow_none=True, validate=validate.Range(min=0, min_inclusive=False))
    max_event_size = mf.Integer(validate=validate.Range(min=1))
    max_snapshot_size = mf.Integer(validate=validate.Range(min=1))
    max_batch_size = mf.Integer(validate=validate.Range(min=1))
    max_stream_id_length = mf.Integer(validate=validate.Range(min=1, max=65536))
    snapshot_threshold = mf.Integer(allow_none=True, validate=validate.Range(min=1))
    retention_period = Duration(allow_none=True)
    compression = mf.Raw()
    compression_threshold = mf.Integer(validate=validate.Range(min=0))
    encryption = mf.Boolean()
    encryption_keys = mf.Dict(keys=mf.String(), values=mf.String())
    active_key_id = mf.String(allow_none=True)
    encryption_scope = mf.String(validate=validate.OneOf(("global", "tenant", "stream")))
    encryption_key_store = mf.String(allow_none=True, validate=validate.Length(min=1))
    shredded_events = mf.String(validate=validate.OneOf(("raise", "redact")))
    retention_policies = mf.List(mf.Dict(keys=mf.String()))
    metadata = mf.Dict(keys=mf.String(), values=mf.String())
    telemetry = mf.Boolean()
    telemetry_stream_id = mf.Boolean()
    telemetry_context_key = mf.String(allow_none=True, validate=validate.Length(min=1))
    checkpoint_store = mf.String(allow_none=True, validate=validate.Length(min=1))
    max_subscription_lag = Duration(allow_none=True, validate=validate.Range(min=0, min_inclusive=False))

    @validates_schema
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        comp = data.get("compression")
        if comp is not None and not isinstance(comp, bool) and comp not in ("zlib", "brotli", "none"):
            raise ValidationError("must be true/false or one of 'zlib', 'brotli', 'none'", "compression")
        if data.get("retry_delay") is not None and data.get("retry_max_delay") is not None:  # noqa: SIM102
            if data["retry_max_delay"] < data["retry_delay"]:
                raise ValidationError("must be >= retry_delay", "retry_max_delay")
        self._check_keys(data)
        for i, entry in enumerate(data.get("retention_policies") or []):
            if not isinstance(entry.get("policy"), str) or not entry["policy"]:
                raise ValidationError(
                    f"entry {i} needs a 'policy' name (max_age, max_count, before_snapshot)", "retention_policies"
                )

    @staticmethod
    def _check_keys(data: dict[str, Any]) -> None:
        """Each key decodes under a valid id, and ``active_key_id`` names one of them when it must."""
        keys = data.get("encryption_keys") or {}
        if keys:
            from eventsource.codecs.keys import check_key_id, decode_key
            from eventsource.errors import ConfigurationError as _ConfigError

            try:
                for key_id, value in keys.items():
                    check_key_id(key_id)
                    decode_key(key_id, value)
            except _ConfigError as e:  # the message names the key id, never the key
                raise ValidationError(e.message, "encryption_keys") from None
        active = data.get("active_key_id")
        if active is not None and keys and active not in keys:
            raise ValidationError(f"{active!r} is not one of encryption_keys {sorted(keys)}", "active_key_id")
        if active is None and len(keys) > 1:
            raise ValidationError("name the key new events use when encryption_keys holds several", "active_key_id")


@dataclass(slots=True)
class ManagerConfig:
    """Configuration of an :class:`~eventsource.manager.EventSourcingManager`.

    The seed's fields (``default_provider``, ``retry_attempts``, ``retry_delay``, ``timeout``,
    ``max_event_size``, ``max_batch_size``, ``snapshot_threshold``, ``retention_period``,
    ``compression``, ``encryption``, ``metadata``) keep their meaning; durations are seconds.

    ``max_event_size`` bounds an event's *serialized* size (data + metadata as JSON, before compression
    and encryption), so a limit means the same with any codec; a provider's own limit
    (``capabilities.max_event_size``) bounds the encoded bytes it has to store. ``max_snapshot_size``
    (default 16 MiB) bounds a snapshot's serialized data + metadata the same way; it is a setting of its
    own because a snapshot holds an aggregate's whole state and is usually far larger than one event.

    Codecs and keys:

    * ``compression``: ``False``/``"none"``, ``True`` (zlib), ``"zlib"`` or ``"brotli"``, applied to
      payloads of at least ``compression_threshold`` serialized bytes;
    * ``encryption``: seal new payloads with AES-256-GCM. ``encryption_keys`` maps key ids to base64
      32-byte keys (keys stay configured after ``encryption`` is turned off, so old events stay
      readable); ``active_key_id`` names the key new payloads use (rotation: add a key, switch it);
    * ``encryption_scope``: ``"global"`` (the key ring), ``"tenant"`` (a data key per ``tenant_id``;
      events without one use the ring) or ``"stream"`` (a data key per stream); scoped keys live in
      ``encryption_key_store`` (a JSON-lines file of keys wrapped by the ring, or ``"memory"``) unless a
      plugin supplies a key provider through the ``eventsource_key_provider`` hook;
    * ``shredded_events``: reading an event whose scope was shredded ``"raise"``-s
      :class:`~eventsource.errors.KeyShreddedError` (default) or ``"redact"``-s it (``data=None``,
      ``metadata={"eventsource.shredded": <scope>}``). Snapshots always raise.

    Retention: ``retention_policies`` is a list of ``{"policy": <name>, **params}`` (built-in
    ``max_age`` with ``max_age``, ``max_count`` with ``max_events``, ``before_snapshot`` with
    ``keep_events``); the seed's ``retention_period`` adds ``max_age`` when the list has none.

    OpenTelemetry (the ``otel`` extra, :mod:`eventsource.telemetry`): ``telemetry`` turns on a span and metrics
    per provider call through the global tracer and meter providers; ``telemetry_stream_id`` (default on)
    puts the stream id on spans (off: for privacy); ``telemetry_context_key`` (default ``"trace_context"``,
    ``None``: off) is the event-metadata key appends write the current trace context under.

    ``snapshot_threshold``: appends report ``snapshot_due=True`` once a stream holds this many events
    past its latest snapshot (see :meth:`EventSourcingManager.set_snapshot_handler`).

    ``checkpoint_store``: a checkpoint store URL; ``get_stats`` and ``health_check`` then report the lag
    of every checkpoint of each provider, and ``max_subscription_lag`` (seconds) marks a provider unhealthy
    (reason ``"lagging"``) while a checkpoint's oldest unhandled event is older than that.
    """

    default_provider: str | None = "sqlite"
    providers: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"sqlite": {"url": DEFAULT_SQLITE_URL, "settings": {}}}
    )
    retry_attempts: int = 3
    retry_delay: float = 0.05
    retry_max_delay: float = 2.0
    timeout: float | None = 30.0
    max_event_size: int = 1024 * 1024
    max_snapshot_size: int = 16 * 1024 * 1024
    max_batch_size: int = 1000
    max_stream_id_length: int = 1024
    snapshot_threshold: int | None = None
    retention_period: float | None = None
    compression: bool | str = False
    compression_threshold: int = 1024
    encryption: bool = False
    encryption_keys: dict[str, str] = field(default_factory=dict)
    active_key_id: str | None = None
    encryption_scope: str = "global"
    encryption_key_store: str | None = None
    shredded_events: str = "raise"
    retention_policies: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    telemetry: bool = False
    telemetry_stream_id: bool = True
    telemetry_context_key: str | None = "trace_context"
    checkpoint_store: str | None = None
    max_subscription_lag: float | None = None

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["encryption_keys"] = dict.fromkeys(self.encryption_keys, "***")
        shown["providers"] = {n: mask_url(e["url"]) for n, e in self.providers.items()}
        if self.checkpoint_store:
            shown["checkpoint_store"] = mask_url(self.checkpoint_store)
        return "ManagerConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManagerConfig:
        """Validate ``data``; unknown keys and wrong values raise :class:`ConfigurationError`."""
        try:
            loaded = ManagerConfigSchema().load(dict(data))
        except ValidationError as e:
            messages = e.normalized_messages()  # type: ignore[no-untyped-call]
            name = next(iter(messages)) if isinstance(messages, dict) else "?"
            detail = messages[name] if isinstance(messages, dict) else messages
            if isinstance(detail, list) and len(detail) == 1:
                detail = detail[0]
            name, detail = _entry_key(name, detail)
            msg = f"invalid configuration field {name!r}: {detail}"
            raise ConfigurationError(msg, field=name) from e
        if loaded.get("providers") and "default_provider" not in loaded:
            loaded["default_provider"] = next(iter(loaded["providers"]))
        cfg = cls(**loaded)
        if cfg.default_provider is not None and cfg.providers and cfg.default_provider not in cfg.providers:
            msg = f"invalid configuration field 'default_provider': {cfg.default_provider!r} is not in providers"
            raise ConfigurationError(msg, field="default_provider")
        return cfg

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ManagerConfig:
        """Load a ``.json`` or ``.toml`` file (TOML may nest it under ``[eventsource]``)."""
        return cls.from_dict(cls._read_file(path))

    @staticmethod
    def _read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The settings a ``.json`` or ``.toml`` file holds, unvalidated."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            msg = f"cannot read configuration file {p}: {e.strerror}"
            raise ConfigurationError(msg, field="file") from e
        except UnicodeDecodeError as e:  # a database or an archive named by mistake
            msg = f"configuration file {p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})"
            raise ConfigurationError(msg, field="file") from e
        suffix = p.suffix.lower()
        if suffix in (".yaml", ".yml", ".ini", ".cfg", ".env"):  # read as JSON, its error would blame valid text
            msg = f"configuration file {p}: {suffix} files are not read; write the settings as .json or .toml"
            raise ConfigurationError(msg, field="file")
        try:
            if suffix == ".toml":
                data: Any = tomllib.loads(text)
                data = data.get("eventsource", data)
            else:
                data = json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            what = "toml" if suffix == ".toml" else "json" + ("" if suffix == ".json" else " (a file not named *.toml)")
            msg = f"configuration file {p} is not valid {what}: {e}"
            raise ConfigurationError(msg, field="file") from e
        except RecursionError:  # no setting nests deeper than a few levels
            msg = f"configuration file {p} nests too deeply to be read"
            raise ConfigurationError(msg, field="file") from None
        if not isinstance(data, dict):
            msg = f"configuration file {p} must hold a table/object"
            raise ConfigurationError(msg, field="file")
        return data

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, prefix: str = "EVENTSOURCE_") -> ManagerConfig:
        """Read ``EVENTSOURCE_<FIELD>`` variables; ``EVENTSOURCE_PROVIDERS__<NAME>=<url>`` adds providers.

        ``EVENTSOURCE_CONFIG=<file>`` loads a file first; variables override what it sets, and providers
        and keys from variables join the file's. ``EVENTSOURCE_ENCRYPTION_KEYS__<ID>`` keeps the key id's
        case (it is written into every ciphertext); provider names are lower-cased. Text settings stay
        text (``EVENTSOURCE_ACTIVE_KEY_ID=2025`` is the key id ``"2025"``).
        """
        env = os.environ if environ is None else environ
        base: dict[str, Any] = {}
        if env.get(prefix + "CONFIG"):
            base = cls._read_file(env[prefix + "CONFIG"])  # only what the file sets: defaults come once, below
        text = {name for name, f in ManagerConfigSchema().fields.items() if isinstance(f, mf.String)}
        names = {f.name for f in fields(cls)} - {"providers", "metadata", "encryption_keys"}
        providers: dict[str, Any] = {}
        keys: dict[str, str] = {}
        for key, value in env.items():
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if rest.startswith("PROVIDERS__"):
                providers[rest[len("PROVIDERS__") :].lower()] = value
            elif rest.startswith("ENCRYPTION_KEYS__"):
                keys[rest[len("ENCRYPTION_KEYS__") :]] = value
            elif rest.lower() in names:
                name = rest.lower()
                parsed = _env_value(value)
                base[name] = value if name in text and parsed is not None else parsed
        if providers:
            base["providers"] = {**(base.get("providers") or {}), **providers}
        if keys:
            base["encryption_keys"] = {**(base.get("encryption_keys") or {}), **keys}
        return cls.from_dict(base)

    @classmethod
    def load(cls, value: ManagerConfig | Mapping[str, Any] | str | os.PathLike[str] | None) -> ManagerConfig:
        """A config, a dict, a store URL (one store named ``default``), a file path or ``file://`` URL, or ``None``."""
        if value is None:
            return cls()
        if isinstance(value, ManagerConfig):  # built directly: validate it like any other source
            return cls.from_dict(_to_data(value))
        if isinstance(value, str) and value[:7].lower() == "file://":  # a configuration file named as a URL
            return cls.from_file(_file_path(value))
        if isinstance(value, str) and _URL.match(value):
            return cls.from_dict({"providers": {"default": {"url": value}}, "default_provider": "default"})
        if isinstance(value, (str, os.PathLike)):
            return cls.from_file(value)
        return cls.from_dict(value)


def _file_path(url: str) -> str:
    """The local path a ``file://`` URL names; another host's file is refused, not read from this one."""
    parts = urlsplit(url)
    if parts.netloc.lower() not in ("", "localhost") or not parts.path:
        msg = f"a configuration file URL names a local file (file:///path/app.toml), not {mask_url(url)!r}"
        raise ConfigurationError(msg, field="file")
    return url2pathname(parts.path)


_ENV_WORDS: dict[str, bool | None] = {
    **dict.fromkeys(("true", "yes", "on"), True),
    **dict.fromkeys(("false", "no", "off"), False),
    **dict.fromkeys(("", "none", "null"), None),
}


def _env_value(value: str) -> Any:
    low = value.strip().lower()
    if low in _ENV_WORDS:
        return _ENV_WORDS[low]
    if value.lstrip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # the field's own check names what is wrong with the text
            return value
    try:
        return int(value)
    except ValueError:
        pass
    return value


def _to_data(cfg: ManagerConfig) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}

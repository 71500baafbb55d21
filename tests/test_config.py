"""``ManagerConfig``: every seed field, from a dict, JSON, TOML and the environment; errors name the field."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from eventsource import EventData, ValidationError
from eventsource.config import DEFAULT_SQLITE_URL, ManagerConfig, mask_url, parse_duration, url_secrets
from eventsource.errors import ConfigurationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

KEY = base64.b64encode(bytes(range(32))).decode()  # a valid AES-256 key, used only to check masking

SEED_FIELDS = {
    "default_provider": "pg",
    "retry_attempts": 5,
    "retry_delay": "250ms",
    "timeout": "30s",
    "max_event_size": 2048,
    "max_batch_size": 50,
    "snapshot_threshold": 1000,
    "retention_period": "365d",
    "compression": True,
    "encryption": False,
    "metadata": {"service": "orders"},
}
"""The Go seed's ManagerConfig fields, in its JSON names, with values of the right kind."""

SEED_EXPECTED = {
    "default_provider": "pg",
    "retry_attempts": 5,
    "retry_delay": 0.25,
    "timeout": 30.0,
    "max_event_size": 2048,
    "max_batch_size": 50,
    "snapshot_threshold": 1000,
    "retention_period": 365 * 86400.0,
    "compression": True,
    "encryption": False,
    "metadata": {"service": "orders"},
}

PROVIDERS = {"pg": "postgresql://app:pw@127.0.0.1/events", "mem": {"url": "memory://", "settings": {}}}


def test_defaults() -> None:
    cfg = ManagerConfig()
    assert cfg.default_provider == "sqlite"
    assert cfg.providers == {"sqlite": {"url": DEFAULT_SQLITE_URL, "settings": {}}}
    assert (cfg.retry_attempts, cfg.retry_delay, cfg.retry_max_delay, cfg.timeout) == (3, 0.05, 2.0, 30.0)
    assert (cfg.max_event_size, cfg.max_batch_size, cfg.max_stream_id_length) == (1024 * 1024, 1000, 1024)
    assert (cfg.snapshot_threshold, cfg.retention_period) == (None, None)
    assert (cfg.compression, cfg.compression_threshold, cfg.encryption) == (False, 1024, False)
    assert (cfg.encryption_keys, cfg.active_key_id, cfg.metadata) == ({}, None, {})
    assert ManagerConfig.from_dict({}) == cfg
    assert ManagerConfig.load(None) == cfg


def test_every_seed_field_from_a_dict() -> None:
    cfg = ManagerConfig.from_dict({**SEED_FIELDS, "providers": PROVIDERS})
    for name, value in SEED_EXPECTED.items():
        assert getattr(cfg, name) == value, name
    assert cfg.providers == {
        "pg": {"url": "postgresql://app:pw@127.0.0.1/events", "settings": {}},
        "mem": {"url": "memory://", "settings": {}},
    }


def test_the_other_fields_from_a_dict() -> None:
    cfg = ManagerConfig.from_dict(
        {
            "providers": {"kafka": {"url": "kafka://127.0.0.1:9092", "settings": {"linger_ms": 5}}},
            "retry_max_delay": "5s",
            "max_stream_id_length": 200,
            "compression": "brotli",
            "compression_threshold": 0,
            "encryption": True,
            "encryption_keys": {"k1": KEY},
            "active_key_id": "k1",
            "timeout": None,
        }
    )
    assert cfg.default_provider == "kafka"  # the only provider becomes the default
    assert cfg.providers["kafka"]["settings"] == {"linger_ms": 5}
    assert (cfg.retry_max_delay, cfg.max_stream_id_length, cfg.timeout) == (5.0, 200, None)
    assert (cfg.compression, cfg.compression_threshold) == ("brotli", 0)
    assert (cfg.encryption, cfg.encryption_keys, cfg.active_key_id) == (True, {"k1": KEY}, "k1")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("12h", 43200.0),
        ("365d", 31536000.0),
        ("1.5s", 1.5),
        (" 7 ", 7.0),
        (3, 3.0),
        (0.5, 0.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert ManagerConfig.from_dict({"retry_delay": text, "retry_max_delay": "400d"}).retry_delay == seconds


@pytest.mark.parametrize("bad", ["soon", "5 weeks", "-1s", -1, True, "", [1], "1y"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)
    with pytest.raises(ConfigurationError, match="'timeout'") as info:
        ManagerConfig.from_dict({"timeout": bad})
    assert info.value.details["field"] == "timeout"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"retry_attempts": 0}, "retry_attempts"),
        ({"retry_attempts": "three"}, "retry_attempts"),
        ({"max_event_size": 0}, "max_event_size"),
        ({"max_batch_size": -5}, "max_batch_size"),
        ({"snapshot_threshold": 0}, "snapshot_threshold"),
        ({"compression": "lz4"}, "compression"),
        ({"compression_threshold": -1}, "compression_threshold"),
        ({"encryption": "maybe"}, "encryption"),
        ({"metadata": ["a"]}, "metadata"),
        ({"retry_delay": "2s", "retry_max_delay": "1s"}, "retry_max_delay"),
        ({"providers": {"a": "memory://"}, "default_provider": "b"}, "default_provider"),
        ({"providers": {"a": ""}}, "providers"),
        ({"providers": {"a": {"settings": {}}}}, "providers"),
        ({"providers": ["memory://"]}, "providers"),
        ({"retries": 3}, "retries"),
        ({"defaultProvider": "x"}, "defaultProvider"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ManagerConfig.from_dict(data)
    assert info.value.details["field"] == field
    assert f"invalid configuration field {field!r}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "es.json"
    path.write_text(json.dumps({**SEED_FIELDS, "providers": PROVIDERS}))
    cfg = ManagerConfig.from_file(path)
    assert cfg == ManagerConfig.from_dict({**SEED_FIELDS, "providers": PROVIDERS})
    assert ManagerConfig.load(str(path)) == cfg


def test_from_toml_file_nested_or_flat(tmp_path: Path) -> None:
    nested = tmp_path / "nested.toml"
    nested.write_text(
        '[eventsource]\ndefault_provider = "pg"\ntimeout = "10s"\ncompression = "brotli"\nretention_period = "30d"\n'
        '[eventsource.providers]\npg = "postgresql://app@127.0.0.1/events"\n'
        '[eventsource.providers.mem]\nurl = "memory://"\nsettings = {}\n'
        '[eventsource.metadata]\nteam = "payments"\n'
    )
    cfg = ManagerConfig.from_file(nested)
    assert (cfg.default_provider, cfg.timeout, cfg.compression, cfg.retention_period) == (
        "pg",
        10.0,
        "brotli",
        30 * 86400.0,
    )
    assert set(cfg.providers) == {"pg", "mem"} and cfg.metadata == {"team": "payments"}
    flat = tmp_path / "flat.toml"
    flat.write_text('max_batch_size = 10\n[providers]\nm = "memory://"\n')
    cfg = ManagerConfig.from_file(flat)
    assert (cfg.max_batch_size, cfg.default_provider) == (10, "m")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read configuration file") as info:
        ManagerConfig.from_file(tmp_path / "missing.json")
    assert info.value.details["field"] == "file"
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"bad\.json is not valid json"):
        ManagerConfig.from_file(bad_json)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("timeout = = 3")
    with pytest.raises(ConfigurationError, match=r"bad\.toml is not valid toml"):
        ManagerConfig.from_file(bad_toml)
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="must hold a table/object"):
        ManagerConfig.from_file(array)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"timeout": "1s", "tiemout": "2s"}')
    with pytest.raises(ConfigurationError, match="'tiemout'"):
        ManagerConfig.from_file(unknown)


def test_from_env() -> None:
    env = {
        "EVENTSOURCE_PROVIDERS__PG": "postgresql://app@127.0.0.1/events",
        "EVENTSOURCE_DEFAULT_PROVIDER": "pg",
        "EVENTSOURCE_TIMEOUT": "10s",
        "EVENTSOURCE_RETRY_ATTEMPTS": "5",
        "EVENTSOURCE_RETRY_DELAY": "100ms",
        "EVENTSOURCE_MAX_EVENT_SIZE": "4096",
        "EVENTSOURCE_MAX_BATCH_SIZE": "20",
        "EVENTSOURCE_SNAPSHOT_THRESHOLD": "none",
        "EVENTSOURCE_RETENTION_PERIOD": "7d",
        "EVENTSOURCE_COMPRESSION": "brotli",
        "EVENTSOURCE_ENCRYPTION": "false",
        "EVENTSOURCE_TEST_POSTGRES_URL": "ignored: not a config field",
        "EVENTSOURCE_DISABLED_PLUGINS": "ignored",
        "OTHER_TIMEOUT": "ignored",
    }
    cfg = ManagerConfig.from_env(env)
    assert cfg.providers == {"pg": {"url": "postgresql://app@127.0.0.1/events", "settings": {}}}
    assert (cfg.default_provider, cfg.timeout, cfg.retry_attempts, cfg.retry_delay) == ("pg", 10.0, 5, 0.1)
    assert (cfg.max_event_size, cfg.max_batch_size, cfg.snapshot_threshold) == (4096, 20, None)
    assert (cfg.retention_period, cfg.compression, cfg.encryption) == (7 * 86400.0, "brotli", False)
    assert ManagerConfig.from_env({}) == ManagerConfig()


def test_env_overrides_the_env_config_file(tmp_path: Path) -> None:
    path = tmp_path / "es.toml"
    path.write_text('timeout = "1m"\nmax_batch_size = 10\n[providers]\nm = "memory://"\n')
    cfg = ManagerConfig.from_env({"EVENTSOURCE_CONFIG": str(path), "EVENTSOURCE_MAX_BATCH_SIZE": "99"})
    assert (cfg.timeout, cfg.max_batch_size, cfg.default_provider) == (60.0, 99, "m")
    with pytest.raises(ConfigurationError, match="'retry_attempts'"):
        ManagerConfig.from_env({"EVENTSOURCE_RETRY_ATTEMPTS": "many"})


def test_load_accepts_a_config_a_dict_or_a_path(tmp_path: Path) -> None:
    cfg = ManagerConfig(max_batch_size=7)
    assert ManagerConfig.load(cfg) == cfg  # validated like any other source
    with pytest.raises(ConfigurationError) as e:
        ManagerConfig.load(ManagerConfig(retry_attempts=0))
    assert e.value.details["field"] == "retry_attempts"
    assert ManagerConfig.load({"max_batch_size": 7}).max_batch_size == 7
    path = tmp_path / "c.json"
    path.write_text('{"max_batch_size": 7}')
    assert ManagerConfig.load(path).max_batch_size == 7


def test_repr_masks_keys_and_url_passwords() -> None:
    cfg = ManagerConfig.from_dict(
        {
            "providers": {
                "pg": "postgresql://app:hunter2@db.internal:5432/events",
                "nats": "nats://tok:s3cr3t@127.0.0.1:4222",
            },
            "encryption": True,
            "encryption_keys": {"k1": KEY},
            "active_key_id": "k1",
        }
    )
    text = repr(cfg)
    for secret in ("hunter2", "s3cr3t", KEY):
        assert secret not in text
    assert "postgresql://app:***@db.internal:5432/events" in text
    assert "nats://tok:***@127.0.0.1:4222" in text
    assert "'k1': '***'" in text
    assert "max_batch_size=1000" in text  # everything else is shown as is


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pw@host/db", "postgresql://app:***@host/db"),
        ("postgresql://app:pw@host:5433/db?sslmode=require", "postgresql://app:***@host:5433/db?sslmode=require"),
        ("postgresql://:pw@host/db", "postgresql://:***@host/db"),
        ("postgresql://app@host/db", "postgresql://app@host/db"),
        ("sqlite:///eventsource.db", "sqlite:///eventsource.db"),
        ("memory://", "memory://"),
        ("kafka://[::1", "<unparseable url>"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


async def test_the_manager_applies_the_limits() -> None:
    cfg = ManagerConfig.from_dict(
        {"providers": {"m": "memory://"}, "max_batch_size": 2, "max_event_size": 64, "max_stream_id_length": 8}
    )
    async with EventSourcingManager(cfg, host=PluginHost(load_entrypoints=False)) as m:
        with pytest.raises(ValidationError, match="max_batch_size=2"):
            await m.append_events_batch(stream_id="s", events=[EventData("E", {}) for _ in range(3)])
        with pytest.raises(ValidationError, match="the limit is 64"):
            await m.append_event(stream_id="s", event_type="E", data={"x": "y" * 100})
        with pytest.raises(ValidationError, match="the limit is 8"):
            await m.append_event(stream_id="s" * 9, event_type="E", data={})
        assert not await m.stream_exists("s")


def test_env_variables_join_a_config_file_without_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"retry_attempts": 5, "providers": {"file": "memory://f"}}')
    cfg = ManagerConfig.from_env({"EVENTSOURCE_CONFIG": str(path), "EVENTSOURCE_PROVIDERS__MAIN": "memory://m"})
    assert cfg.retry_attempts == 5
    assert list(cfg.providers) == ["file", "main"]
    assert cfg.default_provider == "file"
    only_settings = tmp_path / "s.json"
    only_settings.write_text('{"retry_attempts": 5}')
    cfg = ManagerConfig.from_env({"EVENTSOURCE_CONFIG": str(only_settings), "EVENTSOURCE_PROVIDERS__MAIN": "memory://"})
    assert (cfg.default_provider, list(cfg.providers)) == ("main", ["main"])


def test_env_text_settings_stay_text_and_key_ids_keep_their_case() -> None:
    key = base64.b64encode(bytes(32)).decode()
    cfg = ManagerConfig.from_env(
        {
            "EVENTSOURCE_ENCRYPTION_KEYS__K2025": key,
            "EVENTSOURCE_ENCRYPTION_KEYS__2026": key,
            "EVENTSOURCE_ACTIVE_KEY_ID": "2026",
            "EVENTSOURCE_PROVIDERS__P": "memory://",
        }
    )
    assert sorted(cfg.encryption_keys) == ["2026", "K2025"]
    assert cfg.active_key_id == "2026"


def test_a_zero_timeout_is_refused_rather_than_failing_every_call() -> None:
    with pytest.raises(ConfigurationError) as e:
        ManagerConfig.from_dict({"timeout": 0})
    assert e.value.details["field"] == "timeout"
    assert ManagerConfig.from_dict({"timeout": None}).timeout is None


def test_mask_url_hides_passwords_in_the_query_string_too() -> None:
    masked = mask_url("postgresql://app@db.internal/events?sslmode=require&password=S3cretPw&sslpassword=x")
    assert "S3cretPw" not in masked
    assert masked == "postgresql://app@db.internal/events?sslmode=require&password=***&sslpassword=***"
    assert mask_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_mask_url_hides_a_nats_token_given_as_the_user() -> None:
    """NATS sends a user without a password as an auth token: a config's repr must not print it."""
    assert mask_url("nats://s3cr3tTOKEN@127.0.0.1:4222") == "nats://***@127.0.0.1:4222"
    assert mask_url("nats+tls://s3cr3tTOKEN@h1:4222,h2:4222") == "nats+tls://***@h1:4222,h2:4222"
    cfg = ManagerConfig.from_dict({"providers": {"n": "nats://s3cr3tTOKEN@127.0.0.1:4222"}})
    assert "s3cr3tTOKEN" not in repr(cfg)
    assert mask_url("postgresql://app@host/db") == "postgresql://app@host/db"  # a user alone is no secret there


@pytest.mark.parametrize(
    "entry",
    [
        {"url": "sqlite:///x.db", "synchronous": "normal"},  # a SQLite setting one level too high
        {"url": "postgresql://db/events", "schema": "orders", "settings": {}},
        {"url": "memory://", "setings": {}},  # a misspelled "settings"
    ],
)
def test_an_unknown_key_of_a_provider_entry_is_refused_by_name(entry: dict[str, Any]) -> None:
    """A key beside ``url`` and ``settings`` was silently dropped: ``synchronous`` there left SQLite at FULL."""
    (unknown,) = set(entry) - {"url", "settings"}
    with pytest.raises(ConfigurationError, match=f"'{unknown}'") as info:
        ManagerConfig.from_dict({"providers": {"main": entry}})
    assert info.value.details["field"] == f"providers.main.{unknown}"
    assert "settings" in str(info.value)


def test_every_documented_provider_entry_form_is_accepted() -> None:
    """A URL string, ``url`` alone, ``url`` with ``settings`` (README, plugin READMEs, docs/writing-a-provider.md)."""
    cfg = ManagerConfig.from_dict(
        {
            "providers": {
                "a": "memory://",
                "b": {"url": "memory://"},
                "c": {"url": "sqlite:///x.db", "settings": {"synchronous": "normal"}},
            }
        }
    )
    assert cfg.providers["c"] == {"url": "sqlite:///x.db", "settings": {"synchronous": "normal"}}
    assert cfg.providers["b"] == {"url": "memory://", "settings": {}}


def test_a_store_url_string_is_one_default_store_not_a_file_path(tmp_path: Path) -> None:
    """``EventSourcingManager("sqlite:///events.db")`` is the store a new user means, not a file to read."""
    from eventsource import SyncEventSourcingManager

    url = f"sqlite:///{tmp_path}/events.db"
    cfg = ManagerConfig.load(url)
    assert cfg.default_provider == "default"
    assert cfg.providers["default"]["url"] == url
    assert ManagerConfig.load("memory://").providers["default"]["url"] == "memory://"
    with SyncEventSourcingManager("memory://") as m:
        m.append_event(stream_id="s", event_type="E", data={"n": 1})
        assert [e.data for e in m.read_stream("s")] == [{"n": 1}]
    with pytest.raises(ConfigurationError, match="cannot read configuration file"):
        ManagerConfig.load(str(tmp_path / "settings.toml"))  # a path stays a path
    path = tmp_path / "c.json"
    path.write_text('{"max_batch_size": 7}')
    assert ManagerConfig.load(str(path)).max_batch_size == 7
    assert ManagerConfig.load(path.as_uri()).max_batch_size == 7  # file:///...: the file, not a store


@pytest.mark.parametrize(
    "param",
    # every secret a plugin takes under that name: libpq's password and sslpassword (the postgres URL goes to
    # libpq as is), Kafka's sasl_plain_password and ssl_password settings, a generic token or secret
    ["password", "sslpassword", "passwd", "pass", "secret", "token", "sasl_plain_password", "ssl_password"],
)
def test_mask_url_hides_each_secret_query_parameter(param: str) -> None:
    for url in (f"kafka://h:9092?{param}=S3cr3t", f"postgresql://app@db/events?sslmode=require&{param.upper()}=S3cr3t"):
        masked = mask_url(url)
        assert "S3cr3t" not in masked, masked
        assert masked == url.replace("S3cr3t", "***")


@pytest.mark.parametrize(
    ("url", "user", "password", "hosts"),
    [
        ("kafka://h1:9092", None, None, ("h1:9092",)),
        ("nats://alice:s3cret@h1:4222,h2,h3:5222", "alice", "s3cret", ("h1:4222", "h2", "h3:5222")),
        ("kafka://alice:s%3Acr%40t@b1:9092", "alice", "s:cr@t", ("b1:9092",)),  # percent-encoded password
        ("kafka://alice:p@ss@b1:9092", "alice", "p@ss", ("b1:9092",)),  # the last "@" ends the userinfo
        ("nats://:pw@h1", "", "pw", ("h1",)),  # empty user
        ("nats://tok3n@h1", "tok3n", None, ("h1",)),  # a user without a password (NATS: a token)
        ("kafka://alice:@h1:9092", "alice", "", ("h1:9092",)),  # empty password
        ("kafka://u:p@[::1]:9092,[fe80::2]:9093", "u", "p", ("[::1]:9092", "[fe80::2]:9093")),  # IPv6
        ("nats://h1:4222, h2:4222 ,,", None, None, ("h1:4222", "h2:4222")),  # blanks and empty entries dropped
        ("kafka://u:p@h1:9092/path?ssl_password=x", "u", "p", ("h1:9092",)),  # path and query are not hosts
        ("kafka://user:SECRET@", "user", "SECRET", ()),
    ],
)
def test_url_authority_splits_userinfo_and_hosts(
    url: str, user: str | None, password: str | None, hosts: tuple[str, ...]
) -> None:
    from eventsource.config import url_authority

    assert url_authority(url) == (user, password, hosts)


@pytest.mark.parametrize(
    "target",
    [
        "host=db dbname=x password=SEKRIT",
        "host=db sslpassword = 'SEK RIT' password=pw",
        "host=db PASSWORD=SEKRIT",
        "app:SEKRIT@db:5432/x",
        "kafka:/u:SEKRIT@h:9092",
        "postgresql://u@h/db?%70assword=SEKRIT",
    ],
)
def test_mask_url_hides_secrets_in_dsns_and_scheme_less_strings(target: str) -> None:
    """What a user passes where a URL goes is masked however it is written: a libpq key/value DSN, a string with
    no ``scheme://`` (refused as a store URL, then shown in the error), a percent-encoded parameter name."""
    shown = mask_url(target)
    assert "SEKRIT" not in shown
    assert "SEK RIT" not in shown
    assert "RIT" not in shown
    assert "***" in shown


def test_a_string_refused_as_a_store_url_is_shown_masked() -> None:
    from eventsource.plugins import PluginHost

    for target in ("host=db dbname=x password=SEKRIT", "app:SEKRIT@db:5432/x", "kafka:/u:SEKRIT@h:9092"):
        with pytest.raises(ConfigurationError) as info:
            PluginHost().create_provider(target)
        assert "SEKRIT" not in str(info.value)
        assert "SEKRIT" not in repr(info.value.to_dict())


@pytest.mark.parametrize(
    "text",
    [
        "host=db application_name=http://app password=SEKRIT",  # a DSN whose value holds "://"
        "host=db password=SE://KRIT",
        "app:SEKRIT@db:5432/x?sslmode=require",  # the scheme forgotten, with a query
        "app:p@SEKRIT@db",  # the last "@" ends the userinfo, as in a URL
        "error connecting to postgresql://u:SEKRIT@h/db: timed out",  # a URL inside text
        "connecting to app:SEKRIT@db (timeout=5) failed",
        "postgresql://u:pa?SEKRIT@h/db",  # libpq reads the password up to the "@", past a "?" or "#"
        "postgresql://u:pa#SEKRIT@h/db?sslmode=require",
    ],
)
def test_mask_url_hides_secrets_however_the_text_around_them_looks(text: str) -> None:
    assert "SEK" not in mask_url(text)
    assert "KRIT" not in mask_url(text)


def test_mask_url_leaves_text_without_secrets_as_it_is() -> None:
    """Long inputs too (an earlier pattern took minutes on 100,000 characters without whitespace)."""
    for text in ("user@host", "memory:", "h1:9092,h2:9093", "10:30 me@x", "sqlite:///x.db", "kafka://h1:9092,h2:9093"):
        assert mask_url(text) == text
    for text in ("postgresql://h/db?application_name=a@b", "postgresql://h?x=a@b/c", "postgresql://u@h/db"):
        assert mask_url(text) == text
    for text in ("a" * 100_000, ":" * 100_000, "a:" * 50_000, "'" * 100_000, "@" * 100_000):
        assert mask_url(text) == text


def test_a_file_url_names_a_local_file_only(tmp_path: Path) -> None:
    path = tmp_path / "c d.json"
    path.write_text('{"max_batch_size": 7}')
    assert ManagerConfig.load(path.as_uri()).max_batch_size == 7  # percent-encoded space
    assert ManagerConfig.load(f"file://localhost{path.as_uri()[7:]}").max_batch_size == 7
    with pytest.raises(ConfigurationError, match="local file"):
        ManagerConfig.load(f"file://otherhost{path.as_uri()[7:]}")


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        ("postgresql://app:pa?ss@host/db", {"pa?ss"}),  # libpq's reading; urlsplit's ("pa") is not a secret here
        ("postgresql://app:p%40ss@host/db?sslpassword=s%2Fx", {"p%40ss", "p@ss", "s%2Fx", "s/x"}),
        ("kafka://u:k-pw@b1:9092,b2:9093?sasl_plain_password=sasl-pw", {"k-pw", "sasl-pw"}),
        ("host=db sslpassword='q \\' x' password=plain", {"q ' x", "plain"}),
        ("could not reach app:txt-pw@db", {"txt-pw"}),
        ("postgresql://app@host/db?sslmode=require", set()),
        ("host=db dbname=events", set()),
    ],
)
def test_url_secrets_finds_every_secret_mask_url_hides(text: str, secrets: set[str]) -> None:
    found = url_secrets(text)
    assert secrets <= set(found)
    for s in found:
        assert s not in mask_url(text).replace("***", "")  # everything it names, the masked form hides
    if not secrets:
        assert found == ()

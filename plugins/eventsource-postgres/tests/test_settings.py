"""Settings validation, URL handling and password masking."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from eventsource.errors import ConfigurationError
from eventsource_postgres import PostgresProvider
from eventsource_postgres.settings import PostgresSettingsSchema, libpq_kwargs


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"schema": 'x"; DROP TABLE y; --'}, "schema"),
        ({"schema": "Upper"}, "schema"),
        ({"table_prefix": "bad-prefix"}, "table_prefix"),
        # review: "$" also matched before a final newline, so a name read from a file with its line end (an env
        # file, a secret) passed and opened another, empty store than the one named
        ({"schema": "events\n"}, "schema"),
        ({"table_prefix": "app_\n"}, "table_prefix"),
        ({"pool_max_size": 0}, "pool_max_size"),
        ({"pool_min_size": 5, "pool_max_size": 2}, "pool_max_size"),
        ({"pool_timeout": "soon"}, "pool_timeout"),
        ({"sslmode": "sometimes"}, "sslmode"),
        ({"jit": "on"}, "jit"),
        ({"connect_args": {"password": "x"}}, "connect_args"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_settings_name_the_field(settings: dict, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresProvider("postgresql://u@h/db", **settings)
    assert info.value.details["field"] == field


def test_a_checkpoint_schema_with_a_line_end_is_refused() -> None:
    from eventsource_postgres.checkpoints import PostgresCheckpointStore

    with pytest.raises(ConfigurationError):
        PostgresCheckpointStore("postgresql://u@h/db", schema="eventsource\n")


def test_a_projection_sink_schema_with_a_line_end_is_refused() -> None:
    from eventsource.projections.postgres import PostgresSink

    with pytest.raises(ConfigurationError):
        PostgresSink("postgresql://u@h/db", schema="eventsource\n")


def test_urls() -> None:
    with pytest.raises(ConfigurationError):
        PostgresProvider("mysql://h/db")
    with pytest.raises(ConfigurationError):
        PostgresProvider(None)
    assert PostgresProvider("postgres://u@h/db").url == "postgres://u@h/db"


def test_password_is_masked_everywhere_it_is_shown() -> None:
    p = PostgresProvider("postgresql://app:pa55word@db.example:5432/events?sslmode=require", schema="app")
    assert p.display_url == "postgresql://app:***@db.example:5432/events?sslmode=require"
    assert "pa55word" not in repr(p)


def test_spawn_args_rebuild_the_same_store() -> None:
    p = PostgresProvider(
        "postgresql://u@h/db", schema="app_one", table_prefix="t_", pool_max_size=3, pool_timeout="250ms"
    )
    args = json.loads(json.dumps(p.spawn_args()))
    q = PostgresProvider(**args)
    assert (q.names, q.settings) == (p.names, p.settings)
    assert q.settings["pool_timeout"] == 0.25


def test_tls_and_libpq_settings_are_passed_through() -> None:
    s = PostgresSettingsSchema().load(
        {"sslmode": "verify-full", "sslrootcert": "/ca.pem", "sslcert": "/c.pem", "sslkey": "/k.pem",
         "connect_args": {"target_session_attrs": "read-write", "keepalives_idle": 30}, "application_name": "svc"}
    )  # fmt: skip
    kw = libpq_kwargs(s)
    assert kw["sslmode"] == "verify-full"
    assert (kw["sslrootcert"], kw["sslcert"], kw["sslkey"]) == ("/ca.pem", "/c.pem", "/k.pem")
    assert kw["target_session_attrs"] == "read-write"
    assert kw["keepalives_idle"] == 30
    assert kw["application_name"] == "svc"
    assert "sslcrl" not in kw


def test_a_libpq_dsn_is_accepted_and_its_password_masked() -> None:
    p = PostgresProvider("host=db.example port=5432 dbname=events user=app password=pa55word sslmode=require")
    assert p.display_url == "host=db.example port=5432 dbname=events user=app password=*** sslmode=require"
    assert "pa55word" not in repr(p)
    q = PostgresProvider("host=db user=app password='with space' dbname=x")
    assert "with space" not in str(q.display_url)
    with pytest.raises(ConfigurationError):
        PostgresProvider("just some words")


async def jit_on_pooled_connections(p: PostgresProvider) -> list[str]:
    """``SHOW jit`` on two pooled connections held at once (so each was configured on its own)."""
    pool = p._conn.pool
    assert pool is not None
    async with pool.connection() as a, pool.connection() as b:
        return [str((await (await c.execute("SHOW jit")).fetchone())[0]) for c in (a, b)]  # type: ignore[index]


async def test_connections_run_without_jit_unless_told_to_keep_the_servers(make_provider: Any) -> None:
    # the server's choice made "on" through the connection options, so "off" can only come from the provider
    on = {"connect_args": {"options": "-c jit=on"}, "pool_min_size": 2}
    assert await jit_on_pooled_connections(await make_provider(**on)) == ["off", "off"]
    assert await jit_on_pooled_connections(await make_provider(jit="server", **on)) == ["on", "on"]
    off = {"connect_args": {"options": "-c jit=off"}, "pool_min_size": 2}
    assert await jit_on_pooled_connections(await make_provider(jit="server", **off)) == ["off", "off"]


async def test_the_read_url_pool_runs_without_jit_too(make_provider: Any, url: str) -> None:
    # read_url may name the primary itself (same cluster, same database): its pool is configured on its own
    on = {"connect_args": {"options": "-c jit=on"}, "pool_min_size": 2}
    p = await make_provider(read_url=url, **on)
    assert p._replica is not None
    async with p._replica.standby.pool.connection() as a, p._replica.standby.pool.connection() as b:
        assert [str((await (await c.execute("SHOW jit")).fetchone())[0]) for c in (a, b)] == ["off", "off"]  # type: ignore[index]
    assert await jit_on_pooled_connections(p) == ["off", "off"]


@pytest.mark.parametrize(
    "target", ["host=db dbname=x sslpassword=SEKRIT", "host=db sslpassword = 'SEK RIT' password=pw"]
)
def test_every_secret_of_a_dsn_is_masked_where_it_is_shown(target: str) -> None:
    """``sslpassword`` too (the old pattern's ``\\bpassword`` never matched inside it): display, checkpoint store."""
    from eventsource.projections.sinks import CheckpointStoreSink
    from eventsource_postgres.checkpoints import PostgresCheckpointStore

    store = PostgresCheckpointStore(target)
    for shown in (PostgresProvider(target).display_url, store.display_url, repr(CheckpointStoreSink(store))):
        assert "SEK" not in shown
        assert "sslpassword" in shown


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://app:s3cret@127.0.0.1/test?schema=orders", '"schema"'),
        ("postgresql://app:s3cret@[::1/test", "IPv6"),
    ],
)
def test_a_url_libpq_cannot_parse_is_a_configuration_error_not_an_unreachable_server(url: str, says: str) -> None:
    """``--store 'postgresql://app@127.0.0.1/test?schema=orders'`` (a setting written as a URL parameter, as the
    SQLite store takes them) was retried three times and reported as "cannot reach the store ...: invalid URI query
    parameter: "schema"; check that the server is running", exit 5, while the server was up. libpq refuses the URL
    itself: that is a configuration error, raised when the provider is built (nothing retries it), password masked.
    """
    with pytest.raises(ConfigurationError) as info:
        PostgresProvider(url)
    assert info.value.details["field"] == "url"
    assert says in str(info.value), str(info.value)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        # review: SET statement_timeout = 0 is PostgreSQL's "no limit", the opposite of a short bound; and a value
        # under 1 ms was cut to 0 ms on its way to the server, so "0.4ms" meant no limit too (null is no limit)
        ("statement_timeout", 0),
        ("statement_timeout", "0s"),
        ("statement_timeout", "0.4ms"),
        # review: psycopg's pool re-runs its shrink task every max_idle seconds: at 0 the idle provider's event
        # loop spun (about a fifth of a CPU); under a second it wakes that often for nothing
        ("max_idle", 0),
        ("max_idle", "10ms"),
        # review: every connection was past its lifetime when it came back, so each call opened a new one (0 reads
        # as "no recycling" to a user of other pools)
        ("max_lifetime", 0),
        ("max_lifetime", "0s"),
        # review: libpq reads a connect_timeout of 0 (or less) as "wait forever", and connect_args overrode the
        # connect_timeout setting (which is refused at 0) on the way to libpq
        ("connect_args", {"connect_timeout": 0}),
        ("connect_args", {"connect_timeout": "5"}),
    ],
)
def test_an_edge_value_that_means_no_bound_or_a_busy_pool_is_refused(setting: str, value: object) -> None:
    from eventsource_postgres import PostgresAdvisoryLease

    with pytest.raises(ConfigurationError) as info:
        PostgresProvider("postgresql://u@h/db", **{setting: value})
    assert info.value.details["field"] == setting
    if setting != "statement_timeout":  # the lease's connections take the same connection settings
        with pytest.raises(ConfigurationError) as info:
            PostgresAdvisoryLease("postgresql://u@h/db", **{setting: value})
        assert info.value.details["field"] == setting


def _with(target: str, param: str) -> str:
    """``target`` (a URL or a DSN) with one more libpq parameter."""
    if "://" in target:
        return target + ("&" if "?" in target else "?") + param
    return f"{target} {param}"


async def _dsn_timeouts(p: PostgresProvider) -> list[str]:
    """The ``connect_timeout`` each pool's connections were opened with (libpq's own record of it)."""
    pools = [p._conn.pool] + ([p._replica.standby.pool] if p._replica is not None else [])
    out = []
    for pool in pools:
        assert pool is not None
        async with pool.connection() as c:
            out.append(psycopg.conninfo.conninfo_to_dict(c.info.dsn).get("connect_timeout"))
    return out


async def test_a_connect_timeout_in_the_url_is_the_one_connections_use_unless_the_setting_is_given(
    make_provider: Any, url: str
) -> None:
    """The setting's default (10 s) was always passed to libpq, overriding the URL's: the README's failover example
    (``?connect_timeout=2`` on each host of a list) waited 10 s per dead host."""
    with_url = _with(url, "connect_timeout=2")
    assert await _dsn_timeouts(await make_provider_at(make_provider, with_url)) == ["2"]
    assert await _dsn_timeouts(await make_provider_at(make_provider, with_url, connect_timeout=5)) == ["5"]
    assert await _dsn_timeouts(await make_provider_at(make_provider, url)) == ["10"]
    both = await make_provider_at(make_provider, with_url, read_url=_with(url, "connect_timeout=3"))
    assert await _dsn_timeouts(both) == ["2", "3"]
    from eventsource_postgres.lease import PostgresAdvisoryLease

    assert PostgresAdvisoryLease(with_url).settings["connect_timeout"] == 2  # its pool takes the same kwargs
    assert PostgresAdvisoryLease(with_url, connect_timeout=4).settings["connect_timeout"] == 4


async def make_provider_at(make_provider: Any, target: str, **settings: Any) -> PostgresProvider:
    return await make_provider(url_override=target, **settings)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_connect_timeout_in_the_url_that_means_wait_forever_or_nothing_is_refused(url: str, value: str) -> None:
    """libpq reads 0 (and below) as "wait forever", as it did through connect_args (refused there already)."""
    with pytest.raises(ConfigurationError) as info:
        PostgresProvider(_with(url, f"connect_timeout={value}"))
    assert info.value.details["field"] == "url"

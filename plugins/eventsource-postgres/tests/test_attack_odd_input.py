"""Odd input through the manager on PostgreSQL: what the server refuses is refused as bad input, nothing more.

A stream id the manager lets through (within ``max_stream_id_length``) can still be more than PostgreSQL's btree
index holds (about 2,700 bytes after compression): 1,024 characters outside the BMP are 4,096 bytes of UTF-8. The
server refuses it (``54000``, which psycopg raises as an ``OperationalError``, the class of a lost connection too).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from conftest import manager_on
from eventsource.checkpoints import Checkpoint
from eventsource.checkpoints.memory import MemoryCheckpointStore
from eventsource.checkpoints.sqlite import SqliteCheckpointStore
from eventsource.cli import EXIT_USAGE, main
from eventsource.errors import ConfigurationError, ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.projections.postgres import PostgresSink
from eventsource.sync import SyncEventSourcingManager
from eventsource_postgres import PostgresAdvisoryLease, PostgresProvider
from eventsource_postgres.checkpoints import PostgresCheckpointStore


def _too_long_for_the_index() -> str:
    """1,024 characters (the manager's default limit) of 4 bytes each, none repeated enough to compress."""
    rnd = random.Random(7)
    return "".join(chr(rnd.randrange(0x10000, 0x10FFFF)) for _ in range(1024))


@pytest.fixture
def config(url: str) -> Iterator[dict[str, Any]]:
    schema = f"es_{uuid.uuid4().hex[:16]}"
    settings = {"schema": schema, "pool_max_size": 4, "application_name": f"es-odd-{uuid.uuid4().hex[:12]}"}
    yield {"providers": {"pg": {"url": url, "settings": settings}}, "default_provider": "pg"}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_an_id_too_long_for_the_index_is_refused_once_without_treating_it_as_a_lost_connection(
    make_provider: Callable[..., Any],
) -> None:
    """Taken for a lost connection, the refusal made the provider sweep its pool and send the append again."""
    p: PostgresProvider = await make_provider()
    m = await manager_on(p)
    await m.append_event(stream_id="warm", event_type="E", data=0)
    sweeps: list[object] = []
    check = p._conn._check

    async def spy_check(*args: Any, **kwargs: Any) -> None:
        sweeps.append(args)
        await check(*args, **kwargs)

    p._conn._check = spy_check  # type: ignore[method-assign]
    sid = _too_long_for_the_index()
    with pytest.raises(ValidationError, match="index row"):
        await m.append_event(stream_id=sid, event_type="E", data=1)
    with pytest.raises(ValidationError, match="index row"):
        await m.create_stream(stream_id=sid)
    assert sweeps == [], "bad input was handled as a lost connection: the pool swept and the statement sent again"
    assert not await m.stream_exists(sid)
    assert (await m.list_streams()).total_count == 1
    await m.close()


async def test_an_id_too_long_for_the_index_is_named_as_the_stream_id_in_the_error(
    make_provider: Callable[..., Any],
) -> None:
    """The error was the server's own line ('index row size 4112 exceeds btree version 4 maximum 2704 for index
    "streams_pkey"', or for a longer id 'index row requires 10016 bytes, maximum size is 8191', naming no index),
    with no field: nothing said the stream id was what to shorten."""
    p: PostgresProvider = await make_provider()
    m = await manager_on(p)
    m.config.max_stream_id_length = 65536
    rnd = random.Random(8)
    for sid in (_too_long_for_the_index(), "".join(chr(rnd.randrange(33, 127)) for _ in range(10_000))):
        for call in (
            lambda s: m.append_event(stream_id=s, event_type="E", data=1),
            lambda s: m.append_events_batch(stream_id=s, events=[{"event_type": "E", "data": 1}] * 2),
            lambda s: m.create_stream(stream_id=s),
        ):
            with pytest.raises(ValidationError, match="stream id is longer than PostgreSQL's index") as caught:
                await call(sid)
            assert caught.value.details["field"] == "stream_id"
    assert (await m.list_streams()).total_count == 0
    await m.close()


async def test_create_stream_refuses_an_id_its_events_could_never_be_stored_under(
    make_provider: Callable[..., Any],
) -> None:
    """The streams row's index holds a few bytes more of a stream id than the events' ``(stream_id, version)`` one:
    an id of 2,685 to 2,692 bytes (672 characters of 4 bytes, within the manager's default limit) was created, and
    every append to it was then refused. A stream create_stream accepts takes an event (or snapshot)."""
    p: PostgresProvider = await make_provider()
    m = await manager_on(p)
    rnd = random.Random(9)
    created = refused = 0
    for n in range(668, 677):  # 2,672 to 2,704 bytes of UTF-8
        sid = "".join(chr(rnd.randrange(0x10000, 0x10FFFF)) for _ in range(n))
        try:
            await m.create_stream(stream_id=sid)
        except ValidationError as e:
            assert e.details["field"] == "stream_id"
            assert not await m.stream_exists(sid), "a refused create left its stream"
            refused += 1
            continue
        created += 1
        res = await m.append_event(stream_id=sid, event_type="E", data=n)
        assert res.version == 1, f"a stream of a {len(sid.encode())}-byte id was created but takes no event"
        await m.create_snapshot(stream_id=sid, version=1, data=n)
    assert created and refused
    await m.close()


def test_an_id_too_long_for_the_index_through_the_sync_lane_keeps_the_connection(config: dict[str, Any]) -> None:
    """The lane closed its kept connection on the refusal (the pool logged it) and ran the append again."""
    with SyncEventSourcingManager(config) as es:
        provider = es.get_provider()
        assert isinstance(provider, PostgresProvider)
        es.append_event(stream_id="warm", event_type="E", data=0)
        es.append_event(stream_id="warm", event_type="E", data=1)
        kept = provider._conn._kept
        assert kept is not None
        calls = {"async": 0}
        append = provider.append

        async def spy_append(*args: Any, **kwargs: Any) -> Any:
            calls["async"] += 1
            return await append(*args, **kwargs)

        provider.append = spy_append  # type: ignore[method-assign]
        with pytest.raises(ValidationError, match="index row"):
            es.append_event(stream_id=_too_long_for_the_index(), event_type="E", data=2)
        assert calls["async"] == 0, "the lane declined the refused append and it was sent again"
        assert not kept.closed, "the kept connection was closed over bad input"
        assert es.append_event(stream_id="warm", event_type="E", data=3).version == 3
        assert provider._conn._kept is kept


@pytest.mark.parametrize("store", ["postgres", "sqlite"])
async def test_a_subscription_name_or_source_with_a_lone_surrogate_is_refused_by_name_before_any_store_call(
    make_provider: Callable[..., Any], url: str, tmp_path: Any, store: str
) -> None:
    """The name reached the checkpoint store: PostgreSQL's said 'utf-8 codec can't encode' (no field named), SQLite's
    raised a bare UnicodeEncodeError, both once the subscription ran."""
    p: PostgresProvider = await make_provider()
    m = await manager_on(p)
    await m.append_event(stream_id="s", event_type="E", data=0)
    schema = p.names.schema
    cp = PostgresCheckpointStore(url, schema=schema) if store == "postgres" else f"sqlite:///{tmp_path}/cp.db"
    for kwargs in ({"name": "sub\ud800"}, {"name": "sub", "source": "src\udfff"}):
        with pytest.raises(ValidationError, match="surrogate") as caught:
            m.subscribe(checkpoint=cp, **kwargs)  # type: ignore[arg-type]
        assert caught.value.details["field"] == next(k for k, v in kwargs.items() if not v.isascii())
    if isinstance(cp, PostgresCheckpointStore):
        await cp.connect()
        assert await cp.list() == []
        for args in (("sub\ud800", "src"), ("sub", "src\ud800")):
            with pytest.raises(ValidationError, match="surrogate"):
                await cp.get(*args)
        await cp.close()
    await m.close()


@pytest.fixture
def icu_url(url: str) -> Iterator[str]:
    """A database of its own whose default collation is ICU's en-US (as many are), dropped afterwards."""
    name = f"es_icu_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
            "LOCALE 'C.UTF-8'"
        )
    try:
        yield str(psycopg.conninfo.make_conninfo(url, dbname=name))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_checkpoints_list_in_code_point_order_as_stream_ids_do_whatever_the_databases_collation(
    icu_url: str, tmp_path: Any
) -> None:
    """``ORDER BY name`` followed the database's collation: in an en-US one ``_z, a, B, e, é, Z``, where the SQLite
    and memory stores (and ``list_streams``, its ids ``COLLATE "C"``) give code-point order ``B, Z, _z, a, e, é``."""
    names = ["a", "B", "_z", "é", "e", "Z", "a"]
    sources = ["src", "src", "src", "src", "src", "src", "Src"]
    listed = {}
    for kind, store in (
        ("postgres", PostgresCheckpointStore(icu_url, schema="cp")),
        ("sqlite", SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")),
    ):
        await store.connect()
        for name, source in zip(names, sources, strict=True):
            await store.put(Checkpoint(name, source, "all", 1))
        listed[kind] = [(c.name, c.source) for c in await store.list()]
        await store.close()
    assert listed["postgres"] == sorted(zip(names, sources, strict=True))
    assert listed["postgres"] == listed["sqlite"]


@pytest.mark.parametrize("position", [2**63, 2**64])
async def test_a_checkpoint_position_beyond_a_signed_64_bit_int_is_refused_by_name_on_every_store(
    url: str, tmp_path: Any, position: int
) -> None:
    """PostgreSQL's store raised ProviderError ('bigint out of range'), SQLite's a bare OverflowError, and the
    memory store kept it: no position of any store is that large (``MAX_NUMBER``)."""
    schema = f"es_{uuid.uuid4().hex[:16]}"
    stores = (
        PostgresCheckpointStore(url, schema=schema),
        SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db"),
        MemoryCheckpointStore("memory://"),
    )
    try:
        for store in stores:
            await store.connect()
            await store.put(Checkpoint("kept", "src", "all", 5))
            with pytest.raises(ValidationError, match="position") as caught:
                await store.put(Checkpoint("kept", "src", "all", position))
            assert caught.value.details["field"] == "position"
            with pytest.raises(ValidationError, match="position"):
                await store.put(Checkpoint("new", "src", "all", position))
            assert [(c.name, c.position) for c in await store.list()] == [("kept", 5)], type(store).__name__
            await store.close()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_a_nul_in_a_libpq_setting_is_refused_not_left_to_cut_off_the_settings_after_it(url: str) -> None:
    """libpq reads the connection string up to its first NUL: ``application_name='app\\x00x'`` connected as ``app``
    and silently dropped every parameter after it, ``sslmode=require`` included (the connection ran without TLS)."""
    for settings, field in (
        ({"application_name": "app\x00x", "sslmode": "require"}, "application_name"),
        ({"sslrootcert": "/etc/ca\x00.pem", "sslmode": "verify-full"}, "sslrootcert"),
        ({"connect_args": {"options": "-c a.b=\x00"}}, "connect_args"),
        ({"connect_args": {"keepalives\x00": "1"}}, "connect_args"),
    ):
        with pytest.raises(ConfigurationError, match="NUL") as caught:
            PostgresProvider(url, **settings)
        assert caught.value.details["field"] == field
        with pytest.raises(ConfigurationError, match="NUL"):
            PostgresAdvisoryLease(url, **settings)
    with pytest.raises(ConfigurationError, match="NUL") as caught:
        PostgresProvider("host=127.0.0.1 dbname=test user=postgres application_name=app\x00 sslmode=require")
    assert caught.value.details["field"] == "url"


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"connect_args": {"bogus": "1"}}, "connect_args"), ({"application_name": "app\ud800"}, "application_name")],
)
def test_libpq_settings_libpq_refuses_are_a_configuration_error_not_an_unreachable_server(
    url: str, settings: dict[str, Any], field: str
) -> None:
    """They passed the settings and failed at connect() as ProviderUnavailableError (retried, 'check that the server
    is running'), as a URL libpq refuses did before it was checked when the provider is built."""
    with pytest.raises(ConfigurationError) as caught:
        PostgresProvider(url, **settings)
    assert caught.value.details["field"] == field


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("postgresql://app:s3cret@127.0.0.1/test?schema=orders", '"schema"'),
        ("postgresql://app:s3cret@[::1/test", "IPv6"),
        ("mysql://app:s3cret@127.0.0.1/test", "postgresql://"),
        ("host=127.0.0.1 dbname=test user=postgres password=s3cret application_name=a\x00 sslmode=require", "NUL"),
        ("host=127.0.0.1 dbname=test user=postgres password=s3cret connect_timeout=soon", "connect_timeout"),
    ],
)
def test_a_postgres_sink_target_libpq_refuses_is_a_configuration_error_when_built(target: str, says: str) -> None:
    """PostgresSink took any string: open() then raised a bare psycopg.ProgrammingError (untyped), and a DSN with a
    NUL connected with everything after it dropped (``sslmode=require``: no TLS), as the provider did before."""
    with pytest.raises(ConfigurationError, match=says) as caught:
        PostgresSink(target)
    assert caught.value.details["field"] == "url"
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("interval", [0, "0s", -1])
def test_a_live_poll_interval_of_zero_is_a_configuration_error_not_a_busy_loop(url: str, interval: object) -> None:
    """0 was taken: every pause of a waiting subscription was then 0, and it queried the server back to back."""
    with pytest.raises(ConfigurationError) as caught:
        PostgresProvider(url, live_poll_interval=interval)
    assert caught.value.details["field"] == "live_poll_interval"


BAD_LIBPQ_VALUES = [
    ("sslmode=bogus", "sslmode"),
    ("port=99999", "port"),
    ("target_session_attrs=nonsense", "target_session_attrs"),
]


def _with_option(url: str, option: str) -> str:
    """``url`` with the libpq ``option`` (``name=value``) in its query, replacing any of that name."""
    import urllib.parse

    name = option.split("=", 1)[0]
    parts = urllib.parse.urlsplit(url)
    query = [q for q in parts.query.split("&") if q and q.split("=", 1)[0] != name]
    return urllib.parse.urlunsplit(parts._replace(query="&".join([*query, option])))


@pytest.mark.parametrize(("option", "setting"), BAD_LIBPQ_VALUES, ids=[s for _, s in BAD_LIBPQ_VALUES])
async def test_a_libpq_setting_with_a_bad_value_in_the_url_is_a_configuration_error_not_an_outage(
    url: str, option: str, setting: str
) -> None:
    """libpq refuses a bad value (``sslmode=bogus``) only when it connects: that was ProviderUnavailableError (exit 5
    in the CLI, retried as an outage). It names the setting now, as a ConfigurationError, with the url masked."""
    target = _with_option(_with_option(url, option), "password=s3cret")
    with pytest.raises(ConfigurationError, match=setting) as caught:
        await PostgresProvider(target).connect()
    assert caught.value.details["field"] == "url"
    assert caught.value.details["setting"] == setting
    assert "s3cret" not in str(caught.value)
    m = EventSourcingManager({"providers": {"m": "memory://"}}, host=PluginHost(load_entrypoints=False))
    with pytest.raises(ConfigurationError, match=setting):  # (through the manager's call policy: never retried)
        await m.register_provider(PostgresProvider(target), name="pg")
    assert m.metrics().get("pg", {}).get("connect", {}).get("retries", 0) == 0
    await m.close()
    assert await asyncio.to_thread(main, ["--store", target, "stats"], host=PluginHost()) == EXIT_USAGE  # (was 5)


@pytest.mark.parametrize(("option", "setting"), BAD_LIBPQ_VALUES, ids=[s for _, s in BAD_LIBPQ_VALUES])
async def test_a_postgres_sink_target_with_a_bad_libpq_value_is_a_configuration_error_not_an_outage(
    url: str, option: str, setting: str
) -> None:
    """The sink reported libpq's refusal at connect as SinkUnavailableError: a projection waited it out for ever."""
    sink = PostgresSink(_with_option(_with_option(url, option), "password=s3cret"))
    with pytest.raises(ConfigurationError, match=setting) as caught:
        await sink.open()
    assert caught.value.details["field"] == "url"
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ConfigurationError, match=setting):
        await asyncio.to_thread(sink._sconn)
    await sink.close()


async def test_a_lease_url_with_a_bad_libpq_value_is_a_configuration_error_not_an_outage(url: str) -> None:
    """The lease's pool only says it timed out: a bad value libpq refuses (``sslmode=bogus``) was reported as
    ProviderUnavailableError after ``connect_timeout``. One direct attempt names the setting now."""
    lease = PostgresAdvisoryLease(
        _with_option(_with_option(url, "sslmode=bogus"), "password=s3cret"), connect_timeout=1
    )
    with pytest.raises(ConfigurationError, match="sslmode") as caught:
        await lease.connect()
    assert caught.value.details["setting"] == "sslmode"
    assert "s3cret" not in str(caught.value)
    await lease.close()

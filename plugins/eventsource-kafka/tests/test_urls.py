"""The Kafka URL: a refused one never shows its password, and it is read by core's one URL reader."""

from __future__ import annotations

import pytest
from eventsource.errors import ConfigurationError
from eventsource.manager import EventSourcingManager
from eventsource_kafka.provider import KafkaProvider
from eventsource_kafka.settings import parse_url


@pytest.mark.parametrize(
    "url",
    [
        "kafka://user:SECRET@",  # no broker
        "kafka://user:SECRET@,",
        "kafka://user:SECRET@h:port",  # a bad port
        "kafkas://user:SECRET@h:9092",  # another scheme
        "kafka://h?ssl_password=SECRET",  # a secret in the query and no port
        "nats://user:SECRET@h:9092",
    ],
)
def test_a_refused_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        KafkaProvider(url)
    err = info.value
    shown = [str(err), repr(err), repr(err.details), repr(err.to_dict()), repr(err.args)]
    assert not any("SECRET" in text for text in shown), shown
    assert err.details["field"] == "url"


async def test_a_manager_configured_with_a_refused_url_never_shows_its_password() -> None:
    m = EventSourcingManager({"providers": {"k": {"url": "kafka://user:SECRET@"}}})
    with pytest.raises(ConfigurationError) as info:
        await m.connect()
    err = info.value
    assert "SECRET" not in str(err) + repr(err) + repr(err.to_dict()), err
    assert "kafka://user:***@" in str(err)
    await m.close()


def test_the_url_is_read_through_cores_one_reader() -> None:
    from eventsource.config import url_authority

    for url in ("kafka://alice:s%3Acret@b1:9092,[::1]:9093", "kafka://:pw@h:1", "kafka://u:@h:1", "kafka://h:1"):
        auth = url_authority(url)
        servers, user, password = parse_url(url)
        assert (servers, user, password) == (list(auth.hosts), auth.user or None, auth.password or None)


@pytest.mark.parametrize(
    "authority",
    [
        "b1:9092",
        "alice:s%3Acr%40t@b1:9092,b2:9093",  # percent-encoded password, several hosts
        "alice:p@ss@b1:9092",  # an unencoded "@" in the password
        ":pw@b1:9092",  # empty user
        "alice:@b1:9092",  # empty password
        "u:p@[::1]:9092,[fe80::2]:9093, b3:9094 ,",  # IPv6, blanks
    ],
)
def test_kafka_and_nats_read_userinfo_and_hosts_alike(authority: str) -> None:
    """The two plugins read the same authority identically (Kafka takes an empty user or password as none)."""
    from eventsource_nats.settings import parse_url as nats_parse_url

    servers, user, password = parse_url(f"kafka://{authority}")
    nats = nats_parse_url(f"nats://{authority}")
    assert servers == [s.split("://", 1)[1] for s in nats.servers]
    assert (user, password) == (nats.user or None, nats.password or None)

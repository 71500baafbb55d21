"""The Kafka URL: a refused one never shows its password."""

from __future__ import annotations

import pytest
from eventsource.errors import ConfigurationError
from eventsource.manager import EventSourcingManager
from eventsource_kafka.provider import KafkaProvider


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

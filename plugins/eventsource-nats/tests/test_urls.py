"""The NATS URL: read by core's one URL reader, shown through core's one masker."""

from __future__ import annotations

import pytest
from eventsource.config import mask_url
from eventsource_nats.settings import parse_url


@pytest.mark.parametrize(
    ("url", "servers", "user", "password", "shown"),
    [
        ("nats://h1", ("nats://h1:4222",), None, None, "nats://h1:4222"),
        (
            "nats://alice:s%3Acr%40t@h1:4222,h2",  # percent-encoded password
            ("nats://h1:4222", "nats://h2:4222"),
            "alice",
            "s:cr@t",
            "nats://alice:***@h1:4222,h2:4222",
        ),
        ("nats://alice:p@ss@h1", ("nats://h1:4222",), "alice", "p@ss", "nats://alice:***@h1:4222"),
        ("nats://:pw@h1", ("nats://h1:4222",), "", "pw", "nats://:***@h1:4222"),  # empty user
        ("nats://alice:@h1", ("nats://h1:4222",), "alice", "", "nats://alice:***@h1:4222"),  # empty password
        ("nats://t%2Fk@h1", ("nats://h1:4222",), "t/k", None, "nats://***@h1:4222"),  # a token
        (
            "nats+tls://u:p@[::1]:4443,[fe80::2],h3",  # IPv6, with and without a port
            ("tls://[::1]:4443", "tls://[fe80::2]:4222", "tls://h3:4222"),
            "u",
            "p",
            "nats+tls://u:***@[::1]:4443,[fe80::2]:4222,h3:4222",
        ),
        ("nats://u:p@h1?token=T0k", ("nats://h1:4222",), "u", "p", "nats://u:***@h1:4222"),  # the query is not read
    ],
)
def test_urls_are_read_and_shown_masked(
    url: str, servers: tuple[str, ...], user: str | None, password: str | None, shown: str
) -> None:
    u = parse_url(url)
    assert (u.servers, u.user, u.password) == (servers, user, password)
    assert u.display == shown
    assert mask_url(u.display) == u.display  # nothing left for the masker to hide


def test_servers_and_credentials_are_cores_reading_plus_the_default_port() -> None:
    from eventsource.config import url_authority

    for url in ("nats://alice:s%3Acret@h1:4222,[::1],h2", "nats://:pw@h", "nats://tok@h:1", "tls://h"):
        auth = url_authority(url)
        u = parse_url(url)
        assert (u.user, u.password) == (auth.user, auth.password)
        assert len(u.servers) == len(auth.hosts)
        for server, host in zip(u.servers, auth.hosts, strict=True):
            assert server.split("://", 1)[1] in (host, f"{host}:4222")


# what 2026-12-06's main (f656b4c) showed: the display is the checkpoint source, so it never changes for a URL
DISPLAYED_BEFORE = {
    "nats://h1": "nats://h1:4222",
    "nats://tok@h1": "nats://***@h1:4222",
    "nats://u:pw@h1:4223,h2": "nats://u:***@h1:4223,h2:4222",
    "tls://u:pw@h1": "nats+tls://u:***@h1:4222",
    "nats://@h1": "nats://***@h1:4222",  # an empty token (nats://${NATS_TOKEN}@h1 with the variable unset)
    "nats://a%2Fb:pw@h1": "nats://a/b:***@h1:4222",
    "nats://ops%3Aro:pw@h1,h2": "nats://ops:ro:***@h1:4222,h2:4222",
    "nats://a%23b:pw@h1": "nats://a#b:***@h1:4222",
}


@pytest.mark.parametrize(("url", "before"), sorted(DISPLAYED_BEFORE.items()))
def test_the_display_is_the_checkpoint_source_it_was(url: str, before: str) -> None:
    assert parse_url(url).display == before


@pytest.mark.parametrize("url", ["nats://[::1", "nats://u:s3cret@h1,[fe80::2:4222"])
def test_an_unclosed_ipv6_host_is_a_configuration_error(url: str) -> None:
    """``--store 'nats://[::1'`` said "unexpected IndexError: list index out of range", exit 1."""
    from eventsource.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        parse_url(url)
    assert info.value.details["field"] == "url"
    assert "[" in str(info.value) and "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["nats://127.0.0.1:99999", "nats://h:0", "nats://h:\u00b2", "nats://h:abc", "nats://[::1]:x"]
)
def test_a_port_no_socket_can_have_is_a_configuration_error(url: str) -> None:
    """``nats://127.0.0.1:99999`` was taken, and connect() then raised nats-py's bare ``ValueError`` (no
    ``eventsource`` error type, so the CLI said "unexpected error", exit 1)."""
    from eventsource.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        parse_url(url)
    assert info.value.details["field"] == "url"

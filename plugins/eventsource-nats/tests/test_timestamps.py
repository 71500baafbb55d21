"""Event timestamps stored with a UTC offset (as earlier versions wrote them) read back as their instant, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from conftest import new_event
from eventsource.model import ANY

if TYPE_CHECKING:
    from eventsource_nats.provider import NatsProvider


async def test_a_stored_offset_reads_back_as_its_instant_in_utc(machine_provider: NatsProvider) -> None:
    """The head keeps ISO text; ``fromisoformat`` read ``+00:00:00.500000`` as ``+00:00``, half a second off.

    The provider now writes UTC; a message written with the offset (the appender itself, as before) still reads right.
    """
    given = [
        datetime(2020, 1, 1, tzinfo=timezone(timedelta(microseconds=500_000))),
        datetime(2020, 1, 1, tzinfo=timezone(-timedelta(seconds=30, microseconds=1))),
        datetime(2024, 6, 1, 8, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    ]
    await machine_provider._appender.append("s", [new_event(timestamp=ts) for ts in given], ANY, None)
    read = [e.timestamp async for e in machine_provider.read_stream("s")]
    assert [ts.isoformat() for ts in read] == [ts.astimezone(UTC).isoformat() for ts in given]
    info = await machine_provider.get_stream_info("s")
    assert info is not None
    assert info.created_at.isoformat() == given[0].astimezone(UTC).isoformat()

"""An append whose cached tail is far behind: another process wrote much to the stream since."""

from __future__ import annotations

from typing import Any

from conftest import dispose, new_event, open_provider
from eventsource.model import ANY
from eventsource_nats.provider import NatsProvider


async def test_an_append_behind_many_writes_of_another_process_reads_only_where_its_retry_could_be(
    machine_nats_url: str,
) -> None:
    """The server refuses the stale expected sequence; the append then looked for an earlier attempt of itself in
    EVERY message written since its cached tail (one read per message: 30,000 single events written by another
    process cost one append 4.5 s, a busy stream more than the manager's timeout). An earlier attempt with the same
    expected sequence can only be the subject's next message(s)."""
    p = await open_provider(machine_nats_url)
    other = NatsProvider(**p.spawn_args())  # another process
    await other.connect()
    try:
        await p.append("s", [new_event()], ANY)  # p caches the tail here
        for _ in range(300):
            await other.append("s", [new_event()], ANY)
        decoded: list[int] = []
        real = p._appender.reader.decode_msg

        async def decode_msg(*args: Any, **kwargs: Any) -> Any:
            decoded.append(1)
            return await real(*args, **kwargs)

        p._appender.reader.decode_msg = decode_msg  # type: ignore[method-assign]
        result = await p.append("s", [new_event()], ANY)
        assert result.last_version == 302
        assert len(decoded) <= 2, f"{len(decoded)} messages read for one append"
    finally:
        await other.close()
        await dispose(p)

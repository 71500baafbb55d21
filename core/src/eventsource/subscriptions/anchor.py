"""The check an all-streams subscription makes on resuming from a checkpoint that names the event it counted.

A store replaced under the checkpoint (restored from an older backup, a file or stream created again) that grew
past its position would otherwise be resumed after that position, passing over, unseen, every event it holds
between its restored head and there. Only an event *at* that position with another id proves it: a position
retention deleted (the next event read is further on) is the same store, resumed as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.errors import StreamDeletedError
from eventsource.subscriptions.pages import _fields, first_rows

if TYPE_CHECKING:
    from eventsource.provider import Provider


async def check_anchor(provider: Provider, position: int, event_id: str, name: str) -> None:
    """Read the event at ``position``; if there is one with an id other than ``event_id``, refuse.

    :raises StreamDeletedError: the store holds another event at ``position`` (it was replaced).
    """
    rows, _ = await first_rows(provider.read_all_pages(from_position=position, page_size=1))
    if not rows:
        return
    found, stream_id, _, version, at = _fields(rows[0])
    if at == position and found != event_id:
        msg = (
            f"the store was replaced under checkpoint {name!r} (restored from an older backup, or created "
            f"again): it holds event {found!r} (stream {stream_id!r} version {version}) at position {position}, "
            f"where the checkpoint counted {event_id!r}, so resuming would pass over the events before it. Delete "
            "the checkpoint or start over (subscribe with reset=True, runner.reset), or rewind it"
        )
        raise StreamDeletedError(msg, position=position, event_id=event_id, found=found)

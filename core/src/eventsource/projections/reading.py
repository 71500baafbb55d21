"""What a projection reads: its subscription, filtered on the stored types its handlers' events may have.

Filters run on stored types, before decoding; handlers are picked by the type an event is read as (upcasters
and renames applied, as ``read_stream`` shows it). A handler of a name no event is read as is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

from eventsource.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from eventsource.checkpoints.base import Checkpoint
    from eventsource.manager import EventSourcingManager
    from eventsource.projections.projection import Projection
    from eventsource.subscriptions import Subscription


def check_handled(manager: EventSourcingManager, projection: Projection[Any]) -> None:
    """Refuse a handler of an event type no stored event is read as (it would never be called)."""
    chain = manager._codec.chain  # noqa: SLF001 - the manager's upcasters
    for name, ends in sorted(chain.never_read(projection.event_types).items()):
        read_as = " or ".join(repr(t) for t in sorted(ends)) or "nothing readable"
        msg = (
            f"projection {projection.name!r} handles {name!r}, but events stored as {name!r} are read as {read_as} "
            "(a rename or an upcaster's to_type), so no event reaches that handler: handle the name they are read as"
        )
        raise ConfigurationError(msg, field="handlers", event_type=name)


def subscribe(
    manager: EventSourcingManager, projection: Projection[Any], cp: Checkpoint | None, page_size: int, poll: float
) -> Subscription:
    """The projection's subscription, after ``cp``, reading (and decoding) only the event types it handles."""
    check_handled(manager, projection)  # again: upcasters registered after add() count too
    start = 0 if cp is None else cp.position + 1
    one = projection.stream_id is not None
    sub = manager.subscribe(
        stream_id=projection.stream_id,
        stream_prefix=projection.stream_prefix,
        event_types=None if one else projection.event_types,
        from_position=0 if one else start,
        from_version=max(start, 1),
        page_size=page_size,
        poll_interval=poll,
        provider=projection.provider,
    )
    if one:  # subscribe() filters no stream by type: the same filter as all streams get
        types = frozenset(projection.event_types)
        with contextlib.suppress(ValidationError):  # a stored type read as several: every event is decoded
            stored = frozenset(manager._codec.chain.stored_types(types))  # noqa: SLF001 - the manager's codec
            sub.target = dataclasses.replace(sub.target, event_types=types, stored_types=stored)
    if cp is not None and cp.event_id is not None:
        sub.check_first(cp.event_id)  # the event the checkpoint counted is still there (the same stream, store)
    return sub

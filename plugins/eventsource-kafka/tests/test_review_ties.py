"""Core review: ``get_events`` paged by ``next_cursor`` over a tie of positions larger than the page."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.model import ANY, NewEvent, utcnow

if TYPE_CHECKING:
    from eventsource_kafka.provider import KafkaProvider


def ev() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())


@pytest.mark.parametrize("limit", [1, 2])
async def test_a_tie_larger_than_the_page_is_never_passed_over_by_the_cursor(
    kafka_provider: KafkaProvider, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """Three streams appended from one clock reading share every position (three-way ties).

    A page of ``limit`` < 3 events lies wholly inside a tie: the manager kept it whole (it cannot end before
    it), and handed out its position as ``next_cursor``, so the next page (positions after it) passed over
    the rest of the tie. A page now holds the whole tie it would end inside, even when it is larger than
    ``limit``.
    """
    import eventsource_kafka.append
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost
    from eventsource.timestamps import now_us

    p = kafka_provider
    t = now_us()
    monkeypatch.setattr(eventsource_kafka.append, "now_us", lambda: t)  # the batches from one clock reading
    for s in ("a", "b", "c"):
        await p.append(s, [ev() for _ in range(5)], ANY)
    monkeypatch.undo()
    everything = {e.event_id async for e in p.read_all()}
    assert len(everything) == 15 and len({e.position async for e in p.read_all()}) == 5  # three-way ties
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="k", default=True)
    for count in ("exact", "none"):
        for order in ("asc", "desc"):
            got: list[str] = []
            cursor = None
            for _ in range(100):
                page = await m.get_events(limit=limit, after_position=cursor, count=count, sort_order=order)
                got.extend(e.event_id for e in page.events)
                if not page.has_more:
                    break
                cursor = page.next_cursor
            assert len(got) == len(set(got)), f"{count}, {order}: an event came twice"
            assert set(got) == everything, f"{count}, {order}: passed over {len(everything - set(got))} of 15"

"""The plain-JSON row path: a provider's :class:`RowPage` rows straight into :class:`Event` objects.

Used by the event codec for rows in the built-in JSON codec's plain encoding when no ``register_upcaster``
function is registered. It inlines what the general path calls per event (the serializer's ``loads``,
the microsecond timestamp conversion, the event constructor); a row it cannot decode itself goes to the
general path, which gives the same event or raises the same contextual error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsource.model import Event
from eventsource.rows import EventShell
from eventsource.timestamps import _FLOAT_EXACT_US, from_us

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from eventsource.domain.upcasting import Upcasters
    from eventsource.model import RowPage
    from eventsource.rows import EventRow

    Scan = Callable[[str, int], tuple[Any, int]]

_SLOW: Any = object()


def json_rows(  # noqa: C901, PLR0915 - the per-row loop stays in one frame (no call per event)
    page: RowPage,
    scanners: tuple[bytes, Scan, Scan],
    plain: str,
    chain: Upcasters,
    general: Callable[[EventRow], Event],
) -> Iterator[Event]:
    """The events of ``page``, lazily; ``general(row)`` decodes a row this path does not (see the module)."""
    tag, tagged, untagged = scanners
    conv = page.timestamp
    micros = conv is from_us
    lo, hi = -_FLOAT_EXACT_US, _FLOAT_EXACT_US
    fromts = datetime.fromtimestamp
    slow = chain.events.types  # only types with an upcasting chain are looked up
    upcast = chain.upcast_parts
    new = object.__new__
    shell, cls = EventShell, Event
    for row in page.rows:
        (eid, sid, etype, ver, pos, data, meta, enc, ts, c1, c2, uid, tid, aid, atype) = row
        d: Any = _SLOW
        if enc == plain:
            try:
                text = data.decode("utf-8", "surrogatepass")
                d, end = (tagged if tag in data else untagged)(text, 0)
                if end != len(text):
                    d = _SLOW
                elif meta:
                    text = meta.decode("utf-8", "surrogatepass")
                    m, end = (tagged if tag in meta else untagged)(text, 0)
                    if end != len(text) or type(m) is not dict:  # not an object: the general path names it
                        d = _SLOW
                else:
                    m = {}
            except Exception:  # noqa: BLE001 - the general path decides: the same value, or its own error
                d = _SLOW
        if d is _SLOW:
            yield general(row)
            continue
        if conv is not None:
            try:
                ts = fromts(ts / 1e6, UTC) if micros and lo < ts < hi else conv(ts)
            except Exception:  # noqa: BLE001 - not the store's form (another tool wrote it): the general path names it
                yield general(row)
                continue
        if slow and etype in slow:
            etype, d = upcast(etype, d, m, (eid, sid, ver))
        ev: Any = new(shell)
        ev.event_id = eid
        ev.stream_id = sid
        ev.event_type = etype
        ev.data = d
        ev.metadata = m
        ev.version = ver
        ev.position = pos
        ev.timestamp = ts
        ev.correlation_id = c1
        ev.causation_id = c2
        ev.user_id = uid
        ev.tenant_id = tid
        ev.aggregate_id = aid
        ev.aggregate_type = atype
        ev.__class__ = cls
        yield ev

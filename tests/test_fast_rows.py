"""The plain-JSON row path gives the events (and the errors) the general decode path gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eventsource.errors import CodecError
from eventsource.manager import EventSourcingManager
from eventsource.manager.fastrows import json_rows
from eventsource.model import RowPage, make_recorded_event
from eventsource.plugins import PluginHost
from eventsource.timestamps import from_us, to_us

CONFIG = {"providers": {"mem": "memory://"}, "default_provider": "mem"}
WHEN = datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=UTC)


def row(n: int, data: bytes, meta: bytes = b"", enc: str = "json") -> tuple[object, ...]:
    return (f"e{n}", "s", "T", n, n, data, meta, enc, to_us(WHEN), "c", None, "u", None, "a", "Agg")


PAYLOADS = [
    (b'{"a":1,"b":[1,2,{"c":null}]}', b""),
    (b'{"a":1}', b'{"k":"v"}'),
    (b'{"at":{"$es":"datetime","v":"2026-12-05T12:00:00+00:00"}}', b'{"tags":{"$es":"set","v":[1]}}'),
    (b' {"a":1} ', b""),  # whitespace around: the scanner stops early, the general path decides
    (b'{"s":"\\ud800"}', b""),
    (b'"text"', b""),
]


def test_the_fast_rows_equal_the_general_path() -> None:
    m = EventSourcingManager(CONFIG, host=PluginHost(load_entrypoints=False))
    codec = m._codec
    assert codec.json_scan is not None
    rows = [row(i + 1, d, meta) for i, (d, meta) in enumerate(PAYLOADS)]
    fast = list(codec.decode_page(RowPage(rows, from_us)))
    general = [codec.decode_event(make_recorded_event(*r[:8], from_us(r[8]), *r[9:])) for r in rows]
    assert fast == general
    assert [type(e) for e in fast] == [type(e) for e in general]
    assert fast[0].timestamp == WHEN
    sent: list[object] = []  # the rows the inlined loop hands to the general path: only the padded one
    list(json_rows(RowPage(rows, from_us), codec.json_scan, codec.plain, codec.chain, sent.append))
    assert sent == [rows[3]]


def test_a_row_the_fast_path_cannot_decode_raises_the_general_error_after_the_events_before_it() -> None:
    m = EventSourcingManager(CONFIG, host=PluginHost(load_entrypoints=False))
    codec = m._codec
    page = RowPage([row(1, b'{"a":1}'), row(2, b'{"a":'), row(3, b'{"a":3}')], from_us)
    events = codec.decode_page(page)
    assert next(events).data == {"a": 1}
    with pytest.raises(CodecError, match="not valid JSON"):
        next(events)

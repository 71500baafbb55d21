"""The sync API's one-event append (``Appends.one_now``): what the full path would do, for every input.

``append_event`` called with keywords takes the short path when the event is plain; a request object takes
the full one. Each case runs both ways on stores of their own and must end the same: the same error (type,
message, details) or the same stored event, and the same metrics.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import ANY, NO_STREAM, STREAM_EXISTS, AppendEventRequest, EventData
from eventsource.manager import lane
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

CASES: dict[str, dict[str, Any]] = {
    "plain": {"event_type": "E", "data": {"a": [1, 2.5, None, True, "x"]}, "event_id": "id-1", "timestamp": T0},
    "no id": {"event_type": "E", "data": 1},
    "unicode data": {"event_type": "E", "data": {"é": "\u2603", "nul": "a\x00b"}, "event_id": "id-1"},
    "unicode type": {"event_type": "Événement", "data": 1, "event_id": "id-1"},
    "unicode id": {"event_type": "E", "data": 1, "event_id": "idé"},
    "empty type": {"event_type": "", "data": 1},
    "control type": {"event_type": "E\x00", "data": 1},
    "long type": {"event_type": "E" * 257, "data": 1},
    "type not str": {"event_type": 5, "data": 1},
    "empty id": {"event_type": "E", "data": 1, "event_id": ""},
    "long id": {"event_type": "E", "data": 1, "event_id": "i" * 257},
    "id not str": {"event_type": "E", "data": 1, "event_id": 7},
    "tuple": {"event_type": "E", "data": {"t": (1, 2)}},
    "int key": {"event_type": "E", "data": {1: "a"}},
    "nan": {"event_type": "E", "data": {"x": math.nan}},
    "tagged": {"event_type": "E", "data": {"when": T0, "$es": "mine"}, "event_id": "id-1"},
    "too big": {"event_type": "E", "data": "x" * 2_000_000},
    "naive time": {"event_type": "E", "data": 1, "timestamp": datetime(2026, 1, 1)},  # noqa: DTZ001
    "time not datetime": {"event_type": "E", "data": 1, "timestamp": "2026-01-01"},
    "offset time": {
        "event_type": "E",
        "data": 1,
        "event_id": "id-1",
        "timestamp": T0.astimezone(timezone(timedelta(hours=-5))),
    },
    "expected bool": {"event_type": "E", "data": 1, "expected_version": True},
    "expected str": {"event_type": "E", "data": 1, "expected_version": "1"},
    "expected -7": {"event_type": "E", "data": 1, "expected_version": -7},
    "expected huge": {"event_type": "E", "data": 1, "expected_version": 2**63},
    "expected 0 on 1": {"event_type": "E", "data": 1, "expected_version": 0},
    "expected 1": {"event_type": "E", "data": 1, "event_id": "id-1", "expected_version": 1},
    "expected 5": {"event_type": "E", "data": 1, "expected_version": 5},
    "no stream": {"event_type": "E", "data": 1, "expected_version": NO_STREAM},
    "exists": {"event_type": "E", "data": 1, "event_id": "id-1", "expected_version": STREAM_EXISTS},
    "any": {"event_type": "E", "data": 1, "event_id": "id-1", "expected_version": ANY},
    "retry of the first": {"event_type": "E", "data": 0, "event_id": "first", "expected_version": 0},
    "first id, other data": {"event_type": "E", "data": 9, "event_id": "first", "expected_version": 1},
}
STREAMS = {"s": "s", "bad stream": "s\x00", "long stream": "s" * 1025, "dotted stream": "a.b*>'\""}


def outcome(tmp: Path, name: str, stream_id: str, case: dict[str, Any], *, request: bool) -> Any:
    """Append ``case`` after one event stored under id ``first``; what it returned or raised, what is stored."""
    cfg = {"providers": {"db": f"sqlite:///{tmp / name}.db"}, "max_event_size": 1_000_000}
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        setup = stream_id if stream_id.isprintable() and len(stream_id) <= 1024 else "s"
        es.append_event(stream_id=setup, event_type="E", data=0, event_id="first", timestamp=T0 - timedelta(days=1))
        try:
            if request:
                got: Any = es.append_event(AppendEventRequest(stream_id=stream_id, **case))
            else:
                got = es.append_event(stream_id=stream_id, **case)
            result: Any = ("ok", got.version, got.position, got.duplicate, got.snapshot_due)
            if "event_id" in case:
                result += (got.event_id,)
            if case.get("timestamp") is not None:
                result += (got.timestamp,)
        except Exception as e:  # noqa: BLE001 - what is compared
            result = ("raised", type(e).__name__, str(e), getattr(e, "details", None))
        stored = [
            (
                e.stream_id,
                e.version,
                e.event_type,
                e.data,
                e.metadata,
                e.position,
                e.timestamp if "timestamp" in case else None,
            )
            for info in es.list_streams().streams
            for e in es.read_stream(info.stream_id)
        ]
        stats = es.metrics()["db"]["append"]
        return result, stored, (stats["calls"], stats["events"], stats["errors"], stats["retries"])


PAIRS = [(case, "s") for case in CASES] + [
    (case, stream) for stream in STREAMS if stream != "s" for case in ("plain", "empty type", "expected str")
]


@pytest.mark.parametrize(("case", "stream"), PAIRS)
def test_keywords_and_a_request_object_end_the_same(tmp_path: Path, case: str, stream: str) -> None:
    short = outcome(tmp_path, "short", STREAMS[stream], CASES[case], request=False)
    full = outcome(tmp_path, "full", STREAMS[stream], CASES[case], request=True)
    assert short == full


def test_a_plain_event_takes_the_short_path_and_anything_else_the_full_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full: list[object] = []
    real = lane.coerce

    def coerce(*args: Any) -> Any:
        full.append(args[0])
        return real(*args)

    monkeypatch.setattr(lane, "coerce", coerce)
    with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST) as es:
        es.append_event(stream_id="s", event_type="E", data=1, event_id="a", timestamp=T0, expected_version=NO_STREAM)
        es.append_event(stream_id="s", event_type="E", data=2)
        assert full == []  # both short
        es.append_event(stream_id="s", event_type="E", data=3, metadata={"m": 1})
        es.append_event(stream_id="s", event_type="E", data=4, provider="db")
        es.append_event(stream_id="s", event_type="E", data=5, tenant_id="t")
        es.append_event(AppendEventRequest(stream_id="s", event_type="E", data=6))
        assert len(full) == 4
        assert [(e.version, e.data, e.metadata.get("m")) for e in es.read_stream("s")] == [
            (1, 1, None),
            (2, 2, None),
            (3, 3, 1),
            (4, 4, None),
            (5, 5, None),
            (6, 6, None),
        ]


def test_a_retry_with_the_callers_id_is_a_duplicate_and_a_made_id_never_is(tmp_path: Path) -> None:
    with SyncEventSourcingManager({"providers": {"db": f"sqlite:///{tmp_path}/es.db"}}, host=HOST) as es:
        first = es.append_event(stream_id="s", event_type="E", data=1, event_id="x", expected_version=0)
        again = es.append_event(stream_id="s", event_type="E", data=1, event_id="x", expected_version=0)
        assert (again.version, again.position, again.duplicate) == (first.version, first.position, True)
        made = es.append_event(stream_id="s", event_type="E", data=2, expected_version=1)
        assert (made.version, made.duplicate) == (2, False)
        assert [e.event_id for e in es.read_stream("s")] == ["x", made.event_id]
        batch = es.append_events_batch(stream_id="s", events=[EventData("E", 3)], expected_version=2)
        assert batch.first_version == 3


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_an_offset_timestamp_is_answered_and_read_in_utc_on_both_paths(tmp_path: Path, store: str) -> None:
    """The short path handed the store the caller's offset: SQLite answered with it, and read UTC back."""
    url = f"sqlite:///{tmp_path}/es.db" if store == "sqlite" else f"memory://{tmp_path.name}"
    given = T0.astimezone(timezone(timedelta(hours=5, minutes=45)))
    with SyncEventSourcingManager({"providers": {"db": url}}, host=HOST) as es:
        short = es.append_event(stream_id="s", event_type="E", data=1, timestamp=given)
        full = es.append_event(AppendEventRequest(stream_id="s", event_type="E", data=2, timestamp=given))
        answers = [short.timestamp.isoformat(), full.timestamp.isoformat()]
        reads = [e.timestamp.isoformat() for e in es.read_stream("s")]
    assert answers == reads == [T0.isoformat()] * 2


def test_the_one_event_path_hands_the_store_its_timestamp_in_utc() -> None:
    """The short path gave a provider the caller's offset (the full path hands every store UTC: an instant)."""
    from eventsource.memory import MemoryProvider

    seen: list[object] = []

    class Recording(MemoryProvider):
        def append_now(self, stream_id, events, expected, stream, *, timeout):  # type: ignore[no-untyped-def,override]
            seen.extend(e.timestamp.tzinfo for e in events)
            return super().append_now(stream_id, events, expected, stream, timeout=timeout)

    at = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with SyncEventSourcingManager({"providers": {}}, host=PluginHost(load_entrypoints=False)) as es:
        es.register_provider(Recording("memory://"), name="m")
        r = es.append_event(stream_id="s", event_type="E", data={}, timestamp=at)
    assert seen == [UTC]
    assert r.timestamp == at and r.timestamp.tzinfo is UTC

"""An attacker's review of the sync API's one-event append (``Appends.one_now``) against the full path.

Each test runs the keyword call (the short path) and a request object (the full path) and finds them ending
differently; see tests/test_sync_one_event.py for the cases that end the same.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import AppendEventRequest, ValidationError
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)


class Counted(Decimal):
    """A Decimal that counts how often the serializer writes it (the JSON serializer calls ``str`` once a dump)."""

    written = 0

    def __str__(self) -> str:
        type(self).written += 1
        return super().__str__()


class SmallMemory(MemoryProvider):
    """A store that holds at most 100 encoded bytes an event."""

    capabilities = dataclasses.replace(MemoryProvider.capabilities, max_event_size=100)


def refused(es: SyncEventSourcingManager, data: Any, *, request: bool) -> tuple[str, dict[str, Any], int]:
    """The refusal of appending ``data``, and how often its ``Counted`` value was serialized on the way."""
    Counted.written = 0
    with pytest.raises(ValidationError) as e:
        if request:
            es.append_event(AppendEventRequest(stream_id="s", event_type="E", data=data))
        else:
            es.append_event(stream_id="s", event_type="E", data=data)
    return e.value.message, e.value.details, Counted.written


@pytest.mark.parametrize("limit", ["max_event_size", "the store's"])
def test_an_event_over_a_size_limit_is_serialized_once_and_refused_as_the_full_path_refuses_it(
    tmp_path: Path, limit: str
) -> None:
    """The short path serialized an oversized payload, gave up, and the full path serialized it again: twice the
    work for a refused payload (a multi-megabyte one included), the user's values written twice."""
    data = {"d": Counted("1.5"), "pad": "x" * 200}
    cfg: dict[str, Any] = {"providers": {"db": f"sqlite:///{tmp_path}/es.db"}, "max_event_size": 100}
    if limit == "the store's":  # the manager's limit above the store's
        cfg["max_event_size"] = 10_000
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        if limit == "the store's":
            es.register_provider(SmallMemory(), name="small", default=True)
        short = refused(es, data, request=False)
        full = refused(es, data, request=True)
        assert full[2] == 1
        assert short == full
        assert es.list_streams().total_count == 0

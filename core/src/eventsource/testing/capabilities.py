"""Capabilities: every operation is probed; the declared-unsupported ones, and only those, refuse."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import EventSourceError, UnsupportedOperationError
from eventsource.model import ANY, EventFilter, NewEvent, NewSnapshot, NewStream, utcnow
from eventsource.provider import OPERATIONS
from eventsource.testing.base import ProviderSuiteBase, sid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventsource.provider import Provider


class CapabilitySuite(ProviderSuiteBase):
    """Declared-unsupported operations raise, and no other operation does."""

    async def test_declared_unsupported_operations_raise_and_no_other_does(self, provider: Provider) -> None:
        """Every operation is probed: a declared-unsupported one raises :class:`UnsupportedOperationError`.

        Any other may succeed or fail for its own reasons (the probes touch a missing stream), never that.
        """
        s = sid()
        new = NewEvent(str(uuid.uuid4()), "Probe", b"{}", b"", "json", utcnow())

        async def first(it: AsyncIterator[Any]) -> Any:
            return await anext(aiter(it), None)

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "create_stream": lambda: provider.create_stream(NewStream(sid("probe"))),
            "get_stream_info": lambda: provider.get_stream_info(s),
            "append": lambda: provider.append(sid("probe"), [new], ANY),
            "read_stream": lambda: first(provider.read_stream(s)),
            "query": lambda: provider.query(EventFilter(stream_id=s), limit=1, offset=0),
            "health": provider.health,
            "read_all": lambda: first(provider.read_all()),
            "get_event": lambda: provider.get_event(str(uuid.uuid4())),
            "delete_stream": lambda: provider.delete_stream(s),
            "truncate_stream": lambda: provider.truncate_stream(s, 1),
            "delete_events_before": lambda: provider.delete_events_before(utcnow()),
            "save_snapshot": lambda: provider.save_snapshot(
                NewSnapshot(str(uuid.uuid4()), s, 1, b"{}", b"", "json", utcnow())
            ),
            "get_snapshot": lambda: provider.get_snapshot(s),
            "delete_snapshots": lambda: provider.delete_snapshots(s),
            "stats": provider.stats,
            "list_streams": lambda: provider.list_streams(limit=1, offset=0),
            "rewrite_events": lambda: provider.rewrite_events(s, []),
        }
        assert sorted(calls) == sorted(OPERATIONS), "the kit must probe every operation a store may declare"
        unsupported = provider.capabilities.unsupported
        for op in OPERATIONS:
            if op in unsupported:
                with pytest.raises(UnsupportedOperationError):
                    await calls[op]()
                continue
            try:
                await calls[op]()
            except UnsupportedOperationError as e:
                pytest.fail(f"{op} raised {e!r} but the store does not declare it unsupported")
            except EventSourceError:
                pass  # e.g. StreamNotFoundError: the probe asked about a missing stream

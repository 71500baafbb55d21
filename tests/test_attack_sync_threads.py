"""The sync API as services use it: one facade shared by threads, iterators abandoned or handed over, close()
racing calls, interrupts mid-iteration. Every wait here is bounded (a join with a timeout, then a check)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventData
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from eventsource.model import RecordedEvent

HOST = PluginHost(load_entrypoints=False)


class Handing(MemoryProvider):
    """A store that needs its loop live and hands a connection back asynchronously when a read stops (PostgreSQL
    with ``sync_inline`` off, say); ``hook`` runs on the loop as the second page is being read."""

    loop_free = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hook: Any = None
        self.cleaned = 0

    async def read_stream_pages(self, stream_id: str, **kwargs: Any) -> AsyncIterator[Sequence[RecordedEvent]]:
        try:
            n = 0
            async for page in super().read_stream_pages(stream_id, **kwargs):
                n += 1
                if n == 2 and self.hook is not None:
                    self.hook()
                    await asyncio.sleep(5)  # the page is slow: the interrupt lands meanwhile
                yield page
        finally:
            await asyncio.sleep(0.5)  # the connection goes back to its pool
            self.cleaned += 1


def test_a_ctrl_c_mid_iteration_on_the_loop_thread_stays_a_keyboard_interrupt() -> None:
    """It surfaced as ``RuntimeError: aclose(): asynchronous generator is already running``: the page call was
    cancelled but not waited for, and the iterator's close raced the read's own cleanup (seen on PostgreSQL
    with ``sync_inline`` off, about one Ctrl-C in thirty)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert main is not None
    with contextlib.ExitStack() as restore, SyncEventSourcingManager({"providers": {}}, host=HOST) as es:
        restore.callback(signal.signal, signal.SIGINT, previous)
        store = Handing("memory://")
        es.register_provider(store, name="h", default=True)
        assert es._loop.threaded
        es.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(30)])
        store.hook = lambda: signal.pthread_kill(main, signal.SIGINT)
        seen: list[int] = []
        with pytest.raises(KeyboardInterrupt):
            seen.extend(e.data for e in es.read_stream("s", page_size=10))
        assert seen == list(range(10))
        assert store.cleaned == 1  # the read ended before the interrupt reached the caller
        store.hook = None
        assert [e.data for e in es.read_stream("s", page_size=10)] == list(range(30))

"""One sync facade for scripts, the CLI and sync frameworks, written once for every manager method.

:class:`SyncEventSourcingManager` runs a private event loop on a daemon thread and forwards every
attribute of the wrapped :class:`~eventsource.manager.EventSourcingManager`: coroutine methods
become blocking calls, async-generator methods become ordinary iterators (still O(page) memory),
anything else is returned as is.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any, Self

from eventsource.errors import EventSourceError, ProviderUnavailableError
from eventsource.manager import EventSourcingManager

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine, Iterator


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="eventsource-sync", daemon=True)
        self._thread.start()

    def _usable(self) -> None:
        """Refuse a call that could never finish: on a closed facade, or from the facade's own loop."""
        if self.loop.is_closed():
            msg = "this SyncEventSourcingManager is closed; create a new one"
            raise ProviderUnavailableError(msg)
        if threading.get_ident() == self._thread.ident:
            msg = (
                "SyncEventSourcingManager was called from its own event loop (a sync snapshot handler or upcaster "
                "calling the facade?), where the call would wait for itself forever: make the handler async and "
                "use facade.manager, or leave the facade out of it"
            )
            raise EventSourceError(msg)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            self._usable()
        except EventSourceError:
            coro.close()  # never scheduled: no "coroutine was never awaited" warning
            raise
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, agen: AsyncIterator[Any]) -> Iterator[Any]:
        self._usable()
        it = agen.__aiter__()
        try:
            while True:
                try:
                    yield self.run(it.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None and not self.loop.is_closed():
                self.run(aclose())

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncEventSourcingManager:
    """Blocking twin of :class:`EventSourcingManager`; same methods, same arguments, same results.

    Use as a context manager (connects on enter, closes on exit) or call ``connect()``/``close()``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runner = _LoopThread()
        try:
            self._manager: EventSourcingManager = self._runner.run(self._build(*args, **kwargs))
        except BaseException:
            self._runner.stop()
            raise

    @staticmethod
    async def _build(*args: Any, **kwargs: Any) -> EventSourcingManager:
        return EventSourcingManager(*args, **kwargs)

    @property
    def manager(self) -> EventSourcingManager:
        """The wrapped async manager (use it only from the facade's own loop)."""
        return self._manager

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._manager, name)
        if inspect.iscoroutinefunction(attr):

            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> Any:
                result = self._runner.run(attr(*args, **kwargs))
                return self if result is self._manager else result

            return call
        if inspect.isasyncgenfunction(attr):

            @functools.wraps(attr)
            def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
                return self._runner.iterate(attr(*args, **kwargs))

            return iterate
        if callable(attr):

            @functools.wraps(attr)
            def call_plain(*args: Any, **kwargs: Any) -> Any:
                # read_stream / read_all validate eagerly and return an async iterator: iterate it here
                result = attr(*args, **kwargs)
                if hasattr(result, "__anext__"):
                    return self._runner.iterate(result)
                return result

            return call_plain
        return attr

    def close(self) -> None:
        """Close every provider and stop the private loop."""
        try:
            if not self._runner.loop.is_closed():
                self._runner.run(self._manager.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Self:
        self._runner.run(self._manager.connect())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

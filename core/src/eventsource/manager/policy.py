"""The call policy: timeouts, retries with backoff and jitter, and metrics, for single calls and page iteration.

Every provider call the manager makes goes through :meth:`CallPolicy.run` (one call) or
:meth:`CallPolicy.iterate` (a page iterator). Both refuse operations the provider declares it cannot do,
bound each wait by ``timeout`` (raising :class:`ProviderTimeoutError`), retry only connection and timeout
errors (``retry_attempts``, ``retry_delay`` doubling up to ``retry_max_delay``, full jitter), and count
calls, errors, retries, events and latency per provider and operation. With ``telemetry`` set (the ``telemetry``
setting, or :func:`eventsource.telemetry.instrument`), each call also runs inside an OpenTelemetry span.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from itertools import islice
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from eventsource.config import mask_url
from eventsource.errors import RETRYABLE, EventSourceError, ProviderError, ProviderTimeoutError
from eventsource.inline import CALL_TASK
from eventsource.manager.deadlines import Deadlines, Watchdog
from eventsource.manager.metrics import Metrics, OpStats
from eventsource.model import (
    AppendResult,
    HealthStatus,
    NewSnapshot,
    ProviderStats,
    QueryPage,
    RecordedEvent,
    StreamInfo,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence

    from eventsource.config import ManagerConfig
    from eventsource.model import Event, RowPage
    from eventsource.provider import Provider
    from eventsource.telemetry.spans import Telemetry

    Page = Sequence[RecordedEvent] | RowPage
    PageSource = Callable[[tuple[int, int] | None], AsyncIterator[Page] | None]

log = logging.getLogger("eventsource")

T = TypeVar("T")


CHUNK_PULL = "an int sent into CallPolicy.pages right after it yielded an event"
"""The sync API's pull: sent an ``int`` ``k`` (``asend(k)``) right after it yielded an event, a
:meth:`CallPolicy.pages` generator answers with a list of up to ``k`` further events of that event's page
(decoded as far as they decode; a decode error follows at the next step). The sync API crosses a chunk of
events per call this way instead of an event per step."""


PAGED: set[CodeType] = set()
"""The code of every async generator that answers :data:`CHUNK_PULL` (the sync API checks ``ag_code`` against it):
:meth:`CallPolicy.pages`, and the telemetry span around it, which adds itself when imported."""


WRITES = {
    "append": "repeated with the same event ids, an append is a no-op if it was",
    "create_stream": "get_stream_info tells",
    "delete_stream": "stream_exists tells",
    "save_snapshot": "repeated, it writes the same snapshot again",
    "delete_snapshots": "get_snapshot tells",
    "truncate_stream": "the next retention run does what is left",
    "delete_events_before": "the next retention run does what is left",
}
"""Calls that change the store, each with what tells (or makes safe) a caller whose call of it timed out."""


ANSWERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "create_stream": (lambda r: isinstance(r, StreamInfo), "a StreamInfo"),
    "get_stream_info": (lambda r: r is None or isinstance(r, StreamInfo), "a StreamInfo or None"),
    "list_streams": (lambda r: isinstance(r, tuple) and len(r) == 2, "a (streams, total) pair"),  # noqa: PLR2004
    "get_event": (lambda r: r is None or isinstance(r, RecordedEvent), "a RecordedEvent or None"),
    "get_snapshot": (lambda r: r is None or isinstance(r, NewSnapshot), "a RecordedSnapshot or None"),
    "query": (lambda r: isinstance(r, QueryPage), "a QueryPage"),
    "stats": (lambda r: isinstance(r, ProviderStats), "a ProviderStats"),
    "health": (lambda r: isinstance(r, HealthStatus), "a HealthStatus"),
}
"""What each provider call must answer (its contract's type), with how to say it: anything else is refused."""


class NotResumableError(Exception):
    """Raised by a page source that cannot reopen its iterator after an error."""


class RetryLater(Exception):  # noqa: N818 - a signal, not an error: the cause is __cause__
    """:meth:`CallPolicy.now`'s first attempt failed with a retryable error: finish with ``run(resumed=True)``."""


AGAIN: tuple[type[BaseException], ...] = (TimeoutError, *RETRYABLE)
"""What :meth:`CallPolicy.run` retries."""


class CallPolicy:
    """Runs provider calls under ``config``'s timeout and retry settings and records their metrics."""

    __slots__ = ("config", "deadlines", "metrics", "telemetry")

    def __init__(self, config: ManagerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.deadlines: Deadlines | None = None
        self.telemetry: Telemetry | None = None  # None: no OpenTelemetry cost at all (one attribute test per call)
        if config.telemetry:
            from eventsource.telemetry import build

            self.telemetry = build(stream_id=config.telemetry_stream_id, context_key=config.telemetry_context_key)

    def close(self) -> None:
        """Disarm the deadline timer (the manager is closing)."""
        if self.deadlines is not None:
            self.deadlines.close()

    def start(self, provider: Provider, op: str) -> OpStats:
        """Count one call of ``op``; :class:`UnsupportedOperationError` if the provider cannot do it."""
        if not provider.capabilities.supports(op):
            raise provider.unsupported(op)
        stats = self.metrics.op(provider.name, op)
        stats.calls += 1
        return stats

    def _timed_out(self, provider: Provider, op: str, what: str) -> ProviderTimeoutError:
        msg = f"{op} on provider {provider.name!r} {what}"
        if op in WRITES:  # the store may still apply it (or have applied it, its answer lost)
            msg += f": its outcome is unknown (it may have been applied); {WRITES[op]}"
        return ProviderTimeoutError(msg, provider=provider.name, operation=op)

    async def _backoff(self, delay: float) -> float:
        """Sleep a random time up to ``delay`` (capped by ``retry_max_delay``); the next delay."""
        await asyncio.sleep(random.uniform(0, min(self.config.retry_max_delay, delay)))  # noqa: S311 - jitter
        return delay * 2

    def now(
        self, provider: Provider, op: str, call: Callable[..., T | None], args: tuple[Any, ...], timeout: float | None
    ) -> T | None:
        """The first attempt of an idempotent call, ``call(*args, timeout=timeout)``, blocking, in the caller's thread.

        The sync API's lane; ``len(args[1])`` events are counted on success (an append's ``(stream_id, events, ...)``).
        Counted and timed as :meth:`run` counts its first attempt; ``None``: the provider declined (nothing
        counted, nothing written). A connection or timeout error with attempts left raises :class:`RetryLater`
        (the retry counted): ``run(..., resumed=True)`` makes the rest. No timer: a blocking call cannot be
        interrupted, so the provider bounds its own waits, as it does on the inline loop.
        """
        if op in provider.capabilities.unsupported:  # (supports(), inline: this is every sync append's path)
            raise provider.unsupported(op)
        start = time.perf_counter()
        try:
            result = call(*args, timeout=timeout)
        except AGAIN as e:
            rec = self.metrics.op(provider.name, op)
            rec.calls += 1
            rec.record(time.perf_counter() - start)
            if self.config.retry_attempts > 1:
                rec.retries += 1
                log.info("retrying %s on %s (attempt 2 of %d)", op, provider.name, self.config.retry_attempts)
                raise RetryLater from e
            rec.errors += 1
            if isinstance(e, TimeoutError) and not isinstance(e, ProviderTimeoutError):
                raise self._timed_out(provider, op, f"did not finish within {self.config.timeout}s") from e
            raise
        except BaseException as e:
            rec = self.metrics.op(provider.name, op)
            rec.calls += 1
            rec.errors += 1
            rec.record(time.perf_counter() - start)
            if isinstance(e, Exception) and not isinstance(e, EventSourceError):
                raise unmapped(provider, op, e) from e
            raise
        if result is not None:  # (a duplicate, the ids already stored before this call, wrote no event)
            if not isinstance(result, AppendResult) or len(result.event_ids) != len(args[1]):
                raise misanswered(provider, op, result, len(args[1]))
            n = 0 if cast("Any", result).duplicate else len(args[1])
            self.metrics.succeeded(provider.name, op, time.perf_counter() - start, n)
        return result

    async def run(  # noqa: C901, PLR0912, PLR0915 - every provider call's hot path, one frame
        self,
        provider: Provider,
        op: str,
        factory: Callable[[], Awaitable[T]],
        *,
        retry: bool = True,
        events: int = 0,
        stream: str | None = None,
        expected: object = None,
        on_retry: Callable[[], object] | None = None,
        resumed: bool = False,
        counted: Callable[[T], int] | None = None,
    ) -> T:
        """Run one provider call under the timeout; retry connection/timeout errors with backoff + jitter.

        Only idempotent calls may pass ``retry=True``. Latency (per attempt), calls, errors, retries and
        ``events`` are recorded. ``stream`` and ``expected`` describe the call to telemetry; ``on_retry`` is
        called at each retry (given: the telemetry hook's own call, already inside its span). ``resumed``:
        the first attempt was :meth:`now`'s (it raised :class:`RetryLater`); back off, then make the rest.
        ``counted``: for a read answering a page, the events it read (counted as :meth:`pages` counts its own).
        """
        if self.telemetry is not None and on_retry is None and not resumed:
            return await self.telemetry.run(
                self, provider, op, factory, retry=retry, events=events, stream=stream, expected=expected,
                counted=counted,
            )  # fmt: skip
        rec = self.metrics.op(provider.name, op) if resumed else self.start(provider, op)
        attempts = self.config.retry_attempts if retry else 1
        timeout = self.config.timeout
        delay = self.config.retry_delay
        if resumed:
            delay = await self._backoff(delay)
        deadlines = None
        if timeout is not None:
            deadlines = self.deadlines
            if deadlines is None or deadlines.loop is not asyncio.get_running_loop():
                deadlines = self.deadlines = Deadlines(timeout)
        for attempt in range(2 if resumed else 1, attempts + 1):
            start = time.perf_counter()
            entry = deadlines.enter() if deadlines is not None else None
            try:
                result = await factory()
            except asyncio.CancelledError:
                if entry is None or deadlines is None or not deadlines.expired(entry):
                    rec.errors += 1
                    raise
                rec.record(time.perf_counter() - start)
                if attempt == attempts:
                    rec.errors += 1
                    raise self._timed_out(provider, op, f"did not finish within {timeout}s") from None
            except TimeoutError as e:
                rec.record(time.perf_counter() - start)
                if attempt == attempts:
                    rec.errors += 1
                    if isinstance(e, ProviderTimeoutError):
                        raise
                    raise self._timed_out(provider, op, f"did not finish within {timeout}s") from e
            except RETRYABLE:
                rec.record(time.perf_counter() - start)
                if attempt == attempts:
                    rec.errors += 1
                    raise
            except BaseException as e:
                rec.errors += 1
                rec.record(time.perf_counter() - start)  # (a conflict's or a refusal's latency is the store's too)
                if isinstance(e, Exception) and not isinstance(e, EventSourceError) and op != "health":
                    raise unmapped(provider, op, e) from e  # (health reports whatever it raised, as unhealthy)
                raise
            else:
                rec.record(time.perf_counter() - start)
                if events and (not isinstance(result, AppendResult) or len(result.event_ids) != events):
                    rec.errors += 1
                    raise misanswered(provider, op, result, events)
                answer = ANSWERS.get(op)
                if answer is not None and not answer[0](result):
                    rec.errors += 1
                    msg = f"{op} on provider {provider.name!r} ({provider.kind}) was answered with a "
                    msg += f"{type(result).__name__}, not {answer[1]}: the provider breaks its contract"
                    raise ProviderError(msg, provider=provider.name, operation=op)
                if events and not written(result, attempt):
                    events = 0
                rec.events += events if counted is None else counted(result)
                return result
            finally:
                if entry is not None and deadlines is not None:
                    deadlines.exit(entry)
            rec.retries += 1
            if on_retry is not None:
                on_retry()
            log.info("retrying %s on %s (attempt %d of %d)", op, provider.name, attempt + 1, attempts)
            delay = await self._backoff(delay)
        msg = "unreachable"
        raise AssertionError(msg)

    def iterate(
        self,
        p: Provider,
        op: str,
        source: PageSource,
        decode: Callable[[Page], Iterable[Event]],
        tail: Callable[[Page], tuple[int, int]],
        *,
        stream: str | None = None,
    ) -> AsyncGenerator[Event, None]:
        """:meth:`pages` (see there), inside a telemetry span when telemetry is on."""
        if self.telemetry is None:
            return self.pages(p, op, source, decode, tail)
        return self.telemetry.iterate(p, op, stream, functools.partial(self.pages, p, op, source, decode, tail))

    async def pages(  # noqa: C901, PLR0912, PLR0915 - the per-page loop stays in one frame
        self,
        p: Provider,
        op: str,
        source: PageSource,
        decode: Callable[[Page], Iterable[Event]],
        tail: Callable[[Page], tuple[int, int]],
        *,
        on_retry: Callable[[], object] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Drive a provider's page iterator under the timeout (per page), resuming after retryable errors.

        One generator layer between the provider's pages and the caller; arguments were validated
        before it was created. The timeout bounds each wait for a page; retryable errors can only come
        from that wait, so a page is always delivered whole before the next is asked for, and
        ``source(last)`` (``last``: ``tail`` of the last page delivered, its last event's version and
        position; ``None``: from the start) reopens the iterator right after it (``None`` when nothing
        can follow). ``decode`` turns a page into events, lazily. The iterator is closed when the caller
        stops early. The latency sample is the time to the first page. ``on_retry`` is called at each resume.
        """
        stat = self.start(p, op)
        timeout = self.config.timeout
        attempts = self.config.retry_attempts
        delay = self.config.retry_delay
        failures = 0
        last: tuple[int, int] | None = None
        it = source(None)
        first = True
        start = time.perf_counter()
        dog = Watchdog(timeout) if timeout is not None else None
        clock = dog.loop.time if dog is not None else time.monotonic
        current_task = asyncio.current_task
        count = 0
        try:
            while it is not None:
                aiter_ = it.__aiter__()
                anext_ = aiter_.__anext__
                try:
                    while True:
                        try:
                            try:
                                if dog is None:
                                    page = await anext_()
                                else:
                                    dog.start = clock()
                                    task = current_task()
                                    dog.task = task if task is not None else CALL_TASK.get()
                                    dog.stepping = True
                                    try:
                                        page = await anext_()
                                    finally:
                                        dog.stepping = False
                            except asyncio.CancelledError as e:
                                if dog is None or not dog.timed_out():
                                    raise
                                raise self._timed_out(p, op, f"produced nothing within {timeout}s") from e
                            except TimeoutError as e:
                                if isinstance(e, ProviderTimeoutError):
                                    raise
                                raise self._timed_out(p, op, "timed out") from e
                            except (StopAsyncIteration, EventSourceError):
                                raise
                            except Exception as e:
                                raise unmapped(p, op, e) from e
                        except StopAsyncIteration:
                            if first:
                                stat.record(time.perf_counter() - start)
                            return
                        except RETRYABLE as e:  # (errors raised from here are counted below)
                            failures += 1
                            if failures >= attempts:
                                raise
                            try:
                                nxt = source(last)
                            except NotResumableError:
                                raise e from None
                            stat.retries += 1
                            if on_retry is not None:
                                on_retry()
                            log.info(
                                "resuming %s on %s after %s (attempt %d of %d)",
                                op,
                                p.name,
                                type(e).__name__,
                                failures + 1,
                                attempts,
                            )
                            delay = await self._backoff(delay)
                            break  # close this iterator (finally below), then read on from nxt
                        if first:
                            stat.record(time.perf_counter() - start)
                            first = False
                        failures = 0
                        if not page:
                            continue
                        events = iter(decode(page))
                        for event in events:
                            count += 1
                            more = cast("int | None", (yield event))  # (declared None: only the sync API sends)
                            if more is not None:  # the sync API's pull (CHUNK_PULL): up to ``more`` further events
                                rest: list[Event] = []
                                error: Exception | None = None
                                try:
                                    rest.extend(islice(events, more))
                                except Exception as e:  # noqa: BLE001 - raised below, after the events before it
                                    error = e
                                count += len(rest)
                                yield rest  # type: ignore[misc]
                                if error is not None:
                                    raise error  # noqa: TRY301 - counted below, like the decode error it is
                        last = tail(page)
                    it = nxt  # after a retryable error (the loop ends only by return or break)
                except GeneratorExit:
                    raise
                except BaseException:
                    stat.errors += 1
                    raise
                finally:
                    aclose = getattr(aiter_, "aclose", None)
                    if aclose is not None:
                        await aclose()
        finally:
            stat.events += count
            if dog is not None:
                dog.close()

    def summary(self, provider: str) -> dict[str, dict[str, Any]]:
        """Every operation's counters and latency percentiles on ``provider``."""
        return self.metrics.summary(provider)


def unmapped(provider: Provider, op: str, error: Exception) -> ProviderError:
    """The :class:`ProviderError` for an exception a provider let out unmapped (a builtin, a driver's own).

    A provider maps its store's errors to :mod:`eventsource.errors`; one it did not would reach callers as a
    builtin they may take for something else (a ``KeyError`` is a ``LookupError``, as "stream not found" is). The
    error is the ``__cause__``; its text is kept, as it reached callers before, with any URL password masked.
    """
    msg = (  # (its text may quote the store's URL: masked, as every URL the library shows)
        f"{type(error).__name__}: {mask_url(str(error))} (raised by {op} on provider {provider.name!r} "
        f"({provider.kind}), "
        "not an eventsource error: the provider should map its store's errors, see docs/writing-a-provider.md)"
    )
    return ProviderError(msg, provider=provider.name, operation=op, unmapped=type(error).__name__)


def misanswered(provider: Provider, op: str, result: object, events: int) -> ProviderError:
    """The :class:`ProviderError` for an append answered with no :class:`AppendResult`, or one for other events."""
    if not isinstance(result, AppendResult):
        what = f"a {type(result).__name__}, not an AppendResult"
    else:
        what = f"{len(result.event_ids)} event id(s)"
    msg = (
        f"{op} on provider {provider.name!r} ({provider.kind}) of {events} events was answered with {what}: "
        "the provider breaks its contract, and what it stored is unknown"
    )
    return ProviderError(msg, provider=provider.name, operation=op)


def written(result: object, attempt: int) -> bool:
    """Whether an append's ``result`` wrote its events: not a duplicate answered to the first attempt.

    A duplicate answer to a retry may be the earlier attempt that landed (its reply lost), so it counts.
    """
    return attempt > 1 or not getattr(result, "duplicate", False)


def stream_pages(
    p: Provider, sid: str, from_version: int, to_version: int | None, *, backwards: bool, page_size: int
) -> PageSource:
    """The page source of one stream's versions, reopening after the last version delivered."""

    def source(last: tuple[int, int] | None) -> AsyncIterator[Page] | None:
        lo, hi = from_version, to_version
        if last is not None:
            if backwards:
                hi = last[0] - 1
                if hi < lo:
                    return None
            else:
                lo = last[0] + 1
                if hi is not None and lo > hi:
                    return None
        return p.read_stream_pages(sid, from_version=lo, to_version=hi, backwards=backwards, page_size=page_size)

    return source


def all_pages(p: Provider, from_position: int, page_size: int) -> PageSource:
    """The page source of the global log; it reopens after the last position only on a ``total`` order."""
    resumable = p.capabilities.global_order == "total"

    def source(last: tuple[int, int] | None) -> AsyncIterator[Page] | None:
        if last is None:
            return p.read_all_pages(from_position=from_position, page_size=page_size)
        if not resumable:
            msg = "read_all cannot resume on a store without a total order"
            raise NotResumableError(msg)
        return p.read_all_pages(from_position=last[1] + 1, page_size=page_size)

    return source


PAGED.add(CallPolicy.pages.__code__)

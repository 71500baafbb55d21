"""Retention policies: plugins that delete old events through each provider's retention primitives.

Providers implement ``delete_events_before`` and ``truncate_stream`` natively (or declare them
unsupported); the built-in policies ``max_age``, ``max_count`` and ``before_snapshot`` are built from
configuration and applied by ``EventSourcingManager.apply_retention`` or a :class:`RetentionSchedule`.
Versions never change; an unsupported primitive is reported, never skipped silently. The policy table,
the guarantees and how to write a policy are in ``docs/internals/retention.md``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from eventsource.config import parse_duration
from eventsource.errors import (
    ConfigurationError,
    RetentionError,
    StreamNotFoundError,
    UnsupportedOperationError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from eventsource.config import ManagerConfig
    from eventsource.model import EventAt, RecordedSnapshot, StreamInfo
    from eventsource.provider import Provider
    from eventsource.registry import RetentionRegistry

log = logging.getLogger("eventsource.retention")

LIST_PAGE = 500
"""Streams fetched per ``list_streams`` call while a per-stream policy walks the store."""


@dataclass(slots=True)
class RetentionContext:
    """What a policy gets when it runs on one provider.

    :param provider: the store.
    :param now: the reference time (``apply_retention(now=...)``; the wall clock by default).
    :param call: runs one provider call under the manager's timeout and retry policy (a truncation is
        never retried):
        ``await ctx.call("truncate_stream", lambda: p.truncate_stream(sid, v))``.
    :param readable: whether a stored snapshot reads back through the manager's codec and keys (``None``: not
        asked); ``before_snapshot`` never cuts by one that does not.
    """

    provider: Provider
    now: datetime
    call: Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
    streams_touched: int = 0
    deleted_events: int = 0
    """Events deleted so far (policies add as they go, so a run that fails midway still reports them)."""
    readable: Callable[[RecordedSnapshot], bool] | None = None

    async def truncate(self, stream_id: str, before_version: int, *, if_holds: EventAt | None = None) -> int:
        """``truncate_stream`` counted into this run; a stream deleted meanwhile has nothing left to delete.

        Pass ``if_holds`` (see :meth:`Provider.truncate_stream`) when ``before_version`` was computed from
        what an earlier read saw: a stream deleted and created again since is then left whole.
        """
        p = self.provider
        truncate = functools.partial(p.truncate_stream, stream_id, before_version, if_holds=if_holds)
        try:
            n = int(await self.call("truncate_stream", truncate))
        except StreamNotFoundError:
            return 0
        if n:
            self.streams_touched += 1
            self.deleted_events += n
        return n

    async def last_event(self, info: StreamInfo) -> EventAt | None:
        """The version and id of the stream's last event as ``info`` saw it.

        A store whose listing lacks ``last_event_id`` is read now, and only an event at exactly ``info.version``
        counts (a stream created again since holds it only once it grew that far); ``None``: nothing to name.
        """
        if info.last_event_id is not None:
            return info.version, info.last_event_id
        p = self.provider
        async for ev in p.read_stream(info.stream_id, to_version=info.version, backwards=True, page_size=1):
            return (ev.version, ev.event_id) if ev.version == info.version else None
        return None

    async def kept_top(self, info: StreamInfo) -> EventAt | None:
        """The newest event the stream holds up to ``info.version``, if it is still the incarnation ``info`` lists.

        Read first, then the stream's info: the same ``created_at`` then means the listed incarnation lasted
        from the listing past the read (a deleted one never comes back), so the event read is one of it.
        """
        p = self.provider
        top = None
        async for ev in p.read_stream(info.stream_id, to_version=info.version, backwards=True, page_size=1):
            top = (ev.version, ev.event_id)
            break
        now = await self.call("get_stream_info", functools.partial(p.get_stream_info, info.stream_id))
        return top if now is not None and now.created_at == info.created_at else None

    async def streams(self) -> AsyncIterator[StreamInfo]:
        """Every stream of the provider, a page at a time."""
        p = self.provider
        offset = 0
        while True:
            page, total = await self.call(
                "list_streams", functools.partial(p.list_streams, limit=LIST_PAGE, offset=offset)
            )
            for info in page:
                yield info
            offset += len(page)
            if not page or offset >= total:
                return


class RetentionPolicy(ABC):
    """A rule that deletes events. Instances are immutable and reusable across providers and runs."""

    name: ClassVar[str] = ""
    """Registry name, used in configuration (``{"policy": name, ...}``) and reports."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Provider operations the policy calls; a provider lacking one is reported ``unsupported``."""

    @classmethod
    def from_config(cls, params: Mapping[str, Any]) -> RetentionPolicy:
        """Build from configuration parameters; a bad or unknown one raises :class:`ConfigurationError`."""
        try:
            return cls(**params)
        except TypeError as e:
            msg = f"retention policy {cls.name!r}: {e}"
            raise ConfigurationError(msg, field="retention_policies", policy=cls.name) from e

    def missing(self, provider: Provider) -> list[str]:
        """Operations this policy needs that ``provider`` declares unsupported."""
        return [op for op in self.requires if not provider.capabilities.supports(op)]

    @abstractmethod
    async def apply(self, ctx: RetentionContext) -> int:
        """Delete what the policy says on ``ctx.provider``; return how many events were deleted."""

    def describe(self) -> dict[str, Any]:
        """Name and parameters (for reports and logs)."""
        return {"policy": self.name}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "policy")
        return f"{type(self).__name__}({params})"


class MaxAgePolicy(RetentionPolicy):
    """Delete events whose timestamp is older than ``max_age`` (the seed's ``retention_period``).

    :param max_age: seconds, or a duration string (``"30d"``).
    """

    name = "max_age"
    requires = ("delete_events_before",)

    def __init__(self, max_age: float | str | timedelta) -> None:
        if isinstance(max_age, timedelta):
            max_age = max_age.total_seconds()
        try:
            seconds = parse_duration(max_age)
        except ValueError as e:
            msg = f"retention policy 'max_age': max_age {e}"
            raise ConfigurationError(msg, field="retention_policies", policy=self.name) from None
        if seconds <= 0:
            msg = "retention policy 'max_age': max_age must be positive"
            raise ConfigurationError(msg, field="retention_policies", policy=self.name)
        self.max_age = seconds

    def describe(self) -> dict[str, Any]:
        """Name and ``max_age`` in seconds."""
        return {"policy": self.name, "max_age": self.max_age}

    async def apply(self, ctx: RetentionContext) -> int:
        """One store-wide ``delete_events_before(now - max_age)``; a cutoff before year 1 has nothing older."""
        p = ctx.provider
        try:
            cutoff = ctx.now - timedelta(seconds=self.max_age)
        except OverflowError:  # now - max_age is before the first instant a datetime holds: no event is older
            return 0
        n = int(await ctx.call("delete_events_before", lambda: p.delete_events_before(cutoff)))
        ctx.deleted_events += n
        return n


def _int_param(policy: str, name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"retention policy {policy!r}: {name} must be an int >= {minimum}, got {value!r}"
        raise ConfigurationError(msg, field="retention_policies", policy=policy)
    return value


async def _truncate_listed(ctx: RetentionContext, info: StreamInfo, before: int) -> int:
    """Truncate below ``before`` only in the incarnation listed (deleted and created again since: left whole).

    The listed last event may be one the stream no longer holds (``max_age`` deleted its newest events): then
    the guard is the newest event it holds up to the listed version, once the listed incarnation is seen still
    there (:meth:`RetentionContext.kept_top`), so such a stream is not skipped by every run.
    """
    last = await ctx.last_event(info)
    if last is None:
        return 0
    n = await ctx.truncate(info.stream_id, before, if_holds=last)
    if n or info.last_event_id is None:
        return n
    kept = await ctx.kept_top(info)
    return n if kept is None or kept == last else await ctx.truncate(info.stream_id, before, if_holds=kept)


class MaxCountPolicy(RetentionPolicy):
    """Keep only the latest ``max_events`` events of each stream.

    :param max_events: events kept per stream (>= 1).
    """

    name = "max_count"
    requires = ("list_streams", "truncate_stream")

    def __init__(self, max_events: int) -> None:
        self.max_events = _int_param(self.name, "max_events", max_events, 1)

    def describe(self) -> dict[str, Any]:
        """Name and ``max_events``."""
        return {"policy": self.name, "max_events": self.max_events}

    async def apply(self, ctx: RetentionContext) -> int:
        """``truncate_stream`` below the ``max_events``-th newest stored event of every stream holding more."""
        p = ctx.provider
        deleted = 0
        async for info in ctx.streams():
            if info.event_count <= self.max_events:
                continue
            before = info.version - self.max_events + 1
            if info.first_version is None or info.event_count != info.version - info.first_version + 1:
                # a gap (an event deleted from the middle by max_age): count the stored events instead
                kept = 0
                async for ev in p.read_stream(info.stream_id, backwards=True, page_size=min(self.max_events, 500)):
                    kept += 1
                    if kept == self.max_events:
                        before = ev.version
                        break
            deleted += await _truncate_listed(ctx, info, before)
        return deleted


async def _covers_listed(ctx: RetentionContext, info: StreamInfo, snap: RecordedSnapshot) -> bool:
    """Whether ``snap`` can be of the stream listed: the stream holds the event it was taken at, or cut below it.

    A store without a transaction over a save's check and write (NATS) can keep the snapshot of a stream deleted
    and created again since; truncating by it would delete events no snapshot covers. One naming another position
    than the event now at its version, or above the listed version with no event there, is not used.
    """
    read = ctx.provider.read_stream(info.stream_id, from_version=snap.version, to_version=snap.version, page_size=1)
    async for ev in read:
        return snap.position is None or ev.position == snap.position
    # no event at its version: truncated up to it already, or the snapshot is of another (longer) incarnation
    return snap.version <= info.version and (info.first_version is None or info.first_version > snap.version)


class BeforeSnapshotPolicy(RetentionPolicy):
    """Truncate each stream before its latest snapshot: events the snapshot already covers go.

    :param keep_events: how many covered events to keep below the snapshot (a safety margin; 0 deletes
        every event with ``version <= snapshot.version``).
    """

    name = "before_snapshot"
    requires = ("list_streams", "get_snapshot", "truncate_stream")

    def __init__(self, keep_events: int = 0) -> None:
        self.keep_events = _int_param(self.name, "keep_events", keep_events, 0)

    def describe(self) -> dict[str, Any]:
        """Name and ``keep_events``."""
        return {"policy": self.name, "keep_events": self.keep_events}

    async def apply(self, ctx: RetentionContext) -> int:
        """``truncate_stream(s, snapshot.version + 1 - keep_events)`` for every stream with a snapshot."""
        p = ctx.provider
        deleted = 0
        async for info in ctx.streams():
            if info.event_count == 0:
                continue
            snap = await ctx.call("get_snapshot", functools.partial(p.get_snapshot, info.stream_id))
            if snap is None or not await _covers_listed(ctx, info, snap):
                continue
            before = snap.version + 1 - self.keep_events
            if before <= (info.first_version or 1):
                continue
            if ctx.readable is not None and not ctx.readable(snap):  # its key shredded, its bytes damaged: no cover
                continue
            deleted += await _truncate_listed(ctx, info, before)
        return deleted


BUILTIN_POLICIES: tuple[type[RetentionPolicy], ...] = (MaxAgePolicy, MaxCountPolicy, BeforeSnapshotPolicy)


def build_policies(registry: RetentionRegistry, config: ManagerConfig) -> list[RetentionPolicy]:
    """The policies ``config`` asks for; ``retention_period`` adds ``max_age`` when none is listed."""
    out: list[RetentionPolicy] = []
    for entry in config.retention_policies:
        params = dict(entry)
        name = params.pop("policy", None)
        if not isinstance(name, str) or name not in registry:
            known = ", ".join(registry.names()) or "none"
            msg = f"unknown retention policy {name!r} (registered: {known})"
            raise ConfigurationError(msg, field="retention_policies", policy=name)
        cls: type[RetentionPolicy] = registry.get(name)
        out.append(cls.from_config(params))
    if config.retention_period and not any(p.name == MaxAgePolicy.name for p in out):
        out.append(MaxAgePolicy(config.retention_period))
    return out


Status = Literal["ok", "unsupported", "failed"]


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """What one policy did on one provider.

    :param status: ``"ok"``; ``"unsupported"`` (the provider cannot do a primitive the policy needs:
        ``message`` names it, nothing was deleted); ``"failed"`` (``message`` says why; events deleted
        before the failure are counted).
    :param streams_touched: streams a per-stream policy cut (``max_count``, ``before_snapshot``); ``max_age``
        deletes store-wide through one call that returns only a count, so it reports 0 whatever it deleted.
    """

    provider: str
    policy: str
    status: Status
    deleted_events: int = 0
    streams_touched: int = 0
    message: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """The outcome of one retention run: one :class:`PolicyOutcome` per (provider, policy)."""

    started_at: datetime
    finished_at: datetime
    outcomes: tuple[PolicyOutcome, ...]

    @property
    def ok(self) -> bool:
        """No policy failed (unsupported ones are not failures)."""
        return all(o.status != "failed" for o in self.outcomes)

    def deleted(self, provider: str | None = None, policy: str | None = None) -> int:
        """Events deleted, optionally for one provider and/or policy."""
        return sum(
            o.deleted_events
            for o in self.outcomes
            if (provider is None or o.provider == provider) and (policy is None or o.policy == policy)
        )

    def by_provider(self) -> dict[str, dict[str, PolicyOutcome]]:
        """``{provider: {policy: outcome}}``."""
        out: dict[str, dict[str, PolicyOutcome]] = {}
        for o in self.outcomes:
            out.setdefault(o.provider, {})[o.policy] = o
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json`` output and logs)."""
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "ok": self.ok,
            "outcomes": [
                {
                    "provider": o.provider,
                    "policy": o.policy,
                    "status": o.status,
                    "deleted_events": o.deleted_events,
                    "streams_touched": o.streams_touched,
                    "message": o.message,
                    "parameters": o.parameters,
                }
                for o in self.outcomes
            ],
        }


async def run_policy(policy: RetentionPolicy, ctx: RetentionContext, name: str, *, strict: bool) -> PolicyOutcome:
    """Apply one policy on one provider and describe what happened.

    :param strict: raise :class:`UnsupportedOperationError` instead of reporting ``unsupported``.
    """
    params = {k: v for k, v in policy.describe().items() if k != "policy"}
    missing = policy.missing(ctx.provider)
    if missing:
        msg = (
            f"provider {name!r} ({ctx.provider.kind}) does not support {', '.join(missing)}, "
            f"which retention policy {policy.name!r} needs"
        )
        if strict:
            raise UnsupportedOperationError(msg, provider=name, operation=missing[0], policy=policy.name)
        return PolicyOutcome(name, policy.name, "unsupported", message=msg, parameters=params)
    try:
        deleted = await policy.apply(ctx)
    except UnsupportedOperationError as e:
        if strict:
            raise
        return PolicyOutcome(name, policy.name, "unsupported", message=e.message, parameters=params)
    except Exception as e:  # noqa: BLE001 - any failure of a (third-party) policy is reported, never lost
        log.warning("retention policy %s failed on provider %s: %s", policy.name, name, type(e).__name__)
        return PolicyOutcome(
            name,
            policy.name,
            "failed",
            deleted_events=ctx.deleted_events,
            streams_touched=ctx.streams_touched,
            message=f"{type(e).__name__}: {e}",
            parameters=params,
        )
    return PolicyOutcome(name, policy.name, "ok", deleted, ctx.streams_touched, parameters=params)


class RetentionSchedule:
    """Applies retention every ``interval`` seconds on the running loop until :meth:`stop`.

    Build it with ``await manager.start_retention(interval)`` (:meth:`EventSourcingManager.start_retention
    <eventsource.manager.EventSourcingManager.start_retention>`). A failed run is logged (type only)
    and kept in :attr:`last_error`; the schedule keeps going. ``manager.close()`` stops it.
    """

    def __init__(self, run: Callable[[], Awaitable[RetentionReport]], interval: float, *, run_now: bool = True) -> None:
        self.interval = self.checked(interval)
        self.runs = 0
        self.last_report: RetentionReport | None = None
        self.last_error: BaseException | None = None
        self._run = run
        self._run_now = run_now
        self._wake = asyncio.Event()
        self._ran = asyncio.Condition()
        self._task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._loop(), name="eventsource-retention"
        )

    @staticmethod
    def checked(interval: object) -> float:
        """``interval`` as float seconds; :class:`ConfigurationError` unless it is a positive finite number."""
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0 < interval < math.inf:
            msg = f"retention interval must be a positive number of seconds, got {interval!r}"
            raise ConfigurationError(msg, field="interval")
        return float(interval)

    def __repr__(self) -> str:
        return f"RetentionSchedule(interval={self.interval}, runs={self.runs}, running={self.running})"

    @property
    def running(self) -> bool:
        """Whether the schedule is still active."""
        return not self._task.done()

    async def _loop(self) -> None:
        first = True
        while True:
            if not (first and self._run_now):
                try:
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
            first = False
            try:
                report = await self._run()
            except RetentionError as e:
                self.last_error = e
                report = e.report
            except Exception as e:  # noqa: BLE001 - a schedule never dies silently: logged, kept, next run
                self.last_error = e
                log.warning("scheduled retention failed: %s", type(e).__name__)
                report = None
            if report is not None:
                self.last_report = report
                if report.ok:
                    self.last_error = None
            self.runs += 1
            async with self._ran:
                self._ran.notify_all()

    def trigger(self) -> None:
        """Run now instead of waiting for the rest of the interval."""
        self._wake.set()

    async def wait_for_run(self, runs: int | None = None) -> RetentionReport | None:
        """Wait until ``runs`` runs completed (default: one more than now); returns the last report."""
        target = self.runs + 1 if runs is None else runs
        async with self._ran:
            await self._ran.wait_for(lambda: self.runs >= target or not self.running)
        return self.last_report

    async def stop(self) -> None:
        """Stop the schedule (a run in progress is cancelled between provider calls). Idempotent."""
        if self._task.done():
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        async with self._ran:
            self._ran.notify_all()

"""Retention runs and schedules: applying retention policies through the manager's providers and call policy."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from eventsource.config import parse_duration
from eventsource.errors import ConfigurationError, RetentionError
from eventsource.model import utcnow
from eventsource.retention import (
    RetentionContext,
    RetentionPolicy,
    RetentionReport,
    RetentionSchedule,
    build_policies,
    run_policy,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime

    from eventsource.config import ManagerConfig
    from eventsource.manager.policy import CallPolicy
    from eventsource.manager.providers import Providers
    from eventsource.model import RecordedSnapshot
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider

    PolicySpec = RetentionPolicy | Mapping[str, Any] | str
    Readable = Callable[[RecordedSnapshot], bool]

log = logging.getLogger("eventsource")

NOT_RETRIED = frozenset({"truncate_stream"})
"""Retention calls tried once: a truncation that timed out may have landed, and a retry would then cut
the new events of a stream deleted and re-created in between (``delete_events_before`` has a fixed
cutoff, so a second run of it deletes only what the first one would have)."""


class RetentionRuns:
    """The configured policies, one-off runs, and the running schedules of one manager."""

    __slots__ = ("config", "host", "policies", "policy", "providers", "readable", "schedules")

    def __init__(
        self,
        config: ManagerConfig,
        host: PluginHost,
        policy: CallPolicy,
        providers: Providers,
        readable: Readable | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.policy = policy
        self.providers = providers
        self.readable = readable  # the codec's check that a snapshot reads back (before_snapshot cuts by no other)
        self.policies: list[RetentionPolicy] | None = None
        self.schedules: list[RetentionSchedule] = []

    def configured(self) -> list[RetentionPolicy]:
        """The policies built from configuration (``retention_policies`` and ``retention_period``)."""
        if self.policies is None:
            self.policies = build_policies(self.host.retention_policies, self.config)
        return list(self.policies)

    def choose(self, policies: Sequence[PolicySpec] | None) -> list[RetentionPolicy]:
        """``policies`` as policy objects (default: the configured ones); at least one."""
        chosen = self.configured() if policies is None else [self._build(x) for x in self._listed(policies)]
        if not chosen:
            msg = "no retention policy is configured (set retention_period or retention_policies, or pass policies)"
            raise ConfigurationError(msg, field="retention_policies")
        return chosen

    @staticmethod
    def _listed(policies: object) -> list[PolicySpec]:
        """``policies`` as a list; a lone policy, name or dict (a str or a dict would be read item by item) refused."""
        if isinstance(policies, (RetentionPolicy, str, bytes, bytearray, Mapping)) or not isinstance(
            policies, Iterable
        ):
            msg = (
                "policies must be a list of retention policies (RetentionPolicy objects, names or "
                f"{{'policy': name, ...}} dicts), got {type(policies).__name__} {policies!r}"
            )
            if isinstance(policies, (RetentionPolicy, str, Mapping)):
                msg += f": pass [{policies!r}]"
            raise ConfigurationError(msg, field="retention_policies")
        return list(policies)

    def _build(self, value: PolicySpec) -> RetentionPolicy:
        if isinstance(value, RetentionPolicy):
            return value
        if isinstance(value, str):
            value = {"policy": value}
        if not isinstance(value, Mapping):
            msg = (
                f"a retention policy must be a RetentionPolicy, a name or a {{'policy': name, ...}} dict, got {value!r}"
            )
            raise ConfigurationError(msg, field="retention_policies")
        cfg = dataclasses.replace(self.config, retention_policies=[dict(value)], retention_period=None)
        return build_policies(self.host.retention_policies, cfg)[0]

    async def apply(
        self, chosen: list[RetentionPolicy], targets: list[Provider], now: datetime | None, *, strict: bool
    ) -> RetentionReport:
        """Run every policy on every target; :class:`RetentionError` (with the report) if any failed."""
        started = utcnow()
        ref = now or started
        outcomes = []
        for p in targets:
            for policy in chosen:
                ctx = RetentionContext(p, ref, functools.partial(self._call, p), readable=self.readable)
                outcomes.append(await run_policy(policy, ctx, p.name, strict=strict))
        report = RetentionReport(started_at=started, finished_at=utcnow(), outcomes=tuple(outcomes))
        log.info(
            "retention deleted %d event(s) on %d provider(s) (%d unsupported, %d failed)",
            report.deleted(),
            len(targets),
            sum(o.status == "unsupported" for o in outcomes),
            sum(o.status == "failed" for o in outcomes),
        )
        if not report.ok:
            failed = [f"{o.policy} on {o.provider}: {o.message}" for o in outcomes if o.status == "failed"]
            msg = "retention failed: " + "; ".join(failed)
            raise RetentionError(msg, report=report)
        return report

    async def _call(self, p: Provider, op: str, factory: Callable[[], Awaitable[Any]]) -> Any:
        return await self.policy.run(p, op, factory, retry=op not in NOT_RETRIED)

    @staticmethod
    def interval(value: float | str) -> float:
        """A schedule interval (seconds or ``"12h"``) in seconds; :class:`ConfigurationError` if invalid."""
        try:
            return parse_duration(value)
        except ValueError as e:
            raise ConfigurationError(str(e), field="interval") from None

    def plan(
        self, interval: float | str, policies: Sequence[PolicySpec] | None, provider: str | None
    ) -> tuple[float, list[RetentionPolicy]]:
        """A schedule's checked arguments (seconds, policies); an unknown ``provider`` refused, not left to each run.

        Synchronous: the sync facade makes these checks before its loop moves to a thread for good.
        """
        if provider is not None:
            self.providers.get(provider)
        return RetentionSchedule.checked(self.interval(interval)), self.choose(policies)

    def schedule(
        self, run: Callable[[], Awaitable[RetentionReport]], seconds: float, *, run_now: bool
    ) -> RetentionSchedule:
        """Start running ``run`` every ``seconds``."""
        schedule = RetentionSchedule(run, seconds, run_now=run_now)
        self.schedules.append(schedule)
        return schedule

    async def stop(self, schedule: RetentionSchedule | None = None) -> int:
        """Stop one schedule (every one when ``None``); how many were running."""
        chosen = [schedule] if schedule is not None else list(self.schedules)
        n = 0
        for sch in chosen:
            if sch.running:
                n += 1
            await sch.stop()
            if sch in self.schedules:
                self.schedules.remove(sch)
        return n

"""Monitoring: provider statistics with the manager's own metrics, and health checks that never raise.

Health has three states, in ``details["status"]``: ``healthy``; ``degraded`` (the store answers, but a setting
read from it can lose acknowledged writes: ``details["durability_risks"]``, see :func:`with_durability`; or a
part of it is failing: ``details["faults"]``, see :func:`with_faults`); ``unhealthy`` (``healthy`` is false).
With a configured ``checkpoint_store`` both also report each checkpoint's lag (:mod:`.lag`). :class:`Monitoring`
is the manager's role that puts them together.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from eventsource.config import mask_url
from eventsource.errors import (
    EventSourceError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    UnsupportedOperationError,
)
from eventsource.model import HealthStatus
from eventsource.provider import top_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from eventsource.checkpoints.base import CheckpointStore
    from eventsource.config import ManagerConfig
    from eventsource.manager.policy import CallPolicy
    from eventsource.manager.providers import Providers
    from eventsource.model import ProviderStats
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider
    from eventsource.subscriptions.lag import SubscriptionLag


async def provider_stats(
    providers: Mapping[str, Provider], policy: CallPolicy, uptime: float, *, top_streams: int | None = None
) -> dict[str, ProviderStats]:
    """Each provider's statistics, with ``extra["manager"]`` (the policy's metrics) and the manager's uptime.

    ``top_streams`` is passed to the store only when given; the result's ``events_by_stream`` is held to it
    whatever the store returned.
    """
    out = {}
    for name, p in providers.items():
        if top_streams is None:
            st = await policy.run(p, "stats", p.stats)
        else:
            st = await policy.run(p, "stats", lambda p=p: p.stats(top_streams=top_streams))  # type: ignore[misc]
            if len(st.events_by_stream) > top_streams or st.top_streams != top_streams:
                st = dataclasses.replace(
                    st, events_by_stream=top_of(st.events_by_stream, top_streams), top_streams=top_streams
                )
        extra = {**st.extra, "manager": policy.summary(name), "manager_uptime_seconds": uptime}
        out[name] = dataclasses.replace(st, provider=st.provider or name, extra=extra)
    return out


async def provider_health(providers: Mapping[str, Provider], policy: CallPolicy) -> dict[str, HealthStatus]:
    """Each provider's health; a provider that raises (anything) is reported unhealthy with a ``reason``."""
    out = {}
    for name, p in providers.items():
        start = time.perf_counter()
        try:
            status = await policy.run(p, "health", p.health, retry=False)
        except Exception as e:  # noqa: BLE001 - health never raises, a plugin's bug in it included
            status = HealthStatus(
                healthy=False,
                provider=name,
                message=mask_url(f"{type(e).__name__}: {e}"),  # (a driver's error may quote its DSN)
                details={"reason": _reason(e)},
                latency_ms=(time.perf_counter() - start) * 1000,
            )
        else:
            if not status.healthy and "reason" not in status.details:
                status = dataclasses.replace(status, details={**status.details, "reason": "error"})
            elif status.healthy and "durability_risks" not in status.details:  # a store without the audit says so
                unread = [f"durability settings: provider {p.kind!r} does not audit them"]
                status = dataclasses.replace(status, details={**status.details, "durability_unread": unread})
        out[name] = dataclasses.replace(status, details={**status.details, "status": status_of(status)})
    return out


HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


def risk(setting: str, value: object, scope: str, why: str) -> dict[str, str]:
    """One setting that can lose acknowledged writes, as :func:`with_durability` takes it.

    ``value`` is what the store reports, ``scope`` where it applies (``server``, ``session``, ``stream``,
    ``topics``, ``producer``...), ``why`` what it loses.
    """
    return {"setting": setting, "value": str(value), "scope": scope, "risk": why}


def with_durability(
    status: HealthStatus, risks: Iterable[dict[str, str]], *, unread: Iterable[str] = (), notes: Iterable[str] = ()
) -> HealthStatus:
    """``status`` with the durability audit: ``degraded`` when any ``risks`` (see :func:`risk`).

    ``unread`` names settings the store would not tell (declared, never guessed); ``notes`` are facts worth
    knowing that are not a risk of this configuration (e.g. one replica on a single-server cluster).
    """
    risks = list(risks)
    details: dict[str, Any] = {**status.details, "durability_risks": risks}
    if unread := list(unread):
        details["durability_unread"] = unread
    if notes := list(notes):
        details["durability_notes"] = notes
    message = status.message
    if risks and status.healthy:
        said = "; ".join(f"{r['setting']}={r['value']} ({r['scope']}): {r['risk']}" for r in risks)
        before = f" ({status.message})" if status.message != "ok" else ""
        message = f"degraded: {len(risks)} setting(s) can lose acknowledged writes: {said}{before}"
    status = dataclasses.replace(status, message=message, details=details)
    return dataclasses.replace(status, details={**details, "status": status_of(status)})


def with_faults(status: HealthStatus, faults: Iterable[dict[str, Any]]) -> HealthStatus:
    """``status`` with ``faults``: parts of the store that fail while it answers; ``degraded`` when any.

    Each fault is a dict with at least ``component`` and ``error`` (what failed, and how).
    """
    faults = list(faults)
    if not faults:
        return status
    details: dict[str, Any] = {**status.details, "faults": [*status.details.get("faults", ()), *faults]}
    message = status.message
    if status.healthy:
        said = "; ".join(f"{f['component']}: {f['error']}" for f in faults)
        if message.startswith("degraded:"):
            message = f"{message}; {said}"
        else:
            message = f"degraded: {said}" + (f" ({message})" if message != "ok" else "")
    status = dataclasses.replace(status, message=message, details=details)
    return dataclasses.replace(status, details={**details, "status": status_of(status)})


def status_of(status: HealthStatus) -> str:
    """``healthy``, ``degraded`` (answers, with durability risks or faults) or ``unhealthy``."""
    if not status.healthy:
        return UNHEALTHY
    return DEGRADED if status.details.get("durability_risks") or status.details.get("faults") else HEALTHY


def _reason(e: Exception) -> str:
    if isinstance(e, ProviderTimeoutError):
        return "timeout"
    if isinstance(e, (ProviderUnavailableError, ConnectionError)):
        return "unreachable"
    if isinstance(e, UnsupportedOperationError):
        return "unsupported"
    return str(e.details.get("reason", "error")) if isinstance(e, EventSourceError) else "error"


class Monitoring:
    """The manager's monitoring: statistics and health of every provider, with the checkpoints' lag (:mod:`.lag`)."""

    def __init__(
        self, providers: Providers, policy: CallPolicy, host: PluginHost, config: ManagerConfig, started: float
    ) -> None:
        self._providers = providers
        self._policy = policy
        self._host = host
        self._config = config
        self._started = started

    @property
    def uptime(self) -> float:
        """Seconds since the manager was built."""
        return time.monotonic() - self._started

    async def stats(self, top_streams: int | None) -> dict[str, ProviderStats]:
        """See :meth:`EventSourcingManager.get_stats` (``top_streams`` already checked)."""
        from eventsource.manager.lag import with_lag  # (it imports this module)

        by_name = self._providers.by_name
        out = await provider_stats(by_name, self._policy, self.uptime, top_streams=top_streams)
        report = await self._lag_report(by_name)
        return out if report is None else with_lag(out, report)

    async def health(self) -> dict[str, HealthStatus]:
        """See :meth:`EventSourcingManager.health_check`."""
        from eventsource.manager.lag import health_with_lag  # (it imports this module)

        out = await provider_health(self._providers.by_name, self._policy)
        # an unhealthy store's lag is not measured: its reads would fail or wait out their timeouts
        healthy = {name: p for name, p in self._providers.by_name.items() if name in out and out[name].healthy}
        report = await self._lag_report(healthy)
        return out if report is None else health_with_lag(out, report, self._config.max_subscription_lag)

    async def _lag_report(self, providers: Mapping[str, Provider]) -> dict[str, dict[str, Any]] | None:
        """The configured checkpoint store's lag on ``providers``; ``None`` when no store is configured."""
        from eventsource.subscriptions.lag import lag_report

        if self._config.checkpoint_store is None:
            return None
        return await lag_report(providers, self._policy, self._host, self._config.checkpoint_store)

    async def lag(
        self, p: Provider, checkpoint: CheckpointStore | str, *, name: str, source: str | None, wait: float | None
    ) -> SubscriptionLag:
        """See :meth:`EventSourcingManager.subscription_lag`."""
        from eventsource.subscriptions.lag import lag_of

        return await lag_of(p, self._policy, self._host, checkpoint, name=name, source=source, wait=wait)

"""Monitoring: provider statistics with the manager's own metrics, and health checks that never raise.

Health has three states, in ``details["status"]``: ``healthy``; ``degraded`` (the store answers, but a setting
read from it can lose acknowledged writes: ``details["durability_risks"]``, see :func:`with_durability`; or a
part of it is failing: ``details["faults"]``, see :func:`with_faults`); ``unhealthy`` (``healthy`` is false).
With a configured ``checkpoint_store`` both also report each checkpoint's lag (:mod:`eventsource.subscriptions.lag`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

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

    from eventsource.config import ManagerConfig
    from eventsource.manager.policy import CallPolicy
    from eventsource.model import ProviderStats
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider


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
                message=f"{type(e).__name__}: {e}",
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


async def with_lag(
    stats: dict[str, ProviderStats], providers: Mapping[str, Provider], policy: CallPolicy, host: PluginHost,
    config: ManagerConfig,
) -> dict[str, ProviderStats]:  # fmt: skip
    """``stats`` with ``extra["subscriptions"]`` (each checkpoint's lag), or ``extra["subscriptions_error"]``."""
    from eventsource.subscriptions.lag import lag_report

    if config.checkpoint_store is None:
        return stats
    report = await lag_report(providers, policy, host, config.checkpoint_store)
    return {name: dataclasses.replace(st, extra={**st.extra, **report.get(name, {})}) for name, st in stats.items()}


async def health_with_lag(
    health: dict[str, HealthStatus], providers: Mapping[str, Provider], policy: CallPolicy, host: PluginHost,
    config: ManagerConfig,
) -> dict[str, HealthStatus]:  # fmt: skip
    """``health`` with each checkpoint's lag in ``details``; over ``max_subscription_lag`` is unhealthy."""
    from eventsource.subscriptions.lag import lag_report

    if config.checkpoint_store is None:
        return health
    # an unhealthy store's lag is not measured: its reads would fail or wait out their timeouts
    healthy = {name: p for name, p in providers.items() if name in health and health[name].healthy}
    report = await lag_report(healthy, policy, host, config.checkpoint_store)
    out = {}
    limit = config.max_subscription_lag
    for name, status in health.items():
        entry = report.get(name, {})
        lagging = sorted(
            sub
            for sub, lag in entry.get("subscriptions", {}).items()
            if limit is not None and lag["seconds"] is not None and lag["seconds"] > limit
        )
        details = {**status.details, **entry}
        if lagging and status.healthy:
            details |= {"reason": "lagging", "lagging": lagging, "status": UNHEALTHY}
            message = f"{len(lagging)} subscription(s) more than {limit:g} s behind: {', '.join(lagging)}"
            out[name] = dataclasses.replace(status, healthy=False, message=message, details=details)
        else:
            out[name] = dataclasses.replace(status, details=details)
    return out

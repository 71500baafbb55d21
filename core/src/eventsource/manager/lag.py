"""Subscription lag in monitoring: each checkpoint of the configured ``checkpoint_store``, in stats and health.

:func:`with_lag` adds ``extra["subscriptions"]`` to each provider's statistics; :func:`health_with_lag` adds the
same to each health status and reports a provider unhealthy when a checkpoint is more than
``max_subscription_lag`` seconds behind. Without a ``checkpoint_store`` both return what they were given. The
measuring itself is :mod:`eventsource.subscriptions.lag`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from eventsource.manager.monitoring import UNHEALTHY

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsource.config import ManagerConfig
    from eventsource.manager.policy import CallPolicy
    from eventsource.model import HealthStatus, ProviderStats
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider

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

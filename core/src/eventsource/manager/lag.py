"""Subscription lag in monitoring: each checkpoint of the configured ``checkpoint_store``, in stats and health.

Given the lag report of the checkpoints (measured by :mod:`eventsource.subscriptions.lag`), :func:`with_lag`
adds ``extra["subscriptions"]`` to each provider's statistics and :func:`health_with_lag` adds the same to each
health status, reporting a provider unhealthy when a checkpoint is more than ``max_subscription_lag`` seconds
behind. :class:`~eventsource.manager.monitoring.Monitoring` measures the report when a store is configured.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from eventsource.manager.monitoring import UNHEALTHY

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsource.model import HealthStatus, ProviderStats


def with_lag(stats: dict[str, ProviderStats], report: Mapping[str, dict[str, Any]]) -> dict[str, ProviderStats]:
    """``stats`` with ``extra["subscriptions"]`` (each checkpoint's lag), or ``extra["subscriptions_error"]``."""
    return {name: dataclasses.replace(st, extra={**st.extra, **report.get(name, {})}) for name, st in stats.items()}


def health_with_lag(
    health: dict[str, HealthStatus], report: Mapping[str, dict[str, Any]], limit: float | None
) -> dict[str, HealthStatus]:
    """``health`` with each checkpoint's lag in ``details``; over ``limit`` seconds is unhealthy."""
    out = {}
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

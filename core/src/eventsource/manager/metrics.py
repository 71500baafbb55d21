"""Per-provider, per-operation counters and latency percentiles kept by the manager's call policy."""

from __future__ import annotations

from typing import Any

LATENCY_WINDOW = 1024
"""Latency percentiles are computed over this many most recent calls per provider and operation."""


class OpStats:
    """Counters and a latency ring for one (provider, operation). No allocation per call."""

    __slots__ = ("calls", "errors", "events", "i", "retries", "ring")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.retries = 0
        self.events = 0
        self.i = 0
        self.ring = [0.0] * LATENCY_WINDOW

    def record(self, seconds: float) -> None:
        """One latency sample."""
        self.ring[self.i % LATENCY_WINDOW] = seconds
        self.i += 1

    def summary(self) -> dict[str, Any]:
        """Counters plus p50/p90/p99/max latency in milliseconds (``None`` before the first sample)."""
        n = min(self.i, LATENCY_WINDOW)
        lat = sorted(self.ring[:n])
        out: dict[str, Any] = {
            "calls": self.calls,
            "errors": self.errors,
            "retries": self.retries,
            "events": self.events,
            "samples": n,
        }
        for name, q in (("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99)):
            out[name] = round(lat[min(n - 1, int(q * n))] * 1000, 4) if n else None
        out["max_ms"] = round(lat[-1] * 1000, 4) if n else None
        return out


class Metrics:
    """Operation stats by provider name, then operation name."""

    __slots__ = ("by_provider",)

    def __init__(self) -> None:
        self.by_provider: dict[str, dict[str, OpStats]] = {}

    def op(self, provider: str, op: str) -> OpStats:
        """The stats of ``op`` on ``provider`` (created on first use)."""
        ops = self.by_provider.get(provider)
        if ops is None:
            ops = self.by_provider[provider] = {}
        stats = ops.get(op)
        if stats is None:
            stats = ops[op] = OpStats()
        return stats

    def succeeded(self, provider: str, op: str, seconds: float, events: int) -> None:
        """One call of ``op`` on ``provider`` that succeeded: counted, its latency sampled, its events added.

        :meth:`op` and :meth:`OpStats.record` in one frame (every sync append passes here).
        """
        ops = self.by_provider.get(provider)
        stats = ops.get(op) if ops is not None else None
        if stats is None:
            stats = self.op(provider, op)
        stats.calls += 1
        stats.ring[stats.i % LATENCY_WINDOW] = seconds
        stats.i += 1
        stats.events += events

    def summary(self, provider: str) -> dict[str, dict[str, Any]]:
        """Every operation's :meth:`OpStats.summary` for one provider, by operation name."""
        ops = self.by_provider.get(provider)
        return {op: stats.summary() for op, stats in sorted(ops.items())} if ops else {}

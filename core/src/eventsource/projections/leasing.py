"""The leases projections run under: their keys, and how many ``run()`` calls of this process share one lease."""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any

from eventsource.errors import ConfigurationError

if TYPE_CHECKING:
    from eventsource.lease import Lease
    from eventsource.projections.sinks import Sink

RUNS: weakref.WeakKeyDictionary[Lease, int] = weakref.WeakKeyDictionary()
"""How many ``run()`` calls use each lease now: several runners of one process may share one."""

HELD: weakref.WeakKeyDictionary[Lease, int] = weakref.WeakKeyDictionary()
"""How many projections the ``run()`` calls sharing each lease run now: each holds one lease of it."""


def room(lease: Lease, mine: int, *, more: int = 0) -> int:
    """Refuse a runner of ``mine`` projections, or ``more`` for the running ones, past ``lease.capacity``.

    A lease holds at most ``capacity`` keys at once (PostgreSQL: a pool connection per held lock), and a running
    projection keeps its own: the one past it would wait, silently and for as long as the others run, for a
    connection they keep. Counted over every runner of this process that shares the lease object; ``more``
    (negative when a ``run()`` ends) is added to that count when it fits, and returned.
    """
    cap = lease.capacity
    shared = HELD.get(lease, 0)
    if more > 0 and cap is not None and shared + more > cap:
        msg = (
            f"{lease!r} holds at most {cap} leases at once (one per running projection), and runners sharing it "
            f"run {shared} projections already: {more} more would wait for a lease as long as those run. Build "
            "each runner its own lease, or one with a larger capacity (PostgreSQL: the pool_max_size setting)"
        )
        raise ConfigurationError(msg, field="lease", capacity=cap, running=shared)
    if cap is not None and mine > cap:
        msg = (
            f"{lease!r} holds at most {cap} leases at once (one per running projection); this runner "
            f"already has {mine - 1} projections: build the lease with a larger capacity "
            "(PostgreSQL: the pool_max_size setting) or run the others in another runner"
        )
        raise ConfigurationError(msg, field="lease", capacity=cap)
    if more:
        HELD[lease] = max(shared + more, 0)
    return more


def leave(lease: Lease) -> bool:
    """One ``run()`` stopped using ``lease``; whether it was the last (and should close it)."""
    left = RUNS.get(lease, 1) - 1
    if left > 0:
        RUNS[lease] = left
        return False
    RUNS.pop(lease, None)
    return True


def lease_key(name: str, source: str) -> str:
    """The lease projection ``name`` on the store ``source`` runs under: ``projection:["<name>", "<source>"]``.

    Keyed as its checkpoint is: one projection name on two stores (a schema per tenant) runs on both at once.
    """
    return "projection:" + json.dumps([name, source], ensure_ascii=False)


def refuse_unleased_reset(name: str, sink: Sink[Any], *, force: bool) -> None:
    """A reset without a lease on an at-least-once sink, unless ``force``: :class:`ConfigurationError`.

    A SQL sink fences off a runner still running (its next batch finds the checkpoint gone and replays from the
    start); an at-least-once sink checks, runs the handlers and stores the checkpoint in separate steps, so a
    runner between them keeps what the reset hook emptied behind its checkpoint.
    """
    if sink.exactly_once or force:
        return
    msg = (
        f"projection {name!r} has an at-least-once sink ({sink!r}): a reset without a lease cannot tell whether "
        "a runner still runs it, and one that does has what it applies meanwhile emptied behind its checkpoint. "
        "Build the runner with the lease the service runs under (the reset then waits for it), or pass "
        "force=True if no runner runs the projection"
    )
    raise ConfigurationError(msg, field="lease", name=name)

"""The leases projections run under: their keys, and how many ``run()`` calls of this process share one lease."""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventsource.lease import Lease

RUNS: weakref.WeakKeyDictionary[Lease, int] = weakref.WeakKeyDictionary()
"""How many ``run()`` calls use each lease now: several runners of one process may share one."""


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

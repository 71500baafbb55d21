"""``ProviderSuite``: the conformance kit every provider runs, composed of one part per rule of the store.

A plugin subclasses it and overrides the ``provider`` fixture (a connected provider on a fresh, empty
namespace) and the ``absent_store`` fixture (a namespace nothing has created). The parts live in their own
modules (appends, concurrency, idempotency, global order, reads, faults, streams, snapshots, queries, retention
primitives, capabilities, validation, fidelity, stats, scale, store set-up); a test that cannot apply to a
declared capability is skipped naming it, and a declared-unsupported operation is asserted to raise
:class:`UnsupportedOperationError`. ``docs/writing-a-provider.md`` describes the kit.
"""

from __future__ import annotations

from eventsource.testing.appends import BatchSuite, VersionSuite
from eventsource.testing.base import ProviderSuiteBase, ev, sid
from eventsource.testing.capabilities import CapabilitySuite
from eventsource.testing.concurrency import RaceSuite
from eventsource.testing.faults import PageFaults, ReadFaultSuite
from eventsource.testing.fidelity import FidelitySuite
from eventsource.testing.global_order import GlobalOrderSuite
from eventsource.testing.idempotency import IdempotencySuite
from eventsource.testing.queries import QuerySuite
from eventsource.testing.reads import PagedReadSuite
from eventsource.testing.retention_primitives import RetentionPrimitiveSuite
from eventsource.testing.scale import ScaleSuite
from eventsource.testing.snapshots import SnapshotSuite
from eventsource.testing.stats import StatsSuite
from eventsource.testing.store_setup import AbsentStore, StoreSetupSuite
from eventsource.testing.streams import StreamSuite
from eventsource.testing.validation import HOSTILE_INVALID_STREAM_IDS, HOSTILE_VALID_STREAM_IDS, InputValidationSuite

__all__ = [
    "HOSTILE_INVALID_STREAM_IDS",
    "HOSTILE_VALID_STREAM_IDS",
    "AbsentStore",
    "PageFaults",
    "ProviderSuite",
    "ProviderSuiteBase",
    "ev",
    "sid",
]


# pytest collects inherited tests base class first (reverse MRO), so the parts are listed last to first:
# the kit runs, and lists its test ids, in the order below read bottom-up (versions first, stats last).
class ProviderSuite(
    StoreSetupSuite,
    ScaleSuite,
    StatsSuite,
    FidelitySuite,
    InputValidationSuite,
    CapabilitySuite,
    RetentionPrimitiveSuite,
    QuerySuite,
    SnapshotSuite,
    StreamSuite,
    ReadFaultSuite,
    PagedReadSuite,
    GlobalOrderSuite,
    IdempotencySuite,
    BatchSuite,
    RaceSuite,
    VersionSuite,
):
    """Every rule of DESIGN.md "Semantics", as tests. Subclass and override :meth:`provider`."""

"""The conformance kit: test suites every provider runs, built-in and third-party alike.

Install with the ``testing`` extra (``pip install eventsource[testing]``), enable pytest-asyncio's
``asyncio_mode = auto``, and subclass a suite with a ``Test`` name, overriding its ``provider`` fixture (and,
for ``ProviderSuite``, ``absent_store``; the reference shows an example). Suites end in ``Suite`` so pytest
does not collect them until then.
"""

from __future__ import annotations

from eventsource.testing.suite import HOSTILE_INVALID_STREAM_IDS, HOSTILE_VALID_STREAM_IDS, AbsentStore, ProviderSuite

__all__ = [
    "HOSTILE_INVALID_STREAM_IDS",
    "HOSTILE_VALID_STREAM_IDS",
    "AbsentCheckpoints",
    "AbsentStore",
    "CheckpointStoreSetupSuite",
    "DomainSuite",
    "DurabilitySuite",
    "ProviderSuite",
    "RetentionSuite",
    "RewriteSuite",
]


def __getattr__(name: str) -> object:
    if name in {"CheckpointStoreSetupSuite", "AbsentCheckpoints"}:
        from eventsource.testing import checkpoint_setup

        return getattr(checkpoint_setup, name)
    if name == "RetentionSuite":
        from eventsource.testing.retention import RetentionSuite

        return RetentionSuite
    if name == "DomainSuite":
        from eventsource.testing.domain import DomainSuite

        return DomainSuite
    if name == "DurabilitySuite":
        from eventsource.testing.durability import DurabilitySuite

        return DurabilitySuite
    if name == "RewriteSuite":
        from eventsource.testing.rewrite import RewriteSuite

        return RewriteSuite
    raise AttributeError(name)

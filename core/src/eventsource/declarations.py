"""Checks of a provider's :class:`~eventsource.provider.Capabilities`: what the manager and the kit rely on.

A declaration is read by equality (``global_order == "total"``), so a misspelt or mistyped value would not fail
anywhere: it would quietly weaken what the manager and the conformance kit assume (a ``"Total"`` order read as not
total, a ``"cross-process"`` check whose race the kit skips). Each field is checked when the declaration is made.
"""

from __future__ import annotations

from typing import Any

ALLOWED: dict[str, tuple[Any, ...]] = {
    "global_order": ("total", "per_stream"),
    "concurrency": ("cross_process", "in_process"),
    "deleted_stream_ids": ("reusable", "refused"),
    **dict.fromkeys(("late_commits", "cross_process_reads", "head_position", "live_wakeup"), (True, False)),
}
"""The values each choice field may take (a bool field takes only ``True`` or ``False``, never ``1`` or ``"yes"``)."""

SIZES = ("max_event_size", "max_batch_bytes")
"""Fields that hold a positive number of bytes, or ``None`` (no limit)."""


def check_capabilities(caps: Any, operations: tuple[str, ...]) -> None:
    """Refuse a declaration with an unknown operation or a field value outside its type; keep ``unsupported`` frozen.

    :raises ValueError: naming the field (``Capabilities.global_order must be one of ...``).
    """
    unknown = set(caps.unsupported) - set(operations)
    if unknown:
        msg = f"unknown operation names in Capabilities.unsupported: {sorted(unknown)}"
        raise ValueError(msg)
    object.__setattr__(caps, "unsupported", frozenset(caps.unsupported))  # (a set given: the declaration is frozen)
    for name, allowed in ALLOWED.items():
        value = getattr(caps, name)
        if value not in allowed or type(value) is not type(allowed[0]):
            msg = f"Capabilities.{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            raise ValueError(msg)
    for name in SIZES:
        value = getattr(caps, name)
        if value is not None and (type(value) is not int or value <= 0):
            msg = f"Capabilities.{name} must be a positive number of bytes or None, got {value!r}"
            raise ValueError(msg)

"""What the ``create_store`` suites share: a refused ``connect()`` that leaves nothing behind.

:func:`refused_twice` is the check of :class:`~eventsource.testing.store_setup.StoreSetupSuite` and
:class:`~eventsource.testing.checkpoint_setup.CheckpointStoreSetupSuite` on a namespace nothing created;
:mod:`eventsource.testing.read_only` drives the command line's read-only commands at one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pytest

from eventsource.errors import StoreNotFoundError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence


class Connectable(Protocol):
    """A provider or a checkpoint store: what ``create_store`` governs."""

    async def connect(self) -> None: ...
    async def close(self) -> None: ...


async def nothing() -> list[str]:
    """Leftovers that see nothing (the default of the absent-namespace fixtures)."""
    return []


async def refused_twice(
    build: Callable[[], Connectable], leftovers: Callable[[], Awaitable[list[str]]], *, named: Sequence[str]
) -> None:
    """``build()``'s ``connect()`` raises ``StoreNotFoundError``, twice, and ``leftovers()`` stays empty.

    The refusal says how to create the store (``create_store`` in its message) and fills ``details`` for each
    key of ``named`` (``store``; ``missing``...). The second attempt finds nothing the first one could have left.
    """
    for _attempt in range(2):
        connectable = build()
        try:
            with pytest.raises(StoreNotFoundError) as refused:
                await connectable.connect()
        finally:
            await connectable.close()  # (after a refused connect too)
        assert "create_store" in str(refused.value), refused.value  # says how to create it
        for key in named:
            assert refused.value.details.get(key), (key, refused.value.details)  # names the store, what is missing
        assert await leftovers() == []

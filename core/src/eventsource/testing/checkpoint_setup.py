"""``create_store`` on checkpoint stores: off, ``connect()`` refuses missing checkpoints and creates nothing.

A checkpoint plugin subclasses :class:`CheckpointStoreSetupSuite` (with a ``Test`` name) and overrides the
``absent_checkpoints`` fixture: a builder of its store on a namespace (table, schema, bucket, file) nothing has
created, how to see what of it exists without creating anything, and, at teardown, the removal of whatever
the test made. With ``create_store`` on (the default) the store creates it as before; off, it reads and
writes one that exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from eventsource.checkpoints import Checkpoint
from eventsource.errors import StoreNotFoundError
from eventsource.testing.absent import nothing, refused_twice

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventsource.checkpoints import CheckpointStore


@dataclass(frozen=True)
class AbsentCheckpoints:
    """Checkpoints nothing has created yet, on the server (or in the directory) of the store under test."""

    build: Callable[[bool], CheckpointStore]
    """``build(create_store)``: a new, unconnected store of that namespace with ``create_store`` set."""
    leftovers: Callable[[], Awaitable[list[str]]] = field(default=nothing)
    """What of the namespace exists now (a schema, a table, a bucket, a file), found without creating anything;
    ``[]`` when nothing does. The default sees nothing: override it to inspect."""


class CheckpointStoreSetupSuite:
    """``create_store=False`` on a checkpoint store: refused where nothing is, read and written where it is."""

    @pytest.fixture
    async def absent_checkpoints(self) -> AsyncIterator[AbsentCheckpoints]:
        """Override: yield an :class:`AbsentCheckpoints`; remove what is left of its namespace after."""
        msg = "override the `absent_checkpoints` fixture in your CheckpointStoreSetupSuite subclass"
        pytest.fail(msg)  # a subclass that forgot the fixture fails loudly, never skips
        yield  # pragma: no cover

    async def test_create_store_off_refuses_missing_checkpoints_and_creates_nothing(
        self, absent_checkpoints: AbsentCheckpoints
    ) -> None:
        assert await absent_checkpoints.leftovers() == [], "the absent_checkpoints fixture names one that exists"
        build = functools.partial(absent_checkpoints.build, False)  # noqa: FBT003 - the builder's one argument
        await refused_twice(build, absent_checkpoints.leftovers, named=["store", "missing"])

    async def test_create_store_off_reads_and_writes_existing_checkpoints(
        self, absent_checkpoints: AbsentCheckpoints
    ) -> None:
        maker = absent_checkpoints.build(True)  # noqa: FBT003 - the default: creates what is missing
        try:
            await maker.connect()
            await maker.put(Checkpoint("view", "src", "all", 5))
            await maker.put(Checkpoint("one", "src", "stream:s", 2, event_id="e-2"))
        finally:
            await maker.close()
        made = await absent_checkpoints.leftovers()
        assert made, "create_store on created nothing the leftovers callable can see"
        store = absent_checkpoints.build(False)  # noqa: FBT003
        try:
            await store.connect()
            got = await store.get("view", "src")
            assert got is not None and (got.scope, got.position) == ("all", 5)
            one = await store.get("one", "src")
            assert one is not None and (one.position, one.event_id) == (2, "e-2")
            assert await store.get("view", "other") is None
            assert [(c.name, c.position) for c in await store.list()] == [("one", 2), ("view", 5)]
            assert [c.name for c in await store.list("src")] == ["one", "view"]
            # it writes to checkpoints it found: create_store is about setting them up, not a read-only mode
            await store.put(Checkpoint("view", "src", "all", 7))
            assert (await store.get("view", "src")).position == 7  # type: ignore[union-attr]
            assert await store.delete("one", "src")
        finally:
            await store.close()
        assert await absent_checkpoints.leftovers() == made


async def old_checkpoints_read_as_they_are(
    build: Callable[[bool], CheckpointStore], anchor_column: Callable[[], Awaitable[bool]]
) -> None:
    """A checkpoint table an older release made (no ``anchor`` column) holding ``view``/``src``/``all`` at 4.

    With ``create_store`` off, ``build(False)`` reads it as it is (no event id) and refuses a ``put`` (the
    anchor has nowhere to go: ``StoreNotFoundError``, ``outdated``) leaving the checkpoint as it was and the
    table without the column (``anchor_column()``, looked up without changing anything); ``build(True)``, the
    default, adds the column on connect, as before.
    """
    store = build(False)  # noqa: FBT003 - the builder's one argument
    await store.connect()
    try:
        got = await store.get("view", "src")
        assert got is not None and (got.position, got.event_id) == (4, None)
        assert [c.name for c in await store.list()] == ["view"]
        with pytest.raises(StoreNotFoundError) as refused:  # the anchor has nowhere to go: a migration first
            await store.put(Checkpoint("view", "src", "all", 5))
        assert refused.value.details["outdated"] and "anchor" in str(refused.value)
        assert (await store.get("view", "src")).position == 4  # type: ignore[union-attr]
    finally:
        await store.close()
    assert not await anchor_column()
    on = build(True)  # noqa: FBT003 - the default migrates it, as before
    await on.connect()
    await on.close()
    assert await anchor_column()

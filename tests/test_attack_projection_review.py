"""Attack review of projections, their leases and checkpoints: hostile input and misuse a user can hit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from eventsource.checkpoints import Checkpoint, MemoryCheckpointStore, SqliteCheckpointStore
from eventsource.errors import ValidationError
from eventsource.projections import Projection, ProjectionRunner, SqliteSink

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.checkpoints.base import CheckpointStore
    from eventsource.manager import EventSourcingManager


def stores(tmp_path: Path) -> list[CheckpointStore]:
    return [MemoryCheckpointStore(), SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")]


HOSTILE = {
    "position past a 64-bit int": Checkpoint("n", "s", "all", 2**63),
    "lone surrogate in the name": Checkpoint("n\ud800", "s", "all", 1),
    "lone surrogate in the source": Checkpoint("n", "s\udfff", "all", 1),
    "lone surrogate in the scope": Checkpoint("n", "s", "stream:\ud800", 1),
    "lone surrogate in the event id": Checkpoint("n", "s", "stream:x", 1, event_id="e\ud800"),
}


@pytest.mark.parametrize("label", sorted(HOSTILE))
async def test_a_checkpoint_no_store_can_hold_is_a_validation_error_on_every_store(tmp_path: Path, label: str) -> None:
    """A position of 2**63 or more, or text that is not valid Unicode, is refused alike and leaves the store as it was.

    The memory store kept them (so code tested on it failed in production), SQLite raised a bare
    ``OverflowError`` or ``UnicodeEncodeError`` (not an eventsource error: a caller catching those missed it)
    and PostgreSQL a ``ProviderError`` for the position (as if the database had failed).
    """
    for store in stores(tmp_path):
        await store.connect()
        try:
            await store.put(Checkpoint("n", "s", "all", 5))
            with pytest.raises(ValidationError):
                await store.put(HOSTILE[label], force=True)
            assert [(c.name, c.source, c.position) for c in await store.list()] == [("n", "s", 5)], store
        finally:
            await store.close()


@pytest.mark.parametrize("call", ["get", "delete"])
async def test_a_key_with_a_lone_surrogate_is_a_validation_error_on_get_and_delete(tmp_path: Path, call: str) -> None:
    """``get``/``delete`` of a name or source no store can encode: SQLite raised a bare ``UnicodeEncodeError``."""
    for store in stores(tmp_path):
        await store.connect()
        try:
            with pytest.raises(ValidationError):
                await getattr(store, call)("n\ud800", "s")
            with pytest.raises(ValidationError):
                await getattr(store, call)("n", "s\ud800")
        finally:
            await store.close()


def test_a_projection_source_no_store_can_encode_is_refused_when_declared() -> None:
    """``Projection(source=...)`` with a lone surrogate got through, then crashed the runner in its sink or lease."""
    with pytest.raises(ValidationError):
        Projection("p", {"Deposited": lambda _e, _tx: None}, source="src\ud800")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("lease_wait", "1"),
        ("lease_wait", -1.0),
        ("lease_wait", 0),
        ("lease_wait", float("nan")),
        ("lease_wait", float("inf")),
        ("lease_wait", True),
        ("poll_interval", "1"),
        ("poll_interval", 0),
        ("poll_interval", float("nan")),
    ],
)
def test_runner_timings_are_checked_when_it_is_built(es: EventSourcingManager, setting: str, value: Any) -> None:
    """``lease_wait="1"`` crashed ``run()`` with a bare ``TypeError``; a negative or NaN one was taken.

    NaN made the lease's wait never time out (every comparison with it is false) and a negative one retried a
    held lease without a pause. ``poll_interval`` was refused only when ``run()`` subscribed.
    """
    with pytest.raises(ValidationError, match=setting):
        ProjectionRunner(es, **{setting: value})


@pytest.mark.parametrize("value", ["1", -1.0, float("nan"), None])
def test_a_sqlite_sink_timeout_is_checked_when_it_is_built(tmp_path: Path, value: Any) -> None:
    """``SqliteSink(timeout="1")`` crashed the runner with a bare ``TypeError`` when it opened the sink."""
    with pytest.raises(ValidationError, match="timeout"):
        SqliteSink(str(tmp_path / "read.db"), timeout=value)

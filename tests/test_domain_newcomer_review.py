"""Attacker's and newcomer's review of the domain layer: event classes, upcasting chains and repositories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from eventsource.domain import Aggregate, DomainEvent, Repository, applies
from eventsource.errors import ConfigurationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Shipped(DomainEvent, type_name="review.Shipped"):
    n: int


class Parcel(Aggregate):
    aggregate_type = "review.Parcel"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.n = 0

    @applies(Shipped)
    def _shipped(self, e: Shipped) -> None:
        self.n += e.n


def _memory() -> EventSourcingManager:
    return EventSourcingManager({"providers": {"m": "memory://"}}, host=PluginHost(load_entrypoints=False))


def _rename(m: EventSourcingManager) -> None:
    m.rename_event_type("review.Shipped", "review.Sent")


def _step_to_type(m: EventSourcingManager) -> None:
    m.add_upcaster("review.Shipped", 1, dict, to_type="review.Sent")


@pytest.mark.parametrize("away", [_rename, _step_to_type], ids=["rename", "to_type"])
@pytest.mark.parametrize("class_first", [True, False], ids=["class-first", "away-first"])
async def test_a_class_whose_type_reads_as_another_is_refused(
    away: Callable[[EventSourcingManager], None], *, class_first: bool
) -> None:
    """Every event the class wrote read back as another type: a saved aggregate could never be loaded again."""
    async with _memory() as m:
        if class_first:
            Repository(m, Parcel)
            with pytest.raises(ConfigurationError, match=r"review\.Shipped"):
                away(m)
        else:
            away(m)
            with pytest.raises(ConfigurationError, match=r"review\.Shipped"):
                Repository(m, Parcel)

"""The seed's e-commerce order example, in Python: raw appends, then event classes, an upcaster and a repository.

Run it with ``python docs/examples/ecommerce_order.py [DATABASE_URL]`` (default: a SQLite file in a
temporary directory). It first writes the order exactly as the seed library's example does (a stream,
an ``OrderCreated`` and an ``OrderPaid`` event as plain dicts, the way older code stored them), then
reads the same stream through an ``Order`` aggregate whose ``OrderCreated`` class is schema version 2:
an upcaster turns the stored version 1 (a float ``total``) into version 2 (``total_cents``) on read,
without rewriting what is stored. The tests run this file.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import marshmallow
from eventsource import ConcurrencyError, EventSourcingManager, ValidationError
from eventsource.domain import Aggregate, DomainEvent, Repository, applies

# ---------------------------------------------------------------- events


class OrderCreatedSchema(marshmallow.Schema):
    """Validates OrderCreated v2 on append and on read."""

    order_id = marshmallow.fields.String(required=True)
    customer_id = marshmallow.fields.String(required=True)
    items = marshmallow.fields.List(
        marshmallow.fields.String(), required=True, validate=marshmallow.validate.Length(min=1)
    )
    total_cents = marshmallow.fields.Integer(required=True, validate=marshmallow.validate.Range(min=0))


@dataclass(frozen=True)
class OrderCreated(DomainEvent, type_name="OrderCreated", version=2, schema=OrderCreatedSchema):
    """An order was placed (v1 stored ``total`` as a float; v2 stores integer cents)."""

    order_id: str
    customer_id: str
    items: list[str]
    total_cents: int


@dataclass(frozen=True)
class OrderPaid(DomainEvent, type_name="OrderPaid"):
    """The order was paid."""

    payment_id: str
    amount: float
    method: str


def order_created_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 ``{"total": 99.99}`` -> v2 ``{"total_cents": 9999}``."""
    out = {k: v for k, v in data.items() if k != "total"}
    out["total_cents"] = round(data["total"] * 100)
    return out


# ---------------------------------------------------------------- aggregate


class Order(Aggregate):
    """An order: created, then paid once, for its full amount."""

    aggregate_type = "Order"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.customer_id = ""
        self.items: list[str] = []
        self.total_cents = 0
        self.paid = False

    # commands: check the rules, then record an event
    def create(self, customer_id: str, items: list[str], total_cents: int) -> None:
        """Place the order (once)."""
        if self.version or self.pending:
            msg = f"order {self.id} already exists"
            raise ValueError(msg)
        self.record(OrderCreated(self.id, customer_id, items, total_cents))

    def pay(self, payment_id: str, method: str) -> None:
        """Pay the full amount (once)."""
        if self.paid:
            msg = f"order {self.id} is already paid"
            raise ValueError(msg)
        self.record(OrderPaid(payment_id, self.total_cents / 100, method))

    # state changes: one handler per event class
    @applies(OrderCreated)
    def _created(self, e: OrderCreated) -> None:
        self.customer_id, self.items, self.total_cents = e.customer_id, list(e.items), e.total_cents

    @applies(OrderPaid)
    def _paid(self, _: OrderPaid) -> None:
        self.paid = True


# ---------------------------------------------------------------- the run


async def main(url: str) -> dict[str, Any]:
    """Run the example against ``url``; returns what it observed (the tests check it)."""
    seen: dict[str, Any] = {}
    async with EventSourcingManager({"providers": {"store": url}, "default_provider": "store"}) as es:
        # 1. the seed's example, as older code wrote it: dicts, no schema version (so version 1)
        await es.create_stream(stream_id="Order-123", name="Order Events", aggregate_id="123", aggregate_type="Order")
        await es.append_event(
            stream_id="Order-123",
            event_type="OrderCreated",
            data={"order_id": "123", "customer_id": "customer-456", "items": ["item-1", "item-2"], "total": 99.99},
            aggregate_id="123",
            aggregate_type="Order",
        )

        # 2. today's code: OrderCreated is v2; one upcaster reads the old events, nothing is rewritten
        es.add_upcaster("OrderCreated", 1, order_created_v1_to_v2)
        orders = Repository(es, Order, snapshot_threshold=50)

        order = await orders.get("123")
        seen["loaded_total_cents"] = order.total_cents
        order.pay("payment-789", "credit_card")
        await orders.save(order)  # expected version: the one it was loaded at

        # a stale copy cannot overwrite: its save conflicts, and update() retries on a fresh copy
        stale = Order("123")
        stale.version = 1
        stale.record(OrderPaid("payment-000", 1.0, "cash"))
        try:
            await orders.save(stale)
        except ConcurrencyError:
            seen["stale_save_conflicted"] = True

        # 3. a new order, written with the class: the schema validates it before anything is stored
        bad = orders.new("124")
        try:
            bad.create("customer-456", [], 0)
            await orders.save(bad)
        except ValidationError as e:
            seen["rejected_field"] = e.details["field"]
        fresh = orders.new("124")
        fresh.create("customer-456", ["item-3"], 1250)
        await orders.save(fresh)

        # reads can hand back instances too, on every read path
        events = [e.data async for e in es.read_stream("Order-123", as_classes=True)]
        seen["events"] = [type(e).__name__ for e in events]
        seen["first_event_data"] = [e.data async for e in es.read_stream("Order-123")][0]  # upcast dicts
        seen["paid"] = (await orders.get("123")).paid
    return seen


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{Path(tempfile.mkdtemp()) / 'orders.db'}"
    for key, value in asyncio.run(main(url)).items():
        print(f"{key}: {value}")

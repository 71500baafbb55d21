"""The seed's user-management example, in Python, on the sync API: a User aggregate and its repository.

Run it with ``python docs/examples/user_management.py [DATABASE_URL]`` (default: a SQLite file in a
temporary directory). A user registers and updates their profile through a ``SyncRepository``; the
e-mail address is validated by the event's marshmallow schema (a bad one is refused naming the field,
nothing stored); an event type renamed since older code wrote it (``UserProfileChanged`` is now
``ProfileUpdated``) is read under its new name; and snapshots are taken every 3 events, so a load
applies only the events after the latest one. The tests run this file.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import marshmallow
from eventsource import ValidationError
from eventsource.domain import Aggregate, DomainEvent, SyncRepository, applies
from eventsource.sync import SyncEventSourcingManager


class UserRegisteredSchema(marshmallow.Schema):
    """Validates UserRegistered on append and on read."""

    user_id = marshmallow.fields.String(required=True)
    email = marshmallow.fields.Email(required=True)
    name = marshmallow.fields.String(required=True)
    registered_at = marshmallow.fields.AwareDateTime(required=True)


class ProfileUpdatedSchema(marshmallow.Schema):
    """Validates ProfileUpdated on append and on read."""

    name = marshmallow.fields.String(required=True)
    updated_at = marshmallow.fields.AwareDateTime(required=True)


@dataclass(frozen=True)
class UserRegistered(DomainEvent, type_name="UserRegistered", schema=UserRegisteredSchema):
    """A user signed up."""

    user_id: str
    email: str
    name: str
    registered_at: datetime


@dataclass(frozen=True)
class ProfileUpdated(DomainEvent, type_name="ProfileUpdated", schema=ProfileUpdatedSchema):
    """A user changed their name (stored as ``UserProfileChanged`` by older code)."""

    name: str
    updated_at: datetime


class User(Aggregate):
    """A registered user and their profile."""

    aggregate_type = "User"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.email = ""
        self.name = ""
        self.updates = 0

    def register(self, email: str, name: str) -> None:
        """Sign the user up."""
        self.record(UserRegistered(self.id, email, name, datetime.now(UTC)))

    def rename(self, name: str) -> None:
        """Change the user's name (nothing is recorded when it is the same)."""
        if name != self.name:
            self.record(ProfileUpdated(name, datetime.now(UTC)))

    @applies(UserRegistered)
    def _registered(self, e: UserRegistered) -> None:
        self.email, self.name = e.email, e.name

    @applies(ProfileUpdated)
    def _updated(self, e: ProfileUpdated) -> None:
        self.name = e.name
        self.updates += 1


def main(url: str) -> dict[str, Any]:
    """Run the example against ``url``; returns what it observed (the tests check it)."""
    seen: dict[str, Any] = {}
    with SyncEventSourcingManager({"providers": {"store": url}, "default_provider": "store"}) as es:
        es.rename_event_type("UserProfileChanged", "ProfileUpdated")
        users = SyncRepository(es, User, snapshot_threshold=3)

        try:
            bad = users.new("457")
            bad.register("not-an-email", "Joe")
            users.save(bad)
        except ValidationError as e:
            seen["rejected_field"] = e.details["field"]
        seen["bad_user_stored"] = es.stream_exists("User-457")

        jane = users.new("456")
        jane.register("user@example.com", "Jane Doe")
        users.save(jane)
        # an event as older code wrote it, under the type's old name
        es.append_event(
            stream_id="User-456",
            event_type="UserProfileChanged",
            data={"name": "Jane Q. Doe", "updated_at": "2024-01-01T00:00:00+00:00"},
            aggregate_id="456",
            aggregate_type="User",
        )
        users.update("456", lambda u: u.rename("Jane Smith"))  # reload, apply, save; retried on conflict
        users.update("456", lambda u: u.rename("Jane Smith-Jones"))

        loaded = users.get("456")
        seen["name"] = loaded.name
        seen["updates"] = loaded.updates
        seen["version"] = loaded.version
        seen["snapshot_version"] = es.get_snapshot("User-456").version
        seen["types"] = [e.event_type for e in es.read_stream("User-456")]
    return seen


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{Path(tempfile.mkdtemp()) / 'users.db'}"
    for key, value in main(url).items():
        print(f"{key}: {value}")

"""The checkpoint record and the :class:`CheckpointStore` contract every checkpoint plugin implements.

A checkpoint store keeps one :class:`Checkpoint` per (subscription name, source store). ``put`` overwrites;
a position never moves backwards through ``put`` unless ``force=True`` (a restart from an older position is
a deliberate act, not a race between two runners). Stores validate names like the event stores do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from eventsource.errors import ConflictError, NotFoundError, UnsupportedOperationError, ValidationError
from eventsource.model import MAX_NUMBER

MAX_NAME_LENGTH = 200
MAX_SCOPE_LENGTH = len("stream:") + 65536
"""A scope names a stream (``stream:<id>``): room for the longest stream id a store can be configured to take."""
MAX_POSITION = MAX_NUMBER
"""The largest position any store holds (:data:`eventsource.model.MAX_NUMBER`)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where subscription ``name`` got to in the store ``source``.

    :param name: the subscription's name.
    :param source: the source store's name (the provider name in the manager that subscribed).
    :param scope: what ``position`` counts: ``"all"`` (global positions) or ``"stream:<id>"`` (versions).
    :param position: the last global position (or stream version) handled; resuming starts after it.
    :param updated_at: when it was stored.
    :param event_id: the id of the event at ``position`` (one-stream scopes: the stream's event at that
        version); a resume checks the store still holds it there (a stream deleted and created again beyond
        ``position``, a store replaced by an older copy that grew past it, is noticed, never passed over).
        ``None``: not known (older checkpoints, a position whose event the subscription did not read), not checked.
    """

    name: str
    source: str
    scope: str
    position: int
    updated_at: datetime | None = None
    event_id: str | None = None

    @property
    def anchor(self) -> str | None:
        """``event_id`` as stores keep it, ``"<position>:<event_id>"``: see :func:`event_id_of`."""
        return None if self.event_id is None else f"{self.position}:{self.event_id}"


def event_id_of(anchor: str | None, position: int) -> str | None:
    """The event id a stored :attr:`Checkpoint.anchor` holds, if it was written with ``position`` (else ``None``).

    A writer that leaves the anchor as it was (an older release updating only the position) cannot make it
    vouch for another position: such a checkpoint is resumed unchecked, never refused for a stale id.
    """
    if not anchor:
        return None
    at, _, event_id = anchor.partition(":")
    return event_id if event_id and at == str(position) else None


class CheckpointBehindError(ConflictError):
    """A ``put`` would move a checkpoint backwards (pass ``force=True`` to rewind on purpose)."""


class CheckpointNotFoundError(NotFoundError):
    """No checkpoint is stored for that subscription name and source."""


def check_name(what: str, value: object, limit: int = MAX_NAME_LENGTH) -> str:
    """``value`` as a checkpoint key part (or, with its own ``limit``, scope), or :class:`ValidationError`.

    Text that has no UTF-8 form (a lone surrogate) is refused too: SQL stores cannot encode it.
    """
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        msg = f"checkpoint {what} must be a non-empty string of at most {limit} characters without NUL"
        raise ValidationError(msg, field=what)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # no store can keep it: SQLite's raised the codec's error, PostgreSQL's a vague one
            msg = f"checkpoint {what} is not valid Unicode text (lone surrogate)"
            raise ValidationError(msg, field=what) from None
    return value


def check_position(position: object) -> int:
    """``position`` as an int from 0 to :data:`MAX_POSITION`, or :class:`ValidationError`."""
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
        # PostgreSQL's bigint and SQLite's INTEGER cannot hold more (no store's position is)
        msg = f"checkpoint position must be an int from 0 to 2**63 - 1, got {position!r}"
        raise ValidationError(msg, field="position")
    return position


def now() -> datetime:
    """The time stamp a store records on ``put``."""
    return datetime.now(UTC)


class CheckpointStore(ABC):
    """Keeps :class:`Checkpoint` records; subclasses implement the abstract methods.

    :param url: where the checkpoints live (``memory://``, ``sqlite:///file.db``, ``postgresql://...``).
    :param create_store: ``True`` (the default): ``connect()`` creates (and migrates) the table, schema or bucket
        that holds the checkpoints. ``False``: it creates and changes nothing, and raises
        :class:`~eventsource.errors.StoreNotFoundError` naming what is missing (what only reads, such as
        ``eventsource projections``, turns it off). A subclass takes it as a keyword and passes it here.
    """

    kind: ClassVar[str] = ""

    def __init__(self, url: str, *, create_store: bool = True) -> None:
        self.url = url
        self.create_store = create_store

    @property
    def display_url(self) -> str:
        """``url`` with its password masked (safe to print or log); stores with other forms override it."""
        from eventsource.config import mask_url

        return mask_url(self.url)

    async def connect(self) -> None:  # noqa: B027 - optional: stores without connections need nothing
        """Open connections and create tables as needed (none with ``create_store`` off). Idempotent.

        :raises StoreNotFoundError: ``create_store`` is off and what holds the checkpoints is not there.
        """

    async def close(self) -> None:  # noqa: B027 - optional
        """Release every resource. Idempotent."""

    @abstractmethod
    async def get(self, name: str, source: str) -> Checkpoint | None:
        """The checkpoint of subscription ``name`` on ``source``, or ``None``."""

    @abstractmethod
    async def put(self, checkpoint: Checkpoint, *, force: bool = False) -> Checkpoint:
        """Store ``checkpoint`` (with ``updated_at`` set) and return what was stored.

        :raises CheckpointBehindError: the stored position is higher, or its scope differs, and not ``force``.
        """

    @abstractmethod
    async def delete(self, name: str, source: str) -> bool:
        """Remove the checkpoint; whether there was one."""

    async def list(self, source: str | None = None) -> list[Checkpoint]:  # noqa: ARG002 - the contract's signature
        """Every stored checkpoint (of ``source`` only, when given), ordered by name then source.

        :raises UnsupportedOperationError: the store cannot enumerate its checkpoints (the default).
        """
        msg = f"the {self.kind or type(self).__name__} checkpoint store cannot list its checkpoints"
        raise UnsupportedOperationError(msg, operation="list_checkpoints")

    @staticmethod
    def check_move(old: Checkpoint | None, new: Checkpoint, *, force: bool) -> None:
        """Refuse a ``put`` that moves backwards or changes scope (unless ``force``)."""
        if old is None or force:
            return
        if old.scope != new.scope:
            msg = f"checkpoint {new.name!r} on {new.source!r} counts {old.scope!r}, not {new.scope!r}"
            raise CheckpointBehindError(msg, name=new.name, source=new.source)
        if new.position < old.position:
            msg = (
                f"checkpoint {new.name!r} on {new.source!r} is at {old.position}; "
                f"refusing to move it back to {new.position}"
            )
            raise CheckpointBehindError(msg, name=new.name, source=new.source)

    @staticmethod
    def checked(checkpoint: Checkpoint) -> Checkpoint:
        """``checkpoint`` validated, stamped with the current time."""
        check_name("name", checkpoint.name)
        check_name("source", checkpoint.source)
        check_name("scope", checkpoint.scope, MAX_SCOPE_LENGTH)
        check_position(checkpoint.position)
        if checkpoint.event_id is not None:
            check_name("event_id", checkpoint.event_id, MAX_SCOPE_LENGTH)
        cp = checkpoint
        return Checkpoint(cp.name, cp.source, cp.scope, cp.position, now(), cp.event_id)

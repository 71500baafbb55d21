"""Names on the server: subject tokens, KV keys, bucket names, positions.

Every stream id, whatever characters it holds, becomes ONE subject token of ``[A-Za-z0-9_-]``: ``b`` plus
the base64url id while that stays within :data:`MAX_PLAIN_TOKEN`, else ``h`` plus the base64url of its
SHA-256; so no id can address another stream's subject. Event ``i`` of the message at stream sequence
``seq`` has position ``seq << POSITION_SHIFT | i``, ordered like the JetStream sequence. The reasoning is
in ``docs/internals/nats.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

POSITION_SHIFT = 20
"""Bits of a position that hold the index inside a message (so an envelope holds < 2**20 events)."""
INDEX_MASK = (1 << POSITION_SHIFT) - 1
MAX_EVENTS_PER_MESSAGE = 1 << POSITION_SHIFT
MAX_PLAIN_TOKEN = 200
"""Longest reversible token; longer ids are hashed (subjects must fit the server's control line)."""
_BUCKET = re.compile(r"[A-Za-z0-9_-]+")


def is_bucket_name(name: object) -> bool:
    """Whether ``name`` is a KV bucket name the server takes: ASCII letters, digits, ``-`` and ``_``.

    (``str.isalnum`` also takes ``é`` and ``²``, which the server refuses at connect.)
    """
    return isinstance(name, str) and _BUCKET.fullmatch(name) is not None


def position(seq: int, index: int) -> int:
    """The position of event ``index`` of the message at stream sequence ``seq``."""
    return (seq << POSITION_SHIFT) | index


def split_position(pos: int) -> tuple[int, int]:
    """``(seq, index)`` of a position (``(0, 0)`` for positions below the first message)."""
    if pos <= 0:
        return 0, 0
    return pos >> POSITION_SHIFT, pos & INDEX_MASK


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def stream_token(stream_id: str) -> str:
    """The single subject token (and KV key) that stands for ``stream_id``."""
    raw = stream_id.encode("utf-8")
    plain = _b64(raw)
    if len(plain) <= MAX_PLAIN_TOKEN:
        return "b" + plain
    return "h" + _b64(hashlib.sha256(raw).digest())


def token_is_reversible(token: str) -> bool:
    """Whether the stream id can be decoded from ``token`` alone."""
    return token.startswith("b")


def stream_id_of(token: str) -> str | None:
    """The stream id a reversible token stands for (``None`` for hashed tokens or foreign subjects)."""
    if not token.startswith("b"):
        return None
    body = token[1:]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def event_key(event_id: str) -> str:
    """KV key of an event id in the id index (hashed: event ids may hold any character)."""
    return "x" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:40]


MSG_ID_ESCAPE = "~b64~"
"""Prefix of an event's ``Nats-Msg-Id`` written as base64url of its id (see :func:`msg_id`)."""


def msg_id(event_id: str) -> str:
    """``Nats-Msg-Id`` of one event: its id, or base64url of it behind :data:`MSG_ID_ESCAPE`.

    Encoded when a header would not carry the id exactly (nats-py strips header values: ``"a "`` became ``"a"``),
    or when it could be another message id: one holding ``~`` (an id written again after its message was gone is
    published as ``<message id>~<sequence>``) or starting with ``batch-`` (:func:`batch_msg_id`).
    """
    if "~" in event_id or event_id[:1].isspace() or event_id[-1:].isspace() or event_id.startswith("batch-"):
        return MSG_ID_ESCAPE + base64.urlsafe_b64encode(event_id.encode("utf-8")).decode("ascii")
    return event_id


def batch_msg_id(event_ids: list[str]) -> str:
    """``Nats-Msg-Id`` of an envelope: derived from its event ids, so a retry is deduplicated."""
    h = hashlib.sha256("\x00".join(event_ids).encode("utf-8")).hexdigest()[:40]
    return f"batch-{len(event_ids)}-{h}"


class Names:
    """Every server-side name of one store (a JetStream stream plus four KV buckets)."""

    def __init__(self, stream: str, subject_prefix: str) -> None:
        self.stream = stream
        self.prefix = subject_prefix
        self.events_wildcard = f"{subject_prefix}.e.*"
        self.info_bucket = f"{stream}_info"
        self.snapshot_bucket = f"{stream}_snap"
        self.ids_bucket = f"{stream}_ids"
        self.hidden_bucket = f"{stream}_hidden"

    @property
    def buckets(self) -> tuple[str, str, str, str]:
        """All KV bucket names."""
        return (self.info_bucket, self.snapshot_bucket, self.ids_bucket, self.hidden_bucket)

    def subject(self, token: str) -> str:
        """The events subject of a stream token."""
        return f"{self.prefix}.e.{token}"

    def token_of_subject(self, subject: str) -> str:
        """The stream token at the end of an events subject."""
        return subject.rsplit(".", 1)[-1]

    @staticmethod
    def hidden_key(token: str, seq: int) -> str:
        """KV key listing the deleted events of a partly deleted envelope."""
        return f"{token}.{seq}"

    @staticmethod
    def snapshot_key(token: str, version: int) -> str:
        """KV key of a stream's snapshot at ``version``."""
        return f"{token}.{version}"

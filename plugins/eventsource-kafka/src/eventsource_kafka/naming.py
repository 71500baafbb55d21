"""Topic names: any stream id maps to a legal, collision-free Kafka topic name.

Kafka topic names are at most 249 characters of ``[a-zA-Z0-9._-]``; the naming scheme and why it cannot
collide are in docs/internals/kafka.md.
"""

from __future__ import annotations

import hashlib
import re

from eventsource.errors import ConfigurationError

MAX_TOPIC_LENGTH = 249
MAX_PREFIX_LENGTH = 120
_READABLE = 60
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # \Z: "$" also matches before a final newline
_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


def check_prefix(prefix: str) -> str:
    """Validate a topic prefix (letters, digits, ``.``, ``_``, ``-``; at most 120 characters)."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix) or len(prefix) > MAX_PREFIX_LENGTH:
        msg = (
            f"topic_prefix must be 1-{MAX_PREFIX_LENGTH} characters of [A-Za-z0-9._-] starting with a letter "
            f"or digit, got {prefix!r}"
        )
        raise ConfigurationError(msg, field="topic_prefix")
    return prefix


def stream_hash(stream_id: str) -> str:
    """96-bit hex digest of the exact stream id."""
    return hashlib.sha256(stream_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def stream_topic(prefix: str, stream_id: str, incarnation: int) -> str:
    """The topic of the ``incarnation``-th creation of ``stream_id`` (the same in every process)."""
    readable = _UNSAFE.sub("_", stream_id[:_READABLE]) or "_"
    name = f"{prefix}.s.{readable}.{stream_hash(stream_id)}.i{incarnation}"
    if len(name) > MAX_TOPIC_LENGTH:  # cannot happen with the prefix limit; kept as a guard
        msg = f"topic name for stream {stream_id!r} would exceed {MAX_TOPIC_LENGTH} characters"
        raise ConfigurationError(msg, field="topic_prefix")
    return name


def incarnation(topic: str) -> int | None:
    """The incarnation number of a stream topic named by :func:`stream_topic` (``None`` for older names)."""
    tail = topic.rsplit(".", 1)[-1]
    return int(tail[1:]) if tail.startswith("i") and tail[1:].isdigit() else None


def meta_topic(prefix: str) -> str:
    """The compacted topic holding one record per stream (key: exact stream id)."""
    return f"{prefix}.meta"


def snapshot_topic(prefix: str) -> str:
    """The compacted topic holding snapshots (key: stream id and version)."""
    return f"{prefix}.snapshots"

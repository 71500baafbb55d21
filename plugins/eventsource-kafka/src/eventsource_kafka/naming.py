"""Topic names: any stream id maps to a legal, collision-free Kafka topic name.

Kafka topic names are at most 249 characters of ``[a-zA-Z0-9._-]``. A stream topic is named::

    <prefix>.s.<readable>.<hash>.<incarnation>

* ``readable``: the first 60 characters of the stream id with every character outside
  ``[a-zA-Z0-9-]`` replaced by ``_`` (for people reading topic lists only);
* ``hash``: 24 hex digits (96 bits) of SHA-256 over the exact stream id, so two different ids never
  share a topic (``"a.b"`` and ``"a_b"`` have the same readable part but different hashes);
* ``incarnation``: ``i<n>``, the stream's creation count (1 for the first creation, n + 1 after the
  n-th incarnation was deleted), so a stream deleted and created again never writes into a topic
  whose deletion a real cluster is still finishing, and every process derives the SAME name for a
  new incarnation: two processes creating one stream at once race on ``create_topics``, which the
  broker answers ``TOPIC_ALREADY_EXISTS`` for the second, so a stream never gets two topics.
  (Topics written by older versions end in 8 random hex digits; they stay readable.)

The exact stream id is kept in the stream-metadata topic (its record key) and in each record's
``vx-stream`` header, so ``list_streams`` returns it exactly.
"""

from __future__ import annotations

import hashlib
import re

from eventsource.errors import ConfigurationError

MAX_TOPIC_LENGTH = 249
MAX_PREFIX_LENGTH = 120
_READABLE = 60
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
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


def stream_topic_pattern(prefix: str) -> str:
    """Regular expression matching every stream topic of ``prefix`` (for pattern subscriptions)."""
    return "^" + re.escape(prefix) + r"\.s\."

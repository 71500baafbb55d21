"""The provider's connection: the I/O layer, the optional lease, and the process-wide state it joins.

:class:`Connection` turns URL and settings into the client config, names the metadata and snapshot
topics, creates them at connect (with ``create_store`` off, refuses a store without them), and re-keys the
shared :class:`~eventsource_kafka.state.Namespace` by the cluster's id and advertised brokers once the broker
has answered (:func:`cluster_identity`).
Every role reaches the broker through :attr:`Connection.io` and the shared state through
:attr:`Connection.ns` (read at each use: connect replaces it). :meth:`Connection.exclusive` is the
one way to hold a stream (lease, then lock). With ``create_store`` off the lease is connected by the first
hold (a write), not by connect: a provider opened only to read connects no lease store, so it creates none
(a NATS KV lease makes its bucket on connect).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.config import mask_url
from eventsource.create_store import store_not_found
from eventsource.errors import ConfigurationError, ProviderUnavailableError

from eventsource_kafka import naming
from eventsource_kafka.client import KafkaIO
from eventsource_kafka.settings import client_config
from eventsource_kafka.state import namespace

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.lease import Lease

ENVELOPE_SLACK = 64 * 1024
"""Bytes allowed on top of ``max_record_bytes`` for the envelope and headers in a produce request."""

_HOST: Any = None


def _lease_host() -> Any:
    """One plugin host per process to find lease plugins (discovery imports every plugin once)."""
    global _HOST  # noqa: PLW0603 - a process-wide cache
    if _HOST is None:
        from eventsource.plugins import PluginHost

        _HOST = PluginHost()
    return _HOST


def cluster_identity(desc: Any) -> str | None:
    """What tells one cluster from another in this process: its id AND its brokers as it advertises them.

    A cluster id alone is not unique: every Tansu broker answers ``tansu_cluster``, and Kafka clusters
    formatted with one ``CLUSTER_ID`` share theirs; two such clusters sharing one process's state had
    one's tail used for the other's appends (acknowledged events no reader finds). The advertised
    brokers do not depend on the bootstrap address, so ``localhost`` and ``127.0.0.1`` still share.
    """
    if not isinstance(desc, dict) or not desc.get("cluster_id"):
        return None
    listed = [b for b in desc.get("brokers") or [] if isinstance(b, dict)]
    brokers = sorted(f"{b.get('broker_id')}@{b.get('host')}:{b.get('port')}" for b in listed)
    return f"{desc['cluster_id']}/{','.join(brokers)}"


class Connection:
    """The I/O layer, the lease and the shared state of one provider instance."""

    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.where = mask_url(url)
        self.prefix = naming.check_prefix(settings["topic_prefix"])
        self.servers, self.client_config = client_config(url, settings)
        self.max_record_bytes: int = settings["max_record_bytes"]
        self.ns = namespace(self.servers, self.prefix)
        self.meta_topic = naming.meta_topic(self.prefix)
        self.snap_topic = naming.snapshot_topic(self.prefix)
        self._io: KafkaIO | None = None
        self._lease: Lease | None = None
        self._lease_lock = asyncio.Lock()  # one lease built by the first holds that race (create_store off)
        self._closed = False
        self.started = monotonic()

    @property
    def connected(self) -> bool:
        """Whether :meth:`connect` has succeeded and :meth:`close` has not run since."""
        return self._io is not None

    @property
    def io(self) -> KafkaIO:
        """The connected I/O layer."""
        if self._io is None:
            if self._closed:  # a call racing close(), or made after it: what a lost connection is
                msg = "the Kafka provider was closed (connect() again to use it)"
                raise ProviderUnavailableError(msg, operation="calling the Kafka provider")
            msg = "the Kafka provider is not connected (call connect() first)"
            raise ConfigurationError(msg, field="url")
        return self._io

    async def connect(self) -> None:
        """Connect, create the metadata and snapshot topics, and build the lease if configured.

        With ``create_store`` off the topics are only looked for: a store without them is refused; and the lease
        is left to the first write (:meth:`exclusive`), so what only reads connects no lease store.
        """
        if self._io is not None:
            return
        io = KafkaIO(
            self.client_config,
            threads=self.settings["io_threads"],
            timeout=self.settings["request_timeout"],
            max_request_size=self.max_record_bytes + ENVELOPE_SLACK,
        )
        try:
            await io.start()
            compact = {"cleanup.policy": "compact"}
            rf = self.settings["replication_factor"]
            if self.settings["create_store"]:
                await io.ensure_topic(self.meta_topic, replication_factor=rf, configs=compact)
                await io.ensure_topic(self.snap_topic, replication_factor=rf, configs=compact)
            else:  # (only looks: a store without its topics is refused, nothing created)
                self._refuse_missing(await io.missing_topics([self.meta_topic, self.snap_topic]))
            desc = await io.describe_cluster()
        except BaseException:
            await io.close()
            raise
        identity = cluster_identity(desc)
        if identity:
            self.ns = namespace(self.servers, self.prefix, identity)
        io.topic_ids = self.ns.topic_ids  # shared by the process: a reconnect still knows the ids read before
        io.on_recreated = lambda _topic: self.ns.forget()
        self._io = io
        if self.settings["create_store"]:
            await self._leased()

    async def _leased(self) -> Lease | None:
        """The connected lease, built on first use; ``None`` without a ``lease_url``.

        Only while connected (``self.io`` raises what a call on a closed provider gets): a lease built after
        :meth:`close` would stay open, held by nothing.
        """
        if self._lease is None and self.settings.get("lease_url"):
            async with self._lease_lock:
                if self._lease is None:
                    self.io  # noqa: B018 - raises when not connected
                    lease = _lease_host().create_lease(self.settings["lease_url"], **self.settings["lease_settings"])
                    await lease.connect()
                    if self._io is None:  # closed while the lease connected
                        await lease.close()
                        self.io  # noqa: B018 - raises
                    self._lease = lease
        return self._lease

    def _refuse_missing(self, missing: list[str]) -> None:
        """With ``create_store`` off: refuse a store without its metadata or snapshot topic (``missing``)."""
        if missing:
            why = f"the cluster has no topic {' nor '.join(map(repr, missing))}"
            raise store_not_found(f"{self.where} (topic_prefix {self.prefix!r})", why, missing=missing)

    async def close(self) -> None:
        """Close the clients and the lease. Idempotent."""
        io, self._io = self._io, None
        lease, self._lease = self._lease, None
        self._closed = self._closed or io is not None
        if lease is not None:
            await lease.close()
        if io is not None:
            await io.close()

    @asynccontextmanager
    async def exclusive(self, stream_id: str) -> AsyncIterator[bool]:
        """Hold the stream's lease (if configured) and its in-process lock; yields whether a lease is held."""
        lease = await self._leased()
        if lease is None:
            async with self.ns.slot(stream_id).lock.held():
                yield False
        else:
            key = f"kafka/{self.prefix}/{stream_id}"  # streams of one prefix share leases, whatever the servers
            async with (
                lease.hold(key, timeout=self.settings["lease_timeout"]),
                self.ns.slot(stream_id).lock.held(),
            ):
                yield True

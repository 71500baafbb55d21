"""One large event (documents, blobs) through append and read: memory stays a small multiple of its size.

A user storing 20-50 MB events on a small container is OOM-killed when a step keeps needless whole-payload
copies alive at once. Peaks are tracemalloc's (Python allocations), above what was live before the call, as
multiples of N, the event's serialized size; nothing here is timed. The 50 MB case checks ``max_event_size``:
refused with a typed error naming the limit and the store unchanged, or accepted when the limit is raised.
"""

from __future__ import annotations

import base64
import gc
import random
import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventSourcingManager, ValidationError
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

HOST = PluginHost()
KEY = base64.b64encode(bytes(range(32))).decode()
MB = 1024 * 1024


def document(size: int) -> dict[str, Any]:
    """About ``size`` bytes of JSON: one base64 text (a document or blob as users store it; zlib keeps ~3/4)."""
    return {"doc": base64.b64encode(random.Random(7).randbytes(size * 3 // 4)).decode("ascii")}


def config(tmp_path: Path, codec: str, *, encryption: bool, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {"s": f"sqlite:///{tmp_path / 'big.db'}"},
        "default_provider": "s",
        "compression": codec,
        **extra,
    }
    if encryption:
        cfg.update(encryption=True, encryption_keys={"k1": KEY})
    return cfg


async def peak_of(call: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
    """Bytes ``call()`` allocated at its peak above what was live before it (tracemalloc), and its result."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = await call()
        return tracemalloc.get_traced_memory()[1] - base, out
    finally:
        tracemalloc.stop()


APPEND_BOUND = 2.75
"""Append: the serialized bytes beside the JSON text they are encoded from (2N), or beside their compressed form
(N + 2C, C the compressed size); sealing holds the plaintext and the ciphertext, never the serialized bytes too."""
READ_BOUND = 3.25
"""Read: the stored bytes, the decoded text and the value (3N uncompressed); decoded bytes are dropped once their text
is made, and zlib inflates into a buffer of the payload's exact size."""


@pytest.mark.parametrize(
    ("codec", "encryption", "sync"),
    [
        ("none", False, False),
        ("none", True, False),
        ("zlib", True, False),
        ("brotli", True, False),
        ("zlib", True, True),
    ],
)
async def test_one_20_mb_event_appends_and_reads_in_a_few_times_its_size(
    tmp_path: Path, codec: str, encryption: bool, sync: bool
) -> None:
    data = document(20 * MB)
    cfg = config(tmp_path, codec, encryption=encryption, max_event_size=64 * MB)
    if sync:
        appended, read_peak, n = sync_peaks(cfg, data)
    else:
        async with EventSourcingManager(cfg, host=HOST) as es:
            n = len(es.pipeline.serializer.dumps(data))
            await es.append_event(stream_id="warm", event_type="Small", data={"x": 1})  # connection and statements
            [e async for e in es.read_stream("warm")]
            appended, _ = await peak_of(lambda: es.append_event(stream_id="big", event_type="Big", data=data))

            async def read() -> list[Any]:
                return [e async for e in es.read_stream("big")]

            read_peak, events = await peak_of(read)
            assert events[0].data == data
    assert appended <= APPEND_BOUND * n, f"append peaked at {appended / n:.2f}x the event's {n} bytes"
    assert read_peak <= READ_BOUND * n, f"read peaked at {read_peak / n:.2f}x the event's {n} bytes"


def sync_peaks(cfg: dict[str, Any], data: Any) -> tuple[int, int, int]:
    """Append and read peaks of the sync API (as :func:`peak_of`), and the event's serialized size."""
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        n = len(es.manager.pipeline.serializer.dumps(data))
        es.append_event(stream_id="warm", event_type="Small", data={"x": 1})
        list(es.read_stream("warm"))
        peaks = []
        for call in (
            lambda: es.append_event(stream_id="big", event_type="Big", data=data),
            lambda: es.read_stream("big"),
        ):
            gc.collect()
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                out = call()
                events = list(out) if not hasattr(out, "event_id") else None
                peaks.append(tracemalloc.get_traced_memory()[1] - base)
            finally:
                tracemalloc.stop()
        assert events is not None
        assert events[0].data == data
    return peaks[0], peaks[1], n


# ------------------------------------------------------------------------------------------- the 50 MB event


@pytest.mark.parametrize("limit", [None, 40 * MB])
async def test_a_50_mb_event_over_max_event_size_is_refused_naming_the_limit_and_nothing_is_stored(
    tmp_path: Path, limit: int | None
) -> None:
    data = document(50 * MB)
    cfg = config(tmp_path, "zlib", encryption=True, **({} if limit is None else {"max_event_size": limit}))
    want = limit or MB  # the default max_event_size is 1 MiB
    async with EventSourcingManager(cfg, host=HOST) as es:
        await es.append_event(stream_id="big", event_type="Small", data={"x": 1})
        with pytest.raises(ValidationError, match=f"the limit is {want} \\(max_event_size\\)") as info:
            await es.append_event(stream_id="big", event_type="Big", data=data)
        assert info.value.details["limit"] == want
        assert info.value.details["size"] > want
        assert [e.event_type async for e in es.read_stream("big")] == ["Small"]
        assert (await es.get_stream_info("big")).version == 1
    with SyncEventSourcingManager(config(tmp_path, "none", encryption=False), host=HOST) as sync:  # the sync lane
        with pytest.raises(ValidationError, match=f"the limit is {MB} \\(max_event_size\\)"):
            sync.append_event(stream_id="big", event_type="Big", data=data)
        assert sync.get_stream_info("big").version == 1


@pytest.mark.parametrize(("codec", "encryption"), [("none", False), ("zlib", True)])
def test_a_50_mb_event_is_stored_and_read_back_when_max_event_size_is_raised(
    tmp_path: Path, codec: str, encryption: bool
) -> None:
    data = document(50 * MB)
    cfg = config(tmp_path, codec, encryption=encryption, max_event_size=64 * MB)
    with SyncEventSourcingManager(cfg, host=HOST) as es:
        es.append_event(stream_id="big", event_type="Big", data=data)
        assert [e.data for e in es.read_stream("big")] == [data]
        assert es.get_stream_info("big").version == 1

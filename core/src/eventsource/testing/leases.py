"""Lease checks a lease plugin's tests share: a holder cut off from its server must give way in time.

:class:`StallProxy` stands between a lease and its server and can stop forwarding (a partition that leaves
both sockets open); :func:`cut_off_holder_gives_way` holds a lease through it, stalls it, and checks that
another process takes the lease only once the cut-off holder has given up, and that the holder is told.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from eventsource.errors import ProviderUnavailableError

if TYPE_CHECKING:
    from eventsource.lease import Lease


class StallProxy:
    """A TCP proxy on this event loop to ``host:port`` that forwards nothing while :attr:`flowing` is clear."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on a free loopback port; that port."""
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            self.tasks.add(asyncio.ensure_future(self._pipe(src, dst)))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        """Stop forwarding for good and stop listening."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()


async def cut_off_holder_gives_way(
    cut_off: Lease, other: Lease, proxy: StallProxy, *, refreshed: float = 0.0, wait: float = 60.0
) -> None:
    """``cut_off`` (connected through ``proxy``) holds a key; the proxy stalls; ``other`` takes the key.

    ``other`` may enter only once the cut-off holder's block has ended, and that block must end with
    :class:`ProviderUnavailableError` saying the lease was lost. ``refreshed``: seconds to hold before the
    stall (so a refresh went through first). Both leases are connected by the caller and closed here.
    """
    entered = asyncio.Event()
    holding = False

    async def hold() -> None:
        nonlocal holding
        async with cut_off.hold("projection:p", timeout=5):
            holding = True
            entered.set()
            try:
                await asyncio.sleep(3600)
            finally:
                holding = False

    task = asyncio.ensure_future(hold())
    try:
        await asyncio.wait_for(entered.wait(), 30)
        await asyncio.sleep(refreshed)
        proxy.flowing.clear()
        async with other.hold("projection:p", timeout=wait):
            if holding:
                msg = "two processes held the lease at once"
                raise AssertionError(msg)
        try:
            await asyncio.wait_for(task, 30)
        except ProviderUnavailableError as e:
            if "lost" not in str(e):
                raise
        else:
            msg = "the cut-off holder's block ended without being told the lease was lost"
            raise AssertionError(msg)
    finally:
        proxy.flowing.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await other.close()
        await cut_off.close()
        await proxy.close()

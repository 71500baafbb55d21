"""A TCP proxy to a server whose connections can be stalled one by one, run as its own process.

Usage: ``python stall_proxy.py HOST PORT``; it prints the port it listens on, then reads commands from
stdin: ``stall CLIENT_PORT`` (forward nothing either way on that client's connection) and ``release``. It
runs in a process of its own so that a blocking C call of the test's process (libpq's cancel) cannot
stall the proxy by holding the GIL.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

stalled: set[int] = set()


def pipe(src: socket.socket, dst: socket.socket, key: int) -> None:
    try:
        while data := src.recv(65536):
            while key in stalled:
                time.sleep(0.01)
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def accept(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        client, (_, port) = listener.accept()
        upstream = socket.create_connection(target)
        threading.Thread(target=pipe, args=(client, upstream, port), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client, port), daemon=True).start()


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=accept, args=(listener, (sys.argv[1], int(sys.argv[2]))), daemon=True).start()
    print(listener.getsockname()[1], flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "stall":
            stalled.add(int(args[0]))
        elif cmd == "release":
            stalled.clear()
        print("ok", flush=True)


if __name__ == "__main__":
    main()

"""Byte forwarder between network namespaces, for the integration tests (tests/integration_servers.py).

The measured openbao.hcl binds [::]:8200 and [::]:8201, so every real server runs in a network namespace of its own,
as in a pod. A network namespace starts with its loopback down and shares nothing with the test but the file system:
this script brings loopback up, then joins TCP ports and Unix sockets, one thread per connection. It exits when its
parent (the server it was started beside) is gone. Standard library only: it runs inside the namespace.

    integration_forward.py LISTEN=TARGET ...    with each side tcp:<host>:<port> or unix:<path>
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import sys
import threading
import time

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(control, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def endpoint(spec: str) -> tuple[int, str | tuple[str, int]]:
    kind, _, rest = spec.partition(":")
    if kind == "unix":
        return socket.AF_UNIX, rest
    host, _, port = rest.rpartition(":")
    return socket.AF_INET, (host, int(port))


def pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def serve(listen: str, target: str) -> None:
    family, address = endpoint(listen)
    server = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address)
    server.listen(64)
    target_family, target_address = endpoint(target)
    while True:
        client, _ = server.accept()
        upstream = socket.socket(target_family, socket.SOCK_STREAM)
        try:
            upstream.connect(target_address)
        except OSError:
            client.close()
            upstream.close()
            continue
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


def main(pairs: list[str]) -> None:
    loopback_up()
    parent = os.getppid()
    for pair in pairs:
        listen, _, target = pair.partition("=")
        threading.Thread(target=serve, args=(listen, target), daemon=True).start()
    while os.getppid() == parent:
        time.sleep(0.2)


if __name__ == "__main__":
    main(sys.argv[1:])

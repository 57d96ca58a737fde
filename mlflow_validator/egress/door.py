"""The egress door, inside the model's cage: a port on the cage's own loopback where the model's HTTP
clients find their proxy (HTTPS_PROXY), each connection carried out to the validator's egress proxy,
which decides. Runs with the model's Python (3.8 and later, standard library only); not imported by the
validator. The door decides nothing: a model that replaces it reaches the same proxy, or nothing.

python -I door.py unix SOCKET PORT -- COMMAND...
    bubblewrap: the proxy's socket is bound into the cage. The door listens, serves in a child, and
    COMMAND (the predictor) replaces the door's own process.
python -I door.py stdio PORT
    a container: each connection is carried as frames on stdin and stdout, which `docker exec -i`
    carries to the validator (the engine may be remote: there is no socket to share).
    A frame is a kind (OPEN, DATA, CLOSE: this side sends no more), a connection id and a length.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading

FRAME = struct.Struct(">BII")
OPEN, DATA, CLOSE = 1, 2, 3
CHUNK = 65536
ACCEPT_POLL_S = 1.0


def listening(port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    server.settimeout(ACCEPT_POLL_S)
    return server


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def carry_to_unix(connection: socket.socket, path: str) -> None:
    with connection:
        try:
            proxy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            proxy.connect(path)
        except OSError:
            return
        with proxy:
            back = threading.Thread(target=pump, args=(proxy, connection), daemon=True)
            back.start()
            pump(connection, proxy)
            back.join()


def serve_unix(server: socket.socket, path: str, parent: int) -> None:
    """Until the process that started the door is gone."""
    while os.getppid() == parent:
        try:
            connection, _ = server.accept()
        except socket.timeout:  # noqa: UP041 (not TimeoutError before Python 3.10)
            continue
        threading.Thread(target=carry_to_unix, args=(connection, path), daemon=True).start()


class Frames:
    """Connections multiplexed on this process's stdin and stdout."""

    def __init__(self) -> None:
        self.out = sys.stdout.buffer
        self.lock = threading.Lock()
        self.connections: dict[int, socket.socket] = {}

    def send(self, kind: int, ident: int, data: bytes = b"") -> None:
        with self.lock:
            self.out.write(FRAME.pack(kind, ident, len(data)) + data)
            self.out.flush()

    def accept(self, server: socket.socket) -> None:
        ident = 0
        while True:
            try:
                connection, _ = server.accept()
            except socket.timeout:  # noqa: UP041 (not TimeoutError before Python 3.10)
                continue
            ident += 1
            self.connections[ident] = connection
            self.send(OPEN, ident)
            threading.Thread(target=self.outward, args=(ident, connection), daemon=True).start()

    def outward(self, ident: int, connection: socket.socket) -> None:
        try:
            while True:
                data = connection.recv(CHUNK)
                if not data:
                    break
                self.send(DATA, ident, data)
        except OSError:
            pass
        self.send(CLOSE, ident)

    def inward(self) -> None:
        source = sys.stdin.buffer
        while True:
            header = source.read(FRAME.size)
            if len(header) < FRAME.size:
                return
            kind, ident, length = FRAME.unpack(header)
            data = source.read(length)
            connection = self.connections.get(ident)
            if connection is None:
                continue
            try:
                if kind == DATA:
                    connection.sendall(data)
                elif kind == CLOSE:
                    connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def main(argv: list[str]) -> None:
    if argv[0] == "unix":
        path, port, command = argv[1], int(argv[2]), argv[4:]
        server = listening(port)  # before the command starts: the model finds its proxy from the first line
        parent = os.getpid()
        if os.fork() == 0:
            serve_unix(server, path, parent)
            os._exit(0)
        server.close()
        os.execvp(command[0], command)
    server = listening(int(argv[1]))
    frames = Frames()
    threading.Thread(target=frames.accept, args=(server,), daemon=True).start()
    frames.inward()  # until the validator closes stdin


if __name__ == "__main__":
    main(sys.argv[1:])

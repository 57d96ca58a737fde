"""How the validator reaches a serving container that has no network at all: a port on the validator's
own loopback, each connection to it carried by `docker exec -i` to the container's loopback. The
container publishes nothing and reaches nothing, whichever engine it runs on (local, remote over TLS,
or the one the validator's own container runs on), so a model that calls out fails there as it does in
the venv stage's cage. Hand-written because it is a socket and two pumps; a keep-alive session makes
one `docker exec` carry every request of a stage."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from mlflow_validator import commands
from mlflow_validator.stages.docker.engine import Docker

ACCEPT_POLL_S = 0.2
CHUNK = 65536
# Runs in the container with its own Python: copies stdin to its loopback port, and the answer back.
INSIDE = """
import socket, sys, threading
upstream = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def forward():
    while chunk := sys.stdin.buffer.read1(65536):
        upstream.sendall(chunk)
    upstream.shutdown(socket.SHUT_WR)
threading.Thread(target=forward, daemon=True).start()
while chunk := upstream.recv(65536):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
"""


@contextmanager
def relayed(docker: Docker, container: str, port: int) -> Iterator[str]:
    """`http://127.0.0.1:<port>` reaching `port` inside `container` while the block runs."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(ACCEPT_POLL_S)
    relay = _Relay(listener, [docker.cli, "exec", "-i", container, "python", "-I", "-c", INSIDE, str(port)], docker)
    accepting = threading.Thread(target=relay.accept, daemon=True)
    accepting.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        relay.stop()
        accepting.join(timeout=5)
        listener.close()


class _Relay:
    def __init__(self, listener: socket.socket, argv: list[str], docker: Docker) -> None:
        self.listener = listener
        self.argv = argv
        self.docker = docker
        self.stopped = threading.Event()
        self.connections: set[socket.socket] = set()

    def accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.add(connection)
            threading.Thread(target=self.carry, args=(connection,), daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def carry(self, connection: socket.socket) -> None:
        with connection, commands.piped(self.argv, env=self.docker.env) as process:
            assert process.stdin is not None and process.stdout is not None
            back = threading.Thread(target=_pump_back, args=(process.stdout, connection), daemon=True)
            back.start()
            with contextlib.suppress(OSError):
                while chunk := connection.recv(CHUNK):
                    process.stdin.write(chunk)
                    process.stdin.flush()
            with contextlib.suppress(OSError):
                process.stdin.close()
            back.join(timeout=5)
        self.connections.discard(connection)


def _pump_back(answers: IO[bytes], connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := answers.read1(CHUNK):  # type: ignore[attr-defined]
            connection.sendall(chunk)
        connection.shutdown(socket.SHUT_WR)

"""The validator's side of the door (`door.py`): what the model is told about its proxy, and, for a
container, the frames `docker exec -i` carries from the door, each connection handed to the egress proxy's
socket. What comes out of the container is hostile: frames are bounded in size and in number."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from mlflow_validator import commands
from mlflow_validator.egress.door import CLOSE, DATA, FRAME, OPEN
from mlflow_validator.stages.docker.engine import Docker, printed

DOOR = Path(__file__).with_name("door.py")
DOOR_PORT = 3128  # on the cage's own loopback: a network namespace of the model's, where nothing else listens
MAX_FRAME_BYTES = 1 << 20  # the door sends at most 64 KiB at once
MAX_OPEN = 64
CHUNK = 65536
START_WAIT_S = 30
# What the predictor prints (it is not imported: it runs in the model's environment) when a container's door
# never opened: the validator's trouble, not the model's.
DOOR_CLOSED = "mlflow-validator: the egress door did not open"


def proxy_env() -> dict[str, str]:
    """The variables that send the model's HTTP clients (requests, httpx and so the OpenAI and other SDKs,
    urllib, curl) to the door. No NO_PROXY: a declared `localhost:11434` is the runner's, which the proxy
    reaches and the cage's own loopback is not. MLflow's usage telemetry, which the model process would
    send itself, is turned off rather than refused."""
    proxy = f"http://127.0.0.1:{DOOR_PORT}"
    return {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def door_command(proxy_socket: Path, command: list[str | Path]) -> list[str | Path]:
    """`command` started behind the door, in bubblewrap's cage: run with the model's interpreter."""
    return [command[0], "-I", DOOR, "unix", proxy_socket, str(DOOR_PORT), "--", *command]


@contextmanager
def door_in_container(docker: Docker, container: str, proxy_socket: Path) -> Iterator[None]:
    """The door run in `container` with its own Python while the block runs, its connections carried to the
    proxy listening on `proxy_socket`."""
    source = DOOR.read_text()
    argv = [docker.cli, "exec", "-i", container, "python", "-I", "-c", source, "stdio", str(DOOR_PORT)]
    _await_running(docker, container)
    with commands.piped(argv, env=docker.env) as process:
        assert process.stdin is not None and process.stdout is not None
        carrier = _Carrier(process.stdin, proxy_socket)
        reading = threading.Thread(target=carrier.read, args=(process.stdout,), daemon=True)
        reading.start()
        try:
            yield
        finally:
            carrier.close()


def _await_running(docker: Docker, container: str) -> None:
    """`docker start` returns before the container runs, and nothing can be exec'd in it until it does. A
    container that never runs is left to the caller's own wait (its model never answers)."""
    running = Retrying(
        stop=stop_after_delay(START_WAIT_S),
        wait=wait_fixed(0.1),
        retry=retry_if_result(lambda state: state == "false"),
        retry_error_callback=lambda _: "",
    )
    state = ("inspect", "--format", "{{.State.Running}}", container)
    running(lambda: printed(docker.run(*state, timeout_s=30, check=False)))


class _Carrier:
    def __init__(self, door_in: IO[bytes], proxy_socket: Path) -> None:
        self.door_in = door_in
        self.proxy_socket = proxy_socket
        self.lock = threading.Lock()
        self.connections: dict[int, socket.socket] = {}

    def read(self, door_out: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while len(header := door_out.read(FRAME.size)) == FRAME.size:
                kind, ident, length = FRAME.unpack(header)
                if length > MAX_FRAME_BYTES:
                    return  # out of step with the door: carry nothing more
                data = door_out.read(length)
                self._dispatch(kind, ident, data)

    def _dispatch(self, kind: int, ident: int, data: bytes) -> None:
        if kind == OPEN and ident not in self.connections and len(self.connections) < MAX_OPEN:
            proxy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                proxy.connect(str(self.proxy_socket))
            except OSError:
                proxy.close()
                return self._send(CLOSE, ident)
            self.connections[ident] = proxy
            threading.Thread(target=self._back, args=(ident, proxy), daemon=True).start()
            return None
        connection = self.connections.get(ident)
        if connection is None:
            return self._send(CLOSE, ident) if kind == OPEN else None  # one too many: the model's client sees it end
        with contextlib.suppress(OSError):
            if kind == DATA:
                connection.sendall(data)
            elif kind == CLOSE:
                connection.shutdown(socket.SHUT_WR)
        return None

    def _back(self, ident: int, proxy: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := proxy.recv(CHUNK):
                self._send(DATA, ident, data)
        with contextlib.suppress(OSError, ValueError):
            self._send(CLOSE, ident)
        self.connections.pop(ident, None)
        proxy.close()

    def _send(self, kind: int, ident: int, data: bytes = b"") -> None:
        with self.lock:
            self.door_in.write(FRAME.pack(kind, ident, len(data)) + data)
            self.door_in.flush()

    def close(self) -> None:
        for connection in list(self.connections.values()):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

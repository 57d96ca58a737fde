"""Asking the model process over its socket, against a model process that answers as an attacker would:
whatever comes back that is not an answer, too large or too slow, is no answer (the model's failure),
never the validator's error and never a hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from mlflow_validator.expectations.answers import NO_ANSWER
from mlflow_validator.serving.endpoint import MAX_ANSWER_BYTES, SOCKET_SCHEME, Endpoint


@contextmanager
def model_process(path: Path, answer: Callable[[socket.socket], None]) -> Iterator[Endpoint]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(0.2)
    stopped = threading.Event()

    def serve() -> None:
        while not stopped.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                with suppress(OSError):
                    answer(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Endpoint(f"{SOCKET_SCHEME}{path}", timeout_s=1.0)
    finally:
        stopped.set()
        thread.join(timeout=5)
        server.close()


def trickle(connection: socket.socket) -> None:
    for byte in b'{"status": 200, "body": "slowly"}\n':
        connection.sendall(bytes([byte]))
        time.sleep(0.5)  # each byte within the socket's timeout, the whole far past it


@pytest.mark.parametrize(
    "answer",
    [
        lambda connection: connection.sendall(b"[1]\n"),
        lambda connection: connection.sendall(b'{"body": "x"}\n'),
        lambda connection: connection.sendall(b'{"status": "200", "body": "x"}\n'),
        lambda connection: connection.sendall(b"[" * 200_000 + b"\n"),
        lambda connection: connection.sendall(b'{"status": 200, "body": "' + b"x" * (MAX_ANSWER_BYTES + 1)),
        lambda connection: connection.sendall(b'{"status": 200, "body": "cut short'),
        trickle,
    ],
    ids=["a-list", "no-status", "status-not-a-number", "nested-deep", "too-large", "cut-short", "trickled"],
)
def test_what_is_not_an_answer_is_no_answer(tmp_path, answer):
    with model_process(tmp_path / "model.sock", answer) as endpoint:
        started = time.monotonic()
        got = endpoint.invoke('{"inputs": [1]}', "application/json")
    assert got.status == NO_ANSWER, got
    assert time.monotonic() - started < 3  # the timeout bounds the whole answer


def test_an_answer_is_an_answer(tmp_path):
    with model_process(tmp_path / "model.sock", lambda c: c.sendall(b'{"status": 200, "body": "[1]"}\n')) as endpoint:
        got = endpoint.invoke('{"inputs": [1]}', "application/json")
    assert (got.status, got.body) == (200, "[1]")

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
def answering(server: socket.socket, answer: Callable[[socket.socket], None]) -> Iterator[None]:
    """`server` answers each connection with `answer`, on a thread, until the block ends; then it is closed."""
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
        yield
    finally:
        stopped.set()
        thread.join(timeout=5)
        server.close()


@contextmanager
def model_process(path: Path, answer: Callable[[socket.socket], None]) -> Iterator[Endpoint]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    with answering(server, answer):
        yield Endpoint(f"{SOCKET_SCHEME}{path}", timeout_s=1.0)


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


@contextmanager
def serving_container(answer: Callable[[socket.socket], None]) -> Iterator[Endpoint]:
    """A server on 127.0.0.1 that answers HTTP as a hostile serving container would, byte for byte."""
    server = socket.create_server(("127.0.0.1", 0))
    with answering(server, answer):
        yield Endpoint(f"http://127.0.0.1:{server.getsockname()[1]}", timeout_s=1.0)


def http(headers: str, body: bytes = b"") -> Callable[[socket.socket], None]:
    return lambda connection: connection.sendall(f"HTTP/1.1 200 OK\r\n{headers}\r\n\r\n".encode() + body)


def stalled_body(connection: socket.socket) -> None:
    http("Content-Length: 100", b'{"predictions"')(connection)
    time.sleep(3)


def trickled_body(connection: socket.socket) -> None:
    http("Content-Length: 30")(connection)
    for byte in b'{"predictions": [1, 2, 3, 4]}':
        connection.sendall(bytes([byte]))
        time.sleep(0.5)  # each byte within the socket's timeout, the whole far past it


def endless_body(connection: socket.socket) -> None:
    http("Transfer-Encoding: chunked")(connection)
    chunk = b"x" * 65536
    for _ in range(MAX_ANSWER_BYTES // len(chunk) + 2):
        connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))


@pytest.mark.parametrize(
    "answer",
    [
        stalled_body,
        trickled_body,
        endless_body,
        http("Transfer-Encoding: chunked", b"zz\r\nnot a chunk\r\n"),
        http("Content-Encoding: gzip\r\nContent-Length: 5", b"abcde"),
        lambda connection: connection.sendall(b"NOT HTTP AT ALL\r\n\r\n"),
    ],
    ids=["stalled", "trickled", "endless", "bad-chunk", "gzip-garbage", "not-http"],
)
def test_what_a_serving_container_sends_that_is_not_an_answer_is_no_answer(answer):
    with serving_container(answer) as endpoint:
        started = time.monotonic()
        got = endpoint.invoke('{"inputs": [1]}', "application/json")
        waited = time.monotonic() - started
    assert got.status == NO_ANSWER, got
    assert waited < 3  # the timeout bounds the whole answer


def test_a_charset_the_container_made_up_is_read_as_utf8():
    answer = http("Content-Type: application/json; charset=bogus\r\nContent-Length: 18", b'{"predictions": 1}')
    with serving_container(answer) as endpoint:
        got = endpoint.invoke('{"inputs": [1]}', "application/json")
    assert (got.status, got.body) == (200, '{"predictions": 1}')

"""Asking the model under test one question, the same way in both stages: the venv stage's caged model
process over its Unix socket, the serving container over HTTP. The generated inputs ask through it, and
so do the team's checks, whose pytest process rebuilds the endpoint from its address."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from mlflow_validator.expectations.answers import NO_ANSWER, Answer

SOCKET_SCHEME = "unix:"
MAX_ANSWER_BYTES = 8 * 2**20  # what the model may send back for one question (JSON parses to ~25x its size)


class BadAnswer(ValueError):
    """What came back is not an answer: the model's fault, never the validator's."""


def decoded_answer(line: bytes) -> tuple[int, str]:
    """The model process's {"status": int, "body": str}, checked: it may send anything."""
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise BadAnswer(f"not JSON ({type(exc).__name__})") from None
    if not (isinstance(answer, dict) and isinstance(answer.get("status"), int) and isinstance(answer.get("body"), str)):
        raise BadAnswer("not a {status, body} object")
    return answer["status"], answer["body"]


def read_bounded(response: requests.Response) -> str:
    """At most MAX_ANSWER_BYTES of a streamed response: a serving container may send without end."""
    content = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
    if len(content) > MAX_ANSWER_BYTES:
        raise BadAnswer(f"longer than {MAX_ANSWER_BYTES // 2**20} MiB")
    return content.decode(response.encoding or "utf-8", errors="replace")


@dataclass(frozen=True)
class Endpoint:
    address: str  # unix:/path/of/the/socket, or the container's http://host:port
    timeout_s: float  # for the whole answer, however slowly it comes

    def invoke(self, body: str, content_type: str) -> Answer:
        """The status and body as the scoring server would send them; NO_ANSWER when none came, or when
        what came is not an answer."""
        started = time.perf_counter()
        try:
            if self.address.startswith(SOCKET_SCHEME):
                status, text = self._over_socket(Path(self.address.removeprefix(SOCKET_SCHEME)), body, content_type)
            else:
                with requests.post(
                    f"{self.address}/invocations",
                    data=body.encode(),
                    headers={"Content-Type": content_type},
                    timeout=self.timeout_s,
                    stream=True,
                ) as response:
                    status, text = response.status_code, read_bounded(response)
        except BadAnswer as exc:
            problem = f"the model answered something that is not an answer: {exc}"
            return Answer(NO_ANSWER, problem, time.perf_counter() - started)
        except (OSError, ValueError, requests.RequestException) as exc:
            return Answer(NO_ANSWER, f"{type(exc).__name__} within {self.timeout_s:g} s", time.perf_counter() - started)
        return Answer(status, text, time.perf_counter() - started)

    def _over_socket(self, path: Path, body: str, content_type: str) -> tuple[int, str]:
        deadline = time.monotonic() + self.timeout_s
        # A socket's path is limited to 107 bytes and work directories are longer: connect through a
        # descriptor of its directory instead.
        directory = os.open(path.parent, os.O_PATH)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.timeout_s)
                connection.connect(f"/proc/self/fd/{directory}/{path.name}")
                connection.sendall(json.dumps({"body": body, "content_type": content_type}).encode() + b"\n")
                line = line_before(connection, deadline)
        finally:
            os.close(directory)
        return decoded_answer(line)


def line_before(connection: socket.socket, deadline: float) -> bytes:
    """One line, whole before `deadline` and at most MAX_ANSWER_BYTES: a model sending a byte at a time
    must not hold the validator."""
    received = bytearray()
    while not received.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer did not come whole in time")
        connection.settimeout(remaining)
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the model process closed the connection without a whole answer")
        received += chunk
        if len(received) > MAX_ANSWER_BYTES:
            raise BadAnswer(f"longer than {MAX_ANSWER_BYTES // 2**20} MiB")
    return bytes(received)

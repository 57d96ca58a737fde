"""Asking the model under test one question, the same way wherever it is served: the venv stage's caged
model process over its Unix socket, a serving container over HTTP in its server's protocol. The
generated inputs ask through it, and so do the team's checks, whose pytest process rebuilds the endpoint
from its address."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

from mlflow_validator.expectations.answers import NO_ANSWER, Answer
from mlflow_validator.serving.v2 import NotExpressible, Question

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


def read_bounded(response: requests.Response, deadline: float) -> str:
    """At most MAX_ANSWER_BYTES of a streamed response, whole before `deadline`: a serving container may send
    without end, or a byte at a time. Decoded as UTF-8 whatever charset it names (JSON is UTF-8)."""
    content = bytearray()
    while chunk := response.raw.read1(65536, decode_content=True):
        content += chunk
        if len(content) > MAX_ANSWER_BYTES:
            raise BadAnswer(f"longer than {MAX_ANSWER_BYTES // 2**20} MiB")
        if time.monotonic() > deadline:
            raise TimeoutError("the answer did not come whole in time")
    return content.decode(errors="replace")


def scoring_question(body: str, content_type: str) -> Question:
    """MLflow's scoring server takes the plan's requests as they are."""
    return Question("/invocations", body, content_type)


def answer_as_sent(status: int, text: str) -> str:
    return text


@dataclass(frozen=True)
class Endpoint:
    address: str  # unix:/path/of/the/socket, or the container's http://host:port
    timeout_s: float  # for the whole answer, however slowly it comes
    # The server's protocol: how a request of the plan is put to it, and its answer read as the scoring server's.
    question: Callable[[str, str], Question] = scoring_question
    answer: Callable[[int, str], str] = answer_as_sent
    # A keep-alive session: a relayed container carries every request of a stage on one connection.
    session: requests.Session | None = field(default=None, compare=False)

    def invoke(self, body: str, content_type: str) -> Answer:
        """The status and body as the scoring server would send them; NO_ANSWER when none came, or when
        what came is not an answer."""
        try:
            question = None if self.address.startswith(SOCKET_SCHEME) else self.question(body, content_type)
        except NotExpressible as exc:
            return Answer(NO_ANSWER, f"not asked: the request has no form in this server's protocol: {exc}", 0.0)
        started = time.perf_counter()  # the translation above is the validator's time, not the model's
        try:
            if question is None:
                status, text = self._over_socket(Path(self.address.removeprefix(SOCKET_SCHEME)), body, content_type)
            else:
                status, text = self._over_http(question)
        except BadAnswer as exc:
            problem = f"the model answered something that is not an answer: {exc}"
            return Answer(NO_ANSWER, problem, time.perf_counter() - started)
        # Whatever the container's bytes make requests or urllib3 raise (a cut chunk, a bad encoding) is no answer.
        except (OSError, ValueError, LookupError, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            return Answer(NO_ANSWER, f"{type(exc).__name__} within {self.timeout_s:g} s", time.perf_counter() - started)
        return Answer(status, text, time.perf_counter() - started)

    def _over_http(self, question: Question) -> tuple[int, str]:
        deadline = time.monotonic() + self.timeout_s
        with (self.session or requests).post(
            f"{self.address}{question.path}",
            data=question.body.encode(),
            headers={"Content-Type": question.content_type},
            timeout=self.timeout_s,
            stream=True,
        ) as response:
            status = response.status_code
            return status, self.answer(status, read_bounded(response, deadline))

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

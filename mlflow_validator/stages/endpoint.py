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
MAX_ANSWER_BYTES = 64 * 2**20  # what the model process may send back for one question


@dataclass(frozen=True)
class Endpoint:
    address: str  # unix:/path/of/the/socket, or the container's http://host:port
    timeout_s: float

    def invoke(self, body: str, content_type: str) -> Answer:
        """The status and body as the scoring server would send them; NO_ANSWER when none came."""
        started = time.perf_counter()
        try:
            if self.address.startswith(SOCKET_SCHEME):
                status, text = self._over_socket(Path(self.address.removeprefix(SOCKET_SCHEME)), body, content_type)
            else:
                response = requests.post(
                    f"{self.address}/invocations",
                    data=body.encode(),
                    headers={"Content-Type": content_type},
                    timeout=self.timeout_s,
                )
                status, text = response.status_code, response.text
        except (OSError, ValueError, requests.RequestException) as exc:
            return Answer(NO_ANSWER, f"{type(exc).__name__} within {self.timeout_s:g} s", time.perf_counter() - started)
        return Answer(status, text, time.perf_counter() - started)

    def _over_socket(self, path: Path, body: str, content_type: str) -> tuple[int, str]:
        # A socket's path is limited to 107 bytes and work directories are longer: connect through a
        # descriptor of its directory instead.
        directory = os.open(path.parent, os.O_PATH)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.timeout_s)
                connection.connect(f"/proc/self/fd/{directory}/{path.name}")
                with connection.makefile("rwb") as stream:
                    stream.write(json.dumps({"body": body, "content_type": content_type}).encode() + b"\n")
                    stream.flush()
                    line = stream.readline(MAX_ANSWER_BYTES)
        finally:
            os.close(directory)
        if not line.endswith(b"\n"):
            raise ConnectionError("the model process closed the connection without a whole answer")
        answer = json.loads(line)
        return int(answer["status"]), str(answer["body"])

"""Guards shared by every test."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.integration.services"]
pytest_plugins += ["tests.integration.remote_engine"]


@pytest.fixture(autouse=True)
def _unit_tests_stay_offline(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unit tests must not start processes or open sockets they did not ask for."""
    if "integration" in request.keywords:
        yield
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to start a process or open a socket; mark it integration or use a fake")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield

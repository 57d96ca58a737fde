"""A model is untrusted code. Hostile models, logged to the real server: in the venv stage the cage
holds (no secret, no Docker socket, no home file, no host service), and without the cage the same
model reaches all four, which is what makes the first test mean something."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, assert_nothing_left, pins
from tests.integration.reports import saved_answer

CANARY = "canary-7f3e9c2a1b"


class Listener:
    """A service on the host's loopback that counts who connects."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    serving = Listener()
    yield serving
    serving.close()


@pytest.fixture(scope="module")
def home_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry credential where the runner's user keeps it: ~/.docker/config.json of the job's HOME."""
    path = tmp_path_factory.mktemp("home") / ".docker" / "config.json"
    path.parent.mkdir()
    path.write_text('{"auths": {"registry.example": {"auth": "c2VjcmV0"}}}')
    return path


@pytest.fixture(scope="module")
def hostile_uri(registered, listener: Listener, home_file: Path) -> str:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(registered.tracking_uri)
    frame = pd.DataFrame({"x": [0.5, 1.5]})
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODELS_DIR / "hostile_model.py"),
            input_example=frame,
            signature=infer_signature(frame, ["nothing"]),
            pip_requirements=pins("mlflow", "pandas", "numpy"),
            model_config={"canary": CANARY, "home_file": str(home_file), "port": listener.port},
            registered_model_name="hostile-model",
        )
    return registered.tracking_uri


def job_env(home_file: Path) -> dict[str, str]:
    """A CI job's environment: its secrets, and its HOME (uv's cache and pyenv stay where they are)."""
    real_home = os.environ.get("HOME", "/root")
    return {
        "MLFLOW_TRACKING_TOKEN": CANARY,
        "GITHUB_TOKEN": CANARY,
        "AWS_SECRET_ACCESS_KEY": CANARY,
        "HOME": str(home_file.parent.parent),
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", f"{real_home}/.cache/uv"),
        "PYENV_ROOT": os.environ.get("PYENV_ROOT", f"{real_home}/.pyenv"),
    }


def reached(tmp_path: Path) -> set[str]:
    answer = saved_answer(tmp_path / "mlflow-validator-report", "venv", "input-example")["predictions"][0]
    return set() if answer == "nothing" else set(answer.split(","))


def test_the_cage_holds_in_the_venv_stage(hostile_uri, run_cli, tmp_path, listener, home_file):
    before = listener.connections
    result = run_cli(
        "validate", "models:/hostile-model/1", "--tracking-uri", hostile_uri, "--stages", "venv", env=job_env(home_file)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  venv   sandbox" in result.stdout
    assert reached(tmp_path) == set()
    assert listener.connections == before
    assert_nothing_left(result.scratch)


def test_without_the_cage_the_same_model_reaches_everything(hostile_uri, run_cli, tmp_path, listener, home_file):
    (tmp_path / "mlflow-validator.yaml").write_text("checks: {sandbox: 'off'}\n")
    before = listener.connections
    result = run_cli(
        "validate", "models:/hostile-model/1", "--tracking-uri", hostile_uri, "--stages", "venv", env=job_env(home_file)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"secret", "home", "loopback"} <= reached(tmp_path)
    assert listener.connections > before

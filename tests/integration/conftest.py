"""Real infrastructure for integration tests: an `mlflow server` on 127.0.0.1 with registered models."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from mlflow_validator.stages.docker.engine import engine_problem
from tests.integration.validator_image import build_validator_image

MODELS_DIR = Path(__file__).parent / "models"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerNotUp(Exception):
    pass


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tracking server and registry: sqlite backend, artifacts served by the server. The oldest-MLflow
    session (noxfile.py) runs the server with the newest MLflow, as a registry runs apart from its clients."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # else 7 job workers, ~2 GiB
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            os.environ.get("TEST_MLFLOW_SERVER_PYTHON", sys.executable),
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def health() -> None:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        raise ServerNotUp()

    try:
        Retrying(
            retry=retry_if_exception_type(ServerNotUp), stop=stop_after_delay(90), wait=wait_fixed(0.5), reraise=True
        )(health)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        log.close()


@dataclass(frozen=True)
class RegisteredModels:
    tracking_uri: str
    iris_run_id: str


@pytest.fixture(scope="session")
def registered(mlflow_server: str) -> RegisteredModels:
    """Log and register the models the tests validate, through the real server."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_server)
    client = mlflow.MlflowClient(mlflow_server)
    features, target = load_iris(return_X_y=True, as_frame=True)
    classifier = LogisticRegression(max_iter=300).fit(features, target)
    example = features.head(3)
    sklearn_requirements = pins("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")

    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            classifier,
            name="model",
            input_example=example,
            pip_requirements=sklearn_requirements,
            registered_model_name="iris-classifier",
        )
    client.set_registered_model_alias("iris-classifier", "champion", "1")

    with mlflow.start_run():
        mlflow.sklearn.log_model(
            classifier,
            name="model",
            input_example=example,
            pip_requirements=[*sklearn_requirements, "cloudpickle==99.0.0"],
            registered_model_name="iris-bad-pin",
        )
    return RegisteredModels(mlflow_server, run.info.run_id)


def pins(*names: str) -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in names]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    scratch: Path  # the TMPDIR the run was given


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run the real console entry point in a child process, as CI would."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 1500) -> CliResult:
        child_env = {**os.environ, "TMPDIR": str(scratch), **(env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "mlflow_validator", *args],
            env=child_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(done.stdout, done.stderr)
        return CliResult(done.returncode, done.stdout, done.stderr, scratch)

    return run


def processes_using(directory: Path) -> list[int]:
    """PIDs whose environment or command line names `directory` (the validator's children inherit TMPDIR
    under it; docker builds are given a context under it)."""
    marker = str(directory).encode()
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (process / "environ").read_bytes() + (process / "cmdline").read_bytes():
                found.append(int(process.name))
        except OSError:  # the process ended, or is not ours to read
            continue
    return found


def assert_nothing_left(scratch: Path) -> None:
    assert list(scratch.iterdir()) == [], "temporary files left behind"
    assert processes_using(scratch) == [], "processes left behind"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Docker tests skip only where no engine answers; CI always has one, so there they fail instead."""
    problem = engine_problem(os.environ, os.environ.get("MLFLOW_VALIDATOR_DOCKER_CLI", "docker"))
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI must run the docker tests but no engine answers: {problem}")
    if problem:
        pytest.skip(f"no Docker engine reachable ({problem}); run the README's test command to set one up")


@pytest.fixture(scope="session")
def validator_image(docker_engine: None) -> Iterator[str]:
    """The project's image, shared by the tests that run it (a build takes minutes on two cores)."""
    yield from build_validator_image()

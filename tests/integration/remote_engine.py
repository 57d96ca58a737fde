"""A remote Docker engine for integration tests, shaped like GitLab's `docker:dind` service: another address,
reached over TCP with TLS and client certificates, whose published ports live on that address and not on
127.0.0.1. tests/infra/remote-engine.sh builds it from a network namespace and a second dockerd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "remote-engine.sh"
ENV_NAMES = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
START_TIMEOUT_S = 300  # dockerd answers within 60 s (the script's bound), then the base image is copied in
STOP_TIMEOUT_S = 180  # dockerd's shutdown (30 s bound), SIGKILL rounds, unmounting
PROBE_TIMEOUT_S = 30
DOCKER = os.environ.get("MLFLOW_VALIDATOR_DOCKER_CLI", "docker")


def netns_problem() -> str | None:
    """Why this machine cannot host the engine (no root, no tools, no namespaces), or None."""
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    missing = [tool for tool in ("ip", "unshare", "openssl", "dockerd", "docker") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    probe = subprocess.run(
        ["unshare", "--net", "true"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    return None


def _script(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s
    )


def _parse_env(stdout: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return {name: value for name, value in pairs if name in ENV_NAMES}


@pytest.fixture(scope="session")
def remote_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """DOCKER_HOST (tcp://10.231.X.2:2376), DOCKER_TLS_VERIFY ("1") and DOCKER_CERT_PATH of a second engine
    that holds python:3.11.7-slim; merge into os.environ for a docker client. Skips where no network namespace
    can be made, except under CI, where that fails."""
    problem = netns_problem()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI must run the remote-engine tests but this machine cannot host one: {problem}")
    if problem:
        pytest.skip(f"no remote engine: {problem}")

    directory = tmp_path_factory.mktemp("remote-engine")
    try:
        started = _script("start", str(directory), timeout_s=START_TIMEOUT_S)
        if started.returncode != 0:
            pytest.fail(f"remote-engine.sh start failed ({started.returncode}):\n{started.stdout}{started.stderr}")
        env = _parse_env(started.stdout)
        if set(env) != set(ENV_NAMES):
            pytest.fail(f"remote-engine.sh start printed no {', '.join(ENV_NAMES)}:\n{started.stdout}")
        yield env
    finally:
        # Also after a failed or timed-out start: stop undoes whatever part of it happened.
        stopped = _script("stop", str(directory), timeout_s=STOP_TIMEOUT_S)
        if stopped.returncode != 0:
            pytest.fail(f"remote-engine.sh stop failed ({stopped.returncode}):\n{stopped.stdout}{stopped.stderr}")


def move_dependency_image(console: str, to_engine: dict[str, str]) -> None:
    """What a long-lived runner's cache holds: the dependency image a local validation named on its console,
    copied over (the remote engine has no way out to Debian's mirror)."""
    local_env = {k: v for k, v in os.environ.items() if k not in to_engine}
    image = re.search(r"mlflow-validator/serving-dependencies:[0-9a-f]{16}", console)
    assert image, "the local validation named no dependency image"
    save = subprocess.Popen([DOCKER, "save", image.group(0)], env=local_env, stdout=subprocess.PIPE)
    subprocess.run([DOCKER, "load"], env={**os.environ, **to_engine}, stdin=save.stdout, timeout=600, check=True)
    assert save.wait(timeout=60) == 0

"""The validator's own image, built from the project's Dockerfile, and run as CI jobs run it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

from tests.paths import ROOT

DOCKER = os.environ.get("MLFLOW_VALIDATOR_DOCKER_CLI", "docker")
SOCKET = "/var/run/docker.sock"
IMAGE = "mlflow-validator:tests"
CA_BUNDLE = os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
CA_IN_CONTAINER = "/etc/ssl/certs/proxy-ca.pem"


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKER, *args], env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True, timeout=timeout
    )


def build_validator_image() -> Iterator[str]:
    """Built from the project's Dockerfile as it stands (FROM python:3.11-slim-trixie), with the proxy's
    CA as a build secret."""
    built = docker("build", "--secret", f"id=ca,src={CA_BUNDLE}", "--tag", IMAGE, str(ROOT), timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr
    yield IMAGE
    docker("rmi", IMAGE)


def run_in_image(
    image: str, *args: str, group_add: bool = True, mounts: tuple[str, ...] = (), options: tuple[str, ...] = ()
):
    socket_group = ("--group-add", str(os.stat(SOCKET).st_gid)) if group_add else ()
    return docker(
        "run", "--rm", *socket_group, *options, "--volume", f"{SOCKET}:{SOCKET}",
        # The runner's CA, as a user behind a TLS-intercepting proxy gives it: uv and pip reach PyPI with it.
        "--volume", f"{CA_BUNDLE}:{CA_IN_CONTAINER}:ro", "--env", f"SSL_CERT_FILE={CA_IN_CONTAINER}",
        *(arg for mount in mounts for arg in ("--volume", mount)), image, *args,
        timeout=900,
    )  # fmt: skip

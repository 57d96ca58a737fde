"""What the benchmarks need to let MLflow's own CLI build images on this network.

MLflow's `build-docker` cannot pass a CA bundle to its build. Where the package index sits behind a
TLS-intercepting proxy (as on this project's machines), its build fails on TLS, not on the model. For
the length of a benchmark, the base image trusts the CA (PIP_CERT / SSL_CERT_FILE); the original image
is restored afterwards. mlflow-validator passes the CA itself and does not need this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ORIGINAL = "mlflow-validator-benchmark/original-base:latest"


def base_image_for(model: Path) -> str:
    python = yaml.safe_load((model / "python_env.yaml").read_text())["python"]
    return f"python:{python}-slim"


def validator_command(model: Path, *args: str) -> list[str]:
    """mlflow-validator from this checkout, as the README runs it."""
    return [sys.executable, "-m", "mlflow_validator", "validate", str(model), *args]


def build_docker_command(model: Path, tag: str) -> list[str]:
    """MLflow's own build, as a user runs it (the slim Python base image, as the validator builds)."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "build-docker",
        "-m",
        str(model),
        "-n",
        tag,
        "--env-manager",
        "local",
    ]


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, stdout=subprocess.DEVNULL)


def containers() -> set[str]:
    listed = subprocess.run(["docker", "ps", "--all", "--quiet"], check=True, capture_output=True, text=True)
    return set(listed.stdout.split())


@contextmanager
def no_containers_left() -> Iterator[None]:
    """MLflow's build runs without --force-rm: a failed step leaves its container behind."""
    before = containers()
    try:
        yield
    finally:
        for container in containers() - before:
            subprocess.run(["docker", "rm", "--force", container], check=False, stdout=subprocess.DEVNULL)


@contextmanager
def base_image_trusting_the_ca(model: Path) -> Iterator[None]:
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if not ca:
        yield  # nothing to trust: the index is reached directly
        return
    base = base_image_for(model)
    docker("tag", base, ORIGINAL)
    try:
        with tempfile.TemporaryDirectory() as context:
            shutil.copyfile(ca, Path(context) / "ca.pem")
            (Path(context) / "Dockerfile").write_text(
                f"FROM {ORIGINAL}\nCOPY ca.pem /usr/local/share/benchmark-ca.pem\n"
                "ENV PIP_CERT=/usr/local/share/benchmark-ca.pem\n"
            )
            docker("build", "--quiet", "-t", base, context)
        yield
    finally:
        docker("tag", ORIGINAL, base)
        docker("rmi", ORIGINAL)
        subprocess.run(["docker", "image", "prune", "--force"], check=False, stdout=subprocess.DEVNULL)

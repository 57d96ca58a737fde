"""Generate MLflow's serving Dockerfile, add how the build reaches the index, build and remove the image."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from validator import commands
from validator.settings import BuildNetwork
from validator.stages.docker import LABEL

CA_IN_CONTEXT = "mlflow-validator-ca.pem"
CA_IN_IMAGE = "/usr/local/share/mlflow-validator/ca.pem"
CONSTRAINTS_IN_CONTEXT = "mlflow-validator-constraints.txt"
CONSTRAINTS_IN_IMAGE = "/usr/local/share/mlflow-validator/constraints.txt"
SERVING_PORT = 8080
GENERATE_TIMEOUT_S = 300


def generate_context(model_dir: Path, context_dir: Path, env: Mapping[str, str]) -> Path:
    """Run MLflow's own generator (the one build-docker uses), with the slim Python base image."""
    commands.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "generate-dockerfile",
            "--model-uri",
            model_dir,
            "--output-directory",
            context_dir,
            "--env-manager",
            "local",
        ],
        env=env,
        timeout_s=GENERATE_TIMEOUT_S,
    )
    return context_dir / "Dockerfile"


def build_setting_lines(network: BuildNetwork, constraints: Path | None) -> list[str]:
    """Dockerfile lines that let pip inside the build trust a custom CA, use a custom index, and
    install within the serving runtime's constraints (the same ones the venv stage used).

    ARG (not ENV): the values exist while building and are not in the running container's
    environment. A CA certificate is public, so the copy in a layer leaks nothing.
    """
    lines = []
    if constraints:
        lines += [f"COPY {CONSTRAINTS_IN_CONTEXT} {CONSTRAINTS_IN_IMAGE}", f"ARG PIP_CONSTRAINT={CONSTRAINTS_IN_IMAGE}"]
    if network.ca_bundle:
        lines += [
            f"COPY {CA_IN_CONTEXT} {CA_IN_IMAGE}",
            f"ARG PIP_CERT={CA_IN_IMAGE}",
            f"ARG SSL_CERT_FILE={CA_IN_IMAGE}",
            f"ARG REQUESTS_CA_BUNDLE={CA_IN_IMAGE}",
        ]
    if network.index_url:
        lines.append("ARG PIP_INDEX_URL")
    return lines


def add_build_settings(dockerfile: Path, network: BuildNetwork, constraints: Path | None) -> None:
    lines = build_setting_lines(network, constraints)
    if not lines:
        return
    if network.ca_bundle:
        shutil.copyfile(network.ca_bundle, dockerfile.parent / CA_IN_CONTEXT)
    if constraints:
        shutil.copyfile(constraints, dockerfile.parent / CONSTRAINTS_IN_CONTEXT)
    text = dockerfile.read_text().splitlines()
    from_index = next(i for i, line in enumerate(text) if line.startswith("FROM "))
    block = ["# Added by mlflow-validator: how this build reaches the package index, and within what", *lines]
    dockerfile.write_text("\n".join([*text[: from_index + 1], *block, *text[from_index + 1 :]]) + "\n")


def build_args(network: BuildNetwork) -> list[str]:
    """Proxy variables are docker's predefined build args: they stay out of the image history."""
    pairs = {
        "HTTP_PROXY": network.http_proxy,
        "HTTPS_PROXY": network.https_proxy,
        "NO_PROXY": network.no_proxy,
        "PIP_INDEX_URL": network.index_url,
    }
    return [arg for name, value in pairs.items() if value for arg in ("--build-arg", f"{name}={value}")]


def build_image(
    context_dir: Path, tag: str, run_label: str, network: BuildNetwork, env: Mapping[str, str], timeout_s: float
) -> commands.CommandResult:
    return commands.run(
        [
            "docker",
            "build",
            "--rm",
            "--force-rm",
            "--platform",
            "linux/amd64",
            "--label",
            f"{LABEL}={run_label}",
            "-t",
            tag,
            *build_args(network),
            context_dir,
        ],
        env=env,
        timeout_s=timeout_s,
        check=False,
    )


def remove_image(tag: str, env: Mapping[str, str]) -> None:
    """Removes the image and its untagged layers, so a long-lived runner does not fill up."""
    commands.run(["docker", "rmi", "--force", tag], env=env, timeout_s=120, check=False)

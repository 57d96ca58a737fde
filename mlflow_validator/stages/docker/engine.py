"""The engine the docker stage talks to, where it is, and how the stage reaches what it publishes.

Three topologies, as CI has them:
- a local engine: the serving port is published on 127.0.0.1 only;
- a remote engine (`DOCKER_HOST=tcp://docker:2376`, GitLab's dind service): the port is published on
  the engine's address the job reaches it by, and nowhere else;
- the validator in a container on the engine it drives (the socket mounted): nothing is published; the
  serving container joins the validator's own network and is reached at its address there.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlflow_validator import commands
from mlflow_validator.errors import CommandError

DOCKER_VARIABLES = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH")
PROBE_TIMEOUT_S = 20


def docker_env(env: Mapping[str, str]) -> dict[str, str]:
    """The docker CLI needs to find its engine and config, nothing else of ours. BuildKit always: the
    legacy builder leaves containers and layers behind when a build fails."""
    passed = {name: env[name] for name in (*DOCKER_VARIABLES, "DOCKER_TLS_VERIFY") if name in env}
    return {**passed, "DOCKER_BUILDKIT": "1"}


@dataclass(frozen=True)
class Docker:
    """The docker CLI, with the environment every call gets."""

    cli: str
    env: Mapping[str, str]

    def run(
        self,
        *args: str | Path,
        timeout_s: float,
        check: bool = True,
        stream_to: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> commands.CommandResult:
        return commands.run(
            [self.cli, *args], env=self.env, timeout_s=timeout_s, check=check, stream_to=stream_to, on_line=on_line
        )


def engine_problem(env: Mapping[str, str], cli: str = "docker") -> str:
    """Empty when the engine answers and the CLI can build with BuildKit; otherwise why not, in one line."""
    docker = Docker(cli, docker_env(env))
    try:
        server = docker.run("version", "--format", "{{.Server.Version}}", timeout_s=PROBE_TIMEOUT_S, check=False)
        if not (server.ok and server.output.strip()):
            problem = commands.last_line(server.output)
            if "permission denied" in problem:
                problem += (
                    f" (uid {os.getuid()} is not in the socket's group: in the validator's image, "
                    "add `--group-add $(stat -c %g /var/run/docker.sock)` to docker run)"
                )
            return problem
        return buildkit_problem(docker)
    except CommandError as exc:
        return f"{exc.problem}: install Docker's CLI, or point --docker-cli at it"


def buildkit_problem(docker: Docker) -> str:
    if docker.run("buildx", "version", timeout_s=PROBE_TIMEOUT_S, check=False).ok:
        return ""
    client = docker.run("version", "--format", "{{.Client.Version}}", timeout_s=PROBE_TIMEOUT_S, check=False)
    version = client.output.strip()
    if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
        return ""  # before 23.0 the CLI builds with BuildKit itself when DOCKER_BUILDKIT=1
    return (
        f"the docker CLI `{docker.cli}` ({version or 'unknown version'}) has no buildx plugin, which BuildKit "
        "builds need: install docker-buildx-plugin, or point --docker-cli at a CLI that has it"
    )


@dataclass(frozen=True)
class Reach:
    """How the serving container is published and reached."""

    publish: tuple[str, ...]  # `docker run` arguments
    host: str  # where the stage connects; empty: the container's own address on `network`
    network: str = ""

    def describe(self) -> str:
        if self.network:
            return f"on the validator's network {self.network}, nothing published"
        return f"published on {self.host} only"


def reach_for(docker: Docker, serving_port: int) -> Reach:
    host = urlsplit(docker.env.get("DOCKER_HOST", "")).hostname if "DOCKER_HOST" in docker.env else None
    if host and docker.env["DOCKER_HOST"].startswith("tcp://"):
        address = socket.gethostbyname(host)
        return Reach(("--publish", f"{address}::{serving_port}"), address)
    if network := _own_network(docker):
        return Reach((), "", network)
    return Reach(("--publish", f"127.0.0.1::{serving_port}"), "127.0.0.1")


def _own_network(docker: Docker) -> str:
    """The network of the container the validator runs in, when that container is on this engine."""
    hostname = os.environ.get("HOSTNAME", socket.gethostname())
    if not Path("/.dockerenv").exists():
        return ""
    found = docker.run(
        "inspect", "--format", "{{json .NetworkSettings.Networks}}", hostname, timeout_s=PROBE_TIMEOUT_S, check=False
    )
    networks = json.loads(found.output) if found.ok else {}
    if not networks or "host" in networks:
        return ""  # another engine's container, or the host's network: the local topology
    return str(next(iter(networks)))

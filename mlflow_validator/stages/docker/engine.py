"""The engine the docker stage talks to, wherever it is: a local engine, a remote one
(`DOCKER_HOST=tcp://docker:2376`, GitLab's dind service), or the one the validator's own container runs
on (the socket mounted). The serving container has no network on any of them and is reached through
`docker exec` (relay.py), so nothing is published anywhere."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

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
        stdin_file: Path | None = None,
    ) -> commands.CommandResult:
        return commands.run(
            [self.cli, *args],
            env=self.env,
            timeout_s=timeout_s,
            check=check,
            stream_to=stream_to,
            on_line=on_line,
            stdin_file=stdin_file,
        )


def printed(result: commands.CommandResult) -> str:
    """What a `--format` query printed: its last line. The CLI may warn first on the same output, about a
    config file it cannot read."""
    lines = result.output.strip().splitlines()
    return lines[-1].strip() if lines else ""


def oom_killed(docker: Docker, container: str) -> bool:
    """Whether the kernel killed a process of `container` for memory, its main process or any other."""
    events = docker.run(
        "events", "--since", "30m", "--until", "0s", "--filter", f"container={container}",
        "--filter", "event=oom", "--format", "{{.Status}}",
        timeout_s=30, check=False,
    )  # fmt: skip
    found = docker.run("inspect", "--format", "{{.State.OOMKilled}}", container, timeout_s=30, check=False)
    return printed(found) == "true" or "oom" in events.output


def engine_problem(env: Mapping[str, str], cli: str = "docker") -> str:
    """Empty when the engine answers and the CLI can build with BuildKit; otherwise why not, in one line."""
    docker = Docker(cli, docker_env(env))
    try:
        server = docker.run("version", "--format", "{{.Server.Version}}", timeout_s=PROBE_TIMEOUT_S, check=False)
        if not (server.ok and printed(server)):
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
    version = printed(client)
    if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
        return ""  # before 23.0 the CLI builds with BuildKit itself when DOCKER_BUILDKIT=1
    return (
        f"the docker CLI `{docker.cli}` ({version or 'unknown version'}) has no buildx plugin, which BuildKit "
        "builds need: install docker-buildx-plugin, or point --docker-cli at a CLI that has it"
    )

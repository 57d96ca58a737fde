"""Is a Docker engine reachable? Checked before any work, so a missing engine costs nothing."""

from __future__ import annotations

from collections.abc import Mapping

from validator import commands
from validator.errors import CommandError


def docker_env(env: Mapping[str, str]) -> dict[str, str]:
    """The docker CLI needs to find its daemon and config, nothing else of ours."""
    names = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
    return {name: env[name] for name in names if name in env}


def engine_problem(env: Mapping[str, str], timeout_s: float = 20) -> str:
    """Empty when the engine answers; otherwise why not, in one line."""
    try:
        result = commands.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], env=docker_env(env), timeout_s=timeout_s, check=False
        )
    except CommandError as exc:
        return exc.problem
    if result.ok and result.output.strip():
        return ""
    return commands.last_line(result.output)


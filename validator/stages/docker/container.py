"""A serving container as a context manager: published on 127.0.0.1 only, always removed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from validator import commands
from validator.stages.docker import LABEL
from validator.stages.docker.image import SERVING_PORT

# The serving container is untrusted code too. It gets no host mount, no socket and no variable from
# the job; of Docker's default capabilities it keeps only what nginx's master needs to hand its
# worker to an unprivileged user; it cannot gain privileges, and its process count is bounded.
HARDENING = (
    "--cap-drop", "ALL",
    "--cap-add", "CHOWN", "--cap-add", "SETUID", "--cap-add", "SETGID", "--cap-add", "DAC_OVERRIDE",
    "--security-opt", "no-new-privileges",
    "--pids-limit", "512",
)  # fmt: skip


class ContainerExited(Exception):
    """The container stopped before it answered /ping."""


class NotReady(Exception):
    """The container runs but /ping does not answer 200 yet."""


@dataclass(frozen=True)
class Container:
    name: str
    url: str
    env: Mapping[str, str]

    def logs(self) -> str:
        return commands.run(["docker", "logs", self.name], env=self.env, timeout_s=60, check=False).output

    def running(self) -> bool:
        state = commands.run(
            ["docker", "inspect", "--format", "{{.State.Running}}", self.name], env=self.env, timeout_s=30, check=False
        )
        return state.output.strip() == "true"


@contextmanager
def running_container(
    image: str, name: str, run_label: str, env: Mapping[str, str], keep: bool, passed_env: list[str]
) -> Iterator[Container]:
    """Start `image` detached with its port on a random 127.0.0.1 port; remove it on exit unless `keep`.
    `passed_env` names variables of `env` the container gets (`-e NAME`: the value stays off the command line)."""
    try:
        commands.run(
            [
                "docker",
                "run",
                "--detach",
                "--name",
                name,
                "--label",
                f"{LABEL}={run_label}",
                "--publish",
                f"127.0.0.1::{SERVING_PORT}",
                *HARDENING,
                *(arg for name in passed_env for arg in ("--env", name)),
                image,
            ],
            env=env,
            timeout_s=120,
        )
        published = commands.run(["docker", "port", name, f"{SERVING_PORT}/tcp"], env=env, timeout_s=30)
        host_port = published.output.strip().splitlines()[0].rsplit(":", 1)[1]
        yield Container(name, f"http://127.0.0.1:{host_port}", env)
    finally:
        if not keep:
            commands.run(["docker", "rm", "--force", "--volumes", name], env=env, timeout_s=120, check=False)


def wait_until_ready(container: Container, timeout_s: float) -> float:
    """Poll /ping once a second until it answers 200; returns the seconds waited."""

    def ping() -> None:
        if not container.running():
            raise ContainerExited()
        try:
            response = requests.get(f"{container.url}/ping", timeout=5)
        except requests.RequestException as exc:
            raise NotReady(str(exc)) from None
        if response.status_code != 200:
            raise NotReady(f"/ping answered {response.status_code}")

    retrying = Retrying(retry=retry_if_exception_type(NotReady), stop=stop_after_delay(timeout_s), wait=wait_fixed(1))
    try:
        retrying(ping)
    except RetryError:
        raise TimeoutError(f"/ping did not answer 200 within {timeout_s:.0f} s") from None
    return float(retrying.statistics.get("delay_since_first_attempt", 0.0))

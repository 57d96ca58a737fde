"""A serving container as a context manager, without a network, reached through the relay, always
removed; and the wait for it to serve, which watches its state and log so a model that cannot load fails
fast, whichever server the container runs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from mlflow_validator.expectations.packages import canonical
from mlflow_validator.serving.relay import relayed
from mlflow_validator.stages.docker.engine import Docker, oom_killed, printed
from mlflow_validator.stages.docker.image import SERVING_PORT

# The serving container is untrusted code too. It gets no network (only its loopback), no host mount, no
# socket and no variable from the job; no capability but what its server needs (the target says which); it
# cannot gain privileges, and its process count is bounded.
HARDENING = (
    "--network", "none",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    "--pids-limit", "512",
)  # fmt: skip
# uvicorn restarts a scoring worker that dies while nginx answers 502, and MLServer goes on serving without
# the model, so neither container exits.
WORKER_DEATH = re.compile(
    r"Child process \[\d+\] died|Traceback \(most recent call last\)|Error loading ASGI app|Killed"
    r"|Couldn't load model"  # MLServer's own line, logged at INFO
)
# A worker may die once and come back (gunicorn restarts it within a second); dying for this long is a model
# that cannot load. 20 s: the failure lands within 30 s of the container start (gunicorn boots in about 5 s).
GRACE_AFTER_DEATH_S = 20
# nginx writes its error log to the same stream as the workers, so its lines can land inside a traceback
NGINX_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] ")
POLL_S = 1.0
LOG_LINES = 2000  # of the container's log, read at each poll and for the report
LIST_DISTRIBUTIONS = """
import importlib.metadata, json
found = {}
for dist in importlib.metadata.distributions():
    found.setdefault(dist.metadata["Name"], dist.version)
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Container:
    name: str
    url: str
    docker: Docker
    started: float  # time.monotonic() when `docker run` returned
    session: requests.Session  # keep-alive: one relayed connection carries the stage's requests

    def logs(self) -> str:
        """The end of the container's log: the model may print without end."""
        return self.docker.run("logs", "--tail", str(LOG_LINES), self.name, timeout_s=60, check=False).output

    def state(self) -> Mapping[str, object]:
        found = self.docker.run("inspect", "--format", "{{json .State}}", self.name, timeout_s=30, check=False)
        return json.loads(printed(found)) if found.ok else {"Running": False, "Status": "removed"}

    def installed(self) -> dict[str, str] | None:
        """What the serving interpreter imports: for each name, the first distribution on its sys.path. None
        when the container does not say: its interpreter is the model's to break (a `.pth` that exits, say)."""
        listed = self.docker.run("exec", self.name, "python", "-I", "-c", LIST_DISTRIBUTIONS, timeout_s=60, check=False)
        if not listed.ok:
            return None
        try:
            found = json.loads(listed.output.strip().splitlines()[-1])
            return canonical({str(name): str(version) for name, version in found.items()})
        except (ValueError, IndexError, AttributeError, RecursionError):
            return None

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def oom_killed(self) -> bool:
        return oom_killed(self.docker, self.name)


@contextmanager
def running_container(
    docker: Docker,
    image: str,
    name: str,
    labels: Mapping[str, str],
    memory_mb: int | None,
    passed_env: list[str],
    keep: bool,
    capabilities: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Container]:
    """Start `image` detached; remove it on exit unless `keep`. `passed_env` names variables of the CLI's
    environment the container gets (`--env NAME`: the value stays off the command line); `env`, fixed values
    of the validator's own; `capabilities`, the only ones it keeps."""
    memory = ("--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m") if memory_mb else ()
    try:
        docker.run(
            "run", "--detach", "--name", name,
            *(arg for label, value in labels.items() for arg in ("--label", f"{label}={value}")),
            *memory, *HARDENING, *(arg for capability in capabilities for arg in ("--cap-add", capability)),
            *(arg for variable in passed_env for arg in ("--env", variable)),
            *(arg for name, value in (env or {}).items() for arg in ("--env", f"{name}={value}")),
            image,
            timeout_s=120,
        )  # fmt: skip
        started = time.monotonic()
        with relayed(docker, name, SERVING_PORT) as url, requests.Session() as session:
            yield Container(name, url, docker, started, session)
    finally:
        if not keep:
            docker.run("rm", "--force", "--volumes", name, timeout_s=120, check=False)


class NotServing(Exception):
    """The container will not serve: `message` says why, for the report."""

    def __init__(self, message: str, logs: str) -> None:
        super().__init__(message)
        self.message = message
        self.logs = logs


@dataclass(frozen=True)
class Readiness:
    path: str  # answers 200 once the model is loaded
    server: str  # how messages name the server
    limit_s: float  # the load budget or the start timeout
    limit_name: str  # which of the two, for the message
    memory_mb: int | None


def wait_until_serving(container: Container, ready: Readiness) -> float:
    """Poll the ready path until it answers 200; returns the seconds since the container started. Raises
    NotServing when it exits, is killed for memory, keeps failing to load the model for GRACE_AFTER_DEATH_S,
    or exceeds the limit."""
    first_death: float | None = None
    memory_mb, limit_s = ready.memory_mb, ready.limit_s
    while True:
        waited = time.monotonic() - container.started
        if _answers(container, ready.path):
            return waited
        state = container.state()
        if not state.get("Running"):
            exited = f"the container exited with code {state.get('ExitCode')} before answering {ready.path}"
            raise _not_serving(container, memory_mb, f"{exited}: {ready.server} could not start")
        if first_death is None and WORKER_DEATH.search(container.logs()):
            first_death = time.monotonic()
        if first_death is not None and time.monotonic() - first_death >= GRACE_AFTER_DEATH_S:
            raise _not_serving(
                container,
                memory_mb,
                f"the model cannot load in the container: {ready.server} kept failing to load it for "
                f"{GRACE_AFTER_DEATH_S} s",
            )
        if waited >= limit_s:
            raise NotServing(
                f"the model did not load within {limit_s:.0f} s ({ready.limit_name}): {ready.path} never answered 200 "
                "and no worker died, so loading hangs",
                container.logs(),
            )
        time.sleep(POLL_S)


def _answers(container: Container, path: str) -> bool:
    """Only the status is read: a body sent without end must not hold the wait."""
    try:
        with container.session.get(f"{container.url}{path}", timeout=5, stream=True) as response:
            return response.status_code == 200
    except requests.RequestException:
        return False


def _not_serving(container: Container, memory_mb: int | None, problem: str) -> NotServing:
    """`problem`, with the log lines that say why; an OOM kill is named as such, whatever it looked like."""
    logs = container.logs()
    if container.oom_killed():
        return NotServing(_needs_more_memory(memory_mb), logs)
    return NotServing(f"{problem}: {_why(logs)}", logs)


def _needs_more_memory(memory_mb: int | None) -> str:
    limit = f"{memory_mb} MiB (docker.memory)" if memory_mb else "the memory the engine has"
    return f"the model needs more than {limit}: the kernel killed it for memory (OOM) while it loaded"


def python_tracebacks(logs: str) -> str:
    """The Python tracebacks in the container's log: what the model's code said, without nginx's own
    lines (its "Connection refused" is nginx waiting for the scoring server, not the model calling out)."""
    model_lines = "\n".join(line for line in logs.splitlines() if not NGINX_LINE.match(line))
    blocks = re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*.*", model_lines)
    return "\n".join(blocks)


def _why(logs: str) -> str:
    """The line of the log that says why: the last exception, else the last line."""
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", line)]
    return (errors or lines or ["(the container logged nothing)"])[-1]

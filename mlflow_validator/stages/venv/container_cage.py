"""The cage's second backend, for machines where bubblewrap cannot run (an unprivileged job container,
a runner that refuses user namespaces) but a Docker engine answers: the model process runs in a container
of the run's dependency image (the model's Python, the run's lock), on whichever engine DOCKER_HOST names.

The container has no network but its loopback, no capability, a read-only root, a uid of the run's own
that owns nothing in the image, no new privileges, and bounded tasks, memory and CPU time. Nothing of the
job is mounted: the model, the predictor and the plan are copied into a volume of the container's own,
root's and read-only to the model. The model's answers come back on the container's stdout and its
questions go in on its stdin (the engine may be remote, so there is no socket or file to share); a
bridge answers the validator's own socket from them, so the generated inputs and the team's checks ask
this model as they ask a bubblewrap-caged one.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from mlflow_validator import commands
from mlflow_validator.errors import InfrastructureError
from mlflow_validator.serving.endpoint import MAX_ANSWER_BYTES, BadAnswer, line_before
from mlflow_validator.stages.docker.engine import Docker, printed
from mlflow_validator.stages.venv.cage import Bounds

FILES = "/opt/mlflow-validator"  # the model, the predictor and the plan: root's, read-only to the model
HOME = "/home/model"  # the one directory the model may write, a tmpfs within its memory bound
HARDENING = (
    "--network", "none",
    "--read-only",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    "--log-driver", "none",  # what it prints comes back on the attached streams; the engine keeps none of it
)  # fmt: skip
# The model's uid in its container, one per cage: above the image's users, below 65536 so that an engine
# that remaps users (userns-remap, rootless) can map it.
CONTAINER_UIDS = range(50_000, 60_000)
ENGINE_HINT = (
    "give the validator a Docker engine to cage the model in a container: the socket (in GitLab, socket binding), "
    "or DOCKER_HOST (a dind service), and a docker CLI that builds with BuildKit"
)
ENGINE_TIMEOUT_S = 120
ACCEPT_POLL_S = 0.2
PIPE_BUF = select.PIPE_BUF  # a write of at most this much to a pipe that select says is writable never blocks


@dataclass(frozen=True)
class ContainerCage:
    image: str  # the run's dependency image
    name: str
    labels: Mapping[str, str]
    uid: int  # of the run's own: no file in the image is its
    bounds: Bounds


def created(cage: ContainerCage, command: Sequence[str], env: Mapping[str, str], passed: Sequence[str]) -> list[str]:
    """`docker create` arguments for the model's container. Pure: the argv only. `env` is set on the
    command line (fixed values of ours); `passed` names variables whose values the docker CLI's
    environment holds, so that no secret is on a command line."""
    bounds = cage.bounds
    memory = f"{bounds.memory_mb}m"
    return [
        "create", "--interactive", "--name", cage.name,
        *(arg for label, value in cage.labels.items() for arg in ("--label", f"{label}={value}")),
        *HARDENING,
        "--user", f"{cage.uid}:{cage.uid}",
        "--memory", memory, "--memory-swap", memory, "--pids-limit", str(bounds.processes),
        "--ulimit", f"cpu={bounds.cpu_seconds}:{bounds.cpu_seconds}",
        "--tmpfs", f"{HOME}:rw,nosuid,nodev,size={memory},mode=1777",
        "--mount", f"type=volume,dst={FILES}",
        *(arg for name, value in env.items() for arg in ("--env", f"{name}={value}")),
        *(arg for name in passed for arg in ("--env", name)),
        "--entrypoint", command[0], cage.image, *command[1:],
    ]  # fmt: skip


def _as_roots(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Root's, readable by all, writable by none but root: the model may read its files, never change them."""
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    executable = member.isdir() or member.mode & 0o111
    member.mode = 0o755 if executable else 0o644
    return member


def packed(files: Mapping[str, Path], archive: Path) -> Path:
    """`files` (name in the container's FILES → path here) as one tar for `docker cp`."""
    with tarfile.open(archive, "w") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name, filter=_as_roots)
    return archive


class EngineRefused(InfrastructureError):
    """The engine would not run the cage as asked: the validator's trouble, never the model's."""


@contextmanager
def started(
    docker: Docker,
    cage: ContainerCage,
    files: Mapping[str, Path],
    argv: list[str],
    model_env: Mapping[str, str],
    log_file: Path,
    timeout_s: float,
) -> Iterator[subprocess.Popen[bytes]]:
    """The model's container, created from `argv` (see `created`; `model_env` holds the values of the
    variables it passes), given `files` (within `timeout_s`), and attached: the process this yields is the
    docker CLI carrying the container's stdin and stdout, its stderr in `log_file`. The container and its
    volume are removed on exit, whatever happened."""
    try:
        # The model's variables go to this call alone, and the CLI's own win: PATH, HOME and DOCKER_* stay ours.
        replace(docker, env={**model_env, **docker.env}).run(*argv, timeout_s=ENGINE_TIMEOUT_S)
        _refuse_discarded_limits(docker, cage)
        archive = packed(files, log_file.with_name("files.tar"))
        docker.run("cp", "-", f"{cage.name}:{FILES}", stdin_file=archive, timeout_s=timeout_s)
        archive.unlink()
        with commands.background(
            [docker.cli, "start", "--attach", "--interactive", cage.name],
            env=docker.env,
            cwd=log_file.parent,
            output_file=log_file,
            # No grace: the model is PID 1 of its container, which ignores a SIGTERM it has no handler for;
            # killing the CLI and removing the container ends it at once.
            grace_s=0,
            stdio=True,
        ) as process:
            yield process
    finally:
        docker.run("rm", "--force", "--volumes", cage.name, timeout_s=ENGINE_TIMEOUT_S, check=False)


def _refuse_discarded_limits(docker: Docker, cage: ContainerCage) -> None:
    """An engine without memory or pids accounting creates the container all the same, limits discarded
    with a warning: a cage without its bounds is no cage."""
    fields = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}}"
    found = printed(docker.run("inspect", "--format", fields, cage.name, timeout_s=ENGINE_TIMEOUT_S)).split()
    memory = str(cage.bounds.memory_mb * 2**20)
    if found != [memory, memory, str(cage.bounds.processes)]:
        raise EngineRefused(
            f"the Docker engine discarded the cage's memory or process limits (asked {memory} bytes and "
            f"{cage.bounds.processes} tasks, got {' '.join(found)})",
            "run the engine with memory, swap and pids accounting (cgroup v2, or swapaccount=1 on cgroup v1)",
        )


def start_problem(docker: Docker, name: str) -> str:
    """Why the engine did not run the container as asked (empty when it ran and the model ended it). Never
    from the exit code: the model chooses it."""
    fields = '{"started": {{json .State.StartedAt}}, "error": {{json .State.Error}}}'
    found = docker.run("inspect", "--format", fields, name, timeout_s=ENGINE_TIMEOUT_S, check=False)
    if not found.ok:
        return f"the engine lost the container: {commands.last_line(found.output)}"
    state = json.loads(printed(found))
    if state["error"] or state["started"].startswith("0001-"):
        return f"the engine could not start the container: {state['error'] or 'it never started'}"
    return ""


class Channel:
    """The model process's stdin and stdout, one question and one answer line at a time. Everything is
    bounded: what comes back in size (and no more than one line waits to be taken), and every wait, for
    the channel, for the model to read a question or to answer it, in time. Once an answer is late or
    too long, the lines are out of step and the channel answers nothing more."""

    def __init__(self, process: subprocess.Popen[bytes], first_line_bytes: int) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.questions = process.stdin  # written through its descriptor, unbuffered
        self.lines: queue.Queue[bytes] = queue.Queue(maxsize=1)  # a model sending unasked waits, unread
        self.lock = threading.Lock()
        self.broken = ""
        threading.Thread(target=self._read, args=(process.stdout, first_line_bytes), daemon=True).start()

    def _read(self, answers: BinaryIO, first_line_bytes: int) -> None:
        limit = first_line_bytes
        with contextlib.suppress(OSError, ValueError):
            while line := answers.readline(limit + 1):
                self.lines.put(line)
                if not line.endswith(b"\n"):
                    break  # too long, or cut off by the end
                limit = MAX_ANSWER_BYTES
        self.lines.put(b"")

    def next_line(self, timeout_s: float) -> bytes:
        if self.broken:
            raise ConnectionError(self.broken)
        try:
            line = self.lines.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            raise self._break(TimeoutError(f"the model did not answer within {timeout_s:g} s")) from None
        if not line:
            raise self._break(ConnectionError("the model process ended"))
        if not line.endswith(b"\n"):
            raise self._break(BadAnswer("the model process sent a line longer than it may"))
        return line

    def ask(self, question: bytes, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        if not self.lock.acquire(timeout=timeout_s):
            raise TimeoutError("the model process was still answering another question")
        try:
            if self.broken:
                raise ConnectionError(self.broken)
            self._send(question, deadline)
            return self.next_line(deadline - time.monotonic())
        finally:
            self.lock.release()

    def _send(self, question: bytes, deadline: float) -> None:
        """A model that reads no question must not hold the validator: written as far as the pipe takes it
        before `deadline`."""
        pending = memoryview(question)
        while pending:
            _, writable, _ = select.select([], [self.questions], [], max(0.0, deadline - time.monotonic()))
            if not writable:
                raise self._break(TimeoutError("the model process read no question"))
            pending = pending[os.write(self.questions.fileno(), pending[:PIPE_BUF]) :]

    def _break(self, problem: OSError | ValueError) -> OSError | ValueError:
        self.broken = str(problem)
        return problem


@contextmanager
def bridged(listening: socket.socket, channel: Channel, timeout_s: float) -> Iterator[None]:
    """The validator's socket answered through `channel` while the block runs: one question per
    connection, as the bubblewrap-caged predictor answers it."""
    stopped = threading.Event()
    listening.settimeout(ACCEPT_POLL_S)

    def accept() -> None:
        while not stopped.is_set():
            try:
                connection, _ = listening.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=carry, args=(connection,), daemon=True).start()

    def carry(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError, ValueError):
            question = line_before(connection, time.monotonic() + timeout_s)
            connection.sendall(channel.ask(question, timeout_s))

    accepting = threading.Thread(target=accept, daemon=True)
    accepting.start()
    try:
        yield
    finally:
        stopped.set()
        accepting.join(timeout=5)

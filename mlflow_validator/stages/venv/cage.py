"""The cage the model process runs in, built from what Linux and Debian provide: bubblewrap's
namespaces and util-linux's prlimit.

Inside, the model sees its own PIDs only, a network with nothing but its own loopback, the host's
files read-only with the homes, /run (the Docker socket), /tmp and the runner's work directories
replaced by empty ones, and only its work directory writable; its memory and CPU time are bounded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow_validator import commands
from mlflow_validator.errors import CommandError

# Directories that hold what a model must not see: credentials in homes, the Docker socket and
# other services' sockets under /run, other jobs' files under /tmp.
HIDDEN = (Path("/root"), Path("/home"), Path("/run"), Path("/tmp"), Path("/var/tmp"), Path("/var/run"))
ENABLE_HINT = (
    "install bubblewrap (apt-get install bubblewrap) and allow user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1; in a container, run it with --privileged or a seccomp "
    "profile that allows unshare)"
)


@dataclass(frozen=True)
class Cage:
    writable: tuple[Path, ...]  # the model's work directory: its HOME, TMPDIR and answers
    readable: tuple[Path, ...]  # shown read-only again inside hidden directories: the interpreter, the model
    hidden: tuple[Path, ...]  # replaced by empty directories
    memory_mb: int
    cpu_seconds: int


def cage_for(work: Path, readable: Sequence[Path], env: Mapping[str, str], memory_mb: int, cpu_s: int) -> Cage:
    """Hide the homes (the validator's own HOME among them), /run, /tmp, and the Docker socket wherever
    DOCKER_HOST says it is."""
    hidden = [*HIDDEN, Path(env.get("HOME", "/root"))]
    if env.get("DOCKER_HOST", "").startswith("unix://"):
        hidden.append(Path(env["DOCKER_HOST"].removeprefix("unix://")).parent)
    existing = [path for path in dict.fromkeys(hidden) if path.is_dir() and not path.is_symlink()]
    return Cage((work,), tuple(readable), tuple(existing), memory_mb, cpu_s)


def caged(cage: Cage, command: Sequence[str | Path]) -> list[str | Path]:
    """`command` run inside the cage. Pure: the argv only."""
    limits = ["prlimit", f"--as={cage.memory_mb * 1024 * 1024}", f"--cpu={cage.cpu_seconds}", "--"]
    namespaces = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/", "/"]
    namespaces += ["--dev", "/dev", "--proc", "/proc"]
    for path in cage.hidden:
        namespaces += ["--tmpfs", str(path)]
    for path in cage.readable:
        namespaces += ["--ro-bind", str(path), str(path)]
    for path in cage.writable:
        namespaces += ["--bind", str(path), str(path)]
    return [*limits, *namespaces, "--", *command]


def cage_problem(env: Mapping[str, str]) -> str:
    """Empty when a process can be caged here; otherwise why not, in one line."""
    probe = Cage((), (), (), memory_mb=256, cpu_seconds=10)
    try:
        path = {"PATH": env.get("PATH", os.defpath)}
        result = commands.run(caged(probe, ["true"]), env=path, timeout_s=30, check=False)
    except CommandError as exc:
        return exc.problem
    return "" if result.ok else commands.last_line(result.output)

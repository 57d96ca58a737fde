"""The cage the model process runs in, built from what Linux and Debian provide: bubblewrap's
namespaces, util-linux's prlimit and setpriv.

Inside, the model sees its own PIDs only, a network with nothing but its own loopback, the host's
files read-only with the homes, /run (the Docker socket), /tmp, the runner's checkout and work
directories and the run's own work directory replaced by empty ones, and only its HOME writable. It
never runs as uid 0 and keeps no capability: started by root, bubblewrap sets the namespaces up and
setpriv then becomes a user of the run's own that owns nothing on the host; started by anyone else,
bubblewrap maps that user into a user namespace of its own, with every capability dropped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow_validator import commands
from mlflow_validator.errors import CommandError

# Directories that hold what a model must not see: credentials in homes, the Docker socket and
# other services' sockets under /run, other jobs' files under /tmp.
HIDDEN = (Path("/root"), Path("/home"), Path("/run"), Path("/tmp"), Path("/var/tmp"), Path("/var/run"))
# The runner's checkout and work directories (GitLab's file-type variables live beside the builds),
# and caches a later job reads.
HIDDEN_FROM_ENV = (
    "HOME",
    "GITHUB_WORKSPACE",
    "RUNNER_TEMP",
    "RUNNER_WORKSPACE",
    "CI_PROJECT_DIR",
    "CI_BUILDS_DIR",
    "UV_CACHE_DIR",
    "XDG_CACHE_HOME",
    "PIP_CACHE_DIR",
)
# A working directory under these is the system's, not a checkout: hiding it would hide the libraries.
SYSTEM_TREES = frozenset({"usr", "lib", "lib32", "lib64", "bin", "sbin", "etc", "opt", "var", "proc", "sys", "dev"})
# When the validator is root, the model runs as a uid picked from this range, one per cage: no file
# on the host belongs to it, and the kernel counts its processes apart from everyone else's.
CAGE_UIDS = range(1_900_000_000, 2_000_000_000)
ENABLE_HINT = (
    "install bubblewrap (apt-get install bubblewrap) and allow it user namespaces (on Ubuntu 23.10 and later, "
    "GitHub's ubuntu-24.04 among them, load AppArmor's bwrap-userns-restrict profile, as the Action does; "
    "in a container, run it --privileged)"
)


@dataclass(frozen=True)
class Bounds:
    """For the cage as a whole, all its processes together."""

    memory_mb: int
    cpu_seconds: int
    processes: int  # tasks (processes and threads) at once


@dataclass(frozen=True)
class Cage:
    writable: tuple[Path, ...]  # the model's HOME: its TMPDIR and its answers
    readable: tuple[Path, ...]  # shown read-only again inside hidden directories: interpreter, venv, model, plan
    hidden: tuple[Path, ...]  # replaced by empty directories
    bounds: Bounds
    model_uid: int | None  # the uid the model runs as when the validator is root; None: the validator's own
    tasks_before: int  # tasks that uid already has: the kernel counts them against the bound too


def cage_uid(euid: int) -> int | None:
    """A fresh uid for the model when the validator is root; None otherwise (it keeps the validator's)."""
    return CAGE_UIDS.start + secrets.randbelow(len(CAGE_UIDS)) if euid == 0 else None


def hidden_paths(env: Mapping[str, str], cwd: Path, extra: Sequence[Path] = ()) -> list[Path]:
    """The fixed list, the directories the environment names (the validator's own HOME among them),
    the Docker socket wherever DOCKER_HOST says it is, the working directory (the checkout, usually)
    and `extra`, as far as they exist."""
    hidden = [*HIDDEN, *(Path(env[name]) for name in HIDDEN_FROM_ENV if env.get(name))]
    if env.get("DOCKER_HOST", "").startswith("unix://"):
        hidden.append(Path(env["DOCKER_HOST"].removeprefix("unix://")).parent)
    if len(cwd.parts) > 1 and cwd.parts[1] not in SYSTEM_TREES:
        hidden.append(cwd)
    if env.get("RUNNER_WORKSPACE"):  # <runner>/_work/<repository>; a self-hosted runner's credentials are in <runner>
        runner = Path(env["RUNNER_WORKSPACE"]).parent.parent
        hidden += [runner] if len(runner.parts) > 2 else []
    hidden += extra
    return [path for path in dict.fromkeys(hidden) if path.is_dir() and not path.is_symlink() and path != Path("/")]


def cage_for(home: Path, readable: Sequence[Path], hidden: Sequence[Path], bounds: Bounds, euid: int) -> Cage:
    uid = cage_uid(euid)
    return Cage((home,), tuple(readable), tuple(hidden), bounds, uid, tasks_of(euid if uid is None else uid))


def caged(cage: Cage, command: Sequence[str | Path]) -> list[str | Path]:
    """`command` run inside the cage. Pure: the argv only."""
    bounds = cage.bounds
    limits = ["prlimit", f"--as={bounds.memory_mb * 1024 * 1024}", f"--cpu={bounds.cpu_seconds}"]
    limits += [f"--nproc={cage.tasks_before + bounds.processes}", "--"]
    namespaces = ["bwrap", "--die-with-parent", "--new-session"]
    if cage.model_uid is None:
        # bubblewrap maps the user into a user namespace of its own, where it keeps no capability.
        namespaces += ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    else:
        # As root, a user namespace would map the model to uid 0 on the host, owner of root's files.
        namespaces += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    namespaces += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    # Shared memory for multiprocessing, within the memory bound (tmpfs pages are no process's RSS).
    namespaces += ["--perms", "1777", "--size", str(bounds.memory_mb * 2**20), "--tmpfs", "/dev/shm"]
    for path in sorted(cage.hidden, key=lambda hidden: len(hidden.parts)):
        namespaces += ["--tmpfs", str(path)]
    for path in _parents_made(cage.hidden, [*cage.readable, *cage.writable]):
        namespaces += ["--perms", "0755", "--dir", str(path)]  # bubblewrap would make them 0700: root's alone
    for path in cage.readable:
        namespaces += ["--ro-bind", str(path), str(path)]
    for path in cage.writable:
        namespaces += ["--bind", str(path), str(path)]
    for path in cage.hidden:  # in a user namespace the empty directories would be the model's own to fill
        namespaces += ["--remount-ro", str(path)]
    become: list[str | Path] = []
    if cage.model_uid is not None:
        uid = cage.model_uid
        become = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
        become += ["--bounding-set=-all", "--no-new-privs", "--"]
    return [*limits, *namespaces, "--", *become, *command]


def _parents_made(hidden: Sequence[Path], shown: Sequence[Path]) -> list[Path]:
    """The directories bubblewrap makes inside the empty ones to show `shown` again, parents first."""
    made = [
        parent
        for path in shown
        for parent in reversed(path.parents)
        if any(parent != root and parent.is_relative_to(root) for root in hidden)
    ]
    return list(dict.fromkeys(made))


def tasks_of(uid: int) -> int:
    """Processes and threads `uid` has now, as RLIMIT_NPROC counts them."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # ended meanwhile
            continue
        if int(fields["Uid"].split()[0]) == uid:
            count += int(fields["Threads"])
    return count


def cage_problem(env: Mapping[str, str], euid: int) -> str:
    """Empty when a process can be caged here; otherwise why not, in one line."""
    bounds = Bounds(memory_mb=256, cpu_seconds=10, processes=64)
    probe = replace(cage_for(Path(os.devnull), (), (), bounds, euid), writable=())
    try:
        path = {"PATH": env.get("PATH", os.defpath)}
        result = commands.run(caged(probe, ["true"]), env=path, timeout_s=30, check=False)
    except CommandError as exc:
        return exc.problem
    return "" if result.ok else commands.last_line(result.output)


WATCH_INTERVAL_S = 0.2
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Watch:
    """The cage's processes together, sampled: prlimit bounds each process, this bounds their sum and
    kills the whole cage past it. A cgroup would do it in the kernel, but neither an unprivileged
    runner user nor a GitLab job container may create one."""

    def __init__(self, process: subprocess.Popen[bytes], bounds: Bounds) -> None:
        self.process = process
        self.bounds = bounds
        self.breach = ""  # why the cage was killed, once it was
        self.stopped = threading.Event()
        self.ticks_seen: dict[int, int] = {}  # CPU time of each live process at its last sample
        self.ticks_gone = 0  # of those that ended: a child nobody waits for leaves no cutime behind

    def run(self) -> None:
        while not self.stopped.wait(WATCH_INTERVAL_S) and self.process.poll() is None:
            self.breach = self._breach(_descendants(self.process.pid))
            if self.breach:
                self.process.kill()  # bubblewrap's child dies with it, and with it the PID namespace
                return

    def _breach(self, pids: Sequence[int]) -> str:
        resident_mb, ticks = _usage(pids)
        self.ticks_gone += sum(seen for pid, seen in self.ticks_seen.items() if pid not in ticks)
        self.ticks_seen = ticks
        memory_mb = resident_mb + _memory_files_mb(pids)
        if memory_mb > self.bounds.memory_mb:
            memory_mb = _proportional_mb(pids) + _memory_files_mb(pids)
        if memory_mb > self.bounds.memory_mb:
            return (
                f"the model's processes together used {memory_mb:.0f} MiB, more than the cage allows "
                f"(sandbox.memory_mb: {self.bounds.memory_mb})"
            )
        if (self.ticks_gone + sum(ticks.values())) / CLOCK_TICKS > self.bounds.cpu_seconds:
            return f"the model's processes together used more than {self.bounds.cpu_seconds} s of CPU"
        return ""


@contextmanager
def watched(process: subprocess.Popen[bytes], bounds: Bounds) -> Iterator[Watch]:
    watch = Watch(process, bounds)
    thread = threading.Thread(target=watch.run, name="cage-watch", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch.stopped.set()
        thread.join(timeout=5)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append(pid)
        frontier += children.get(pid, [])
    return found


def _usage(pids: Sequence[int]) -> tuple[float, dict[int, int]]:
    """Resident memory (MiB) of `pids`, and the CPU time (clock ticks) each has used itself. Resident
    sizes count pages forked children share once per child; only when their sum is past the bound is the
    memory weighed properly, each shared page split among its sharers (PSS, dearer to read)."""
    resident_pages, ticks = 0, {}
    for pid in pids:
        try:
            resident_pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    return resident_pages * PAGE_BYTES / 2**20, ticks


def _memory_files_mb(pids: Sequence[int]) -> float:
    """memfd files the processes hold open: memory that no process maps, so no RSS shows it."""
    sizes = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for descriptor in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(descriptor.path).startswith("/memfd:"):
                        found = os.stat(descriptor.path)
                        sizes[(found.st_dev, found.st_ino)] = found.st_blocks * 512
    return sum(sizes.values()) / 2**20


def _proportional_mb(pids: Sequence[int]) -> float:
    kilobytes = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        kilobytes += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return kilobytes / 1024

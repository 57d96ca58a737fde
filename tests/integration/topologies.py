"""The validator run as users run it: as root (this machine's and most CI jobs' default), as an
ordinary user, and where the kernel refuses what the cage needs (an unprivileged job container's root
without capabilities; a user whose user namespaces AppArmor or a sysctl refuses).

An ordinary user here is a uid without a home of its own on the machine. The root-owned directories on
the way to this Python and this checkout are replaced, for that process alone, by open empty ones that
show just those two again (bubblewrap, run by root, without namespaces the validator's cage would
notice), so the user runs the same interpreter and source as the tests do.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import CliResult
from tests.paths import ROOT as REPO_ROOT

USER_UID = 4242
PYENV = Path(sys.prefix).parents[1] if Path(sys.prefix).parent.name == "versions" else Path(sys.prefix)


def _closed_ancestor(path: Path) -> Path | None:
    """The outermost directory above `path` that others may not enter."""
    for ancestor in reversed(path.parents):
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return ancestor
    return None


def _shown_to_others(paths: Sequence[Path]) -> list[str]:
    """bubblewrap arguments that let any uid reach `paths` read-only."""
    closed = {path: _closed_ancestor(path) for path in paths}
    hidden = list(dict.fromkeys(ancestor for ancestor in closed.values() if ancestor))
    argv = [arg for ancestor in hidden for arg in ("--tmpfs", str(ancestor))]
    for path, ancestor in closed.items():
        if ancestor is None:
            continue
        for parent in reversed(path.parents):
            if parent != ancestor and parent.is_relative_to(ancestor):
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", str(path), str(path)]
    return argv


def _python_path() -> str:
    versions = sorted((PYENV / "versions").glob("3.*/bin")) if (PYENV / "versions").is_dir() else []
    return ":".join([*map(str, versions), str(Path(sys.executable).parent), "/usr/local/bin:/usr/bin:/bin"])


@dataclass(frozen=True)
class Topology:
    name: str
    argv_prefix: tuple[str, ...]  # what the validator's command runs under
    user_dir: Path | None  # the user's own HOME, caches and TMPDIR (None: root's)
    owner: int  # the host uid the validator's files belong to

    def run(self, args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 1500) -> CliResult:
        """The CLI in `cwd`, with the test's environment, the user's own where there is one, then `env`."""
        scratch = (self.user_dir or cwd) / "tmpdir"
        scratch.mkdir(exist_ok=True)
        os.chown(scratch, self.owner, self.owner)
        child_env = {**os.environ, "TMPDIR": str(scratch)}
        child_env.pop("PYENV_ROOT", None)
        if self.user_dir is not None:
            child_env |= {"HOME": str(self.user_dir / "home"), "USER": "probe-user", "LOGNAME": "probe-user"}
            child_env |= {"UV_CACHE_DIR": str(self.user_dir / "uv-cache"), "PATH": _python_path()}
        child_env |= env
        command = [*self.argv_prefix, sys.executable, "-m", "mlflow_validator", *args]
        done = subprocess.run(command, env=child_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        print(done.stdout, done.stderr)
        return CliResult(done.returncode, done.stdout, done.stderr, scratch)


def _as_user(refuse_user_namespaces: bool) -> tuple[str, ...]:
    outer = ["bwrap", "--dev-bind", "/", "/", *_shown_to_others([PYENV, REPO_ROOT])]
    if refuse_user_namespaces:
        # What AppArmor's restriction or user.max_user_namespaces=0 does to the validator's own bubblewrap.
        outer += ["--unshare-user", "--disable-userns", "--uid", str(USER_UID), "--gid", str(USER_UID)]
        return (*outer, "--")
    become = ["setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups", "--"]
    return (*outer, "--", *become)


@contextmanager
def topology(name: str) -> Iterator[Topology]:
    """`root`, `user`, `root-without-capabilities` or `user-without-user-namespaces`."""
    if name == "root":
        yield Topology(name, (), None, 0)
        return
    if name == "root-without-capabilities":  # root in a job container that is not privileged
        yield Topology(name, ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"), None, 0)
        return
    refused = name == "user-without-user-namespaces"
    owner = 0 if refused else USER_UID  # there the user is root's uid mapped into a namespace of its own
    user_dir = Path(tempfile.mkdtemp(prefix="mlflow-validator-user-", dir="/tmp"))
    for directory in (user_dir, user_dir / "home"):
        directory.mkdir(exist_ok=True)
        os.chown(directory, owner, owner)
    try:
        yield Topology(name, _as_user(refused), user_dir, owner)
    finally:
        subprocess.run(["rm", "-rf", str(user_dir)], check=False)

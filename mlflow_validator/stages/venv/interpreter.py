"""Find a Python interpreter on this machine for the model's Python version; uv downloads one only when asked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow_validator import commands
from mlflow_validator.errors import InfrastructureError


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: str
    requested: str

    @property
    def exact(self) -> bool:
        return self.version == self.requested


def search_path(env: Mapping[str, str]) -> str:
    """PATH plus pyenv's versions, where CI images often keep several interpreters."""
    pyenv_root = Path(env.get("PYENV_ROOT") or Path(env.get("HOME", "/root")) / ".pyenv")
    pyenv_bins = sorted(str(p) for p in (pyenv_root / "versions").glob("*/bin"))
    return os.pathsep.join([env.get("PATH", ""), *pyenv_bins])


def find_interpreter(
    uv: str, requested: str, tool_env: Mapping[str, str], timeout_s: float, *, mirror: Mapping[str, str] | None = None
) -> Interpreter | None:
    """Exact version first; else the same minor release with another patch level; else, when given where
    uv downloads from (`mirror`, possibly empty: uv's default), the version as uv installs it, exact if it
    can. None: no interpreter."""
    minor = minor_of(requested)
    env = {**tool_env, "PATH": search_path(tool_env), "UV_PYTHON_DOWNLOADS": "never"}
    for request in dict.fromkeys((requested, minor)):
        if found := _found(uv, request, env, timeout_s):
            return Interpreter(found, _version(found, env, timeout_s), requested)
    if mirror is None:
        return None
    install_env = {**env, **mirror, "UV_PYTHON_DOWNLOADS": "automatic"}
    for request in dict.fromkeys((requested, minor)):
        # --no-bin: nothing goes into the runner's ~/.local/bin
        install = [uv, "python", "install", "--no-bin", request]
        installed = commands.run(install, env=install_env, timeout_s=timeout_s, check=False)
        if installed.ok and (found := _found(uv, request, env, timeout_s)):
            return Interpreter(found, _version(found, env, timeout_s), requested)
    raise InfrastructureError(
        f"uv could not install Python {minor} (python.downloads: auto): {commands.last_line(installed.output)}",
        "let the runner reach uv's Python downloads, or name a mirror in UV_PYTHON_INSTALL_MIRROR",
    )


def no_interpreter(requested: str, why_not_a_container: str) -> InfrastructureError:
    minor = minor_of(requested)
    return InfrastructureError(
        f"no Python {minor} interpreter on this machine (the model needs {requested}), and the model cannot run "
        f"in a container of its Python instead ({why_not_a_container})",
        f"install Python {minor} on the runner (apt, pyenv or actions/setup-python) and put it on PATH; or set "
        "`python: {downloads: auto}` to let uv install it; or give the validator a Docker engine",
    )


def minor_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _found(uv: str, request: str, env: Mapping[str, str], timeout_s: float) -> Path | None:
    """The interpreter's real path: a link to it may live in a directory the cage hides (a home's bin, a
    checkout's .venv), and uv names its installs through links to directories (cpython-3.13 -> 3.13.0)."""
    found = commands.run([uv, "python", "find", "--no-project", request], env=env, timeout_s=timeout_s, check=False)
    return Path(os.path.realpath(found.output.strip().splitlines()[-1])) if found.ok else None


def _version(python: Path, env: Mapping[str, str], timeout_s: float) -> str:
    asked: list[str | Path] = [python, "-c", "import platform; print(platform.python_version())"]
    return commands.run(asked, env=env, timeout_s=timeout_s).output.strip()

"""Find a Python interpreter on this machine for the model's Python version (nothing is downloaded)."""

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


def find_interpreter(uv: str, requested: str, tool_env: Mapping[str, str], timeout_s: float) -> Interpreter:
    """Exact version first; else the same minor release with another patch level."""
    minor = ".".join(requested.split(".")[:2])
    env = {**tool_env, "PATH": search_path(tool_env), "UV_PYTHON_DOWNLOADS": "never"}
    for request in dict.fromkeys((requested, minor)):
        found = commands.run([uv, "python", "find", "--no-project", request], env=env, timeout_s=timeout_s, check=False)
        if found.ok:
            path = Path(found.output.strip().splitlines()[-1])
            version = commands.run(
                [path, "-c", "import platform; print(platform.python_version())"], env=env, timeout_s=timeout_s
            ).output.strip()
            return Interpreter(path, version, requested)
    raise InfrastructureError(
        f"no Python {minor} interpreter on this machine (the model needs {requested})",
        f"install Python {minor} on the runner (apt, pyenv or actions/setup-python) and put it on PATH",
    )

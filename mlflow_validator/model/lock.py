"""One lock for the whole run: the model's requirements and what serving adds, resolved once with uv
for the serving platform. The static checks read it, the venv installs it, the image installs it.

MLflow's serving image installs `pip install mlflow==<the generator's version>`, then the model's
build dependencies and requirements, then `gunicorn[gevent]`, each resolved by pip at build time.
Resolving all of that once, here, is what makes the venv and the image the same environment.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from mlflow_validator import commands
from mlflow_validator.model.files import ModelFiles
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.model.requirements import (
    ACCEPTED,
    SAFE_PATH,
    parse_requirements,
    pins,
    read_requirements,
    refusal,
    refused_lines,
)
from mlflow_validator.outputs import LOCK_FILE
from mlflow_validator.uv import (
    SERVING_PLATFORM,
    UV_PLATFORMS,
    compile_command,
    export_command,
    summarize_failure,
    uv_binary,
)

LOCK_FILE_NAME = LOCK_FILE
SERVING_PACKAGES = ("gunicorn[gevent]",)  # what MLflow's image adds to every model's requirements


@dataclass(frozen=True)
class Resolution:
    result: commands.CommandResult
    file: Path
    pins: dict[str, str]  # canonical name -> version; empty when it failed


@dataclass(frozen=True)
class Lock:
    """The resolution every stage installs, as a file next to the report."""

    file: Path
    pins: dict[str, str]
    source: str  # "requirements.txt" or "uv.lock"
    constraints: Path | None

    @property
    def described(self) -> str:
        within = f" within {self.constraints.name}" if self.constraints else ""
        return f"the {len(self.pins)} pins of the lock (from {self.source}{within})"


@dataclass
class Resolver:
    """Runs uv, each resolution once. The lock is the one within the runtime's constraints when that
    resolves, else the plain one (the runtime-constraints check then says why)."""

    files: ModelFiles
    workdir: Path
    output_dir: Path
    constraints: Path | None
    tool_env: Mapping[str, str]
    timeout_s: float
    _resolved: dict[Path | None, Resolution] = field(default_factory=dict)
    _on_platform: dict[str, Resolution] = field(default_factory=dict)  # other platforms (`platforms`)
    _served_by: dict[str, Resolution] = field(default_factory=dict)  # with a serving target's own requirements
    _exported: commands.CommandResult | None = None
    _lock: Lock | None = None

    def for_model(self, files: ModelFiles, workdir: Path) -> Resolver:
        """A resolver of its own, with nothing resolved yet, for another model (the baseline), in `workdir`."""
        return Resolver(files, workdir, workdir, self.constraints, self.tool_env, self.timeout_s)

    @property
    def is_uv_project(self) -> bool:
        return (self.files.directory / "uv.lock").is_file() and (self.files.directory / "pyproject.toml").is_file()

    def uv_export(self) -> commands.CommandResult:
        """The pins of the model's uv.lock, as `uv sync --frozen --no-dev` would install them."""
        self._refuse_a_carried_virtualenv()
        if self._exported is None:
            self._exported = commands.run(
                export_command(uv_binary(), self.files.directory),
                env=self.tool_env,
                timeout_s=self.timeout_s,
                check=False,
            )
        return self._exported

    def resolve(self, constraints: Path | None) -> Resolution:
        if constraints not in self._resolved:
            output = self.workdir / ("lock-constrained.txt" if constraints else "lock.txt")
            self._resolved[constraints] = self._compile(output, constraints, SERVING_PLATFORM)
        return self._resolved[constraints]

    def resolve_on(self, platform: str) -> Resolution:
        """The lock on another platform: the same requirements resolved there within the lock's own pins, so
        that what would install there is what the stages validated (plus what that platform alone needs)."""
        if platform not in self._on_platform:
            output = self.workdir / f"lock-{platform.replace('/', '-')}.txt"
            self._on_platform[platform] = self._compile(output, self.lock().file, UV_PLATFORMS[platform])
        return self._on_platform[platform]

    def resolve_with(self, server: str, requirements: tuple[str, ...]) -> Resolution:
        """The lock with a serving runtime's requirements added. uv prefers the versions its output file holds,
        so each of the lock's pins is kept where the runtime allows it and changed only where it must."""
        if server not in self._served_by:
            lock = self.lock()
            output = self.workdir / f"lock-{server}.txt"
            shutil.copyfile(lock.file, output)
            served = self.workdir / f"{server}-requirements.in"
            served.write_text("\n".join([f"-r {self._serving_input()}", *requirements]) + "\n")
            self._served_by[server] = self._compile(output, lock.constraints, SERVING_PLATFORM, served)
        return self._served_by[server]

    def _compile(
        self, output: Path, constraints: Path | None, platform: str, requirements: Path | None = None
    ) -> Resolution:
        command = compile_command(
            uv_binary(),
            requirements or self._serving_input(),
            self.files.python_env.python,
            output,
            constraints,
            platform,
        )
        env, cwd = self.tool_env, self.files.directory
        result = commands.run(command, env=env, cwd=cwd, timeout_s=self.timeout_s, check=False)
        return Resolution(result, output, pins(read_requirements(output)) if result.ok else {})

    @property
    def resolved_pins(self) -> dict[str, str]:
        """The lock's pins from what was resolved so far, without resolving anything."""
        for constraints in (self.constraints, None):
            if constraints in self._resolved and self._resolved[constraints].pins:
                return self._resolved[constraints].pins
        return {}

    def lock(self) -> Lock:
        """The lock, copied next to the report once; a model whose requirements do not resolve has none."""
        if self._lock is not None:
            return self._lock
        for constraints in dict.fromkeys((self.constraints, None)):
            resolution = self.resolve(constraints)
            if resolution.pins:
                published = self.output_dir / LOCK_FILE_NAME
                published.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(resolution.file, published)
                source = "uv.lock" if self.is_uv_project else self.files.python_env.requirements_file.name
                self._lock = Lock(published, resolution.pins, source, constraints)
                return self._lock
        raise ModelFileError(
            "the requirements cannot be resolved for the serving platform: "
            f"{summarize_failure(self.resolve(None).result.output)}"
        )

    def _refuse_a_carried_virtualenv(self) -> None:
        """uv, run in the model's directory, would take a virtualenv there for its own and run its python."""
        root = self.files.directory
        if carried := next(root.rglob("pyvenv.cfg"), None):
            raise ModelFileError(f"the model carries a virtualenv ({carried.relative_to(root)}): log it without one")

    def _serving_input(self) -> Path:
        """What is resolved: the model's requirements (or its uv.lock's pins), its build dependencies, and
        what MLflow's serving image installs besides."""
        requirements = self.files.python_env.requirements_file
        root = self.files.directory.resolve()
        self._refuse_a_carried_virtualenv()
        build_dependencies = self.files.python_env.build_dependencies
        relative = str(requirements.relative_to(self.files.directory))
        refused = [
            *([] if SAFE_PATH.fullmatch(relative) else [f"{relative} (a name of letters, digits, ., _, - and /)"]),
            *refused_lines(requirements, root),
            *(f"build_dependencies: {dep} ({why})" for dep in build_dependencies if (why := _refused(dep, root))),
        ]
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.is_uv_project:
            exported = self.uv_export()
            if not exported.ok:
                raise ModelFileError(
                    f"`uv export --frozen` fails on the model's uv.lock: {summarize_failure(exported.output)}"
                )
            requirements = self.workdir / "uv-lock-requirements.txt"
            requirements.write_text(exported.output)
            refused += [f"uv.lock's {line}" for line in refused_lines(requirements, root)]
        if refused:
            raise ModelFileError(f"requirements uv is not given: {'; '.join(refused)[:400]}. Accepted: {ACCEPTED}")
        named = {line.name for line in parse_requirements(requirements.read_text())}
        mlflow_pin = [] if "mlflow" in named else [f"mlflow=={mlflow.__version__}"]
        lines = [f"-r {requirements}", *self.files.python_env.build_dependencies, *SERVING_PACKAGES, *mlflow_pin]
        serving_input = self.workdir / "serving-requirements.in"
        serving_input.write_text("\n".join(lines) + "\n")
        return serving_input


def _refused(dependency: str, root: Path) -> str:
    """Why a build dependency of python_env.yaml is not given to uv: one requirement per entry, nothing else."""
    if "\n" in dependency or dependency.lstrip().startswith("-"):
        return "not one requirement"
    return refusal(dependency.strip(), root, root)[0]

"""Resolve the requirements with uv before anything is installed, and compare with the target runtime."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from validator import commands
from validator.model.files import ModelFiles
from validator.model.requirements import parse_requirements, pins, read_requirements
from validator.results import Outcome, failed, passed, skipped
from validator.stages.static.context import StaticContext
from validator.uv import SERVING_PLATFORM, compile_command, export_command, repair_hint, summarize_failure, uv_binary


@dataclass(frozen=True)
class Resolution:
    result: commands.CommandResult
    pins: dict[str, str]  # canonical name -> version; empty when it failed


@dataclass
class Resolver:
    """Runs uv for the static checks, each resolution once; the lock file goes next to the report.

    The checks read resolutions, they never change them: the lock other checks see is the one within
    the runtime's constraints when that resolves, else the plain one.
    """

    files: ModelFiles
    lock_file: Path
    constraints: Path | None
    tool_env: Mapping[str, str]
    timeout_s: float
    _resolved: dict[Path | None, Resolution] = field(default_factory=dict)

    def resolve(self, constraints: Path | None) -> Resolution:
        if constraints not in self._resolved:
            python_env = self.files.python_env
            self.lock_file.parent.mkdir(parents=True, exist_ok=True)
            command = compile_command(
                uv_binary(), python_env.requirements_file, python_env.python, self.lock_file, constraints
            )
            result = commands.run(
                command, env=self.tool_env, cwd=self.files.directory, timeout_s=self.timeout_s, check=False
            )
            self._resolved[constraints] = Resolution(
                result, pins(read_requirements(self.lock_file)) if result.ok else {}
            )
        return self._resolved[constraints]

    @property
    def lock(self) -> dict[str, str]:
        for constraints in (self.constraints, None):
            if constraints in self._resolved and self._resolved[constraints].pins:
                return self._resolved[constraints].pins
        return {}

    def check_resolvable(self, ctx: StaticContext) -> Outcome:
        python = ctx.files.python_env.python
        resolution = self.resolve(constraints=None)
        result = resolution.result
        if not result.ok:
            return failed(
                f"the requirements cannot be resolved for Python {python} on Linux x86-64: "
                f"{summarize_failure(result.output)}. Fix: {repair_hint(ctx.model_uri, result.output)}",
                result.tail(),
            )
        return passed(
            f"{len(resolution.pins)} packages resolved for Python {python} on {SERVING_PLATFORM} "
            f"in {result.duration_s:.1f} s; lock written to {self.lock_file}"
        )

    def check_runtime_constraints(self, ctx: StaticContext) -> Outcome:
        if self.constraints is None:
            return skipped("no target runtime given (--constraints or `constraints:` in the config file)")
        runtime = pins(read_requirements(self.constraints))
        unconstrained = self.resolve(constraints=None).pins
        result = self.resolve(constraints=self.constraints).result
        if result.ok:
            return passed(f"the lock satisfies the {len(runtime)} pins of {self.constraints.name}")
        conflicts = [
            f"the model's lock needs {name} {version}, the target runtime has {runtime[name]}"
            for name, version in sorted(unconstrained.items())
            if name in runtime and runtime[name] != version
        ]
        uri = shlex.quote(ctx.model_uri)
        return failed(
            f"{'; '.join(conflicts) or summarize_failure(result.output)}. Either pin the model to the runtime's "
            f'versions (`mlflow models update-pip-requirements -m {uri} add "name==<runtime version>"`) and '
            "validate again, or change the serving runtime",
            result.tail(),
        )

    def check_uv_lock(self, ctx: StaticContext) -> Outcome:
        if "uv.lock" not in ctx.files.listing or "pyproject.toml" not in ctx.files.listing:
            return skipped("not a uv project (the model has no uv.lock and pyproject.toml)")
        result = commands.run(
            export_command(uv_binary(), ctx.files.directory), env=self.tool_env, timeout_s=self.timeout_s, check=False
        )
        if not result.ok:
            return failed(
                f"`uv export --frozen` fails on the model's uv.lock: {summarize_failure(result.output)}. "
                "Run `uv lock` in the project and log the model again",
                result.tail(),
            )
        locked = pins(parse_requirements(result.output))
        required = pins(ctx.files.requirements)
        differences = [
            f"{name}: uv.lock {version}, requirements.txt {required.get(name, 'absent')}"
            for name, version in sorted(locked.items())
            if required.get(name) != version
        ]
        if differences:
            listed = "; ".join(differences[:10]) + (
                f"; and {len(differences) - 10} more" if len(differences) > 10 else ""
            )
            return failed(
                f"requirements.txt does not match uv.lock: {listed}. The venv stage installs from "
                "uv.lock, the serving image from requirements.txt: log the model again from the locked project",
                result.output,
            )
        return passed(f"requirements.txt matches the {len(locked)} pins of uv.lock")

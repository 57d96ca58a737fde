"""Resolve the requirements with uv before anything is installed, and compare with the target runtime."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from mlflow_validator.model.lock import Resolver
from mlflow_validator.model.requirements import parse_requirements, pins, read_requirements
from mlflow_validator.results import Outcome, failed, passed, skipped
from mlflow_validator.stages.static.context import StaticContext
from mlflow_validator.uv import (
    SERVING_PLATFORM,
    UV_PLATFORMS,
    cannot_build,
    needs_building,
    repair_hint,
    summarize_failure,
)

DEFAULT_PLATFORM = "linux/amd64"  # the one the venv and docker stages install: SERVING_PLATFORM


@dataclass(frozen=True)
class ResolutionChecks:
    """The static checks over the run's resolutions (`Resolver`): they read them, they never change them."""

    resolver: Resolver

    def check_resolvable(self, ctx: StaticContext) -> Outcome:
        python = ctx.files.python_env.python
        resolution = self.resolver.resolve(constraints=None)
        result = resolution.result
        if not result.ok and needs_building(result.output):
            raise cannot_build(result.output)
        if not result.ok:
            return failed(
                f"the requirements cannot be resolved for Python {python} on Linux x86-64: "
                f"{summarize_failure(result.output)}. Fix: {repair_hint(ctx.model_uri, result.output)}",
                result.tail(),
            )
        lock = self.resolver.lock()
        return passed(
            f"{len(resolution.pins)} packages resolved for Python {python} on {SERVING_PLATFORM} "
            f"in {result.duration_s:.1f} s; the lock every stage installs is {lock.file}"
        )

    def check_platforms(self, ctx: StaticContext) -> Outcome:
        """The lock's pins resolved for each other platform `platforms` names, nothing installed."""
        others = [platform for platform in ctx.platforms if platform != DEFAULT_PLATFORM]
        if not others:
            return skipped(f"only {DEFAULT_PLATFORM} asked for (`platforms: [linux/amd64, linux/arm64]` adds another)")
        python = ctx.files.python_env.python
        for platform in others:
            result = self.resolver.resolve_on(platform).result
            if not result.ok and needs_building(result.output):
                raise cannot_build(result.output)
            if not result.ok:
                return failed(
                    f"the requirements cannot be installed on {platform} ({UV_PLATFORMS[platform]}) for Python "
                    f"{python}: {summarize_failure(result.output)}. Fix: pin versions that publish wheels for "
                    f"{platform}, or leave {platform} out of `platforms`",
                    result.tail(),
                )
        return passed(f"the requirements resolve for Python {python} on {', '.join(others)} too")

    def check_runtime_constraints(self, ctx: StaticContext) -> Outcome:
        if self.resolver.constraints is None:
            return skipped("no target runtime given (--constraints or `constraints:` in the config file)")
        constraints = self.resolver.constraints
        runtime = pins(read_requirements(constraints))
        unconstrained = self.resolver.resolve(constraints=None).pins
        result = self.resolver.resolve(constraints=constraints).result
        if result.ok:
            return passed(f"the lock satisfies the {len(runtime)} pins of {constraints.name}")
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
        if not self.resolver.is_uv_project:
            return skipped("not a uv project (the model has no uv.lock and pyproject.toml)")
        result = self.resolver.uv_export()
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
                f"requirements.txt does not match uv.lock: {listed}. The validator installs "
                "uv.lock's pins, `mlflow models build-docker` installs requirements.txt: log the model again from the "
                "locked project",
                result.output,
            )
        return passed(f"requirements.txt matches the {len(locked)} pins of uv.lock")

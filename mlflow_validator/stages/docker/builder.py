"""MLflow's Dockerfile for a run, and the images built from it: the dependency image (keyed by the lock,
reused) and, in the docker stage, the model on top of it. The venv stage's container cage runs the model
on the same dependency image."""

from __future__ import annotations

import re
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mlflow_validator import commands
from mlflow_validator.results import Outcome, failed
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker.engine import Docker
from mlflow_validator.stages.docker.image import (
    CACHE_LABEL,
    ServingDockerfile,
    build,
    dependency_tag,
    fetch_wheels,
    generate,
    image_exists,
    image_id,
    pip_env,
)

# One build per dependency image at a time in this process: the venv stage's cage and the docker stage's
# early build may want the same one, and the second then reuses what the first built.
_BUILDING: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
BUILD_STEP = re.compile(r"^#\d+ \[\d+/\d+\] ")  # BuildKit's plain progress names each step once


@dataclass(frozen=True)
class DependencyImage:
    """The serving image's dependency layer: an existing one with the same key, or one built now."""

    tag: str
    how: str  # "reused …" or "built … from …", for the console
    failure: Outcome | None = None  # the build failed


class ImageBuilder:
    """Generates the Dockerfile into `context` and builds from it, every build logged to `build_log`."""

    def __init__(self, run: RunContext, docker: Docker, context: Path, build_log: Path) -> None:
        self.run = run
        self.docker = docker
        self.context = context
        self.dependency_context = context.with_name(f"{context.name}-dependencies")
        self.build_log = build_log
        self.dockerfile: ServingDockerfile | None = None

    def generate(self) -> ServingDockerfile:
        self.dockerfile = generate(self.run.model.directory, self.context)
        return self.dockerfile

    def dependencies(self, during: str = "") -> DependencyImage:
        """Reused when one with the same key exists; else the lock's wheels are fetched and it is built."""
        dockerfile = self.dockerfile or self.generate()
        timeout = self.run.options.timeouts.docker_build
        lock = self.run.resolver.lock()
        tag = dependency_tag(dockerfile, image_id(self.docker, dockerfile.base_image, timeout), lock)
        self.build_log.parent.mkdir(parents=True, exist_ok=True)
        self.build_log.write_text("")
        building = _BUILDING[tag]
        if not building.acquire(timeout=timeout):
            return DependencyImage(tag, "", failed(f"{tag} was still being built after {timeout:g} s"))
        try:
            if image_exists(self.docker, tag):
                return DependencyImage(tag, f"reused {tag}")
            wheels = self.dependency_context / "wheels"
            python_version = self.run.model.files.python_env.python
            fetch_wheels(lock.pins, lock.file, python_version, wheels, pip_env(self.run.env, self.run.network), timeout)
            labels = {CACHE_LABEL: "serving-dependencies"}
            built = self.build(self.dependency_context, dockerfile.dependencies(), tag, labels)
        finally:
            building.release()
        if not built.ok:
            return DependencyImage(tag, "", self.failure(built))
        return DependencyImage(tag, f"built {tag} from {lock.described}{during}")

    def build(self, context: Path, dockerfile: str, tag: str, labels: dict[str, str]) -> commands.CommandResult:
        with self.build_log.open("a") as log:
            log.write(f"### docker build --tag {tag}\n")
        part = self.build_log.with_suffix(".part")
        # The console's progress lines come from the main thread only: an early build must not interleave
        # them with the venv stage's results.
        progress = _progress if threading.current_thread() is threading.main_thread() else None
        result = build(
            self.docker, context, dockerfile, tag, labels, self.run.network, part,
            self.run.options.timeouts.docker_build, on_line=progress,
        )  # fmt: skip
        with self.build_log.open("a") as log:
            log.write(part.read_text())
        part.unlink()
        return result

    def failure(self, result: commands.CommandResult) -> Outcome:
        return failed(
            f"docker build failed: {commands.last_line(result.output)}. The full log is in {self.build_log}",
            result.tail(),
        )


def _progress(line: str) -> None:
    if BUILD_STEP.match(line):
        print(f"        docker build {line.split(' ', 1)[1]}", file=sys.stderr, flush=True)

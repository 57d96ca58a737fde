"""What every static check reads: the model's files (typed views) and the resolution of its requirements."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from mlflow_validator.errors import InfrastructureError
from mlflow_validator.model.files import ModelFiles
from mlflow_validator.model.lock import Resolver
from mlflow_validator.stages.static.pickles import PickleFindings, analyze_model

PICKLE_READING_TIMEOUT_S = 120  # fickling stops at a million opcodes, which takes about 10 s


@dataclass(frozen=True)
class StaticContext:
    files: ModelFiles
    model_uri: str
    resolver: Resolver
    pickle_reading: Future[list[PickleFindings]]  # started with the stage: see read_pickles_in_background
    declared_env: Collection[str] = ()  # variables the config file gives the model (env.pass, env.set)
    platforms: Sequence[str] = ("linux/amd64",)  # where the requirements must install (`platforms`)

    @property
    def lock(self) -> dict[str, str]:
        """Canonical name -> version, as resolved (within the runtime's constraints when they resolve)."""
        return self.resolver.resolved_pins

    @property
    def pickles(self) -> list[PickleFindings]:
        """Every pickle and skops file of the model, read as opcodes (nothing is loaded)."""
        try:
            return self.pickle_reading.result(timeout=PICKLE_READING_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise InfrastructureError(
                f"reading the model's pickles did not finish within {PICKLE_READING_TIMEOUT_S} s",
                "turn the pickle checks off for this model (`checks: {unsafe-pickle: off}`) and report it",
            ) from None


def read_pickles_in_background(
    files: ModelFiles, executor: ThreadPoolExecutor, trusted: Sequence[str]
) -> Future[list[PickleFindings]]:
    """Start reading the pickles at once: skops' first import takes seconds, which the resolution with uv,
    a subprocess, can hide."""

    def read() -> list[PickleFindings]:
        return analyze_model(files.directory, files.mlmodel.python_function.python_version, trusted)

    return executor.submit(read)

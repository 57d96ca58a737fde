"""The stages a model goes through, behind one protocol; the pipeline loops over `STAGES`. The docker
stage runs once per serving target (`serving/`), each reported as a stage of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mlflow_validator.expectations.answers import StageAnswers
from mlflow_validator.results import Stage
from mlflow_validator.serving import TARGETS
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker.stage import DockerStage
from mlflow_validator.stages.static import StaticStage
from mlflow_validator.stages.venv.stage import VenvStage
from mlflow_validator.steps import Step


class StageRunner(Protocol):
    def steps(self) -> list[Step]:
        """The stage's checks, in order; each runs when the runner reaches it."""
        ...

    def answered(self) -> StageAnswers | None:
        """What the stage answered, for the stages after it; None when it answers nothing."""
        ...

    def close(self) -> None:
        """Remove what the stage created (containers, images), also after a failure or a cancellation."""
        ...


STAGES: dict[Stage, Callable[[RunContext], StageRunner]] = {
    Stage.STATIC: StaticStage,
    Stage.VENV: VenvStage,
    **{target.stage: lambda run, target=target: DockerStage(run, target) for target in TARGETS.values()},  # type: ignore[misc]
}

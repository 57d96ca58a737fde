"""The three stages a model goes through, behind one protocol; the pipeline loops over `STAGES`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mlflow_validator.expectations.answers import StageAnswers
from mlflow_validator.results import Stage
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
    Stage.DOCKER: DockerStage,
}

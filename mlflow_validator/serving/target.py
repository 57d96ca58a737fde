"""What a serving target is: the image it serves from, how it says it is ready, and how it is asked.

A target is one module under `serving/` declaring a `ServingTarget`, registered in `serving.TARGETS`; the
docker stage (`stages/docker/stage.py`) builds, starts and asks any of them the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow_validator.results import Outcome, Stage
from mlflow_validator.serving.endpoint import answer_as_sent, scoring_question
from mlflow_validator.serving.v2 import Question
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker.image import ServingDockerfile


@dataclass(frozen=True)
class ServingLayer:
    """What a target installs on top of the run's lock, resolved on the host with the lock: the pins it adds
    or changes."""

    pins: dict[str, str]
    described: str


@dataclass(frozen=True)
class ServingTarget:
    name: str  # --serving's value
    stage: Stage  # the stage its results are reported under
    server: str  # how messages name it
    files: str  # names its build context and log (`<files>-context`, `<files>-build.log`)
    answers: str  # names its answers: in messages, and their directory next to the report
    repository: str  # the image's repository; the tag is the run's ID
    ready_path: str  # answers 200 once the model is loaded
    promoted: bool  # the image `--image-tag` keeps and the team's checks ask: the one deployed
    capabilities: tuple[str, ...]  # all the serving container keeps: what its server needs to start
    dockerfile: Callable[[ServingDockerfile, str], str]  # MLflow's Dockerfile and the dependency image -> its own
    # The target's own packages, resolved with the run's lock into `context`'s wheels; None when it adds none.
    layer: Callable[[RunContext, Path], ServingLayer | Outcome] | None = None
    question: Callable[[str, str], Question] = scoring_question  # a request of the plan, as the server takes it
    answer: Callable[[int, str], str] = answer_as_sent  # its answer, as the scoring server's
    # What to change when it cannot answer what the venv answered; empty for MLflow's own server.
    unserved_hint: str = ""

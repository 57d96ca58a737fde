"""What every stage is given: the resolved options, the fetched model, the requests planned once for
both answering stages, and where to work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow_validator.expectations.answers import StageAnswers
from mlflow_validator.expectations.requests import SampleRequest
from mlflow_validator.model.fetch import FetchedModel
from mlflow_validator.model.lock import Resolver
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.results import Stage
from mlflow_validator.settings import BuildNetwork, Options


@dataclass(frozen=True)
class RunContext:
    options: Options
    env: Mapping[str, str]  # the validator's environment, passed in; stages pass on only what they must
    model: FetchedModel
    # The sample requests, planned once; the error when the model has no example to plan them from.
    planned_requests: list[SampleRequest] | ModelFileError
    workdir: Path  # private to this run, removed at its end
    run_id: str  # unique per run: names and labels what this run creates
    answers: Mapping[Stage, StageAnswers]  # what the stages that already ran answered
    resolver: Resolver  # the run's one lock, resolved when a stage first needs it
    network: BuildNetwork  # how installs reach the indexes: the settings and the model's index lines
    baseline: FetchedModel | None = None
    failed_stages: tuple[Stage, ...] = ()  # the stages before this one that failed

    def requests(self) -> list[SampleRequest]:
        if isinstance(self.planned_requests, ModelFileError):
            raise ModelFileError(str(self.planned_requests))
        return self.planned_requests

    @property
    def output_dir(self) -> Path:
        """Absolute, because model processes and containers run in other working directories."""
        return self.options.output_dir.absolute()

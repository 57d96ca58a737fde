"""Reporters read ValidationReport records; none of them runs a check."""

from __future__ import annotations

from mlflow_validator.results import CheckResult, ModelIdentity, Stage, ValidationReport


class Reporter:
    """Told of each event of a run, in order; a reporter overrides the events it shows."""

    def model_fetched(self, identity: ModelIdentity) -> None:
        pass

    def stage_started(self, stage: Stage) -> None:
        pass

    def check_started(self, stage: Stage, name: str) -> None:
        pass

    def check_finished(self, result: CheckResult) -> None:
        pass

    def report_finished(self, report: ValidationReport) -> None:
        pass

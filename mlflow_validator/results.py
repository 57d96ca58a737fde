"""Plain records of what the validator found; every reporter reads these and nothing else."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_validator.errors import EXIT_CANNOT_VALIDATE, EXIT_GATE_FAILED, EXIT_PASSED


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"  # the model is at fault: the gate fails
    WARNED = "warned"  # a failed check whose policy is "warn": reported, does not fail the gate
    SKIPPED = "skipped"
    ERROR = "error"  # the validator could not run the check


class Stage(str, enum.Enum):
    STATIC = "static"
    VENV = "venv"
    # The serving targets `--stages docker` runs, as --serving asks. MLServer's runs first, so that the image
    # --image-tag keeps (MLflow's) is kept only when MLServer's checks passed too.
    MLSERVER = "mlserver"  # MLServer in its container
    DOCKER = "docker"  # MLflow's scoring server in its container


SELECTABLE_STAGES = (Stage.STATIC, Stage.VENV, Stage.DOCKER)  # what --stages names; docker means every serving target
SERVING_STAGES = (Stage.MLSERVER, Stage.DOCKER)  # a serving target each; --serving picks which run


@dataclass(frozen=True)
class Outcome:
    """What a check function returns; the runner adds name, stage and timing."""

    status: Status
    message: str = ""
    details: str = ""  # log tail or diff, shown in the report's system-out
    properties: Mapping[str, str] = field(default_factory=dict)  # facts for the report, e.g. image.digest
    source: str = ""  # the user's file to blame (a request file), for annotations on that file
    cases: tuple[CheckResult, ...] = ()  # a step that ran many tests reports each (status: the worst of them)


def passed(message: str = "", details: str = "", properties: Mapping[str, str] | None = None) -> Outcome:
    return Outcome(Status.PASSED, message, details, properties or {})


def failed(message: str, details: str = "", source: Path | None = None) -> Outcome:
    return Outcome(Status.FAILED, message, details, source=str(source) if source else "")


def skipped(reason: str) -> Outcome:
    return Outcome(Status.SKIPPED, reason)


@dataclass(frozen=True)
class CheckResult:
    stage: Stage
    name: str
    status: Status
    duration_s: float
    message: str = ""
    details: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class ModelIdentity:
    uri: str
    name: str
    version: str = ""
    run_id: str = ""
    model_id: str = ""  # MLflow 3's LoggedModel behind the version (or the one named by models:/m-…)
    source: str = ""
    mlflow_version: str = ""

    def as_properties(self) -> dict[str, str]:
        return {f"model.{key}": value for key, value in vars(self).items() if value}


VERDICT_WORDS = {EXIT_PASSED: "passed", EXIT_GATE_FAILED: "failed"}
VERDICTS = {
    EXIT_PASSED: "PASSED: the model may be promoted",
    EXIT_GATE_FAILED: "FAILED: do not promote this model",
    EXIT_CANNOT_VALIDATE: "COULD NOT VALIDATE",
}


def verdict_word(exit_code: int) -> str:
    """passed, failed, or error: how tags and CI outputs name an exit code."""
    return VERDICT_WORDS.get(exit_code, "error")


@dataclass
class ValidationReport:
    identity: ModelIdentity
    checks: list[CheckResult] = field(default_factory=list)
    write_back_error: str = ""  # the registry refused the verdict that was asked to be written back

    def in_stage(self, stage: Stage) -> list[CheckResult]:
        return [check for check in self.checks if check.stage is stage]

    @property
    def properties(self) -> dict[str, str]:
        """The model's identity, the stages that ran and did not, and what the checks established (the kept
        image's ID and digest)."""
        found = self.identity.as_properties()
        found["stages.run"] = ",".join(stage.value for stage in self.stages_run)
        if not_run := self.stages_not_run:
            found["stages.not_run"] = ",".join(stage.value for stage in not_run)
        for check in self.checks:
            found |= check.properties
        return found

    @property
    def stages_not_run(self) -> dict[Stage, str]:
        """Each stage that did not run, and why: not selected, no engine, an earlier stage failed, interrupted."""
        return {c.stage: c.message for c in self.checks if c.name == c.stage.value and c.status is Status.SKIPPED}

    @property
    def stages_run(self) -> list[Stage]:
        not_run = self.stages_not_run
        return [stage for stage in Stage if stage not in not_run and any(c.stage is stage for c in self.checks)]

    @property
    def complete(self) -> bool:
        """Every stage ran (the serving targets --serving asked for among them): only then may a pass promote
        the model."""
        ran = self.stages_run
        serving = any(stage in ran for stage in SERVING_STAGES)
        return not self.stages_not_run and Stage.STATIC in ran and Stage.VENV in ran and serving

    @property
    def verdict_name(self) -> str:
        """passed, partial (every check that ran passed, not every stage ran), failed or error: how report.json,
        the registry's tags and the CI outputs name the verdict."""
        if self.exit_code == EXIT_PASSED and not self.complete:
            return "partial"
        return verdict_word(self.exit_code)

    @property
    def verdict(self) -> str:
        """The one-line verdict. A pass of fewer than every stage names what did not run, and promotes nothing."""
        if self.exit_code != EXIT_PASSED or self.complete:
            return VERDICTS[self.exit_code]
        ran = ", ".join(stage.value for stage in self.stages_run) or "nothing"
        not_run = ", ".join(stage.value for stage in self.stages_not_run) or "a serving target"
        return f"PASSED {ran} only: {not_run} did not run, so the model is not validated for promotion"

    def stage_failed(self, stage: Stage) -> bool:
        return any(c.status in (Status.FAILED, Status.ERROR) for c in self.in_stage(stage))

    @property
    def exit_code(self) -> int:
        statuses = {check.status for check in self.checks}
        if Status.ERROR in statuses or self.write_back_error:
            return EXIT_CANNOT_VALIDATE
        if Status.FAILED in statuses:
            return EXIT_GATE_FAILED
        return EXIT_PASSED

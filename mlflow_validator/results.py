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
    DOCKER = "docker"


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
    source: str = ""
    mlflow_version: str = ""

    def as_properties(self) -> dict[str, str]:
        return {f"model.{key}": value for key, value in vars(self).items() if value}


VERDICT_WORDS = {EXIT_PASSED: "passed", EXIT_GATE_FAILED: "failed"}


def verdict_word(exit_code: int) -> str:
    """passed, failed, or error: how tags and CI outputs name an exit code."""
    return VERDICT_WORDS.get(exit_code, "error")


@dataclass
class ValidationReport:
    identity: ModelIdentity
    checks: list[CheckResult] = field(default_factory=list)

    def in_stage(self, stage: Stage) -> list[CheckResult]:
        return [check for check in self.checks if check.stage is stage]

    @property
    def properties(self) -> dict[str, str]:
        """The model's identity and what the checks established (the kept image's ID and digest)."""
        found = self.identity.as_properties()
        for check in self.checks:
            found |= check.properties
        return found

    def stage_failed(self, stage: Stage) -> bool:
        return any(c.status in (Status.FAILED, Status.ERROR) for c in self.in_stage(stage))

    @property
    def exit_code(self) -> int:
        statuses = {check.status for check in self.checks}
        if Status.ERROR in statuses:
            return EXIT_CANNOT_VALIDATE
        if Status.FAILED in statuses:
            return EXIT_GATE_FAILED
        return EXIT_PASSED

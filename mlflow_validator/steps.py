"""Run a stage's checks in order, timing each and turning its outcome into a CheckResult.

The step runner is the exception boundary: whatever a check raises ends as that check's result,
and the other checks go on where they do not depend on it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from mlflow_validator.checks import GATE_SO_FAR, Policy, checks_of
from mlflow_validator.errors import CommandError, ValidatorError
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.results import CheckResult, Outcome, Stage, Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], Outcome]
    # Names of earlier steps that must have passed; None means every earlier step.
    requires: tuple[str, ...] | None = None


def with_policy(step: Step, policy: Policy) -> Step:
    """The step as the config file's `checks: {name: error|warn|off}` wants it run."""
    if policy is Policy.OFF:
        return replace(
            step, run=lambda: Outcome(Status.SKIPPED, f"turned off by the config file (checks.{step.name}: off)")
        )
    if policy is Policy.WARN:
        run = step.run

        def warn_only() -> Outcome:
            outcome = run()
            return replace(outcome, status=Status.WARNED) if outcome.status is Status.FAILED else outcome

        return replace(step, run=warn_only)
    return step


def steps_for(
    stage: Stage, implementations: Mapping[str, Callable[[], Outcome]], policy: Callable[[str], Policy]
) -> list[Step]:
    """The stage's checks as the registry lists them (order, prerequisites, policy), each run by its
    implementation. A stage must implement exactly the checks the registry gives it."""
    checks = checks_of(stage)
    mismatch = {check.name for check in checks} ^ set(implementations)
    if mismatch:
        raise AssertionError(f"the {stage.value} stage and the check registry disagree about {sorted(mismatch)}")
    steps = []
    for check in checks:
        step = Step(check.name, implementations[check.name], check.requires)
        steps.append(with_policy(step, policy(check.name)) if check.has_policy else step)
    return steps


def _run_one(step: Step) -> tuple[Outcome, bool]:
    """The step's outcome, and whether the stage must stop (the validator itself could not go on)."""
    try:
        return step.run(), False
    except ModelFileError as exc:  # the model's fault, whichever stage finds it
        return Outcome(Status.FAILED, f"{exc}; log the model again"), False
    except ValidatorError as exc:
        details = exc.output_tail if isinstance(exc, CommandError) else ""
        return Outcome(Status.ERROR, str(exc), details), True
    except Exception as exc:
        log.debug("check %s raised", step.name, exc_info=True)  # the log file keeps it; the console says one line
        message = (
            f"internal error in mlflow-validator: {type(exc).__name__}: {exc}; the traceback is in "
            "mlflow-validator.log in the output directory: please report it"
        )
        return Outcome(Status.ERROR, message, traceback.format_exc()), False


def _blocker(step: Step, outcomes: Mapping[str, Status]) -> str:
    """The earlier step that keeps `step` from running, if any."""
    if step.requires is GATE_SO_FAR:
        return next((name for name, status in outcomes.items() if status in (Status.FAILED, Status.ERROR)), "")
    required = list(outcomes) if step.requires is None else step.requires
    return next((name for name in required if outcomes.get(name) is not Status.PASSED), "")


def run_steps(
    stage: Stage, steps: Iterable[Step], on_start: Callable[[Stage, str], None] = lambda stage, name: None
) -> Iterator[CheckResult]:
    """Yield a result per step as it finishes (`on_start` is told as each one that runs starts). Steps whose
    prerequisites did not pass are skipped; an error of the validator's own (no engine, a tool that failed)
    skips the rest of the stage."""
    outcomes: dict[str, Status] = {}
    stopped = ""
    for step in steps:
        blocker = stopped or _blocker(step, outcomes)
        if blocker:
            outcomes[step.name] = Status.SKIPPED
            yield CheckResult(stage, step.name, Status.SKIPPED, 0.0, f"not run: '{blocker}' did not pass")
            continue
        started = time.monotonic()
        on_start(stage, step.name)
        outcome, stop = _run_one(step)
        if stop:
            stopped = step.name
        outcomes[step.name] = outcome.status
        if outcome.cases:  # a step that runs many tests (the team's checks): each is a result of its own
            yield from outcome.cases
            continue
        duration = time.monotonic() - started
        fields = {name: value for name, value in vars(outcome).items() if name != "cases"}
        yield CheckResult(stage=stage, name=step.name, duration_s=duration, **fields)

"""Run a stage's checks in order, timing each and turning its outcome into a CheckResult."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from validator.errors import CommandError, ValidatorError
from validator.model_files import ModelFileError
from validator.policies import Policy
from validator.results import CheckResult, Outcome, Stage, Status


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


def run_steps(stage: Stage, steps: Iterable[Step]) -> Iterator[CheckResult]:
    """Yield a result per step as it finishes. A broken model file fails the step; a ValidatorError
    becomes an ERROR result and stops the stage."""
    outcomes: dict[str, Status] = {}
    stopped = ""
    for step in steps:
        required = list(outcomes) if step.requires is None else step.requires
        blocker = stopped or next((name for name in required if outcomes.get(name) is not Status.PASSED), "")
        if blocker:
            outcomes[step.name] = Status.SKIPPED
            yield CheckResult(stage, step.name, Status.SKIPPED, 0.0, f"not run: '{blocker}' did not pass")
            continue
        started = time.monotonic()
        try:
            outcome = step.run()
        except ModelFileError as exc:  # the model's fault, whichever stage finds it
            outcome = Outcome(Status.FAILED, f"{exc}; log the model again")
        except ValidatorError as exc:
            details = exc.output_tail if isinstance(exc, CommandError) else ""
            outcome = Outcome(Status.ERROR, str(exc), details)
            stopped = step.name
        outcomes[step.name] = outcome.status
        yield CheckResult(
            stage, step.name, outcome.status, time.monotonic() - started, outcome.message, outcome.details
        )

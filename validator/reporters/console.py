"""Print each check as it finishes, then the verdict."""

from __future__ import annotations

import sys
from typing import TextIO

from validator.results import CheckResult, ModelIdentity, Status, ValidationReport

MARKS = {
    Status.PASSED: "PASS",
    Status.WARNED: "WARN",
    Status.FAILED: "FAIL",
    Status.SKIPPED: "SKIP",
    Status.ERROR: "ERROR",
}
VERDICTS = {0: "PASSED: the model may be promoted", 1: "FAILED: do not promote this model", 2: "COULD NOT VALIDATE"}


class ConsoleReporter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def model_fetched(self, identity: ModelIdentity) -> None:
        described = ", ".join(
            f"{k.split('.', 1)[1]}={v}" for k, v in identity.as_properties().items() if k != "model.uri"
        )
        self._print(f"Validating {identity.uri} ({described})")

    def check_finished(self, result: CheckResult) -> None:
        line = f"{MARKS[result.status]:>5}  {result.stage.value:<6} {result.name:<26} {result.duration_s:7.2f}s"
        if result.message:
            line += f"  {result.message}"
        self._print(line)

    def report_finished(self, report: ValidationReport) -> None:
        counts = {status: sum(c.status is status for c in report.checks) for status in Status}
        summary = ", ".join(f"{n} {status.value}" for status, n in counts.items() if n)
        self._print(f"{VERDICTS[report.exit_code]} ({summary})")

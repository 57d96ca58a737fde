"""`report.json`: the run's records as they are, for tools to read and for a run of several models to merge."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from mlflow_validator import __version__
from mlflow_validator.reporters import Reporter
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport, verdict_word

REPORT_FILE = "report.json"
# Raised when a field is renamed or removed; a field added keeps it.
SCHEMA_VERSION = 1


def to_json(report: ValidationReport) -> str:
    """The verdict and what it covers first, then the records themselves."""
    header = {
        "schema_version": SCHEMA_VERSION,
        "verdict": verdict_word(report.exit_code),
        "exit_code": report.exit_code,
        "stages": {
            "run": [stage.value for stage in report.stages_run],
            "not_run": {stage.value: reason for stage, reason in report.stages_not_run.items()},
        },
        "validator_version": __version__,
    }
    return json.dumps(header | dataclasses.asdict(report), indent=2, default=dict)


def from_json(text: str) -> ValidationReport:
    data: dict[str, Any] = json.loads(text)
    checks = [
        CheckResult(**(check | {"stage": Stage(check["stage"]), "status": Status(check["status"])}))
        for check in data["checks"]
    ]
    return ValidationReport(ModelIdentity(**data["identity"]), checks)


class RecordReporter(Reporter):
    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / REPORT_FILE

    def report_finished(self, report: ValidationReport) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(to_json(report), encoding="utf-8")

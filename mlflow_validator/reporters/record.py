"""`report.json`: the run's records as they are, for tools to read and for a run of several models to merge."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from mlflow_validator import __version__
from mlflow_validator.outputs import REPORT_FILE, VERDICT_FILE
from mlflow_validator.reporters import Reporter
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport

# Raised when a field is renamed or removed; a field added keeps it.
SCHEMA_VERSION = 1


def to_json(report: ValidationReport) -> str:
    """The verdict and what it covers first, then the records themselves."""
    header = {
        "schema_version": SCHEMA_VERSION,
        "verdict": report.verdict_name,
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
    return ValidationReport(ModelIdentity(**data["identity"]), checks, data.get("write_back_error", ""))


def dotenv(verdict: str, exit_code: int, image_digest: str) -> str:
    """`verdict.env`: the verdict for a job downstream (GitLab's `reports: dotenv`, or `source` in a shell)."""
    values = {"VERDICT": verdict, "EXIT_CODE": str(exit_code), "IMAGE_DIGEST": image_digest}
    return "".join(f"MLFLOW_VALIDATOR_{name}={value}\n" for name, value in values.items())


class RecordReporter(Reporter):
    """report.json and verdict.env; written again when the registry refuses the verdict afterwards."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def report_finished(self, report: ValidationReport) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / REPORT_FILE).write_text(to_json(report), encoding="utf-8")
        digest = report.properties.get("image.digest", "")
        (self.output_dir / VERDICT_FILE).write_text(dotenv(report.verdict_name, report.exit_code, digest))

"""The GitHub reporter against recorded GITHUB_STEP_SUMMARY / GITHUB_OUTPUT files."""

import io
from pathlib import Path

from validator.reporters.github import (
    ANNOTATIONS_PER_KIND,
    SUMMARY_LIMIT_BYTES,
    GitHubReporter,
    bounded_summary,
    escape_data,
    escape_property,
)
from validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport

IDENTITY = ModelIdentity("models:/churn/3", "churn", "3")


def run(report: ValidationReport, tmp_path: Path) -> tuple[str, list[str]]:
    summary = tmp_path / "summary.md"
    stdout = io.StringIO()
    GitHubReporter({"GITHUB_STEP_SUMMARY": str(summary)}, "http://mlflow:5000", stdout).report_finished(report)
    return summary.read_text(), stdout.getvalue().splitlines()


def test_a_failure_gets_a_row_a_section_with_its_diff_and_an_annotation(tmp_path):
    report = ValidationReport(
        IDENTITY,
        [
            CheckResult(Stage.STATIC, "pinned", Status.PASSED, 0.01, "all 6 requirements pinned"),
            CheckResult(Stage.DOCKER, "matches-venv", Status.FAILED, 0.2, "1 answer differs", "- 0.5\n+ 0.7"),
            CheckResult(Stage.VENV, "deterministic", Status.WARNED, 0.0, "2 answers changed"),
        ],
    )
    summary, commands = run(report, tmp_path)

    assert summary.startswith("## ❌ [models:/churn/3](http://mlflow:5000/#/models/churn/versions/3)")
    assert "| docker | matches-venv | ❌ failed | 0.20 s | 1 answer differs |" in summary
    assert "### docker matches-venv" in summary and "- 0.5\n+ 0.7" in summary
    assert commands == [
        "::error title=mlflow-validator docker matches-venv::1 answer differs",
        "::warning title=mlflow-validator venv deterministic::2 answers changed",
    ]


def test_annotations_stop_at_ten_of_a_kind_and_say_how_many_more(tmp_path):
    failures = [CheckResult(Stage.VENV, f"check-{i}", Status.FAILED, 0.0, "no") for i in range(15)]
    _, commands = run(ValidationReport(IDENTITY, failures), tmp_path)
    assert len(commands) == ANNOTATIONS_PER_KIND + 1
    assert commands[-1].startswith("::notice::5 more failed or warned checks")


def test_workflow_command_values_are_escaped():
    assert escape_data("50%\nnext\r") == "50%25%0Anext%0D"
    assert escape_property("a: b, c") == "a%3A b%2C c"


def test_the_summary_keeps_within_githubs_limit():
    huge = [CheckResult(Stage.VENV, f"check-{i}", Status.FAILED, 0.0, "no", "x" * 10_000) for i in range(300)]
    text = bounded_summary(ValidationReport(IDENTITY, huge), "")
    assert len(text.encode()) <= SUMMARY_LIMIT_BYTES
    assert text.startswith("## ❌ `models:/churn/3`")

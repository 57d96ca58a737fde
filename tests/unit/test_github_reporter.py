"""The GitHub reporter against recorded GITHUB_STEP_SUMMARY / GITHUB_OUTPUT files."""

import io
from pathlib import Path

from mlflow_validator.reporters.github import (
    ANNOTATIONS_PER_KIND,
    Blame,
    GitHubReporter,
    check_annotations,
    error_on_file,
    escape_data,
    escape_property,
    within_budget,
)
from mlflow_validator.reporters.markdown import SUMMARY_LIMIT_BYTES, bounded_summary, models_summary
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport

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


def test_a_failure_a_request_file_caused_is_annotated_on_that_file(tmp_path):
    request = tmp_path / "requests" / "big-batch.json"
    check = CheckResult(Stage.DOCKER, "answers", Status.FAILED, 0.1, "1 of 3 request(s) failed", source=str(request))
    (command,) = check_annotations(ValidationReport(IDENTITY, [check]), workspace=tmp_path)
    assert (
        command
        == "::error file=requests/big-batch.json,title=mlflow-validator docker answers::1 of 3 request(s) failed"
    )


def test_several_models_share_one_budget_and_point_at_their_manifest_line(tmp_path):
    manifest = tmp_path / "mlflow-models.yaml"
    failures = [CheckResult(Stage.VENV, f"check-{i}", Status.FAILED, 0.0, "no") for i in range(6)]
    found = [
        command
        for line, label in ((4, "prod/churn"), (7, "staging/churn"))
        for command in check_annotations(ValidationReport(IDENTITY, failures), tmp_path, label, Blame(manifest, line))
    ]
    shown = within_budget(found)
    assert shown[0] == "::error file=mlflow-models.yaml,line=4,title=mlflow-validator prod/churn venv check-0::no"
    assert shown[6].startswith("::error file=mlflow-models.yaml,line=7,title=mlflow-validator staging/churn")
    assert shown[-1].startswith("::notice::2 more")


def test_a_file_outside_the_workspace_is_not_named(tmp_path):
    assert (
        error_on_file("bad", Path("/etc/mlflow-validator.yaml"), 3, tmp_path) == "::error title=mlflow-validator::bad"
    )
    inside = error_on_file("bad: x", tmp_path / "mlflow-validator.yaml", 3, tmp_path)
    assert inside == "::error file=mlflow-validator.yaml,line=3,title=mlflow-validator::bad: x"


def test_several_models_summary_opens_with_a_verdict_per_model():
    reports = {
        "prod/churn": ValidationReport(IDENTITY, [CheckResult(Stage.STATIC, "pinned", Status.PASSED, 0.0)]),
        "staging/churn": ValidationReport(IDENTITY, [CheckResult(Stage.STATIC, "pinned", Status.FAILED, 0.0, "x")]),
    }
    text = models_summary(reports, "")
    assert "| prod/churn | ✅ PASSED" in text and "| staging/churn | ❌ FAILED" in text


def test_the_summary_opens_with_what_did_not_pass_and_folds_the_passes(tmp_path):
    report = ValidationReport(
        IDENTITY,
        [
            CheckResult(Stage.STATIC, "pinned", Status.PASSED, 0.01, "all 6 requirements pinned"),
            CheckResult(Stage.STATIC, "uv-lock", Status.SKIPPED, 0.0, "not a uv project"),
            CheckResult(Stage.VENV, "answers", Status.FAILED, 0.2, "1 of 6 request(s) failed"),
            CheckResult(Stage.DOCKER, "docker", Status.SKIPPED, 0.0, "an earlier stage failed (venv)"),
        ],
    )
    summary, _ = run(report, tmp_path)
    failure, folded = summary.index("| venv | answers | ❌ failed"), summary.index("<details><summary>✅ 1 passed")
    assert failure < summary.index("### venv answers") < folded < summary.index("| static | pinned | ✅ passed")
    assert "⏭️ 2 skipped</summary>" in summary
    assert "Not run: docker: an earlier stage failed (venv)" in summary


def test_a_refused_write_back_opens_the_summary_and_credentials_never_reach_it(tmp_path):
    report = ValidationReport(IDENTITY, [CheckResult(Stage.STATIC, "pinned", Status.PASSED, 0.01)], "PERMISSION_DENIED")
    text = bounded_summary(report, "https://alice:s3cret@mlflow.example.com")
    assert text.startswith("## 💥 [models:/churn/3](https://mlflow.example.com/#/models/churn/versions/3): COULD")
    assert "could not be written back to the registry: PERMISSION_DENIED" in text and "s3cret" not in text

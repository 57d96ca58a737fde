import pytest

from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport
from mlflow_validator.settings import Options
from mlflow_validator.settings.options import WriteBack
from mlflow_validator.writeback import ci_job_url, planned_write

VERSION = ModelIdentity("models:/churn/3", "churn", "3")


def report(*statuses: Status, identity: ModelIdentity = VERSION, not_run: tuple[Stage, ...] = ()) -> ValidationReport:
    """The statuses in the static stage; each later stage passed, or recorded as not run."""
    checks = [CheckResult(Stage.STATIC, f"check-{i}", status, 0.1) for i, status in enumerate(statuses)]
    for stage in (Stage.VENV, Stage.DOCKER):
        skipped = CheckResult(stage, stage.value, Status.SKIPPED, 0.0, "not selected (--stages static)")
        checks.append(skipped if stage in not_run else CheckResult(stage, "answers", Status.PASSED, 0.1))
    return ValidationReport(identity, checks)


def options(**write_back: object) -> Options:
    return Options("models:/churn/3", write_back=WriteBack(**write_back))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("statuses", "status", "failed", "alias"),
    [
        ((Status.PASSED, Status.WARNED), "passed", None, "validated"),
        ((Status.PASSED, Status.FAILED), "failed", "static/check-1", ""),
        ((Status.FAILED, Status.ERROR), "error", "static/check-0,static/check-1", ""),
    ],
)
def test_every_run_tags_the_version_and_only_a_pass_sets_the_alias(statuses, status, failed, alias):
    planned = planned_write(report(*statuses), options(on_pass_set_alias="validated"), {})
    assert planned is not None
    assert planned.tags["mlflow_validator.status"] == status
    assert planned.tags.get("mlflow_validator.checks_failed") == failed
    assert planned.tags["mlflow_validator.validator_version"]
    assert planned.alias == alias


def test_a_run_or_a_directory_has_no_version_to_tag():
    unregistered = ModelIdentity("runs:/0123/model", "model")
    assert planned_write(report(Status.PASSED, identity=unregistered), options(enabled=True), {}) is None


def test_nothing_is_written_unless_asked():
    assert planned_write(report(Status.PASSED), options(), {}) is None
    assert planned_write(report(Status.PASSED), options(enabled=True), {}) is not None


def test_a_pass_of_fewer_stages_says_what_did_not_run_and_moves_no_alias():
    partial = report(Status.PASSED, not_run=(Stage.VENV, Stage.DOCKER))
    planned = planned_write(partial, options(on_pass_set_alias="production"), {})
    assert planned is not None and planned.alias == ""
    assert (planned.tags["mlflow_validator.status"], planned.tags["mlflow_validator.stages"]) == ("partial", "static")
    assert planned.tags["mlflow_validator.stages_not_run"] == "venv,docker"
    assert (
        partial.verdict == "PASSED static only: venv, docker did not run, so the model is not validated for promotion"
    )
    assert report(Status.PASSED).verdict == "PASSED: the model may be promoted"
    assert report(Status.PASSED).properties["stages.run"] == "static,venv,docker"


def test_the_report_link_is_the_ci_jobs_page_unless_one_is_given():
    github = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/models", "GITHUB_RUN_ID": "42"}
    assert ci_job_url(github) == "https://github.com/acme/models/actions/runs/42"
    assert ci_job_url({"CI_JOB_URL": "https://gitlab.example.com/acme/models/-/jobs/7"}).endswith("/jobs/7")
    given = planned_write(report(Status.PASSED), options(enabled=True, report_url="https://ci/r/1"), github)
    assert given is not None and given.tags["mlflow_validator.report"] == "https://ci/r/1"

"""The console reporter: one line a check, and with --quiet only what did not pass or skip."""

import io
import time

from mlflow_validator.reporters.console import ConsoleReporter
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport

RESULTS = [
    CheckResult(Stage.STATIC, "mlmodel", Status.PASSED, 0.01, "flavors: python_function"),
    CheckResult(Stage.STATIC, "uv-lock", Status.SKIPPED, 0.0, "not a uv project"),
    CheckResult(Stage.STATIC, "pinned", Status.WARNED, 0.0, "1 requirement unpinned"),
    CheckResult(Stage.VENV, "load-model", Status.FAILED, 2.5, "the model failed to load"),
]


def printed(quiet: bool) -> str:
    stream = io.StringIO()
    console = ConsoleReporter(stream, quiet=quiet)
    for result in RESULTS:
        console.check_finished(result)
    return stream.getvalue()


def test_every_check_is_a_line():
    assert [line.split()[0] for line in printed(quiet=False).splitlines()] == ["PASS", "SKIP", "WARN", "FAIL"]


def test_quiet_leaves_what_passed_or_was_skipped_to_the_report():
    assert [line.split()[0] for line in printed(quiet=True).splitlines()] == ["WARN", "FAIL"]


def test_a_long_check_says_it_is_running_and_keeps_saying_it_until_it_ends():
    stream = io.StringIO()
    console = ConsoleReporter(stream, running_after_s=0.1, heartbeat_s=0.1)
    console.check_started(Stage.DOCKER, "build-image")
    time.sleep(0.35)
    console.check_finished(CheckResult(Stage.DOCKER, "build-image", Status.PASSED, 0.35, "built"))
    time.sleep(0.2)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all("build-image" in line and "running" in line for line in lines[:-1])
    assert lines[-1].startswith(" PASS")  # nothing after the check ended


def test_a_quick_check_prints_its_result_alone():
    stream = io.StringIO()
    console = ConsoleReporter(stream)
    console.check_started(Stage.STATIC, "mlmodel")
    console.check_finished(RESULTS[0])
    assert len(stream.getvalue().splitlines()) == 1


def test_each_stage_is_a_group_in_a_github_job_and_a_section_in_a_gitlab_job():
    for folds, opened, closed in (
        ("github", "::group::", "::endgroup::"),
        ("gitlab", "section_start:", "section_end:"),
    ):
        stream = io.StringIO()
        console = ConsoleReporter(stream, folds=folds)
        for stage in (Stage.STATIC, Stage.VENV):
            console.stage_started(stage)
            console.check_finished(next(r for r in RESULTS if r.stage is stage))
        console.report_finished(ValidationReport(ModelIdentity("m", "m"), RESULTS))
        lines = stream.getvalue().rstrip("\n").split("\n")  # GitLab's header follows a carriage return
        assert [opened in line for line in lines].count(True) == [closed in line for line in lines].count(True) == 2
        assert "the static stage" in lines[0] and closed in lines[-2] and lines[-1].startswith("FAILED")

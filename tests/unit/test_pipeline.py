"""The pipeline with fake stages: what it records, reports and cleans up when a stage fails, crashes or is
cancelled. No processes: the model is a local directory and the stages are fakes."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import mlflow_validator.pipeline as pipeline_module
from mlflow_validator.errors import Cancelled
from mlflow_validator.expectations.answers import StageAnswers
from mlflow_validator.model.fetch import FetchedModel
from mlflow_validator.model.files import ModelFiles
from mlflow_validator.pipeline import Pipeline
from mlflow_validator.plan import plan_stages
from mlflow_validator.reporters import Reporter
from mlflow_validator.results import (
    CheckResult,
    ModelIdentity,
    Outcome,
    Stage,
    Status,
    ValidationReport,
    failed,
    passed,
)
from mlflow_validator.settings import Options
from mlflow_validator.stages.context import RunContext
from mlflow_validator.steps import Step


class RecordingReporter(Reporter):
    def __init__(self) -> None:
        self.fetched: list[ModelIdentity] = []
        self.results: list[CheckResult] = []
        self.finished: list[ValidationReport] = []

    def model_fetched(self, identity: ModelIdentity) -> None:
        self.fetched.append(identity)

    def check_finished(self, result: CheckResult) -> None:
        self.results.append(result)

    def report_finished(self, report: ValidationReport) -> None:
        self.finished.append(report)


class FakeStage:
    """A stage whose steps are given by the test; remembers whether it was closed."""

    def __init__(self, run: RunContext, steps: list[Step]) -> None:
        self.run = run
        self._steps = steps
        self.closed = False

    def steps(self) -> list[Step]:
        return self._steps

    def answered(self) -> StageAnswers | None:
        return None

    def close(self) -> None:
        self.closed = True


def fake_stages(monkeypatch: pytest.MonkeyPatch, steps: dict[Stage, list[Step]]) -> dict[Stage, list[FakeStage]]:
    """Replace every stage by a fake running `steps[stage]` (none when absent); returns the fakes created."""
    created: dict[Stage, list[FakeStage]] = {stage: [] for stage in Stage}

    def factory(stage: Stage) -> Callable[[RunContext], FakeStage]:
        def make(run: RunContext) -> FakeStage:
            fake = FakeStage(run, steps.get(stage, []))
            created[stage].append(fake)
            return fake

        return make

    monkeypatch.setattr(pipeline_module, "STAGES", {stage: factory(stage) for stage in Stage})
    return created


@pytest.fixture
def options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Options:
    """Options for model "m", whose fetch returns a local directory holding a minimal MLmodel."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")

    def fetch(options: Options, dest: Path, *, static_files_only: bool) -> FetchedModel:
        return FetchedModel(ModelFiles(model_dir, {}), ModelIdentity(uri="m", name="m"))

    monkeypatch.setattr(pipeline_module, "fetch_model", fetch)
    return dataclasses.replace(Options("m"), output_dir=tmp_path / "out")


def step(name: str, run: Callable[[], Outcome], requires: tuple[str, ...] | None = None) -> Step:
    return Step(name, run, requires)


def ok() -> Outcome:
    return passed("fine")


def boom() -> Outcome:
    raise RuntimeError("boom")


def cancel() -> Outcome:
    raise Cancelled()


def results_of(report: ValidationReport, stage: Stage) -> dict[str, CheckResult]:
    return {result.name: result for result in report.in_stage(stage)}


def test_a_failed_check_exits_1_and_skips_the_later_stages(options: Options, monkeypatch: pytest.MonkeyPatch):
    created = fake_stages(monkeypatch, {Stage.STATIC: [step("mlmodel", lambda: failed("no flavor"))]})
    reporter = RecordingReporter()

    report = Pipeline(options, plan_stages(options, ""), {}, [reporter]).run()

    assert report.exit_code == 1
    assert results_of(report, Stage.STATIC)["mlmodel"].status is Status.FAILED
    for later in (Stage.VENV, Stage.DOCKER):
        skipped = results_of(report, later)[later.value]
        assert skipped.status is Status.SKIPPED
        assert skipped.message == "not run: the static stage failed"
    assert created[Stage.STATIC][0].closed
    assert created[Stage.VENV] == created[Stage.DOCKER] == []
    assert reporter.finished == [report]


def test_every_result_reaches_the_reporter_in_order(options: Options, monkeypatch: pytest.MonkeyPatch):
    fake_stages(monkeypatch, {Stage.STATIC: [step("mlmodel", lambda: failed("no flavor"))]})
    reporter = RecordingReporter()

    report = Pipeline(options, plan_stages(options, ""), {}, [reporter]).run()

    assert reporter.fetched == [ModelIdentity(uri="m", name="m")]
    assert reporter.results == report.checks


def test_a_crashing_check_is_an_error_result_with_its_traceback(options: Options, monkeypatch: pytest.MonkeyPatch):
    created = fake_stages(monkeypatch, {Stage.STATIC: [step("crashes", boom), step("independent", ok, requires=())]})
    reporter = RecordingReporter()

    report = Pipeline(options, plan_stages(options, ""), {}, [reporter]).run()

    crashed = results_of(report, Stage.STATIC)["crashes"]
    assert crashed.status is Status.ERROR
    assert "RuntimeError: boom" in crashed.message
    assert "Traceback" in crashed.details
    assert results_of(report, Stage.STATIC)["independent"].status is Status.PASSED
    assert created[Stage.STATIC][0].closed
    assert reporter.finished == [report]
    assert report.exit_code == 2


def test_a_step_after_a_crash_that_requires_every_earlier_step_is_skipped(
    options: Options, monkeypatch: pytest.MonkeyPatch
):
    fake_stages(monkeypatch, {Stage.STATIC: [step("crashes", boom), step("dependent", ok)]})

    report = Pipeline(options, plan_stages(options, ""), {}, []).run()

    dependent = results_of(report, Stage.STATIC)["dependent"]
    assert dependent.status is Status.SKIPPED
    assert "'crashes' did not pass" in dependent.message


def test_a_cancelled_run_finishes_the_report_before_reraising(options: Options, monkeypatch: pytest.MonkeyPatch):
    created = fake_stages(monkeypatch, {Stage.STATIC: [step("first", ok), step("cancelled", cancel)]})
    reporter = RecordingReporter()

    with pytest.raises(Cancelled):
        Pipeline(options, plan_stages(options, ""), {}, [reporter]).run()

    assert len(reporter.finished) == 1
    report = reporter.finished[0]
    interrupted = results_of(report, Stage.STATIC)["interrupted"]
    assert interrupted.status is Status.ERROR
    assert "cancelled by SIGTERM" in interrupted.message
    assert results_of(report, Stage.STATIC)["first"].status is Status.PASSED
    for later in (Stage.VENV, Stage.DOCKER):
        skipped = results_of(report, later)[later.value]
        assert skipped.status is Status.SKIPPED
        assert "the run stopped in the static stage" in skipped.message
    assert created[Stage.STATIC][0].closed
    assert report.exit_code == 2


def test_a_cancellation_in_a_later_stage_closes_that_stage(options: Options, monkeypatch: pytest.MonkeyPatch):
    created = fake_stages(monkeypatch, {Stage.STATIC: [step("ok", ok)], Stage.VENV: [step("cancelled", cancel)]})
    reporter = RecordingReporter()

    with pytest.raises(Cancelled):
        Pipeline(options, plan_stages(options, ""), {}, [reporter]).run()

    report = reporter.finished[0]
    assert results_of(report, Stage.VENV)["interrupted"].status is Status.ERROR
    assert results_of(report, Stage.DOCKER)["docker"].status is Status.SKIPPED
    assert created[Stage.VENV][0].closed
    assert created[Stage.DOCKER] == []


def test_on_report_is_called_once_on_a_passing_run(options: Options, monkeypatch: pytest.MonkeyPatch):
    fake_stages(monkeypatch, {stage: [step("ok", ok)] for stage in Stage})
    calls: list[None] = []

    report = Pipeline(options, plan_stages(options, ""), {}, [], on_report=lambda: calls.append(None)).run()

    assert report.exit_code == 0
    assert calls == [None]


def test_on_report_is_called_once_on_a_crashing_run(options: Options, monkeypatch: pytest.MonkeyPatch):
    fake_stages(monkeypatch, {Stage.STATIC: [step("crashes", boom)]})
    calls: list[None] = []

    report = Pipeline(options, plan_stages(options, ""), {}, [], on_report=lambda: calls.append(None)).run()

    assert report.exit_code == 2
    assert calls == [None]


def test_on_report_is_called_once_on_a_cancelled_run(options: Options, monkeypatch: pytest.MonkeyPatch):
    fake_stages(monkeypatch, {Stage.STATIC: [step("cancelled", cancel)]})
    calls: list[None] = []

    with pytest.raises(Cancelled):
        Pipeline(options, plan_stages(options, ""), {}, [], on_report=lambda: calls.append(None)).run()

    assert calls == [None]


def test_the_work_directory_is_removed_after_a_cancelled_run(options: Options, monkeypatch: pytest.MonkeyPatch):
    created = fake_stages(monkeypatch, {Stage.STATIC: [step("cancelled", cancel)]})

    with pytest.raises(Cancelled):
        Pipeline(options, plan_stages(options, ""), {}, []).run()

    assert not created[Stage.STATIC][0].run.workdir.exists()


def test_keep_leaves_the_work_directory(options: Options, monkeypatch: pytest.MonkeyPatch):
    created = fake_stages(monkeypatch, {Stage.STATIC: [step("ok", ok)]})

    Pipeline(dataclasses.replace(options, keep=True), plan_stages(options, ""), {}, []).run()

    workdir = created[Stage.STATIC][0].run.workdir
    assert workdir.is_dir()
    shutil.rmtree(workdir)


def test_a_work_directory_the_model_closed_to_its_owner_is_removed_and_no_link_is_followed(tmp_path):
    """A model running as the validator's own user (no root) may chmod 000 directories of its HOME."""
    from mlflow_validator.pipeline import remove_work_directory

    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    work = tmp_path / "work"
    closed = work / "home" / "keep"
    closed.mkdir(parents=True)
    (closed / "weights.bin").write_bytes(b"x" * 1024)
    (work / "home" / "link").symlink_to(outside)
    closed.chmod(0)
    (work / "home").chmod(0o500)
    remove_work_directory(work)
    assert not work.exists()
    assert (outside.stat().st_mode & 0o777) == 0o755

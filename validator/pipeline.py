"""fetch → static → venv → docker, feeding every result to the reporters as it finishes."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from validator.answers import StageAnswers
from validator.baseline import baseline_answers, check_changes, fetch_baseline
from validator.docker.stage import DockerPaths, DockerStage
from validator.fetch import FetchedModel, fetch_model
from validator.options import Options
from validator.plan import PlannedStage
from validator.results import CheckResult, ModelIdentity, Outcome, Stage, Status, ValidationReport, skipped
from validator.static import StaticChecks
from validator.steps import Step, run_steps
from validator.venv.stage import VenvPaths, VenvStage


class Reporter(Protocol):
    def model_fetched(self, identity: ModelIdentity) -> None: ...
    def check_finished(self, result: CheckResult) -> None: ...
    def report_finished(self, report: ValidationReport) -> None: ...


class Pipeline:
    def __init__(
        self, options: Options, plan: list[PlannedStage], env: Mapping[str, str], reporters: Iterable[Reporter]
    ):
        self.options = options
        self.plan = plan
        self.env = env
        self.reporters = list(reporters)
        self.run_id = uuid.uuid4().hex[:12]
        self.venv_answers: StageAnswers | None = None  # what the docker stage compares its answers with
        self.baseline: FetchedModel | None = None

    def run(self) -> ValidationReport:
        workdir = Path(tempfile.mkdtemp(prefix=f"mlflow-validator-{self.run_id}-"))
        try:
            static_only = not any(p.run for p in self.plan if p.stage is not Stage.STATIC)
            model = fetch_model(self.options, workdir / "model", static_files_only=static_only)
            if self.options.baseline_uri:
                self.baseline = fetch_baseline(self.options, workdir)
            for reporter in self.reporters:
                reporter.model_fetched(model.identity)
            report = ValidationReport(model.identity)
            for planned in self.plan:
                self._run_stage(planned, model, workdir, report)
        finally:
            if not self.options.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        for reporter in self.reporters:
            reporter.report_finished(report)
        return report

    def _run_stage(self, planned: PlannedStage, model: FetchedModel, workdir: Path, report: ValidationReport) -> None:
        stage = planned.stage
        reason = planned.skip_reason or self._earlier_failure(report, stage)
        if reason:
            self._record(report, CheckResult(stage, stage.value, Status.SKIPPED, 0.0, reason))
            return
        if stage is Stage.STATIC:
            static = StaticChecks(model.directory, model.listing, self.options, self.env)
            self._record_all(report, run_steps(stage, static.steps()))
            return
        model.download_rest()
        if stage is Stage.VENV:
            venv = VenvStage(model.directory, self.options, self._venv_paths(workdir), self.env)
            self._record_all(report, run_steps(stage, venv.steps()))
            self.venv_answers = venv.answers if venv.answers.answers else None
            if self.options.baseline_uri:
                self._record_all(report, run_steps(stage, [self._baseline_step(venv, report, workdir)]))
        else:
            paths = DockerPaths(
                workdir / "docker-context",
                self._output_dir / "answers" / "container",
                self._output_dir / "docker-build.log",
            )
            docker = DockerStage(model.directory, self.options, paths, self.run_id, self.env, self.venv_answers)
            try:
                self._record_all(report, run_steps(stage, docker.steps()))
            finally:
                docker.close()

    @property
    def _output_dir(self) -> Path:
        """Absolute, because model processes and containers run in other working directories."""
        return self.options.output_dir.absolute()

    @staticmethod
    def _earlier_failure(report: ValidationReport, stage: Stage) -> str:
        earlier = [s for s in Stage if list(Stage).index(s) < list(Stage).index(stage)]
        failed = next((s for s in earlier if report.stage_failed(s)), None)
        return f"not run: the {failed.value} stage failed" if failed else ""

    def _baseline_step(self, venv: VenvStage, report: ValidationReport, workdir: Path) -> Step:
        def compare_with_baseline() -> Outcome:
            if report.stage_failed(Stage.VENV):
                return skipped("not run: the model's own answers did not pass")
            assert self.baseline is not None
            baseline = baseline_answers(
                self.baseline, self.options, self.env, workdir, self._output_dir / "answers" / "baseline", venv.requests
            )
            return check_changes(venv.requests, venv.answers, baseline, self.options)

        return Step("changed-vs-baseline", compare_with_baseline)

    def _venv_paths(self, workdir: Path) -> VenvPaths:
        return VenvPaths(workdir / "venv-stage", self._output_dir / "answers" / "venv")

    def _record_all(self, report: ValidationReport, results: Iterable[CheckResult]) -> None:
        for result in results:
            self._record(report, result)

    def _record(self, report: ValidationReport, result: CheckResult) -> None:
        report.checks.append(result)
        for reporter in self.reporters:
            reporter.check_finished(result)
